//! Sink field values: a source column, a `TMPL(...)` template, an expression (pushed down
//! into the extract query when the source dialect can compute it), or an enrichment output.

use super::Diags;
use crate::config::Spanned;
use crate::diag::Span;
use crate::expr::{Env, TypedExpr};
use crate::template::{Escape, Template};

/// Compile a template value; `TMPL(...)` is unwrapped when present.
pub fn template(s: &Spanned<String>, known: &[&str], diags: &mut Diags) -> Option<Template> {
    template_escaped(s, known, Escape::None, diags)
}

/// [`template`], printing values escaped as `escape` says (an HTTP lookup's path encodes them
/// as URL path segments).
pub fn template_escaped(
    s: &Spanned<String>,
    known: &[&str],
    escape: Escape,
    diags: &mut Diags,
) -> Option<Template> {
    let (inner, span) = unwrap_tmpl(&s.value, s.span);
    match crate::template::compile_escaped(inner, span, known, escape) {
        Ok(t) => Some(t),
        Err(e) => {
            let d: crate::diag::Diagnostic = e.into();
            diags.push(d.at_path(s.path.clone()));
            None
        }
    }
}

/// `TMPL(x)` → (`x`, span of `x`); anything else is returned as is.
pub fn unwrap_tmpl(text: &str, span: Span) -> (&str, Span) {
    match tmpl_inner(text) {
        Some(inner) => (inner, span.sub(5, 5 + inner.len())),
        None => (text, span),
    }
}

/// The inside of `TMPL(...)`, if the text has that form.
pub fn tmpl_inner(text: &str) -> Option<&str> {
    text.strip_prefix("TMPL(").and_then(|r| r.strip_suffix(')'))
}

/// Parse, type-check and fold an expression; warnings (seed repairs) are kept.
pub fn expression(s: &Spanned<String>, env: &Env, diags: &mut Diags) -> Option<TypedExpr> {
    let parsed = match crate::expr::parse(&s.value, s.span) {
        Ok(p) => p,
        Err(e) => {
            let d: crate::diag::Diagnostic = e.into();
            diags.push(d.at_path(s.path.clone()));
            return None;
        }
    };
    for w in parsed.warnings {
        diags.push(w.at_path(s.path.clone()));
    }
    let typed = match crate::expr::check(&parsed.lambda, env) {
        Ok(t) => t,
        Err(e) => {
            let d: crate::diag::Diagnostic = e.into();
            diags.push(d.at_path(s.path.clone()));
            return None;
        }
    };
    match typed.fold() {
        Ok(t) => Some(t),
        Err(e) => {
            let d: crate::diag::Diagnostic = e.into();
            diags.push(d.at_path(s.path.clone()));
            None
        }
    }
}

/// Whether a `source_column` text is written as an expression rather than a column name.
pub fn looks_like_expression(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("lambda")
        || !t
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        // A number (`1e5`, `1.5`, `42`) is a constant, not a column.
        || (t.starts_with(|c: char| c.is_ascii_digit()) && t.parse::<f64>().is_ok())
}
