//! Datastores and external stores: uniqueness, required settings per type, and lookups by
//! name with "did you mean" hints.

use super::Diags;
use crate::config::raw::{RawConfig, RawState, RawTable, RawTls};
use crate::config::{Spanned, TlsMode};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{ExternalKind, ExternalStore, StateTable, Store, StoreKind, TableName, Target};
use crate::sql::DialectKind;

/// Every store of the config, by name.
#[derive(Debug, Default)]
pub struct Stores {
    datastores: Vec<Store>,
    external: Vec<ExternalStore>,
}

impl Stores {
    /// Validate the store lists.
    pub fn resolve(raw: &RawConfig, diags: &mut Diags) -> Stores {
        let mut out = Stores::default();
        for d in &raw.datastores {
            let kind = match d.kind.value.as_str() {
                "postgres" => StoreKind::Sql(DialectKind::Postgres),
                "mysql" => StoreKind::Sql(DialectKind::Mysql),
                "clickhouse" => StoreKind::Sql(DialectKind::Clickhouse),
                "webhook" => StoreKind::Webhook,
                "nats" => StoreKind::Nats,
                _ => continue, // reported by the decoder
            };
            if out.datastores.iter().any(|s| s.name == d.name.value) {
                diags.push(
                    d.name
                        .error(format!("duplicate datastore name `{}`", d.name.value)),
                );
            }
            if let Some(p) = &d.port {
                if !(1..=65535).contains(&p.value) {
                    diags.push(p.error("`port` must be between 1 and 65535"));
                }
            }
            match kind {
                StoreKind::Sql(_) => {
                    if d.host.is_none() {
                        diags.push(
                            Diagnostic::error(format!("datastore `{}` needs `host`", d.name.value))
                                .at_path(d.path.clone())
                                .with_span(d.name.span),
                        );
                    }
                    check_host(d.host.as_ref(), diags);
                    check_tls(&d.tls, diags);
                }
                StoreKind::Webhook => {
                    if d.base_url.is_none() {
                        diags.push(
                            Diagnostic::error(format!(
                                "webhook datastore `{}` needs `base_url`",
                                d.name.value
                            ))
                            .at_path(d.path.clone())
                            .with_span(d.name.span),
                        );
                    }
                    if let Some(u) = &d.base_url {
                        if !(u.value.starts_with("http://") || u.value.starts_with("https://")) {
                            diags.push(u.error("`base_url` must start with http:// or https://"));
                        } else {
                            check_url_parses(u, "base_url", diags);
                        }
                        check_one_authorization(u, &d.headers, diags);
                    }
                    check_headers(&d.headers, diags);
                }
                StoreKind::Nats => {
                    if d.servers.is_empty() {
                        diags.push(
                            Diagnostic::error(format!(
                                "nats datastore `{}` needs `servers`",
                                d.name.value
                            ))
                            .at_path(d.path.clone())
                            .with_span(d.name.span),
                        );
                    }
                    check_tls(&d.tls, diags);
                    if d.tls.mode() == Some(TlsMode::Disable) {
                        for s in d
                            .servers
                            .iter()
                            .filter(|s| crate::config::urls::is_tls_url(&s.value))
                        {
                            diags.push(
                                s.error("a `tls://` server needs TLS, which this datastore disables")
                                    .with_help("remove `sslmode: disable` / `tls: false`, or give a `nats://` URL"),
                            );
                        }
                    }
                }
            }
            out.datastores.push(Store {
                name: d.name.value.clone(),
                kind,
                target: Target {
                    url: d.base_url.as_ref().map(|u| shown_url(&u.value)),
                    subject: d.subject.as_ref().map(|s| s.value.clone()),
                    stream: d.stream.as_ref().map(|s| s.value.clone()),
                },
            });
        }
        for e in &raw.externalstores {
            let kind = match e.kind.value.as_str() {
                "redis" => ExternalKind::Redis,
                "http" => ExternalKind::Http,
                other => {
                    diags.push(
                        e.kind
                            .error(format!("unknown external store type `{other}`"))
                            .with_choices(other, &["redis", "http"]),
                    );
                    continue;
                }
            };
            if out.external.iter().any(|s| s.name == e.name.value) {
                diags.push(
                    e.name
                        .error(format!("duplicate external store name `{}`", e.name.value)),
                );
            }
            if kind == ExternalKind::Redis {
                check_host(e.host.as_ref(), diags);
                check_tls(&e.tls, diags);
            } else {
                let keys = [
                    ("sslmode", e.tls.sslmode.as_ref().map(|s| s.span)),
                    ("tls", e.tls.flag.as_ref().map(|s| s.span)),
                    ("sslrootcert", e.tls.sslrootcert.as_ref().map(|s| s.span)),
                    ("sslcert", e.tls.sslcert.as_ref().map(|s| s.span)),
                    ("sslkey", e.tls.sslkey.as_ref().map(|s| s.span)),
                ];
                for (key, span) in keys {
                    let Some(span) = span else { continue };
                    diags.push(
                        Diagnostic::error(format!(
                            "`{key}` does not apply to an http external store"
                        ))
                        .at_path(format!("{}.{key}", e.path))
                        .with_span(span)
                        .with_help("an `https://` url is verified against the built-in roots"),
                    );
                }
            }
            if let Some(u) = &e.url {
                if kind == ExternalKind::Http {
                    check_url_parses(u, "url", diags);
                }
                check_one_authorization(u, &e.headers, diags);
            }
            check_headers(&e.headers, diags);
            if kind == ExternalKind::Redis && e.host.is_none() {
                diags.push(
                    Diagnostic::error(format!(
                        "redis external store `{}` needs `host`",
                        e.name.value
                    ))
                    .at_path(e.path.clone())
                    .with_span(e.name.span),
                );
            }
            if kind == ExternalKind::Http && e.url.is_none() {
                diags.push(
                    Diagnostic::error(format!(
                        "http external store `{}` needs `url`",
                        e.name.value
                    ))
                    .at_path(e.path.clone())
                    .with_span(e.name.span),
                );
            }
            out.external.push(ExternalStore {
                name: e.name.value.clone(),
                kind,
            });
        }
        out
    }

