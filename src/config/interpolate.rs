//! `${VAR}` and `${VAR:-default}` environment interpolation in string values, applied to the
//! spanned YAML tree before decoding. A default may itself hold references
//! (`${A:-${B:-x}}`). `$${` writes a literal `${`, and `${{` (the template text
//! `${{ o__total }}`) is left as it is; any other `${` that is not a well-formed reference
//! (`${1X}`, `${}`, `${A-x}`, an unclosed `${A`) is an error.

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
///
/// A secret (a password, a token, a header value) of a datastore, an external store or a
/// pipeline whose variable is not set is not an error here but goes to `unset` (the value
/// left empty): only a command that connects to that store needs it, so `compile` and
/// `validate` run where the secrets are not set (a code review's CI), and `apply -p a` needs
/// only pipeline `a`'s. See [`Unset`].
pub fn interpolate(
    node: &mut Node,
    env: &dyn Env,
    errors: &mut Vec<Diagnostic>,
    unset: &mut Vec<Unset>,
) {
    let mut w = Walk { env, errors, unset };
    w.walk(node, "")
}

/// A secret whose environment variable is not set (and has no default).
#[derive(Debug, Clone)]
pub struct Unset {
    /// Whose secret it is.
    pub owner: Owner,
    /// The error a command that needs the secret reports (at the value's path).
    pub diagnostic: Diagnostic,
}

/// The entry of the config a secret belongs to, by its index in its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `datastores[i]`.
    Datastore(usize),
    /// `externalstores[i]`.
    Externalstore(usize),
    /// `pipelines[i]` (an enrichment's secret parameter, a webhook header).
    Pipeline(usize),
}

impl Owner {
    /// The owner of the value at `path` (`datastores[2].password` → datastore 2).
    fn of(path: &str) -> Option<Owner> {
        let (list, rest) = path.split_once('[')?;
        let i: usize = rest.split_once(']')?.0.parse().ok()?;
        match list {
            "datastores" => Some(Owner::Datastore(i)),
            "externalstores" => Some(Owner::Externalstore(i)),
            "pipelines" => Some(Owner::Pipeline(i)),
            _ => None,
        }
    }
}

struct Walk<'a> {
    env: &'a dyn Env,
    errors: &'a mut Vec<Diagnostic>,
    unset: &'a mut Vec<Unset>,
}

impl Walk<'_> {
    fn walk(&mut self, node: &mut Node, path: &str) {
        let env = self.env;
        use super::decode::{child, index};
        match &mut node.value {
            NodeValue::Str(s) => {
                if !s.contains('$') {
                    return;
                }
                // Errors quote the reference unless the value is a secret (the shown source line
                // is masked then too).
                let key = path.rsplit('.').next().unwrap_or("");
                let key = key.split('[').next().unwrap_or(key);
                let secret = super::redact::is_secret_name(key) || path.contains(".headers.");
                let owner = Owner::of(path).filter(|_| secret);
                match expand(s, node.content, env, secret, owner.is_some()) {
                    Ok((new, unset)) if !unset.is_empty() => {
                        for d in unset {
                            self.unset.push(Unset {
                                owner: owner.expect("deferred only with an owner"),
                                diagnostic: d.at_path(path),
                            });
                        }
                        // Never used: a command that connects to the owner stops first.
                        node.value = NodeValue::Str(new.unwrap_or_default());
                    }
                    Ok((Some(new), _)) => {
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
                    Ok((None, _)) => {}
                    Err(d) => self.errors.push(d.at_path(path)),
                }
            }
            NodeValue::Seq(items) => {
                for (i, n) in items.iter_mut().enumerate() {
                    self.walk(n, &index(path, i));
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
                    self.walk(v, &child(path, name));
                }
            }
            _ => {}
        }
    }
}

/// Expand one string: `None` when nothing was substituted. `secret`: the value is a secret
/// (a password, a header value), so errors must not quote it. `defer_unset`: a variable
/// that is not set is returned (second) instead of failing the expansion.
fn expand(
    s: &str,
    content: Span,
    env: &dyn Env,
    secret: bool,
    defer_unset: bool,
) -> Result<(Option<String>, Vec<Diagnostic>), Box<Diagnostic>> {
    let mut x = Expander {
        s,
        content,
        env,
        secret,
        changed: false,
        defer_unset,
        unset: Vec::new(),
    };
    let (out, _) = x.until(0, None, true)?;
    Ok((x.changed.then_some(out), x.unset))
}

struct Expander<'a> {
    s: &'a str,
    content: Span,
    env: &'a dyn Env,
    secret: bool,
    changed: bool,
    defer_unset: bool,
    unset: Vec<Diagnostic>,
}

const FORMS: &str = "write `${NAME}` or `${NAME:-default}` (a name is letters, digits and `_`, \
                     not starting with a digit); `$${` is a literal `${`";

