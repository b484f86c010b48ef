//! Raw configuration structs: what the YAML says, with spans and paths, before any name is
//! resolved or any type checked. Decoding accepts every key of SPEC §2 and the seed README.

use super::decode::{
    child, index, is_secret_key, mask_all, mask_url_credentials, Ctx, MapReader, Secret, Spanned,
};
use super::tls::TlsMode;
use super::yaml::{Node, NodeValue};
use crate::diag::{did_you_mean, Diagnostic};

type S = Spanned<String>;

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    /// `datastores[]`
    pub datastores: Vec<RawDatastore>,
    /// `externalstores[]`
    pub externalstores: Vec<RawExternalStore>,
    /// `pipelines[]`
    pub pipelines: Vec<RawPipeline>,
}

/// A datastore (database, webhook or NATS).
#[derive(Debug, Clone)]
pub struct RawDatastore {
    /// YAML path of the entry.
    pub path: String,
    /// `name`
    pub name: S,
    /// `type`
    pub kind: S,
    /// `host`
    pub host: Option<S>,
    /// `port`
    pub port: Option<Spanned<i64>>,
    /// `username` (also `user`)
    pub username: Option<S>,
    /// `password`
    pub password: Option<Spanned<Secret>>,
    /// `database`
    pub database: Option<S>,
    /// `sslmode`, `tls`, `sslrootcert`, `sslcert`, `sslkey` (databases and NATS)
    pub tls: RawTls,
    /// `pool_size`
    pub pool_size: Option<Spanned<u32>>,
    /// webhook `base_url`
    pub base_url: Option<S>,
    /// webhook `headers`
    pub headers: Vec<(S, S)>,
    /// webhook/nats `timeout` in seconds
    pub timeout: Option<Spanned<f64>>,
    /// webhook `retries`
    pub retries: Option<Spanned<u32>>,
    /// nats `servers`
    pub servers: Vec<S>,
    /// nats `token`
    pub token: Option<Spanned<Secret>>,
    /// nats `subject`
    pub subject: Option<S>,
    /// nats `queue`
    pub queue: Option<S>,
    /// nats `max_msgs`
    pub max_msgs: Option<Spanned<i64>>,
    /// nats `per_msg_timeout` (seconds)
    pub per_msg_timeout: Option<Spanned<f64>>,
    /// nats `total_timeout` (seconds)
    pub total_timeout: Option<Spanned<f64>>,
    /// nats JetStream `stream`
    pub stream: Option<S>,
    /// nats JetStream `durable`
    pub durable: Option<S>,
}

/// The TLS keys of a database, NATS or Redis entry, as written.
#[derive(Debug, Clone, Default)]
pub struct RawTls {
    /// `sslmode`: disable, allow, prefer, require, verify-ca, verify-full (libpq's names)
    pub sslmode: Option<S>,
    /// `tls`: `true` is `sslmode: verify-full`, `false` is `disable`; it also takes any
    /// `sslmode` value (`tls: require`)
    pub flag: Option<Spanned<TlsMode>>,
    /// `sslrootcert`: a PEM file of CA certificates to trust
    pub sslrootcert: Option<S>,
    /// `sslcert`: a PEM file with the client certificate (chain) presented to the server
    pub sslcert: Option<S>,
    /// `sslkey`: the PEM private key of `sslcert`
    pub sslkey: Option<S>,
}

impl RawTls {
    fn read(m: &mut MapReader<'_>, ctx: &mut Ctx) -> RawTls {
        RawTls {
            sslmode: m.str("sslmode", ctx),
            flag: tls_flag(m, ctx),
            sslrootcert: m.str("sslrootcert", ctx),
            sslcert: m.str("sslcert", ctx),
            sslkey: m.str("sslkey", ctx),
        }
    }

    /// The mode written (`sslmode`, else `tls: true|false`); `None` when neither is given.
    /// An unknown `sslmode` (which the checker refuses before anything runs) is the
    /// strictest, `verify-full`.
    pub fn mode(&self) -> Option<TlsMode> {
        match (&self.sslmode, &self.flag) {
            (Some(m), _) => Some(TlsMode::parse(&m.value).unwrap_or(TlsMode::VerifyFull)),
            (None, Some(t)) => Some(t.value),
            (None, None) => None,
        }
    }

    /// True when any TLS key is given.
    pub fn is_set(&self) -> bool {
        self.sslmode.is_some()
            || self.flag.is_some()
            || self.sslrootcert.is_some()
            || self.sslcert.is_some()
            || self.sslkey.is_some()
    }

