//! Helpers that decode the spanned YAML tree into raw config structs, recording the YAML path
//! of every value and collecting every error (unknown keys with a "did you mean", wrong types,
//! missing keys) instead of stopping at the first.

use super::yaml::{Node, NodeValue};
use crate::diag::{did_you_mean, Diagnostic, Span};

/// A decoded value with the span of its text and its YAML path.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// The source span (for strings: the characters of the value, inside any quotes).
    pub span: Span,
    /// The YAML path, e.g. `pipelines[0].sink.fields[3].source_column`.
    pub path: String,
}

impl<T> Spanned<T> {
    /// A diagnostic located at this value.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message)
            .at_path(self.path.clone())
            .with_span(self.span)
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

/// Decoding state shared by all readers.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Every problem found.
    pub errors: Vec<Diagnostic>,
    /// Spans of secret values, masked when source lines are shown.
    pub secrets: Vec<Span>,
}

impl Ctx {
    /// Record an error.
    pub fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }
}

/// Reads the keys of one YAML mapping, remembering which were used.
pub struct MapReader<'a> {
    node: &'a Node,
    /// YAML path of the mapping.
    pub path: String,
    entries: &'a [(Node, Node)],
    used: Vec<bool>,
    secret_unknowns: bool,
}

/// Join a YAML path and a key.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Join a YAML path and a list index.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl<'a> MapReader<'a> {
    /// Start reading a mapping; reports an error and returns `None` if the node is not one.
    pub fn new(node: &'a Node, path: &str, what: &str, ctx: &mut Ctx) -> Option<Self> {
        match &node.value {
            NodeValue::Map(entries) => {
                let mut seen: Vec<&str> = Vec::new();
                // A repeated key is reported once, as repeated (not also as unknown).
                let mut used = vec![false; entries.len()];
                for (i, (k, v)) in entries.iter().enumerate() {
                    let name = k.as_str().unwrap_or("");
                    if seen.contains(&name) {
                        used[i] = true;
                        // Never read, so never masked by its reader: a repeated password.
                        if is_secret_key(name) {
                            mask_all(v, ctx);
                        } else {
                            mask_secret_entries(v, ctx);
                        }
                        ctx.err(
                            Diagnostic::error(format!("duplicate key `{name}` in {what}"))
                                .at_path(child(path, name))
                                .with_span(k.span)
                                .with_label("given again here"),
                        );
                    }
                    seen.push(name);
                }
                Some(MapReader {
                    node,
                    path: path.to_string(),
                    entries,
                    used,
                    secret_unknowns: false,
                })
            }
            _ => {
                ctx.err(
                    Diagnostic::error(format!(
                        "{what} must be a mapping, found {}",
                        node.type_name()
                    ))
                    .at_path(path)
                    .with_span(node.span),
                );
                None
            }
        }
    }

    /// Masks the values of unknown keys in diagnostics: in a mapping that holds
    /// credentials (a datastore, an external store), a misspelt `pasword:` or `pw:` is
    /// as secret as `password:`.
    pub fn unknown_values_secret(mut self) -> Self {
        self.secret_unknowns = true;
        self
    }

    /// The mapping node itself.
    pub fn node(&self) -> &'a Node {
        self.node
    }

    /// Whether a key is present.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_str() == Some(key))
    }

    /// Take a key's value node (marks it used). A null value counts as absent.
    pub fn take(&mut self, key: &str) -> Option<(String, &'a Node)> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        self.used[i] = true;
        let v = &self.entries[i].1;
        if v.value == NodeValue::Null {
            return None;
        }
        Some((child(&self.path, key), v))
    }

    /// The span of a key, for errors about it.
    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k.span)
    }

    /// An optional scalar as text (numbers and booleans are accepted as their text).
    pub fn str(&mut self, key: &str, ctx: &mut Ctx) -> Option<Spanned<String>> {
        let (path, n) = self.take(key)?;
        scalar_str(n, &path, ctx)
    }

    /// A required scalar as text.
    pub fn req_str(&mut self, key: &str, what: &str, ctx: &mut Ctx) -> Option<Spanned<String>> {
        if !self.has(key)
            || self
                .entries
                .iter()
                .any(|(k, v)| k.as_str() == Some(key) && v.value == NodeValue::Null)
        {
            self.missing(key, what, ctx);
            let _ = self.take(key);
            return None;
        }
        self.str(key, ctx)
    }

    /// Report a missing required key.
    pub fn missing(&self, key: &str, what: &str, ctx: &mut Ctx) {
        ctx.err(
            Diagnostic::error(format!("{what} needs `{key}`"))
                .at_path(self.path.clone())
                .with_span(Span::new(self.node.span.start, self.node.span.start + 1))
                .with_label(format!("`{key}` is missing here")),
        );
    }

    /// A secret scalar (password, token): its span is recorded so that it is never shown.
    pub fn secret(&mut self, key: &str, ctx: &mut Ctx) -> Option<Spanned<Secret>> {
        let (path, n) = self.take(key)?;
        ctx.secrets.push(n.span);
        let s = scalar_str(n, &path, ctx)?;
        Some(Spanned {
            value: Secret(s.value),
            span: s.span,
            path: s.path,
        })
    }

    /// An optional integer (an integer scalar, or text that parses as one).
    pub fn int(&mut self, key: &str, ctx: &mut Ctx) -> Option<Spanned<i64>> {
        let (path, n) = self.take(key)?;
        let v = match &n.value {
            NodeValue::Int(i) => Some(*i),
            NodeValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match v {
            Some(value) => Some(Spanned {
                value,
                span: n.span,
                path,
            }),
            None => {
                // The text itself: it may come from an environment variable.
                let found = match &n.value {
                    NodeValue::Str(s) if s.chars().count() <= 40 => format!("the text `{s}`"),
                    NodeValue::Float(_) => {
                        "a number that is not a whole 64-bit integer".to_string()
                    }
                    _ => n.type_name().to_string(),
                };
                ctx.err(
                    Diagnostic::error(format!("`{key}` must be an integer, found {found}"))
                        .at_path(path)
                        .with_span(n.span),
                );
                None
            }
        }
    }

    /// An optional non-negative integer that fits `u32`, at least `min`.
    pub fn count(&mut self, key: &str, min: i64, ctx: &mut Ctx) -> Option<Spanned<u32>> {
        self.count_in(key, min, u32::MAX, ctx)
    }

    /// [`MapReader::count`] with an upper bound of `max`.
    pub fn count_in(
        &mut self,
        key: &str,
        min: i64,
        max: u32,
        ctx: &mut Ctx,
    ) -> Option<Spanned<u32>> {
        let s = self.int(key, ctx)?;
        if s.value < min || s.value > i64::from(max) {
            ctx.err(s.error(format!("`{key}` must be between {min} and {max}")));
            return None;
        }
        Some(Spanned {
            value: s.value as u32,
            span: s.span,
            path: s.path,
        })
    }

    /// An optional duration in seconds (an integer or a float): greater than 0 and at most
    /// `max` seconds. Anything else (0, negative, not finite, too large, not a number) is an
    /// error at the value, saying what is accepted.
    pub fn seconds(&mut self, key: &str, max: f64, ctx: &mut Ctx) -> Option<Spanned<f64>> {
        let (path, n) = self.take(key)?;
        let v = match &n.value {
            NodeValue::Int(i) => Some(*i as f64),
            NodeValue::Float(f) => Some(*f),
            NodeValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match v {
            Some(value) if value.is_finite() && value > 0.0 && value <= max => Some(Spanned {
                value,
                span: n.span,
                path,
            }),
            _ => {
                ctx.err(
                    Diagnostic::error(format!(
                        "`{key}` must be a number of seconds greater than 0 and at most {}",
                        seconds_text(max)
                    ))
                    .at_path(path)
                    .with_span(n.span),
                );
                None
            }
        }
    }

    /// An optional scalar as text, where a YAML null written out (`null`, `~`, also through
    /// a `${VAR}` that expands to one) is the text `null` rather than "not given". A key
    /// with nothing after it is still "not given".
    pub fn str_or_null(&mut self, key: &str, ctx: &mut Ctx) -> Option<Spanned<String>> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        let v = &self.entries[i].1;
        if v.value == NodeValue::Null && v.content.end > v.content.start {
            self.used[i] = true;
            return Some(Spanned {
                value: "null".to_string(),
                span: v.span,
                path: child(&self.path, key),
            });
        }
        self.str(key, ctx)
    }

    /// An optional boolean (`true`/`false`, also as text).
    pub fn bool(&mut self, key: &str, ctx: &mut Ctx) -> Option<Spanned<bool>> {
        let (path, n) = self.take(key)?;
        let v = match &n.value {
            NodeValue::Bool(b) => Some(*b),
            NodeValue::Str(s) => bool_text(s),
            _ => None,
        };
        match v {
            Some(value) => Some(Spanned {
                value,
                span: n.span,
                path,
            }),
            None => {
                ctx.err(
                    Diagnostic::error(format!(
                        "`{key}` must be true or false, found {}",
                        n.type_name()
                    ))
                    .at_path(path)
                    .with_span(n.span),
                );
                None
            }
        }
    }

    /// An optional list; each item with its path. A single scalar is accepted as a one-item
    /// list when `scalar_ok`.
    pub fn seq(&mut self, key: &str, scalar_ok: bool, ctx: &mut Ctx) -> Vec<(String, &'a Node)> {
        let Some((path, n)) = self.take(key) else {
            return Vec::new();
        };
        match &n.value {
            NodeValue::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, it)| (index(&path, i), it))
                .collect(),
            NodeValue::Str(_) | NodeValue::Int(_) if scalar_ok => vec![(path, n)],
            _ => {
                ctx.err(
                    Diagnostic::error(format!("`{key}` must be a list, found {}", n.type_name()))
                        .at_path(path)
                        .with_span(n.span),
                );
                Vec::new()
            }
        }
    }

    /// An optional mapping of string keys to scalar text values (headers, params).
    pub fn string_map(
        &mut self,
        key: &str,
        secret_values: bool,
        ctx: &mut Ctx,
    ) -> Vec<(Spanned<String>, Spanned<String>)> {
        let Some((path, n)) = self.take(key) else {
            return Vec::new();
        };
        let NodeValue::Map(entries) = &n.value else {
            ctx.err(
                Diagnostic::error(format!(
                    "`{key}` must be a mapping, found {}",
                    n.type_name()
                ))
                .at_path(path)
                .with_span(n.span),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let kp = child(&path, k.as_str().unwrap_or("?"));
            let Some(ks) = scalar_str(k, &kp, ctx) else {
                continue;
            };
            if secret_values || is_secret_key(&ks.value) {
                ctx.secrets.push(v.span);
            }
            if let Some(vs) = scalar_str(v, &kp, ctx) {
                out.push((ks, vs));
            }
        }
        out
    }

    /// Marks every key starting with `prefix` as read (extension keys holding anchors); the
    /// values of secret-named keys under them stay masked in diagnostics.
    pub fn skip_prefixed(&mut self, prefix: &str, ctx: &mut Ctx) {
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if k.as_str().is_some_and(|k| k.starts_with(prefix)) {
                self.used[i] = true;
                mask_secret_entries(v, ctx);
            }
        }
    }

    /// Report every key that was not read, with a "did you mean" from `allowed`.
    pub fn finish(self, allowed: &[&str], what: &str, ctx: &mut Ctx) {
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let name = k.as_str().unwrap_or("?");
            let suggestion = did_you_mean(name, allowed.iter().copied());
            if self.secret_unknowns || is_secret_key(name) || suggestion.is_some_and(is_secret_key)
            {
                mask_all(v, ctx);
            } else {
                mask_secret_entries(v, ctx);
            }
            let mut d = Diagnostic::error(format!("unknown key `{name}` in {what}"))
                .at_path(child(&self.path, name))
                .with_span(k.span);
            // `{dtype: decimal(12,2)}`: in a flow mapping the comma ends the value, and
            // what follows it (`2)`) reads as a key without a value.
            let split_off = suggestion.is_none()
                && v.value == super::yaml::NodeValue::Null
                && (name.ends_with(')') || name.starts_with(|c: char| c.is_ascii_digit()));
            d = match suggestion {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None if split_off => d.with_help(format!(
                    "a `,` inside `{{…}}` ends the value before it, so `{name}` is left over: quote a value that holds a comma, e.g. `dtype: \"decimal(12,2)\"`"
                )),
                None => d.with_help(format!("expected one of: {}", allowed.join(", "))),
            };
            ctx.err(d);
        }
    }
}