impl Expander<'_> {
    /// Expand from byte `i` to the end of the string, or (`nested`: inside the default of the
    /// reference starting there) to the `}` that closes it, whose index is returned. `eval`:
    /// whether the text is used (the default of a variable that is set is only read to find
    /// its end).
    fn until(
        &mut self,
        mut i: usize,
        nested: Option<usize>,
        eval: bool,
    ) -> Result<(String, usize), Box<Diagnostic>> {
        let s = self.s;
        let b = s.as_bytes();
        let mut out = String::new();
        while i < b.len() {
            if nested.is_some() && b[i] == b'}' {
                return Ok((out, i));
            }
            if s[i..].starts_with("$${") {
                out.push_str("${");
                i += 3;
                self.changed = true;
                continue;
            }
            // `${{ x }}` is template text (a `$` before a printed value), not a reference.
            if !s[i..].starts_with("${") || s[i..].starts_with("${{") {
                let ch = s[i..].chars().next().expect("in bounds");
                out.push(ch);
                i += ch.len_utf8();
                continue;
            }
            let (value, end) = self.reference(i, eval)?;
            out.push_str(&value);
            self.changed = true;
            i = end;
        }
        if let Some(start) = nested {
            return Err(self.unterminated(start));
        }
        Ok((out, i))
    }

    fn unterminated(&self, start: usize) -> Box<Diagnostic> {
        Box::new(
            Diagnostic::error("unterminated `${` in an environment variable reference")
                .with_span(self.content.sub(start, self.s.len()))
                .with_help(FORMS),
        )
    }

    /// The reference starting at byte `i` (`${`): its value and the byte after its `}`.
    fn reference(&mut self, i: usize, eval: bool) -> Result<(String, usize), Box<Diagnostic>> {
        let s = self.s;
        let b = s.as_bytes();
        let name_start = i + 2;
        let mut j = name_start;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        let name = &s[name_start..j];
        // The whole reference, as far as it can be told, for the error's span.
        let shown_end = s[i..].find('}').map_or(s.len(), |c| i + c + 1);
        let shown = self.content.sub(i, shown_end);
        let quoted = |what: &str| {
            if self.secret {
                String::new()
            } else {
                format!(" `{what}`")
            }
        };
        if j >= b.len() {
            return Err(self.unterminated(i));
        }
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            let msg = if name.is_empty() {
                format!(
                    "malformed environment variable reference{}: no variable name after `${{`",
                    quoted(&s[i..shown_end])
                )
            } else {
                format!(
                    "malformed environment variable reference{}: a name cannot start with a digit",
                    quoted(&s[i..shown_end])
                )
            };
            return Err(Box::new(
                Diagnostic::error(msg).with_span(shown).with_help(FORMS),
            ));
        }
        let default_start = if b[j] == b'}' {
            None
        } else if s[j..].starts_with(":-") {
            Some(j + 2)
        } else {
            let what = if self.secret {
                "a character after the name".to_string()
            } else {
                let c = s[j..].chars().next().expect("in bounds");
                format!("`{c}` after the name `{name}`")
            };
            return Err(Box::new(
                Diagnostic::error(format!(
                    "malformed environment variable reference{}: {what}, where `}}` or `:-` belongs",
                    quoted(&s[i..shown_end]),
                ))
                .with_span(self.content.sub(i, shown_end))
                .with_help(FORMS),
            ));
        };
        let value = self.env.get(name);
        let span = match default_start {
            None => self.content.sub(i, j + 1),
            Some(_) => shown,
        };
        let (default, end) = match default_start {
            None => (None, j + 1),
            Some(d) => {
                // The default is expanded in turn (`${A:-${B:-x}}`), up to its own `}`.
                let (text, close) = self.until(d, Some(i), eval && value.is_none())?;
                (Some(text), close + 1)
            }
        };
        let out = match (value, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) if !eval => String::new(),
            (None, None) => {
                let d = Diagnostic::error(format!("environment variable `{name}` is not set"))
                    .with_span(span)
                    .with_label("referenced here")
                    .with_help(format!(
                        "export {name}, or give a default: `${{{name}:-value}}`"
                    ));
                if self.defer_unset {
                    self.unset.push(d);
                    String::new()
                } else {
                    return Err(Box::new(d));
                }
            }
        };
        Ok((out, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Expands without deferring unset variables (every variable here is needed).
    fn expand(
        s: &str,
        content: Span,
        env: &dyn Env,
        secret: bool,
    ) -> Result<Option<String>, Box<Diagnostic>> {
        super::expand(s, content, env, secret, false).map(|(v, _)| v)
    }

    fn env() -> HashMap<String, String> {
        HashMap::from([("PGPASS".to_string(), "s3cret".to_string())])
    }

    #[test]
    fn expands_and_defaults() {
        let e = env();
        let sp = Span::new(10, 40);
        assert_eq!(
            expand("${PGPASS}", sp, &e, false).unwrap(),
            Some("s3cret".into())
        );
        assert_eq!(
            expand("a${NOPE:-x}b", sp, &e, false).unwrap(),
            Some("axb".into())
        );
        assert_eq!(
            expand("$${PGPASS}", sp, &e, false).unwrap(),
            Some("${PGPASS}".into())
        );
        assert_eq!(
            expand("TMPL({{ name }} - ${{ o__total }})", sp, &e, false).unwrap(),
            None
        );
        assert_eq!(expand("cost $5", sp, &e, false).unwrap(), None);
    }

    #[test]
    fn unset_without_default_is_located() {
        let d = expand("x ${NOPE} y", Span::new(100, 111), &env(), false).unwrap_err();
        assert_eq!(d.span, Some(Span::new(102, 109)));
        assert!(d.message.contains("NOPE"));
    }

    #[test]
    fn a_default_may_hold_references() {
        let e = env();
        let sp = Span::new(0, 60);
        let x = |s: &str| expand(s, sp, &e, false);
        assert_eq!(x("${NOPE:-${PGPASS}}").unwrap(), Some("s3cret".into()));
        assert_eq!(x("a${NOPE:-${NADA:-d}}b").unwrap(), Some("adb".into()));
        assert_eq!(x("${PGPASS:-${NADA}}").unwrap(), Some("s3cret".into()));
        assert_eq!(x("${NOPE:-}").unwrap(), Some("".into()));
        assert_eq!(x("${NOPE:-$${x}").unwrap(), Some("${x".into()));
        // An unset reference in a default that is used is an error, naming that variable.
        let d = x("${NOPE:-${NADA}}").unwrap_err();
        assert!(d.message.contains("`NADA` is not set"), "{}", d.message);
        assert_eq!(d.span, Some(Span::new(8, 15)));
        let d = x("${NOPE:-${NADA:-x}").unwrap_err();
        assert!(d.message.contains("unterminated"), "{}", d.message);
        assert_eq!(d.span, Some(Span::new(0, 18)));
    }

    #[test]
    fn malformed_references_are_errors() {
        let e = env();
        let sp = Span::new(100, 200);
        for (text, needle, span) in [
            ("${1BAD}", "a name cannot start with a digit", (100, 107)),
            ("x${}", "no variable name", (101, 104)),
            ("${ A }", "no variable name", (100, 106)),
            ("${A-x}", "`-` after the name `A`", (100, 106)),
            ("${A:=x}", "`:` after the name `A`", (100, 107)),
            ("db_${A", "unterminated", (103, 106)),
            ("${A:-x", "unterminated", (100, 106)),
        ] {
            let d = expand(text, sp, &e, false).unwrap_err();
            assert!(d.message.contains(needle), "{text}: {}", d.message);
            assert_eq!(d.span, Some(Span::new(span.0, span.1)), "{text}");
        }
        // A secret value is not quoted.
        let d = expand("pa${1ss}word", sp, &e, true).unwrap_err();
        assert!(!d.message.contains("1ss"), "{}", d.message);
        let d = expand("pa${s-x}word", sp, &e, true).unwrap_err();
        assert!(
            !d.message.contains("s-x") && !d.message.contains("`s`"),
            "{}",
            d.message
        );
        // Escapes and template text stay.
        assert_eq!(
            expand("$${1BAD} ${{ x }}", sp, &e, false).unwrap(),
            Some("${1BAD} ${{ x }}".into())
        );
    }

    #[test]
    fn an_unset_secret_is_deferred_to_its_owner_and_other_unset_values_are_errors() {
        let text = r#"
datastores:
  - {name: a, type: postgres, host: h, database: d, password: "${NOPE_A}"}
  - {name: b, type: postgres, host: h, database: d, password: "pre${NOPE_B}"}
externalstores:
  - {name: api, type: http, url: "http://x", headers: {Authorization: "Bearer ${NOPE_T}"}}
pipelines: []
"#;
        let loaded = crate::config::load("c.yaml", text, &env()).expect("loads");
        let got: Vec<(Owner, String, Option<String>)> = loaded
            .unset
            .iter()
            .map(|u| {
                (
                    u.owner,
                    u.diagnostic.message.clone(),
                    u.diagnostic.path.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Owner::Datastore(0),
                    "environment variable `NOPE_A` is not set".to_string(),
                    Some("datastores[0].password".to_string())
                ),
                (
                    Owner::Datastore(1),
                    "environment variable `NOPE_B` is not set".to_string(),
                    Some("datastores[1].password".to_string())
                ),
                (
                    Owner::Externalstore(0),
                    "environment variable `NOPE_T` is not set".to_string(),
                    Some("externalstores[0].headers.Authorization".to_string())
                ),
            ]
        );
        assert_eq!(loaded.unset_for(&["b"], &[], &[]).len(), 1);
        assert_eq!(loaded.unset_for(&[], &["api"], &[]).len(), 1);
        assert!(loaded.unset_for(&["c"], &["x"], &["p"]).is_empty());
        // Not a secret: an error at once.
        let err = crate::config::load(
            "c.yaml",
            &text.replace("host: h,", "host: \"${NOPE_H}\","),
            &env(),
        )
        .expect_err("an unset host is an error");
        assert!(err
            .1
            .iter()
            .any(|d| d.message.contains("`NOPE_H` is not set")));
    }
}