    /// `sslrootcert` as a path.
    pub fn root_cert(&self) -> Option<std::path::PathBuf> {
        self.sslrootcert.as_ref().map(|r| r.value.clone().into())
    }

    /// `sslcert` and `sslkey` as paths, when both are given.
    pub fn client_cert(&self) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
        match (&self.sslcert, &self.sslkey) {
            (Some(c), Some(k)) => Some((c.value.clone().into(), k.value.clone().into())),
            _ => None,
        }
    }
}

/// `tls`: `true` / `false` (also as `yes`/`no`/`on`/`off`), or an `sslmode` value.
fn tls_flag(m: &mut MapReader<'_>, ctx: &mut Ctx) -> Option<Spanned<TlsMode>> {
    let (path, n) = m.take("tls")?;
    let mode = match &n.value {
        NodeValue::Bool(b) => Some(TlsMode::from_flag(*b)),
        NodeValue::Str(s) => match super::decode::bool_text(s) {
            Some(b) => Some(TlsMode::from_flag(b)),
            None => TlsMode::parse(s),
        },
        _ => None,
    };
    match mode {
        Some(value) => Some(Spanned {
            value,
            span: n.span,
            path,
        }),
        None => {
            let found = match &n.value {
                NodeValue::Str(s) => format!("`{s}`"),
                _ => n.type_name().to_string(),
            };
            let mut d = Diagnostic::error(format!(
                "`tls` must be true, false or an sslmode value, found {found}"
            ))
            .at_path(path)
            .with_span(n.span);
            d = match n.as_str().and_then(|s| did_you_mean(s, TlsMode::NAMES)) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("sslmode values: {}", TlsMode::NAMES.join(", "))),
            };
            ctx.err(d);
            None
        }
    }
}

const DB_KEYS: &[&str] = &[
    "host",
    "port",
    "username",
    "user",
    "password",
    "database",
    "sslmode",
    "tls",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "pool_size",
];
const WEBHOOK_KEYS: &[&str] = &["base_url", "headers", "timeout", "retries"];
const NATS_KEYS: &[&str] = &[
    "servers",
    "sslmode",
    "tls",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "token",
    "subject",
    "queue",
    "max_msgs",
    "per_msg_timeout",
    "total_timeout",
    "stream",
    "durable",
];
/// The largest duration-valued setting (`timeout`, `per_msg_timeout`, `total_timeout`), in
/// seconds: one day.
pub const MAX_TIMEOUT: f64 = 86_400.0;
/// Datastore type names.
pub const DATASTORE_TYPES: &[&str] = &["postgres", "mysql", "clickhouse", "webhook", "nats"];

/// An external store used by enrichments.
#[derive(Debug, Clone)]
pub struct RawExternalStore {
    /// YAML path of the entry.
    pub path: String,
    /// `name`
    pub name: S,
    /// `type` (redis, http)
    pub kind: S,
    /// redis `host`
    pub host: Option<S>,
    /// redis `port`
    pub port: Option<Spanned<i64>>,
    /// redis `db`
    pub db: Option<Spanned<i64>>,
    /// redis `username`
    pub username: Option<S>,
    /// redis `password`
    pub password: Option<Spanned<Secret>>,
    /// redis `sslmode`, `tls`, `sslrootcert`, `sslcert`, `sslkey`
    pub tls: RawTls,
    /// http `url`
    pub url: Option<S>,
    /// http `headers`
    pub headers: Vec<(S, S)>,
    /// `timeout` in seconds
    pub timeout: Option<Spanned<f64>>,
    /// http `max_concurrency`
    pub max_concurrency: Option<Spanned<u32>>,
    /// http `retries`
    pub retries: Option<Spanned<u32>>,
    /// http `max_response_bytes`
    pub max_response_bytes: Option<Spanned<u32>>,
}

/// A table given as a string or as `{table, alias, dbschema}`.
#[derive(Debug, Clone)]
pub struct RawTable {
    /// Table name.
    pub table: S,
    /// Alias.
    pub alias: Option<S>,
    /// Schema.
    pub dbschema: Option<S>,
}

/// `meta_columns` (and the per-side reconciliation variants).
#[derive(Debug, Clone, Default)]
pub struct RawMeta {
    /// `partition_column`
    pub partition_column: Option<S>,
    /// `hash_column`
    pub hash_column: Option<S>,
    /// `order_column`
    pub order_column: Option<S>,
    /// `unique_columns`
    pub unique_columns: Vec<S>,
}