/// Whether a key name suggests a secret value (masked in diagnostics); see
/// [`super::redact::is_secret_name`].
pub fn is_secret_key(key: &str) -> bool {
    super::redact::is_secret_name(key)
}

/// Record the credentials of a URL value (`scheme://user:pw@host`, `token@host`) as a
/// secret span: only the credentials when the value is the source text verbatim, else the
/// whole value.
pub fn mask_url_credentials(url: &Spanned<String>, ctx: &mut Ctx) {
    let Some((s, e)) = super::redact::userinfo_range(&url.value) else {
        return;
    };
    if url.span.end - url.span.start == url.value.len() {
        ctx.secrets.push(url.span.sub(s, e));
    } else {
        ctx.secrets.push(url.span);
    }
}

/// Record the values of secret-named keys anywhere under a node as secret spans (an unknown
/// key's mapping is not decoded, but may hold a password).
fn mask_secret_entries(n: &Node, ctx: &mut Ctx) {
    match &n.value {
        NodeValue::Map(entries) => {
            for (k, v) in entries {
                if k.as_str().is_some_and(is_secret_key) {
                    mask_all(v, ctx);
                } else {
                    mask_secret_entries(v, ctx);
                }
            }
        }
        NodeValue::Seq(items) => items.iter().for_each(|v| mask_secret_entries(v, ctx)),
        _ => {}
    }
}