    /// Look up a datastore by a reference in the config.
    pub fn datastore(&self, r: &Spanned<String>, diags: &mut Diags) -> Option<Store> {
        if let Some(s) = self.datastores.iter().find(|s| s.name == r.value) {
            return Some(s.clone());
        }
        diags.push(unknown(
            "datastore",
            r,
            self.datastores.iter().map(|s| s.name.as_str()),
        ));
        None
    }

    /// Look up an external store by a reference in the config.
    pub fn external(&self, r: &Spanned<String>, diags: &mut Diags) -> Option<ExternalStore> {
        if let Some(s) = self.external.iter().find(|s| s.name == r.value) {
            return Some(s.clone());
        }
        diags.push(unknown(
            "external store",
            r,
            self.external.iter().map(|s| s.name.as_str()),
        ));
        None
    }

    /// Resolve a `sourcestate` / `sinkstate` entry (`None` when it says "use the same").
    pub fn state(&self, s: Option<&RawState>, diags: &mut Diags) -> Option<StateTable> {
        let s = s?;
        if s.use_same.as_ref().is_some_and(|u| u.value) {
            return None;
        }
        let (Some(ds), Some(t)) = (&s.datastore, &s.table) else {
            diags.push(
                Diagnostic::error("a state table needs `datastore` and `table` (or `use_source`/`use_sink: true`)")
                    .at_path(s.path.clone()),
            );
            return None;
        };
        let store = self.datastore(ds, diags)?;
        if store.kind.dialect().is_none() {
            diags.push(ds.error("a state table must live in a SQL datastore"));
            return None;
        }
        Some(StateTable {
            store,
            table: table_name(t),
            partition_column: s.meta.partition_column.as_ref().map(|c| c.value.clone()),
            hash_column: s.meta.hash_column.as_ref().map(|c| c.value.clone()),
        })
    }
}