/// A pipeline.
#[derive(Debug, Clone)]
pub struct RawPipeline {
    /// YAML path of the entry.
    pub path: String,
    /// `name`
    pub name: S,
    /// `source`
    pub source: Option<RawSource>,
    /// `sink`
    pub sink: Option<RawSink>,
    /// `sourcestate`
    pub sourcestate: Option<RawState>,
    /// `sinkstate`
    pub sinkstate: Option<RawState>,
    /// `reconciliation[]`
    pub reconciliation: Vec<RawReconciliation>,
    /// `enrichment[]`
    pub enrichment: Vec<RawEnrichment>,
}

/// `source`
#[derive(Debug, Clone)]
pub struct RawSource {
    /// YAML path.
    pub path: String,
    /// `datastore`
    pub datastore: S,
    /// `batch_size`
    pub batch_size: Option<Spanned<u32>>,
    /// `table` (absent for a NATS source)
    pub table: Option<RawTable>,
    /// `joins[]`
    pub joins: Vec<RawJoin>,
    /// `filters[]`
    pub filters: Vec<RawFilter>,
    /// `fields[]`
    pub fields: Vec<RawSourceField>,
    /// `meta_columns`
    pub meta: RawMeta,
    /// `final` (ClickHouse: read the main table with `FINAL`)
    pub final_: Option<Spanned<bool>>,
}

/// A join.
#[derive(Debug, Clone)]
pub struct RawJoin {
    /// YAML path.
    pub path: String,
    /// The joined table.
    pub table: RawTable,
    /// `type` (default inner)
    pub kind: Option<S>,
    /// `on`
    pub on: S,
}

/// A filter.
#[derive(Debug, Clone)]
pub struct RawFilter {
    /// YAML path.
    pub path: String,
    /// `column`
    pub column: S,
    /// `operator` (default `=`)
    pub operator: Option<S>,
    /// `value` (a scalar or a list), with its node for typing.
    pub value: Option<(String, Node)>,
}

/// A source field.
#[derive(Debug, Clone)]
pub struct RawSourceField {
    /// YAML path.
    pub path: String,
    /// `column`
    pub column: S,
    /// `dtype`
    pub dtype: Option<S>,
    /// `alias`
    pub alias: Option<S>,
}

/// `sink`
#[derive(Debug, Clone)]
pub struct RawSink {
    /// YAML path.
    pub path: String,
    /// `datastore`
    pub datastore: S,
    /// `table`
    pub table: Option<RawTable>,
    /// `batch_size`
    pub batch_size: Option<Spanned<u32>>,
    /// `merge_strategy`
    pub merge: Option<RawMerge>,
    /// `unique_key[]`
    pub unique_key: Vec<S>,
    /// `filters[]`
    pub filters: Vec<RawFilter>,
    /// `fields[]`
    pub fields: Vec<RawSinkField>,
    /// `meta_columns`
    pub meta: RawMeta,
    /// webhook `url_path`
    pub url_path: Option<S>,
    /// NATS `subject`
    pub subject: Option<S>,
}

/// `merge_strategy`
#[derive(Debug, Clone)]
pub struct RawMerge {
    /// YAML path.
    pub path: String,
    /// `strategy`
    pub strategy: Option<S>,
    /// `allow_delete`
    pub allow_delete: Option<Spanned<bool>>,
    /// `sign_column`
    pub sign_column: Option<S>,
    /// `version_column`
    pub version_column: Option<S>,
}

/// A sink field.
#[derive(Debug, Clone)]
pub struct RawSinkField {
    /// YAML path.
    pub path: String,
    /// `column`
    pub column: S,
    /// `dtype`
    pub dtype: Option<S>,
    /// `source_column`: a column reference, `TMPL(...)` or an expression.
    pub source_column: Option<S>,
    /// `source`: an enrichment name.
    pub source: Option<S>,
    /// `track` (default true)
    pub track: Option<Spanned<bool>>,
}

/// `sourcestate` / `sinkstate`
#[derive(Debug, Clone)]
pub struct RawState {
    /// YAML path.
    pub path: String,
    /// `use_source` / `use_sink`
    pub use_same: Option<Spanned<bool>>,
    /// `datastore`
    pub datastore: Option<S>,
    /// `table`
    pub table: Option<RawTable>,
    /// `meta_columns` (also flat `partition_column` / `hash_column`)
    pub meta: RawMeta,
}

