//! Stage 1: YAML text → raw config structs, with `${VAR}` interpolation, spans and YAML paths.
//! No names are resolved here; see [`crate::check`].

pub mod decode;
pub mod interpolate;
pub mod raw;
pub mod redact;
pub mod tls;
pub mod urls;
pub mod yaml;

pub use decode::{Secret, Spanned};
pub use raw::RawConfig;
pub use tls::TlsMode;

use crate::diag::{Diagnostic, SourceFile, Span};

/// A loaded configuration file: its source (for diagnostics) and the decoded raw structs.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file, with secret values masked for display.
    pub source: SourceFile,
    /// The decoded config.
    pub raw: RawConfig,
    /// Secrets whose environment variables are not set: an error for a command that
    /// connects to their store ([`Loaded::unset_for`]), a warning otherwise.
    pub unset: Vec<interpolate::Unset>,
}

impl Loaded {
    /// The unset secrets of the given datastores, external stores and pipelines (by name):
    /// errors for a command that uses them.
    pub fn unset_for(
        &self,
        datastores: &[&str],
        externalstores: &[&str],
        pipelines: &[&str],
    ) -> Vec<Diagnostic> {
        use interpolate::Owner;
        let named = |names: &[&str], name: Option<&str>| name.is_some_and(|n| names.contains(&n));
        self.unset
            .iter()
            .filter(|u| match u.owner {
                Owner::Datastore(i) => named(
                    datastores,
                    self.raw.datastores.get(i).map(|d| d.name.value.as_str()),
                ),
                Owner::Externalstore(i) => named(
                    externalstores,
                    self.raw
                        .externalstores
                        .get(i)
                        .map(|d| d.name.value.as_str()),
                ),
                Owner::Pipeline(i) => named(
                    pipelines,
                    self.raw.pipelines.get(i).map(|p| p.name.value.as_str()),
                ),
            })
            .map(|u| u.diagnostic.clone())
            .collect()
    }
}

/// Load a config from text. On failure returns every error found, rendered against the
/// file with secret values masked.
pub fn load(
    name: &str,
    text: &str,
    env: &dyn interpolate::Env,
) -> Result<Loaded, (SourceFile, Vec<Diagnostic>)> {
    // A byte order mark (as some Windows editors save UTF-8) is not part of the document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut source = SourceFile::new(name, text);
    // URL credentials (and secret-named query parameters) are hidden wherever they are
    // written, even in a file that does not parse.
    let url_credentials: Vec<Span> = redact::userinfo_spans(text)
        .into_iter()
        .chain(redact::query_secret_spans(text))
        .map(|(s, e)| Span::new(s, e))
        .collect();
    let mut root = match yaml::parse(text) {
        Ok(n) => n,
        Err(d) => {
            // No tree to find the secrets in: take every `secret_name: value` of the text.
            let mut spans = url_credentials;
            spans.extend(
                redact::secret_value_spans(text)
                    .into_iter()
                    .map(|(s, e)| Span::new(s, e)),
            );
            source.mask(&spans);
            return Err((source, vec![*d]));
        }
    };
    let mut ctx = decode::Ctx::default();
    let mut unset = Vec::new();
    interpolate::interpolate(&mut root, env, &mut ctx.errors, &mut unset);
    let raw = raw::decode(&root, &mut ctx);
    ctx.secrets.extend(url_credentials);
    source.mask(&ctx.secrets);
    if ctx.errors.is_empty() {
        Ok(Loaded { source, raw, unset })
    } else {
        Err((source, ctx.errors))
    }
}