/// The table name of a raw table.
///
/// Without a `dbschema`, a name with one dot is `schema.table` (`analytics.orders`), as
/// dbt and Sling read it; a table whose name holds a dot is written with its `dbschema`.
pub fn table_name(t: &RawTable) -> TableName {
    match (&t.dbschema, t.table.value.split_once('.')) {
        (None, Some((schema, name)))
            if !schema.is_empty() && !name.is_empty() && !name.contains('.') =>
        {
            TableName {
                schema: Some(schema.to_string()),
                name: name.to_string(),
            }
        }
        (schema, _) => TableName {
            schema: schema.as_ref().map(|s| s.value.clone()),
            name: t.table.value.clone(),
        },
    }
}

/// An "unknown X" diagnostic with a did-you-mean over the known names.
pub fn unknown<'a>(
    what: &str,
    r: &Spanned<String>,
    known: impl Iterator<Item = &'a str> + Clone,
) -> Diagnostic {
    let mut d = r
        .error(format!("unknown {what} `{}`", r.value))
        .with_label(format!("no {what} has this name"));
    d = match did_you_mean(&r.value, known.clone()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => {
            let all: Vec<&str> = known.collect();
            if all.is_empty() {
                d.with_help(format!("no {what} is defined"))
            } else {
                d.with_help(format!("defined: {}", crate::diag::name_list(&all)))
            }
        }
    };
    d
}

/// `sslmode` must be one of libpq's values, and only one of `sslmode` / `tls` may be given;
/// `sslrootcert`, `sslcert` and `sslkey` mean nothing when TLS is disabled, and a client
/// certificate needs both `sslcert` and `sslkey`.
fn check_tls(d: &RawTls, diags: &mut Diags) {
    let mode = match (&d.sslmode, &d.flag) {
        (Some(m), Some(t)) => {
            diags.push(
                t.error("give either `sslmode` or `tls`, not both")
                    .with_help(format!("`sslmode: {}` is already set", m.value)),
            );
            return;
        }
        (Some(m), None) => match TlsMode::parse(&m.value) {
            Some(mode) => Some(mode),
            None => {
                diags.push(
                    m.error(format!("unknown sslmode `{}`", m.value))
                        .with_choices(&m.value, &TlsMode::NAMES),
                );
                return;
            }
        },
        (None, Some(t)) => Some(t.value),
        (None, None) => None,
    };
    let files = [
        ("sslrootcert", &d.sslrootcert, "a PEM file"),
        ("sslcert", &d.sslcert, "a PEM certificate file"),
        ("sslkey", &d.sslkey, "a PEM key file"),
    ];
    for (key, value, what) in files {
        let Some(r) = value else { continue };
        if mode == Some(TlsMode::Disable) {
            diags.push(r.error(format!("`{key}` has no effect when TLS is disabled")));
        } else if r.value.trim().is_empty() {
            diags.push(r.error(format!("`{key}` must name {what}")));
        }
    }
    match (&d.sslcert, &d.sslkey) {
        (Some(c), None) => diags.push(
            c.error("`sslcert` needs `sslkey`")
                .with_help("give the client certificate's private key as `sslkey`"),
        ),
        (None, Some(k)) => diags.push(
            k.error("`sslkey` needs `sslcert`")
                .with_help("give the client certificate as `sslcert`"),
        ),
        _ => {}
    }
}

/// A URL as `compile` shows it ([`crate::config::redact::redact_url`]); `(not a URL)` when it does not parse
/// (its text could hold a token).
fn shown_url(text: &str) -> String {
    reqwest::Url::parse(text)
        .map(|u| crate::config::redact::redact_url(&u))
        .unwrap_or_else(|_| "(not a URL)".to_string())
}

