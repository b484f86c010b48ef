//! `TMPL(...)` templates (SPEC §3): minijinja templates rendered with the row context
//! (source aliases plus enrichment outputs).
//!
//! Templates are compiled once, at config-check time, into one process-wide minijinja
//! [`Environment`] (keyed by their source text, so identical templates share one compiled
//! form) and rendered per row without re-parsing. Undefined behaviour is strict: every
//! variable a template reads must be declared when it is compiled (unknown names are
//! compile errors with a span and a "did you mean"), and a value missing at run time is an
//! error rather than an empty string.
//!
//! Escaping: a template compiled with [`Escape::UrlPath`] (an HTTP lookup's `path`) prints
//! every value percent-encoded, as one URL path segment (`a b/c` → `a%20b%2Fc`), while its
//! literal text stays as written; `|safe` prints a value as it is. Other templates print
//! values unchanged.
//!
//! NULL: a NULL field is passed to the template as *undefined*, so printing it is an error
//! ([`TemplateError::NullValue`], which a sink field turns into NULL and a lookup hands to
//! its `on_error`) unless the template says what to print instead, e.g.
//! `{{ name|default("") }}` or `{% if name is not none %}…{% endif %}` (the `none` test
//! is true for a NULL field, as Jinja's is for Python's None). Silent empty strings in
//! keys and URLs would merge unrelated rows, so they must be asked for.

use crate::diag::{did_you_mean, Diagnostic, Span};
use crate::expr::value::{format_datetime, Value};
use indexmap::IndexMap;
use minijinja::{escape_formatter, AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::BTreeMap;
use std::sync::{OnceLock, RwLock};

/// Errors from compiling or rendering a template.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is not valid minijinja syntax.
    #[error("template syntax error: {message}")]
    Syntax {
        /// What the template engine reported.
        message: String,
        /// Where (absolute, in the config file).
        span: Span,
    },
    /// The template reads a variable that is neither a source alias nor an enrichment output.
    #[error("unknown variable `{name}` in template")]
    UnknownVariable {
        /// The variable.
        name: String,
        /// Where the variable is used.
        span: Span,
        /// The closest known name.
        suggestion: Option<String>,
        /// All known names (for the help line when nothing is close).
        known: Vec<String>,
    },
    /// The template applies a filter (`x|name`) or a test (`x is name`) that does not exist.
    #[error("unknown {kind} `{name}` in template")]
    UnknownFilter {
        /// `filter` or `test`.
        kind: &'static str,
        /// The filter's or test's name.
        name: String,
        /// Where the name is.
        span: Span,
        /// The closest known name.
        suggestion: Option<String>,
    },
    /// A field the template prints is NULL in this row.
    #[error("template `{template}`: field `{name}` is NULL")]
    NullValue {
        /// The template source.
        template: String,
        /// The NULL field.
        name: String,
    },
    /// Rendering failed for another reason (missing field, filter error…).
    #[error("template `{template}` failed: {message}")]
    Render {
        /// The template source.
        template: String,
        /// What the template engine reported.
        message: String,
    },
}

impl From<TemplateError> for Diagnostic {
    fn from(e: TemplateError) -> Diagnostic {
        let msg = e.to_string();
        match e {
            TemplateError::Syntax { span, .. } => Diagnostic::error(msg).with_span(span),
            TemplateError::UnknownVariable {
                span,
                suggestion,
                known,
                ..
            } => {
                let d = Diagnostic::error(msg)
                    .with_span(span)
                    .with_label("not a source field or enrichment output");
                match suggestion {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None if !known.is_empty() => {
                        d.with_help(format!("known names: {}", crate::diag::name_list(&known)))
                    }
                    None => d,
                }
            }
            TemplateError::UnknownFilter {
                kind,
                span,
                suggestion,
                ..
            } => {
                let d = Diagnostic::error(msg).with_span(span);
                match suggestion {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!(
                        "known {kind}s: {}",
                        if kind == "filter" {
                            BUILTIN_FILTERS.join(", ")
                        } else {
                            BUILTIN_TESTS.join(", ")
                        }
                    )),
                }
            }
            TemplateError::NullValue { name, .. } => Diagnostic::error(msg).with_help(format!(
                "write `{{{{ {name}|default(\"\") }}}}` to render NULL as an empty string"
            )),
            TemplateError::Render { .. } => Diagnostic::error(msg),
        }
    }
}