/// A reconciliation entry.
#[derive(Debug, Clone)]
pub struct RawReconciliation {
    /// YAML path.
    pub path: String,
    /// `name`
    pub name: S,
    /// `strategy`
    pub strategy: Option<S>,
    /// `partition_column`
    pub partition_column: Option<S>,
    /// `partition_column_type`
    pub partition_column_type: Option<S>,
    /// `start` (expression)
    pub start: Option<S>,
    /// `end` (expression)
    pub end: Option<S>,
    /// `initial_partition_interval` (expression)
    pub initial_partition_interval: Option<S>,
    /// `max_block_size`
    pub max_block_size: Option<Spanned<i64>>,
    /// `interval_reduction_factor`
    pub interval_reduction_factor: Option<Spanned<i64>>,
    /// `partition_multiplier`
    pub partition_multiplier: Option<Spanned<i64>>,
    /// `source_order_column`
    pub source_order_column: Option<S>,
    /// `source_meta_columns` merged with `source_pfield`
    pub source_meta: RawMeta,
    /// `sink_meta_columns` merged with `sink_pfield`
    pub sink_meta: RawMeta,
    /// `lookback` (timestamp strategy; an expression in seconds)
    pub lookback: Option<S>,
}

/// An enrichment.
#[derive(Debug, Clone)]
pub struct RawEnrichment {
    /// YAML path.
    pub path: String,
    /// `externalstore`
    pub externalstore: S,
    /// `name`
    pub name: S,
    /// `type` (defaults to the external store's type)
    pub kind: Option<S>,
    /// `key_template` (redis)
    pub key_template: Option<S>,
    /// `path` (http)
    pub http_path: Option<S>,
    /// `url` (http, overrides the store url)
    pub url: Option<S>,
    /// `params` (http query parameters, templates)
    pub params: Vec<(S, S)>,
    /// `output` (expression of `v`)
    pub output: Option<S>,
    /// `on_error`
    pub on_error: Option<S>,
}

/// Decode the whole tree. Errors are collected in `ctx`.
pub fn decode(root: &Node, ctx: &mut Ctx) -> RawConfig {
    let mut cfg = RawConfig::default();
    if root.value == NodeValue::Null {
        ctx.err(
            Diagnostic::error("the config is empty")
                .with_help("a config has `datastores:` and `pipelines:`"),
        );
        return cfg;
    }
    let Some(mut m) = MapReader::new(root, "", "the config", ctx) else {
        return cfg;
    };
    for (p, n) in m.seq("datastores", false, ctx) {
        if let Some(d) = datastore(n, &p, ctx) {
            cfg.datastores.push(d);
        }
    }
    for (p, n) in m.seq("externalstores", false, ctx) {
        if let Some(d) = external(n, &p, ctx) {
            cfg.externalstores.push(d);
        }
    }
    for (p, n) in m.seq("pipelines", false, ctx) {
        if let Some(d) = pipeline(n, &p, ctx) {
            cfg.pipelines.push(d);
        }
    }
    // `x-…` keys hold YAML anchors for reuse (as in Compose files); they are not read.
    m.skip_prefixed("x-", ctx);
    m.finish(
        &["datastores", "externalstores", "pipelines"],
        "the config",
        ctx,
    );
    cfg
}

fn datastore(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawDatastore> {
    let mut m = MapReader::new(n, path, "a datastore", ctx)?.unknown_values_secret();
    let name = m.req_str("name", "a datastore", ctx);
    let kind = m.req_str("type", "a datastore", ctx);
    let type_keys: &[&str] = match kind.as_ref().map(|k| k.value.as_str()) {
        Some("postgres" | "mysql" | "clickhouse") => DB_KEYS,
        Some("webhook") => WEBHOOK_KEYS,
        Some("nats") => NATS_KEYS,
        Some(other) => {
            let k = kind.as_ref().expect("some");
            let mut d = k.error(format!("unknown datastore type `{other}`"));
            d = match crate::diag::did_you_mean(other, DATASTORE_TYPES.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("expected one of: {}", DATASTORE_TYPES.join(", "))),
            };
            ctx.err(d);
            &[]
        }
        None => &[],
    };
    // Keys valid for another datastore type get a message that says so.
    if let Some(k) = &kind {
        for key in DB_KEYS.iter().chain(WEBHOOK_KEYS).chain(NATS_KEYS) {
            if !type_keys.contains(key) && m.has(key) && !type_keys.is_empty() {
                let span = m.key_span(key).expect("present");
                ctx.err(
                    Diagnostic::error(format!("`{key}` does not apply to a {} datastore", k.value))
                        .at_path(child(path, key))
                        .with_span(span),
                );
                if let Some((_, v)) = m.take(key) {
                    if is_secret_key(key) || *key == "headers" {
                        mask_all(v, ctx);
                    }
                }
            }
        }
    }
    let username = m.str("username", ctx).or_else(|| m.str("user", ctx));
    let d = RawDatastore {
        path: path.to_string(),
        host: m.str("host", ctx),
        port: m.int("port", ctx),
        username,
        password: m.secret("password", ctx),
        database: m.str("database", ctx),
        tls: RawTls::read(&mut m, ctx),
        pool_size: m.count("pool_size", 1, ctx),
        base_url: url(&mut m, "base_url", ctx),
        headers: m.string_map("headers", true, ctx),
        timeout: m.seconds("timeout", MAX_TIMEOUT, ctx),
        retries: m.count("retries", 0, ctx),
        servers: server_urls(&mut m, ctx)
            .into_iter()
            .inspect(|s| mask_url_credentials(s, ctx))
            .collect(),
        token: m.secret("token", ctx),
        subject: m.str("subject", ctx),
        queue: m.str("queue", ctx),
        max_msgs: m.int("max_msgs", ctx),
        per_msg_timeout: m.seconds("per_msg_timeout", MAX_TIMEOUT, ctx),
        total_timeout: m.seconds("total_timeout", MAX_TIMEOUT, ctx),
        stream: m.str("stream", ctx),
        durable: m.str("durable", ctx),
        name: name.clone().unwrap_or_else(|| placeholder(path)),
        kind: kind.clone().unwrap_or_else(|| placeholder(path)),
    };
    let mut allowed = vec!["name", "type"];
    allowed.extend_from_slice(if type_keys.is_empty() {
        DB_KEYS
    } else {
        type_keys
    });
    m.finish(&allowed, "a datastore", ctx);
    (name.is_some() && kind.is_some()).then_some(d)
}