/// A webhook's `base_url` or an http store's `url` must parse as the runtime parses it (a
/// port beyond 65535, a malformed IPv6 address would otherwise fail only when the run
/// sends its first request). The message shows the text without credentials or query
/// string.
fn check_url_parses(u: &Spanned<String>, key: &str, diags: &mut Diags) {
    let Err(e) = reqwest::Url::parse(&u.value) else {
        return;
    };
    let before_query = u.value.split(['?', '#']).next().unwrap_or_default();
    let shown = crate::config::redact::redact_userinfo(before_query);
    diags.push(
        u.error(format!("`{key}` is not a valid URL: {e}: `{shown}`"))
            .with_help("give it as `http(s)://host[:port]/path`; an IPv6 host in brackets (`http://[::1]:8080/`), a port of at most 65535"),
    );
}

/// A database or Redis `host` is a host name or address (or a PostgreSQL socket directory),
/// not a URL: a URL's credentials would be shown wherever the host is (every error names
/// it), and its database and port would be ignored.
fn check_host(host: Option<&Spanned<String>>, diags: &mut Diags) {
    let Some(h) = host else { return };
    if h.value.contains("://") || h.value.contains('@') {
        diags.push(
            h.error("`host` takes a host name or address, not a URL")
                .with_help("give the user, password, port and database in `username`, `password`, `port` and `database`"),
        );
    }
}

/// Header names must be HTTP tokens (RFC 7230: letters, digits and ``!#$%&'*+-.^_`|~``),
/// and values must not hold line breaks, NUL or other control characters (a tab is fine):
/// the HTTP client refuses them only when it sends the first request. Errors name the header
/// but never show its value, which may be a secret.
fn check_headers(headers: &[(Spanned<String>, Spanned<String>)], diags: &mut Diags) {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    for (name, value) in headers {
        let shown = name.value.escape_debug().to_string();
        if name.value.is_empty() {
            diags.push(name.error("a header name cannot be empty"));
            continue;
        }
        if let Some(bad) = name.value.chars().find(|c| !tchar(*c)) {
            let what = match bad {
                ' ' => "a space".to_string(),
                c if c.is_control() => format!("the control character {}", c.escape_debug()),
                c => format!("`{c}`"),
            };
            diags.push(
                name.error(format!(
                    "`{shown}` is not a valid HTTP header name: it holds {what}"
                ))
                .with_help(
                    "a header name is letters, digits and !#$%&'*+-.^_`|~ (e.g. `X-Api-Key`)",
                ),
            );
            continue;
        }
        let bad = value
            .value
            .chars()
            .find(|c| c.is_ascii_control() && *c != '\t');
        if let Some(bad) = bad {
            let what = match bad {
                '\r' | '\n' => "a line break",
                '\0' => "a NUL character",
                _ => "a control character",
            };
            diags.push(
                value
                    .error(format!("the value of header `{shown}` holds {what}"))
                    .with_help("a header value is one line of text; check the variable or the YAML string it comes from"),
            );
        }
    }
}

/// A URL with credentials is sent with them as HTTP basic authentication, which replaces
/// an `Authorization` header: given both, one would be dropped without a word.
fn check_one_authorization(
    url: &Spanned<String>,
    headers: &[(Spanned<String>, Spanned<String>)],
    diags: &mut Diags,
) {
    if crate::config::redact::userinfo_range(&url.value).is_none() {
        return;
    }
    if let Some((h, _)) = headers
        .iter()
        .find(|(h, _)| h.value.eq_ignore_ascii_case("authorization"))
    {
        diags.push(
            h.error("an `Authorization` header and credentials in the URL: the URL's would replace the header")
                .with_help("keep one: remove the `user:password@` part of the URL, or the header"),
        );
    }
}
