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

impl Frontend {
    /// The secrets left unset (`${VAR}` without a value) that the selected pipelines need:
    /// those of the datastores and external stores they use, and their own. `plan` and
    /// `apply` stop on them before connecting anywhere.
    pub fn unset_secrets(&self) -> Vec<Diagnostic> {
        let mut stores: Vec<&str> = Vec::new();
        let mut externals: Vec<&str> = Vec::new();
        let mut pipelines: Vec<&str> = Vec::new();
        for p in &self.checked.program.pipelines {
            pipelines.push(&p.name);
            stores.push(&p.source.store.name);
            stores.push(&p.sink.store.name);
            for st in p.source_state.iter().chain(&p.sink_state) {
                stores.push(&st.store.name);
            }
            for e in &p.enrichments {
                externals.push(&e.store.name);
            }
        }
        self.loaded.unset_for(&stores, &externals, &pipelines)
    }

    /// Every unset secret, as warnings: `validate` and `compile` connect nowhere, so they
    /// do not need them, but `plan` and `apply` of a pipeline that uses their store will.
    pub fn unset_secret_warnings(&self) -> Vec<Diagnostic> {
        self.loaded
            .unset
            .iter()
            .map(|u| {
                let mut d = u.diagnostic.clone();
                d.severity = crate::diag::Severity::Warning;
                d.help = Some(format!(
                    "{}; `plan` and `apply` need it for the pipelines that use it",
                    d.help.unwrap_or_default()
                ));
                d
            })
            .collect()
    }
}