/// Record every scalar under a node as a secret span (the values of a misplaced `headers:`
/// mapping, say).
pub fn mask_all(n: &Node, ctx: &mut Ctx) {
    match &n.value {
        NodeValue::Map(entries) => entries.iter().for_each(|(_, v)| mask_all(v, ctx)),
        NodeValue::Seq(items) => items.iter().for_each(|v| mask_all(v, ctx)),
        _ => ctx.secrets.push(n.span),
    }
}

/// `86400 (1 day)`: a number of seconds, with its size in words when it is whole days.
fn seconds_text(max: f64) -> String {
    const DAY: f64 = 86_400.0;
    if max >= DAY && max % DAY == 0.0 {
        let days = max / DAY;
        format!("{max} ({days} day{})", if days == 1.0 { "" } else { "s" })
    } else {
        max.to_string()
    }
}

/// A scalar node as text.
pub fn scalar_str(n: &Node, path: &str, ctx: &mut Ctx) -> Option<Spanned<String>> {
    let value = match &n.value {
        NodeValue::Str(s) => s.clone(),
        NodeValue::Int(i) => i.to_string(),
        NodeValue::Float(f) => f.to_string(),
        NodeValue::Bool(b) => b.to_string(),
        NodeValue::Null => return None,
        _ => {
            ctx.err(
                Diagnostic::error(format!("expected a single value, found {}", n.type_name()))
                    .at_path(path)
                    .with_span(n.span),
            );
            return None;
        }
    };
    Some(Spanned {
        value,
        span: n.content,
        path: path.to_string(),
    })
}

/// A configuration secret (password, token). Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from its value (e.g. read from the environment by the caller).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for the connector that needs it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "***")
    }
}

/// A boolean written as text (an environment variable's value): `true`/`yes`/`on` or
/// `false`/`no`/`off`, in any case.
pub fn bool_text(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
