//! The front half of the pipeline in one call: text → raw config → checked IR. Used by the CLI
//! and by tests, so that both see exactly the same diagnostics.

use crate::check::{self, Checked};
use crate::config::{self, interpolate::Env, Loaded};
use crate::diag::{Diagnostic, SourceFile};

/// A failed front end: the source (secrets masked) and every diagnostic.
#[derive(Debug)]
pub struct Failed {
    /// The config source, for rendering.
    pub source: SourceFile,
    /// Errors (and warnings found before them).
    pub diagnostics: Vec<Diagnostic>,
}

impl Failed {
    /// Render every diagnostic against the source.
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| crate::diag::render(d, Some(&self.source)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Number of errors (not warnings).
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

/// A successfully checked config.
#[derive(Debug)]
pub struct Frontend {
    /// The loaded config (raw structs and masked source).
    pub loaded: Loaded,
    /// The checked program and warnings.
    pub checked: Checked,
}

/// Load, interpolate, decode and check a config. `only` selects pipelines by name.
pub fn frontend(
    name: &str,
    text: &str,
    env: &dyn Env,
    only: &[String],
) -> Result<Frontend, Failed> {
    let loaded = config::load(name, text, env).map_err(|(source, diagnostics)| Failed {
        source,
        diagnostics,
    })?;
    match check::check(&loaded.raw, only) {
        Ok(checked) => Ok(Frontend { loaded, checked }),
        Err(diagnostics) => Err(Failed {
            source: loaded.source.clone(),
            diagnostics,
        }),
    }
}