/// How a template prints the values it substitutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Escape {
    /// As they are: keys, sink fields, and query parameters (which the HTTP client encodes).
    #[default]
    None,
    /// Percent-encoded as one URL path segment: every byte but ASCII letters, digits and
    /// `-._~` (so `/`, `?`, `#`, `&`, `%` and spaces cannot change the URL's structure). A
    /// value marked `|safe` is printed as it is.
    UrlPath,
}

/// The bytes [`Escape::UrlPath`] encodes: all but RFC 3986's unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// minijinja's name of the [`Escape::UrlPath`] auto-escape mode.
const URL_PATH_ESCAPE: &str = "url-path";

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The template text (without the `TMPL(`…`)` wrapper).
    pub source: String,
    /// The variables it reads, sorted and without duplicates.
    pub vars: Vec<String>,
    /// Where the template text is in the config file.
    pub span: Span,
    /// Whether the text itself is secret (a query parameter named like one, `api_key`):
    /// errors then show `***` instead of it. URL credentials are hidden in any template.
    pub secret: bool,
    /// How printed values are escaped.
    pub escape: Escape,
}

/// The name of a template in the shared environment: the escape mode (which the
/// environment's auto-escape callback reads back) and the source text, so that the same text
/// compiled for two modes is two templates.
fn env_name(src: &str, escape: Escape) -> String {
    match escape {
        Escape::None => format!("text:{src}"),
        Escape::UrlPath => format!("{URL_PATH_ESCAPE}:{src}"),
    }
}

fn env() -> &'static RwLock<Environment<'static>> {
    static ENV: OnceLock<RwLock<Environment<'static>>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.starts_with(URL_PATH_ESCAPE) {
                AutoEscape::Custom(URL_PATH_ESCAPE)
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| match state.auto_escape() {
            AutoEscape::Custom(URL_PATH_ESCAPE) => {
                let text = value.to_string();
                if value.is_safe() {
                    out.write_str(&text)
                } else {
                    write!(out, "{}", utf8_percent_encode(&text, PATH_SEGMENT))
                }
                .map_err(minijinja::Error::from)
            }
            _ => escape_formatter(out, state, value),
        });
        env.set_keep_trailing_newline(true);
        // A NULL field reaches the template as undefined (so printing it is an error), but
        // it is SQL's NULL, Python's None: `is none` must say so, not print `false`.
        env.add_test("none", |v: minijinja::Value| {
            v.is_none() || v.is_undefined()
        });
        RwLock::new(env)
    })
}

/// Compile a template once. `origin` is the span of `src` in the config file (the caller
/// strips `TMPL(`…`)`), `known` the names the row context will hold. Every variable the
/// template reads must be in `known`. Values are printed as they are; see
/// [`compile_escaped`].
pub fn compile(src: &str, origin: Span, known: &[&str]) -> Result<Template, TemplateError> {
    compile_escaped(src, origin, known, Escape::None)
}

