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
    interpolate::interpolate(&mut root, env, &mut ctx.errors);
    let raw = raw::decode(&root, &mut ctx);
    ctx.secrets.extend(url_credentials);
    source.mask(&ctx.secrets);
    if ctx.errors.is_empty() {
        Ok(Loaded { source, raw })
    } else {
        Err((source, ctx.errors))
    }
}
