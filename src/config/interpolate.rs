//! `${VAR}` and `${VAR:-default}` environment interpolation in string values, applied to the
//! spanned YAML tree before decoding. `$${` writes a literal `${`. Anything else that is not
//! `${NAME…}` (for example the template text `${{ o__total }}`) is left as it is.

use super::yaml::{Node, NodeValue};
use crate::diag::{Diagnostic, Span};

/// Where variable values come from (the process environment in the CLI; a map in tests).
pub trait Env {
    /// The value of a variable, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Interpolate every string value of the tree (mapping keys are left alone). Plain scalars are
/// re-typed after interpolation (`port: ${PGPORT:-5432}` is an integer); quoted ones stay
/// strings. Collects every error instead of stopping at the first.
pub fn interpolate(node: &mut Node, env: &dyn Env, errors: &mut Vec<Diagnostic>) {
    walk(node, "", env, errors)
}

fn walk(node: &mut Node, path: &str, env: &dyn Env, errors: &mut Vec<Diagnostic>) {
    use super::decode::{child, index};
    match &mut node.value {
        NodeValue::Str(s) => {
            if !s.contains('$') {
                return;
            }
            match expand(s, node.content, env) {
                Ok(Some(new)) => {
                    if new.is_empty() && !node.quoted {
                        // Nothing was written after all (`${UNSET:-}`): an empty value,
                        // unlike a `null` spelled out.
                        node.content = Span::new(node.content.start, node.content.start);
                    }
                    node.value = if node.quoted {
                        NodeValue::Str(new)
                    } else {
                        super::yaml::resolve_plain_pub(new)
                    };
                }
                Ok(None) => {}
                Err(d) => errors.push(d.at_path(path)),
            }
        }
        NodeValue::Seq(items) => {
            for (i, n) in items.iter_mut().enumerate() {
                walk(n, &index(path, i), env, errors);
            }
        }
        NodeValue::Map(entries) => {
            for (k, v) in entries {
                let name = k.as_str().unwrap_or("?");
                // Top-level `x-…` keys are not read: their anchors are expanded where they
                // are used, and expanded there.
                if path.is_empty() && name.starts_with("x-") {
                    continue;
                }
                walk(v, &child(path, name), env, errors);
            }
        }
        _ => {}
    }
}

/// Expand one string. `Ok(None)` when nothing was substituted.
fn expand(s: &str, content: Span, env: &dyn Env) -> Result<Option<String>, Box<Diagnostic>> {
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] == b'$' && s[i..].starts_with("$${") {
            out.push_str("${");
            i += 3;
            changed = true;
            continue;
        }
        let is_var_start = b[i] == b'$'
            && b.get(i + 1) == Some(&b'{')
            && b.get(i + 2)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
        if !is_var_start {
            let ch = s[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        let rest = &s[i + 2..];
        let Some(close) = rest.find('}') else {
            return Err(Box::new(
                Diagnostic::error("unterminated `${` in an environment variable reference")
                    .with_span(content.sub(i, s.len()))
                    .with_help("write `${NAME}` or `${NAME:-default}`; `$${` is a literal `${`"),
            ));
        };
        let inner = &rest[..close];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let span = content.sub(i, i + 3 + close);
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Box::new(
                Diagnostic::error(format!("`{name}` is not a valid environment variable name"))
                    .with_span(span)
                    .with_help("write `${NAME}` or `${NAME:-default}`"),
            ));
        }
        match (env.get(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(Box::new(
                    Diagnostic::error(format!("environment variable `{name}` is not set"))
                        .with_span(span)
                        .with_label("referenced here")
                        .with_help(format!(
                            "export {name}, or give a default: `${{{name}:-value}}`"
                        )),
                ))
            }
        }
        changed = true;
        i += 3 + close;
    }
    Ok(changed.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([("PGPASS".to_string(), "s3cret".to_string())])
    }

    #[test]
    fn expands_and_defaults() {
        let e = env();
        let sp = Span::new(10, 40);
        assert_eq!(expand("${PGPASS}", sp, &e).unwrap(), Some("s3cret".into()));
        assert_eq!(expand("a${NOPE:-x}b", sp, &e).unwrap(), Some("axb".into()));
        assert_eq!(
            expand("$${PGPASS}", sp, &e).unwrap(),
            Some("${PGPASS}".into())
        );
        assert_eq!(
            expand("TMPL({{ name }} - ${{ o__total }})", sp, &e).unwrap(),
            None
        );
        assert_eq!(expand("cost $5", sp, &e).unwrap(), None);
    }

    #[test]
    fn unset_without_default_is_located() {
        let d = expand("x ${NOPE} y", Span::new(100, 111), &env()).unwrap_err();
        assert_eq!(d.span, Some(Span::new(102, 109)));
        assert!(d.message.contains("NOPE"));
    }
}