/// [`compile`], with printed values escaped as `escape` says.
pub fn compile_escaped(
    src: &str,
    origin: Span,
    known: &[&str],
    escape: Escape,
) -> Result<Template, TemplateError> {
    let lock = env();
    let name = env_name(src, escape);
    {
        let mut env = lock.write().unwrap_or_else(|p| p.into_inner());
        if env.get_template(&name).is_err() {
            env.add_template_owned(name.clone(), src.to_string())
                .map_err(|e| {
                    let span = e
                        .range()
                        .map(|r| origin.sub(r.start, r.end))
                        .unwrap_or(origin);
                    TemplateError::Syntax {
                        message: e.detail().unwrap_or(&e.kind().to_string()).to_string(),
                        span,
                    }
                })?;
        }
    }
    let env = lock.read().unwrap_or_else(|p| p.into_inner());
    let tmpl = env.get_template(&name).map_err(|e| TemplateError::Syntax {
        message: e.to_string(),
        span: origin,
    })?;
    let globals: Vec<&str> = env.globals().map(|(n, _)| n).collect();
    let mut vars: Vec<String> = tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !globals.contains(&v.as_str()))
        .collect();
    vars.sort();
    vars.dedup();
    // Report the unknown variable that appears first in the text.
    let mut unknown: Vec<(usize, usize, &String)> = vars
        .iter()
        .filter(|v| !known.contains(&v.as_str()))
        .map(|v| {
            let (s, e) = find_var(src, v).unwrap_or((0, src.len()));
            (s, e, v)
        })
        .collect();
    unknown.sort();
    if let Some((s, e, name)) = unknown.first() {
        return Err(TemplateError::UnknownVariable {
            name: (*name).clone(),
            span: origin.sub(*s, *e),
            suggestion: did_you_mean(name, known.iter().copied()).map(str::to_string),
            known: known.iter().map(|k| k.to_string()).collect(),
        });
    }
    // minijinja looks filters and tests up by name only when it applies them, per row:
    // look every one up now.
    for (kind, fname, s, e) in filters_and_tests(src) {
        let probe = match kind {
            "filter" => format!("{{{{ none|{fname} }}}}"),
            _ => format!("{{{{ none is {fname} }}}}"),
        };
        let missing = env
            .render_str(&probe, ())
            .is_err_and(|e| matches!(e.kind(), ErrorKind::UnknownFilter | ErrorKind::UnknownTest));
        if missing {
            let candidates = if kind == "filter" {
                BUILTIN_FILTERS
            } else {
                BUILTIN_TESTS
            };
            return Err(TemplateError::UnknownFilter {
                kind,
                name: fname.to_string(),
                span: origin.sub(s, e),
                suggestion: did_you_mean(fname, candidates.iter().copied()).map(str::to_string),
            });
        }
    }
    Ok(Template {
        source: src.to_string(),
        vars,
        span: origin,
        secret: false,
        escape,
    })
}

/// The filters of minijinja's environment (the ones it has built in with this crate's
/// features), for suggestions.
const BUILTIN_FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "trim",
    "unique",
    "upper",
    "zip",
];

/// The tests of the environment (`x is none`), for suggestions.
const BUILTIN_TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "true",
    "false",
    "filter",
    "test",
    "undefined",
    "upper",
];

/// Every filter (`x|name`, `{% filter name %}`) and test (`x is name`, `x is not name`) a
/// template applies, as (`"filter"` or `"test"`, name, byte range of the name), read from
/// minijinja's own tokens (so that string literals, comments and raw blocks are skipped).
// `SyntaxConfig` is a unit struct only without minijinja's `custom_syntax` feature.
#[allow(clippy::default_constructed_unit_structs)]
fn filters_and_tests(src: &str) -> Vec<(&'static str, &str, usize, usize)> {
    use minijinja::machinery::{tokenize, Token, WhitespaceConfig};
    let tokens: Vec<(Token<'_>, minijinja::machinery::Span)> = tokenize(
        src,
        false,
        minijinja::syntax::SyntaxConfig::default(),
        WhitespaceConfig::default(),
    )
    .map_while(Result::ok)
    .collect();
    let mut out = Vec::new();
    for (i, (tok, span)) in tokens.iter().enumerate() {
        let Token::Ident(name) = tok else { continue };
        let prev = |back: usize| i.checked_sub(back).map(|j| &tokens[j].0);
        let kind = match prev(1) {
            Some(Token::Pipe) => "filter",
            Some(Token::Ident("filter")) if matches!(prev(2), Some(Token::BlockStart)) => "filter",
            Some(Token::Ident("is")) if !matches!(prev(2), Some(Token::Dot)) => "test",
            Some(Token::Ident("not"))
                if matches!(prev(2), Some(Token::Ident("is")))
                    && !matches!(prev(3), Some(Token::Dot)) =>
            {
                "test"
            }
            _ => continue,
        };
        // `x is not none`: `not` is not the test.
        if kind == "test" && *name == "not" {
            continue;
        }
        out.push((
            kind,
            *name,
            span.start_offset as usize,
            span.end_offset as usize,
        ));
    }
    out
}