/// A URL value, its credentials (if any) masked in shown source lines.
fn url(m: &mut MapReader<'_>, key: &str, ctx: &mut Ctx) -> Option<S> {
    let u = m.str(key, ctx)?;
    mask_url_credentials(&u, ctx);
    Some(u)
}

fn placeholder(path: &str) -> S {
    Spanned {
        value: String::new(),
        span: Default::default(),
        path: path.to_string(),
    }
}

/// NATS `servers`: a URL or a list of them, each a string (`5` is not a server).
fn server_urls(m: &mut MapReader<'_>, ctx: &mut Ctx) -> Vec<S> {
    m.seq("servers", true, ctx)
        .into_iter()
        .filter_map(|(p, n)| {
            if n.as_str().is_none() {
                ctx.err(
                    Diagnostic::error(format!(
                        "a NATS server must be a URL such as `nats://host:4222`, found {}",
                        n.type_name()
                    ))
                    .at_path(p)
                    .with_span(n.span),
                );
                return None;
            }
            super::decode::scalar_str(n, &p, ctx)
        })
        .collect()
}

fn strings(m: &mut MapReader<'_>, key: &str, ctx: &mut Ctx) -> Vec<S> {
    m.seq(key, true, ctx)
        .into_iter()
        .filter_map(|(p, n)| super::decode::scalar_str(n, &p, ctx))
        .collect()
}