/// Byte range of the first use of `name` as a whole word inside `{{ }}` or `{% %}`.
fn find_var(src: &str, name: &str) -> Option<(usize, usize)> {
    let bytes = src.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut pos = 0;
    while let Some(open) = src[pos..].find(['{']).map(|i| i + pos) {
        let kind = bytes.get(open + 1).copied();
        let close_pat = match kind {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            _ => {
                pos = open + 1;
                continue;
            }
        };
        let body_start = open + 2;
        let body_end = src[body_start..]
            .find(close_pat)
            .map_or(src.len(), |i| i + body_start);
        let body = &src[body_start..body_end];
        let mut from = 0;
        while let Some(i) = body[from..].find(name).map(|i| i + from) {
            let s = body_start + i;
            let e = s + name.len();
            let before_ok = s == 0 || !word(bytes[s - 1]) && bytes[s - 1] != b'.';
            let after_ok = e >= bytes.len() || !word(bytes[e]);
            if before_ok && after_ok {
                return Some((s, e));
            }
            from = i + name.len();
        }
        pos = body_end.max(open + 1);
        if pos >= src.len() {
            break;
        }
    }
    None
}

fn to_jinja(v: &Value) -> Option<minijinja::Value> {
    use minijinja::Value as J;
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => J::from(*i),
        Value::Float(f) => J::from(*f),
        Value::Decimal(d) => J::from(d.to_string()),
        Value::Str(s) | Value::Uuid(s) => J::from(s.clone()),
        Value::Bool(b) => J::from(*b),
        Value::Date(d) => J::from(d.format("%Y-%m-%d").to_string()),
        Value::Datetime(t) => J::from(format_datetime(t)),
        Value::Interval(_) => J::from(v.to_text()),
        Value::Json(j) => J::from_serialize(j.value()),
        Value::List(_) | Value::Map(_) => J::from_serialize(v.to_json()),
    })
}

impl Template {
    /// Render with a row context (alias → value). NULL values are undefined in the
    /// template: printing one is [`TemplateError::NullValue`] unless the template gives a
    /// `default`.
    pub fn render(&self, ctx: &IndexMap<String, Value>) -> Result<String, TemplateError> {
        let mut vars: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
        for name in &self.vars {
            // A document read as nothing would print as null: refused instead.
            if let Some(Value::Json(j)) = ctx.get(name) {
                if let Some(why) = j.unreadable() {
                    return Err(self.render_err(format!("field `{name}` {why}")));
                }
            }
            if let Some(j) = ctx.get(name).and_then(to_jinja) {
                vars.insert(name.as_str(), j);
            }
        }
        let env = env().read().unwrap_or_else(|p| p.into_inner());
        let tmpl = env
            .get_template(&env_name(&self.source, self.escape))
            .map_err(|e| self.render_err(e.to_string()))?;
        tmpl.render(&vars).map_err(|e| {
            if e.kind() == ErrorKind::UndefinedError {
                if let Some(missing) = self.vars.iter().find(|v| !ctx.contains_key(*v)) {
                    return self.render_err(format!("the row has no field `{missing}`"));
                }
                if let Some(null) = self
                    .vars
                    .iter()
                    .find(|v| ctx.get(*v).is_some_and(Value::is_null))
                {
                    return TemplateError::NullValue {
                        template: self.shown(),
                        name: null.clone(),
                    };
                }
            }
            self.render_err(e.detail().map_or_else(|| e.to_string(), str::to_string))
        })
    }