fn external(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawExternalStore> {
    let mut m = MapReader::new(n, path, "an external store", ctx)?.unknown_values_secret();
    let name = m.req_str("name", "an external store", ctx);
    let kind = m.req_str("type", "an external store", ctx);
    let d = RawExternalStore {
        path: path.to_string(),
        name: name.clone().unwrap_or_else(|| placeholder(path)),
        kind: kind.clone().unwrap_or_else(|| placeholder(path)),
        host: m.str("host", ctx),
        port: m.int("port", ctx),
        db: m.int("db", ctx),
        username: m.str("username", ctx),
        password: m.secret("password", ctx),
        tls: RawTls::read(&mut m, ctx),
        url: url(&mut m, "url", ctx),
        headers: m.string_map("headers", true, ctx),
        timeout: m.seconds("timeout", MAX_TIMEOUT, ctx),
        max_concurrency: m.count("max_concurrency", 1, ctx),
        retries: m.count("retries", 0, ctx),
        max_response_bytes: m.count("max_response_bytes", 1, ctx),
    };
    m.finish(
        &[
            "name",
            "type",
            "host",
            "port",
            "db",
            "username",
            "password",
            "sslmode",
            "tls",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "url",
            "headers",
            "timeout",
            "max_concurrency",
            "retries",
            "max_response_bytes",
        ],
        "an external store",
        ctx,
    );
    (name.is_some() && kind.is_some()).then_some(d)
}

/// `table:` as a string (with an optional sibling `dbschema`/`alias`) or as an object.
fn table(m: &mut MapReader<'_>, ctx: &mut Ctx) -> Option<RawTable> {
    let sibling_schema = m.str("dbschema", ctx);
    let sibling_alias = m.str("alias", ctx);
    let (path, n) = m.take("table")?;
    match &n.value {
        NodeValue::Map(_) => {
            let mut t = MapReader::new(n, &path, "a table", ctx)?;
            let table = t.req_str("table", "a table", ctx);
            let alias = t.str("alias", ctx).or(sibling_alias);
            let dbschema = t
                .str("dbschema", ctx)
                .or_else(|| t.str("schema", ctx))
                .or(sibling_schema);
            t.finish(&["table", "alias", "dbschema", "schema"], "a table", ctx);
            Some(RawTable {
                table: table?,
                alias,
                dbschema,
            })
        }
        _ => {
            let table = super::decode::scalar_str(n, &path, ctx)?;
            Some(RawTable {
                table,
                alias: sibling_alias,
                dbschema: sibling_schema,
            })
        }
    }
}

fn meta(m: &mut MapReader<'_>, key: &str, ctx: &mut Ctx) -> RawMeta {
    let Some((path, n)) = m.take(key) else {
        return RawMeta::default();
    };
    if let NodeValue::Str(_) = n.value {
        // `source_pfield: created_at` names only the partition column.
        return RawMeta {
            partition_column: super::decode::scalar_str(n, &path, ctx),
            ..RawMeta::default()
        };
    }
    let Some(mut r) = MapReader::new(n, &path, "meta columns", ctx) else {
        return RawMeta::default();
    };
    let out = RawMeta {
        partition_column: r.str("partition_column", ctx),
        hash_column: r.str("hash_column", ctx),
        order_column: r.str("order_column", ctx),
        unique_columns: strings(&mut r, "unique_columns", ctx),
    };
    r.finish(
        &[
            "partition_column",
            "hash_column",
            "order_column",
            "unique_columns",
        ],
        "meta columns",
        ctx,
    );
    out
}

fn merge_meta(a: RawMeta, b: RawMeta) -> RawMeta {
    RawMeta {
        partition_column: a.partition_column.or(b.partition_column),
        hash_column: a.hash_column.or(b.hash_column),
        order_column: a.order_column.or(b.order_column),
        unique_columns: if a.unique_columns.is_empty() {
            b.unique_columns
        } else {
            a.unique_columns
        },
    }
}

fn pipeline(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawPipeline> {
    let mut m = MapReader::new(n, path, "a pipeline", ctx)?;
    let name = m.req_str("name", "a pipeline", ctx);
    let source = match m.take("source") {
        Some((p, n)) => source(n, &p, ctx),
        None => {
            m.missing("source", "a pipeline", ctx);
            None
        }
    };
    let sink = match m.take("sink") {
        Some((p, n)) => sink(n, &p, ctx),
        None => {
            m.missing("sink", "a pipeline", ctx);
            None
        }
    };
    let sourcestate = m
        .take("sourcestate")
        .and_then(|(p, n)| state(n, &p, "use_source", ctx));
    let sinkstate = m
        .take("sinkstate")
        .and_then(|(p, n)| state(n, &p, "use_sink", ctx));
    let reconciliation = m
        .seq("reconciliation", false, ctx)
        .into_iter()
        .filter_map(|(p, n)| reconciliation(n, &p, ctx))
        .collect();
    let enrichment = m
        .seq("enrichment", false, ctx)
        .into_iter()
        .filter_map(|(p, n)| enrichment(n, &p, ctx))
        .collect();
    m.finish(
        &[
            "name",
            "source",
            "sink",
            "sourcestate",
            "sinkstate",
            "reconciliation",
            "enrichment",
        ],
        "a pipeline",
        ctx,
    );
    Some(RawPipeline {
        path: path.to_string(),
        name: name?,
        source,
        sink,
        sourcestate,
        sinkstate,
        reconciliation,
        enrichment,
    })
}

/// The largest `batch_size`: a batch is gathered in memory and written in one transaction,
/// so a larger one would only risk running out of memory (a million rows is already one
/// ClickHouse insert block of the full sync's stream).
pub const MAX_BATCH_SIZE: u32 = 1_000_000;

fn source(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawSource> {
    let mut m = MapReader::new(n, path, "the source", ctx)?;
    let datastore = m.req_str("datastore", "the source", ctx);
    let batch_size = m.count_in("batch_size", 1, MAX_BATCH_SIZE, ctx);
    let table = table(&mut m, ctx);
    let joins = m
        .seq("joins", false, ctx)
        .into_iter()
        .filter_map(|(p, n)| join(n, &p, ctx))
        .collect();
    let filters = filters(&mut m, ctx);
    let fields = m
        .seq("fields", false, ctx)
        .into_iter()
        .filter_map(|(p, n)| source_field(n, &p, ctx))
        .collect();
    let meta = meta(&mut m, "meta_columns", ctx);
    let final_ = m.bool("final", ctx);
    m.finish(
        &[
            "datastore",
            "batch_size",
            "table",
            "alias",
            "dbschema",
            "joins",
            "filters",
            "fields",
            "meta_columns",
            "final",
        ],
        "the source",
        ctx,
    );
    Some(RawSource {
        path: path.to_string(),
        datastore: datastore?,
        batch_size,
        table,
        joins,
        filters,
        fields,
        meta,
        final_,
    })
}

fn join(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawJoin> {
    let mut m = MapReader::new(n, path, "a join", ctx)?;
    let t = table(&mut m, ctx);
    if t.is_none() && !m.has("table") {
        m.missing("table", "a join", ctx);
    }
    let kind = m.str("type", ctx);
    let on = m.req_str("on", "a join", ctx);
    m.finish(&["table", "alias", "dbschema", "type", "on"], "a join", ctx);
    Some(RawJoin {
        path: path.to_string(),
        table: t?,
        kind,
        on: on?,
    })
}

fn filters(m: &mut MapReader<'_>, ctx: &mut Ctx) -> Vec<RawFilter> {
    m.seq("filters", false, ctx)
        .into_iter()
        .filter_map(|(p, n)| {
            let mut f = MapReader::new(n, &p, "a filter", ctx)?;
            let column = f.req_str("column", "a filter", ctx);
            let operator = f.str("operator", ctx);
            let value = f.take("value").map(|(vp, v)| (vp, v.clone()));
            f.finish(&["column", "operator", "value"], "a filter", ctx);
            Some(RawFilter {
                path: p,
                column: column?,
                operator,
                value,
            })
        })
        .collect()
}

fn source_field(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawSourceField> {
    let mut m = MapReader::new(n, path, "a source field", ctx)?;
    let column = m.req_str("column", "a source field", ctx);
    let dtype = m.str("dtype", ctx);
    let alias = m.str("alias", ctx);
    m.finish(&["column", "dtype", "alias"], "a source field", ctx);
    Some(RawSourceField {
        path: path.to_string(),
        column: column?,
        dtype,
        alias,
    })
}

fn sink(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawSink> {
    let mut m = MapReader::new(n, path, "the sink", ctx)?;
    let datastore = m.req_str("datastore", "the sink", ctx);
    let table = table(&mut m, ctx);
    let batch_size = m.count_in("batch_size", 1, MAX_BATCH_SIZE, ctx);
    let merge = m.take("merge_strategy").and_then(|(p, n)| {
        if let NodeValue::Str(_) = n.value {
            // `merge_strategy: upsert` as a shorthand.
            return Some(RawMerge {
                strategy: super::decode::scalar_str(n, &p, ctx),
                path: p,
                allow_delete: None,
                sign_column: None,
                version_column: None,
            });
        }
        let mut r = MapReader::new(n, &p, "merge_strategy", ctx)?;
        let out = RawMerge {
            path: p.clone(),
            strategy: r.str("strategy", ctx),
            allow_delete: r.bool("allow_delete", ctx),
            sign_column: r.str("sign_column", ctx),
            version_column: r.str("version_column", ctx),
        };
        r.finish(
            &["strategy", "allow_delete", "sign_column", "version_column"],
            "merge_strategy",
            ctx,
        );
        Some(out)
    });
    let unique_key = strings(&mut m, "unique_key", ctx);
    let filters = filters(&mut m, ctx);
    let fields = m
        .seq("fields", false, ctx)
        .into_iter()
        .filter_map(|(p, n)| sink_field(n, &p, ctx))
        .collect();
    let meta = meta(&mut m, "meta_columns", ctx);
    let url_path = m.str("url_path", ctx);
    let subject = m.str("subject", ctx);
    m.finish(
        &[
            "datastore",
            "table",
            "dbschema",
            "alias",
            "batch_size",
            "merge_strategy",
            "unique_key",
            "filters",
            "fields",
            "meta_columns",
            "url_path",
            "subject",
        ],
        "the sink",
        ctx,
    );
    Some(RawSink {
        path: path.to_string(),
        datastore: datastore?,
        table,
        batch_size,
        merge,
        unique_key,
        filters,
        fields,
        meta,
        url_path,
        subject,
    })
}

fn sink_field(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawSinkField> {
    let mut m = MapReader::new(n, path, "a sink field", ctx)?;
    let column = m.req_str("column", "a sink field", ctx);
    let f = RawSinkField {
        path: path.to_string(),
        column: column.clone().unwrap_or_else(|| placeholder(path)),
        dtype: m.str("dtype", ctx),
        source_column: m.str("source_column", ctx),
        source: m.str("source", ctx),
        track: m.bool("track", ctx),
    };
    m.finish(
        &["column", "dtype", "source_column", "source", "track"],
        "a sink field",
        ctx,
    );
    column.map(|_| f)
}

fn state(n: &Node, path: &str, use_key: &str, ctx: &mut Ctx) -> Option<RawState> {
    let mut m = MapReader::new(n, path, "a state", ctx)?;
    let use_same = m.bool(use_key, ctx);
    let datastore = m.str("datastore", ctx);
    let table = table(&mut m, ctx);
    let flat = RawMeta {
        partition_column: m.str("partition_column", ctx),
        hash_column: m.str("hash_column", ctx),
        order_column: m.str("order_column", ctx),
        unique_columns: Vec::new(),
    };
    let meta = merge_meta(meta(&mut m, "meta_columns", ctx), flat);
    m.finish(
        &[
            use_key,
            "datastore",
            "table",
            "dbschema",
            "alias",
            "meta_columns",
            "partition_column",
            "hash_column",
            "order_column",
        ],
        "a state",
        ctx,
    );
    Some(RawState {
        path: path.to_string(),
        use_same,
        datastore,
        table,
        meta,
    })
}

fn reconciliation(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawReconciliation> {
    let mut m = MapReader::new(n, path, "a reconciliation", ctx)?;
    let name = m.req_str("name", "a reconciliation", ctx);
    let source_meta = meta(&mut m, "source_meta_columns", ctx);
    let source_pfield = meta(&mut m, "source_pfield", ctx);
    let sink_meta = meta(&mut m, "sink_meta_columns", ctx);
    let sink_pfield = meta(&mut m, "sink_pfield", ctx);
    let r = RawReconciliation {
        path: path.to_string(),
        name: name.clone().unwrap_or_else(|| placeholder(path)),
        strategy: m.str("strategy", ctx),
        partition_column: m.str("partition_column", ctx),
        partition_column_type: m.str("partition_column_type", ctx),
        start: m.str("start", ctx),
        end: m.str("end", ctx),
        initial_partition_interval: m.str("initial_partition_interval", ctx),
        max_block_size: m.int("max_block_size", ctx),
        interval_reduction_factor: m.int("interval_reduction_factor", ctx),
        partition_multiplier: m.int("partition_multiplier", ctx),
        source_order_column: m.str("source_order_column", ctx),
        source_meta: merge_meta(source_meta, source_pfield),
        sink_meta: merge_meta(sink_meta, sink_pfield),
        lookback: m.str("lookback", ctx),
    };
    m.finish(
        &[
            "name",
            "strategy",
            "partition_column",
            "partition_column_type",
            "start",
            "end",
            "initial_partition_interval",
            "max_block_size",
            "interval_reduction_factor",
            "partition_multiplier",
            "source_order_column",
            "source_meta_columns",
            "sink_meta_columns",
            "source_pfield",
            "sink_pfield",
            "lookback",
        ],
        "a reconciliation",
        ctx,
    );
    name.map(|_| r)
}

fn enrichment(n: &Node, path: &str, ctx: &mut Ctx) -> Option<RawEnrichment> {
    let mut m = MapReader::new(n, path, "an enrichment", ctx)?;
    let externalstore = m.req_str("externalstore", "an enrichment", ctx);
    let name = m.req_str("name", "an enrichment", ctx);
    let e = RawEnrichment {
        path: path.to_string(),
        externalstore: externalstore.clone().unwrap_or_else(|| placeholder(path)),
        name: name.clone().unwrap_or_else(|| placeholder(path)),
        kind: m.str("type", ctx),
        key_template: m.str("key_template", ctx),
        http_path: url(&mut m, "path", ctx),
        url: url(&mut m, "url", ctx),
        params: m.string_map("params", false, ctx),
        output: m.str("output", ctx),
        on_error: m.str_or_null("on_error", ctx),
    };
    m.finish(
        &[
            "externalstore",
            "name",
            "type",
            "key_template",
            "path",
            "url",
            "params",
            "output",
            "on_error",
        ],
        "an enrichment",
        ctx,
    );
    (externalstore.is_some() && name.is_some()).then_some(e)
}

/// The YAML path of list item `i` under `path` (re-exported for the checker).
pub fn item_path(path: &str, i: usize) -> String {
    index(path, i)
}