    /// The same template, its text marked secret (see [`Template::secret`]).
    pub fn into_secret(mut self) -> Template {
        self.secret = true;
        self
    }

    /// The text as errors show it: `***` when secret, URL credentials masked.
    pub fn shown(&self) -> String {
        if self.secret {
            "***".to_string()
        } else if self.source.contains("://") {
            crate::config::redact::redact_userinfo(&self.source)
        } else {
            self.source.clone()
        }
    }

    fn render_err(&self, message: String) -> TemplateError {
        // The engine's messages name the template by its text.
        let shown = self.shown();
        let message = if shown == self.source {
            message
        } else {
            message.replace(&self.source, &shown)
        };
        TemplateError::Render {
            template: shown,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn at(src: &str) -> Span {
        Span::new(100, 100 + src.len())
    }

    #[test]
    fn errors_never_show_url_credentials_or_secret_text() {
        let null = row(&[("zip", Value::Null)]);
        let t = compile("http://u:TplPw1@h/{{ zip }}", Span::default(), &["zip"]).unwrap();
        let e = t.render(&null).unwrap_err().to_string();
        assert!(!e.contains("TplPw1") && e.contains("http://***@h/"), "{e}");
        let e = t.render(&row(&[])).unwrap_err().to_string();
        assert!(!e.contains("TplPw1"), "{e}");
        let t = compile("Tok{{ zip }}", Span::default(), &["zip"])
            .unwrap()
            .into_secret();
        let e = t.render(&null).unwrap_err().to_string();
        assert!(!e.contains("Tok") && e.contains("template `***`"), "{e}");
        assert_eq!(t.render(&row(&[("zip", Value::Int(1))])).unwrap(), "Tok1");
    }

    #[test]
    fn a_document_beyond_f64_is_refused_not_printed_as_null() {
        let t = compile("{{ doc }}", Span::default(), &["doc"]).unwrap();
        let r = row(&[("doc", Value::json_text(r#"{"x": 1e400}"#).unwrap())]);
        let e = t.render(&r).unwrap_err();
        assert!(!matches!(e, TemplateError::NullValue { .. }), "{e:?}");
        assert!(e.to_string().contains("beyond the range"), "{e}");
    }

    #[test]
    fn seed_templates_compile_and_render() {
        let t = compile(
            "{{ name }} - ${{ o__total }}",
            at("{{ name }} - ${{ o__total }}"),
            &["name", "o__total", "user_id"],
        )
        .unwrap();
        assert_eq!(t.vars, vec!["name", "o__total"]);
        let r = row(&[
            ("name", Value::Str("Ann".into())),
            ("o__total", Value::Int(1200)),
        ]);
        assert_eq!(t.render(&r).unwrap(), "Ann - $1200");

        let t = compile("user:{{ user_id }}", at("user:{{ user_id }}"), &["user_id"]).unwrap();
        assert_eq!(t.vars, vec!["user_id"]);
        assert_eq!(
            t.render(&row(&[("user_id", Value::Int(7))])).unwrap(),
            "user:7"
        );

        let src = "/creditscore?user_id={{user_id}}";
        let t = compile(src, at(src), &["user_id"]).unwrap();
        assert_eq!(
            t.render(&row(&[("user_id", Value::Str("u1".into()))]))
                .unwrap(),
            "/creditscore?user_id=u1"
        );
    }

    #[test]
    fn filters_are_not_variables() {
        let src = "{{ name|upper }}-{{ name | lower }}";
        let t = compile(src, at(src), &["name"]).unwrap();
        assert_eq!(t.vars, vec!["name"]);
        assert_eq!(
            t.render(&row(&[("name", Value::Str("Ab".into()))]))
                .unwrap(),
            "AB-ab"
        );
    }

    #[test]
    fn unknown_variable_is_a_compile_error_with_span() {
        let src = "user:{{ usr_id }}";
        let origin = at(src);
        let err = compile(src, origin, &["user_id", "name"]).unwrap_err();
        match &err {
            TemplateError::UnknownVariable {
                name,
                span,
                suggestion,
                ..
            } => {
                assert_eq!(name, "usr_id");
                assert_eq!(&src[span.start - 100..span.end - 100], "usr_id");
                assert_eq!(suggestion.as_deref(), Some("user_id"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let d = Diagnostic::from(err);
        assert_eq!(d.help.as_deref(), Some("did you mean `user_id`?"));
    }

    #[test]
    fn syntax_error_has_span() {
        let src = "{{ name ";
        let err = compile(src, at(src), &["name"]).unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn a_null_field_is_none() {
        let r = row(&[("name", Value::Null), ("x", Value::Int(1))]);
        for (src, want) in [
            ("{{ name is none }}", "true"),
            ("{{ name is not none }}", "false"),
            ("{{ x is none }}", "false"),
            (
                "{% if name is not none %}{{ name }}{% else %}-{% endif %}",
                "-",
            ),
            ("{% if name is none %}-{% else %}{{ name }}{% endif %}", "-"),
            ("{% if x is not none %}{{ x }}{% endif %}", "1"),
        ] {
            let t = compile(src, at(src), &["name", "x"]).unwrap();
            assert_eq!(t.render(&r).unwrap(), want, "{src}");
        }
    }

    #[test]
    fn null_is_an_error_unless_defaulted() {
        let src = "k:{{ name }}";
        let t = compile(src, at(src), &["name"]).unwrap();
        let r = row(&[("name", Value::Null)]);
        assert!(matches!(t.render(&r), Err(TemplateError::NullValue { .. })));
        let src = "k:{{ name|default(\"-\") }}";
        let t = compile(src, at(src), &["name"]).unwrap();
        assert_eq!(t.render(&r).unwrap(), "k:-");
        // A field absent from the row is an error, not an empty string.
        assert!(matches!(
            t.render(&row(&[])),
            Ok(_) | Err(TemplateError::Render { .. })
        ));
        let t = compile("k:{{ name }}", at("k:{{ name }}"), &["name"]).unwrap();
        assert!(matches!(
            t.render(&row(&[])),
            Err(TemplateError::Render { .. })
        ));
    }

    #[test]
    fn values_render_in_python_text_form() {
        let src = "{{ d }}|{{ x }}|{{ n }}";
        let t = compile(src, at(src), &["d", "x", "n"]).unwrap();
        let dt = chrono::NaiveDate::from_ymd_opt(2020, 2, 1)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        let r = row(&[
            ("d", Value::Datetime(dt)),
            (
                "x",
                Value::Decimal(crate::expr::Decimal::parse("1.50").unwrap()),
            ),
            ("n", Value::json(serde_json::json!({"a": 1}))),
        ]);
        let out = t.render(&r).unwrap();
        assert!(out.starts_with("2020-02-01 03:04:05|1.5|"), "{out}");
    }

    #[test]
    fn url_path_templates_percent_encode_values_but_not_their_text() {
        let src = "/zip/{{ zip }}?country={{ c }}";
        let t = compile_escaped(src, at(src), &["zip", "c"], Escape::UrlPath).unwrap();
        let r = row(&[
            ("zip", Value::Str("a b/c?d&e=f#g".into())),
            ("c", Value::Str("de & at".into())),
        ]);
        assert_eq!(
            t.render(&r).unwrap(),
            "/zip/a%20b%2Fc%3Fd%26e%3Df%23g?country=de%20%26%20at"
        );
        // Unreserved characters stay; `%`, non-ASCII and the scheme separator are encoded.
        let src = "{{ zip }}";
        let t = compile_escaped(src, at(src), &["zip"], Escape::UrlPath).unwrap();
        for (value, want) in [
            ("AZaz09-._~", "AZaz09-._~"),
            ("100%", "100%25"),
            ("Zürich", "Z%C3%BCrich"),
            ("http://other:1/steal", "http%3A%2F%2Fother%3A1%2Fsteal"),
        ] {
            assert_eq!(
                t.render(&row(&[("zip", Value::Str(value.into()))]))
                    .unwrap(),
                want
            );
        }
        assert_eq!(t.render(&row(&[("zip", Value::Int(-5))])).unwrap(), "-5");
        // `|safe` prints the value as it is; expressions are encoded as a whole.
        let src = "/{{ p|safe }}/{{ a ~ '/' ~ b }}";
        let t = compile_escaped(src, at(src), &["p", "a", "b"], Escape::UrlPath).unwrap();
        let r = row(&[
            ("p", Value::Str("x/y".into())),
            ("a", Value::Str("1".into())),
            ("b", Value::Str("2".into())),
        ]);
        assert_eq!(t.render(&r).unwrap(), "/x/y/1%2F2");
    }

    #[test]
    fn the_same_text_compiled_with_and_without_escaping_stays_two_templates() {
        let src = "k:{{ name }}";
        let plain = compile(src, at(src), &["name"]).unwrap();
        let path = compile_escaped(src, at(src), &["name"], Escape::UrlPath).unwrap();
        let r = row(&[("name", Value::Str("a b".into()))]);
        assert_eq!(plain.render(&r).unwrap(), "k:a b");
        assert_eq!(path.render(&r).unwrap(), "k:a%20b");
        assert_eq!(plain.render(&r).unwrap(), "k:a b");
        // NULL handling is the same in both modes.
        let null = row(&[("name", Value::Null)]);
        assert!(matches!(
            path.render(&null),
            Err(TemplateError::NullValue { .. })
        ));
    }

    #[test]
    fn html_like_names_are_not_escaped() {
        let src = "<{{ name }}>.html";
        let t = compile(src, at(src), &["name"]).unwrap();
        assert_eq!(
            t.render(&row(&[("name", Value::Str("a&b".into()))]))
                .unwrap(),
            "<a&b>.html"
        );
    }

    #[test]
    fn unknown_filters_and_tests_are_compile_errors() {
        let known = ["name", "x"];
        for (src, kind, name, suggestion) in [
            ("{{ name|frobnicate }}-x", "filter", "frobnicate", None),
            ("{{ name | uppr }}", "filter", "uppr", Some("upper")),
            (
                "{{ name|default('')|trimm }}",
                "filter",
                "trimm",
                Some("trim"),
            ),
            (
                "{% filter lowr %}{{ name }}{% endfilter %}",
                "filter",
                "lowr",
                Some("lower"),
            ),
            ("{% if x is od %}1{% endif %}", "test", "od", Some("odd")),
            ("{{ name is not nonee }}", "test", "nonee", Some("none")),
        ] {
            let err = compile(src, at(src), &known).unwrap_err();
            match &err {
                TemplateError::UnknownFilter {
                    kind: k,
                    name: n,
                    span,
                    suggestion: s,
                } => {
                    assert_eq!((*k, n.as_str()), (kind, name), "{src}");
                    assert_eq!(&src[span.start - 100..span.end - 100], name, "{src}");
                    assert_eq!(s.as_deref(), suggestion, "{src}");
                }
                other => panic!("{src}: {other:?}"),
            }
        }
        // Every filter and test the suggestions offer exists; `|` in strings and comments,
        // and raw blocks, are not filters.
        for f in BUILTIN_FILTERS {
            let src = format!("{{{{ x|{f} }}}}");
            assert!(compile(&src, at(&src), &known).is_ok(), "{f}");
        }
        for t in BUILTIN_TESTS {
            let src = format!("{{{{ x is {t} }}}}");
            assert!(compile(&src, at(&src), &known).is_ok(), "{t}");
        }
        for src in [
            "{{ 'a|b' ~ name }}{# x|nope #}{% raw %}{{ y|nope }}{% endraw %}",
            "{{ name is not none }}{{ x is divisibleby(3) }}",
        ] {
            assert!(compile(src, at(src), &known).is_ok(), "{src}");
        }
    }
}
