//! The intermediate representation: a resolved, type-checked, dialect-neutral description of
//! each pipeline. Built by [`crate::check`] from the raw config; read by [`crate::sql`] and
//! [`crate::plan`]. It holds no connection settings and no secrets: the runtime looks those
//! up in the config by datastore name.
//!
//! Names in the IR are plain, unquoted identifiers exactly as configured; the SQL generator
//! quotes them per dialect.

use crate::expr::TypedExpr;
use crate::template::Template;
use crate::types::Dtype;
use indexmap::IndexMap;

pub use crate::sql::DialectKind;

/// A whole checked configuration.
#[derive(Debug, Clone)]
pub struct Program {
    /// The pipelines, in config order.
    pub pipelines: Vec<Pipeline>,
}

/// The kind of a datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A SQL database.
    Sql(DialectKind),
    /// An HTTP endpoint receiving JSON batches.
    Webhook,
    /// A NATS subject (optionally JetStream).
    Nats,
}

impl StoreKind {
    /// The SQL dialect, for SQL stores.
    pub fn dialect(&self) -> Option<DialectKind> {
        match self {
            StoreKind::Sql(d) => Some(*d),
            _ => None,
        }
    }

    /// The datastore type name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            StoreKind::Sql(d) => d.name(),
            StoreKind::Webhook => "webhook",
            StoreKind::Nats => "nats",
        }
    }
}

/// A reference to a configured datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The datastore's `name`.
    pub name: String,
    /// Its type.
    pub kind: StoreKind,
    /// Where a webhook or NATS datastore sends, for review (no secret): the webhook's
    /// `base_url` without credentials or query string; the NATS `subject` and `stream`.
    pub target: Target,
}

/// The destination settings of a webhook or NATS datastore that `compile` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Webhook: scheme, host, port and path of `base_url`.
    pub url: Option<String>,
    /// NATS: the datastore's `subject`.
    pub subject: Option<String>,
    /// NATS: the JetStream `stream`.
    pub stream: Option<String>,
}

/// A possibly schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// Schema (PostgreSQL) or database (MySQL, ClickHouse); `None` means the connection's default.
    pub schema: Option<String>,
    /// Table name.
    pub name: String,
}

/// A table in a FROM or JOIN clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The table.
    pub table: TableName,
    /// Its alias, if any; columns are qualified by the alias when present, else by the name.
    pub alias: Option<String>,
}

impl TableRef {
    /// The qualifier that columns of this table use in generated SQL.
    pub fn qualifier(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.table.name)
    }
}

/// A column of a source table, by its table qualifier (alias or table name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnRef {
    /// Table alias or name; `None` for an unqualified column of a single-table source.
    pub qualifier: Option<String>,
    /// Column name.
    pub name: String,
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.qualifier {
            Some(q) => write!(f, "{q}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// One pipeline: source → (transform, enrich) → sink, with its reconciliations.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Unique pipeline name.
    pub name: String,
    /// Where rows come from.
    pub source: Source,
    /// Where rows go.
    pub sink: Sink,
    /// Lookups run per batch after extract, in config order.
    pub enrichments: Vec<Enrichment>,
    /// Reconciliation strategies, in config order (`apply -r NAME` picks one).
    pub reconciliations: Vec<Reconciliation>,
    /// What is hashed on each side for hash reconciliation.
    pub row_hash: RowHash,
    /// Where reconciliation reads source partition/hash values if not the source itself.
    pub source_state: Option<StateTable>,
    /// Where reconciliation reads sink partition/hash values if not the sink itself.
    pub sink_state: Option<StateTable>,
    /// The row key on both sides (from `sink.unique_key`), used by leaf diffs and deletes.
    pub key: Vec<KeyPair>,
}

/// One key column as seen on both sides.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The source field alias (or pushed alias) feeding the key.
    pub source_alias: String,
    /// The sink column.
    pub sink_column: String,
    /// Its type.
    pub dtype: Dtype,
}

/// A state table (`sourcestate` / `sinkstate`) that holds partition and hash values.
#[derive(Debug, Clone)]
pub struct StateTable {
    /// The datastore holding it.
    pub store: Store,
    /// The table.
    pub table: TableName,
    /// Its partition column.
    pub partition_column: Option<String>,
    /// Its stored row-hash column.
    pub hash_column: Option<String>,
}

/// The source side of a pipeline.
#[derive(Debug, Clone)]
pub struct Source {
    /// The datastore (a SQL database or NATS).
    pub store: Store,
    /// Main table (for NATS sources: unused, `name` is the subject).
    pub table: TableRef,
    /// Joined tables.
    pub joins: Vec<Join>,
    /// WHERE conditions; each value is a bound parameter.
    pub filters: Vec<Filter>,
    /// Selected columns, in config order.
    pub fields: Vec<SourceField>,
    /// Sink-field expressions evaluated inside the extract query (`CASE WHEN …`), in sink order.
    pub pushed: Vec<PushedExpr>,
    /// Rows per batch.
    pub batch_size: u32,
    /// Resolved meta columns.
    pub meta: SourceMeta,
    /// ClickHouse: `Some(true)` reads the main table with `FINAL` (merged rows of a
    /// ReplacingMergeTree or CollapsingMergeTree), `Some(false)` reads its parts as they
    /// are; `None` (unset) lets the runtime refuse a table whose engine merges rows.
    pub final_: Option<bool>,
}

/// Meta columns of the source.
#[derive(Debug, Clone, Default)]
pub struct SourceMeta {
    /// Column that partitions rows into blocks for reconciliation.
    pub partition_column: Option<ColumnRef>,
    /// A column holding a precomputed row hash.
    pub hash_column: Option<ColumnRef>,
    /// The streaming order.
    pub order_column: Option<ColumnRef>,
    /// Columns identifying a row (the key used for leaf diffs).
    pub unique_columns: Vec<ColumnRef>,
}

/// A selected source column.
#[derive(Debug, Clone)]
pub struct SourceField {
    /// The column.
    pub column: ColumnRef,
    /// The name the row uses for it (`alias`, or `u__name` for `u.name`).
    pub alias: String,
    /// Its type.
    pub dtype: Dtype,
}

/// A join.
#[derive(Debug, Clone)]
pub struct Join {
    /// inner / left / right / full.
    pub kind: JoinKind,
    /// The joined table.
    pub table: TableRef,
    /// The join condition, parsed and validated; identifiers are unquoted and qualifiers
    /// resolved to table aliases. The generator re-quotes them per dialect.
    pub on: sqlparser::ast::Expr,
}

/// Join types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// INNER JOIN
    Inner,
    /// LEFT JOIN
    Left,
    /// RIGHT JOIN
    Right,
    /// FULL JOIN
    Full,
}

/// A filter on a source or sink column; its value is always a bound parameter.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The filtered column.
    pub column: ColumnRef,
    /// The comparison.
    pub op: FilterOp,
    /// The value(s) compared with; empty for `is null` / `is not null`.
    pub values: Vec<Literal>,
    /// The type the values are bound as (the column's field dtype when known).
    pub dtype: Dtype,
    /// Parameter names, one per value (`filter_0`, `filter_1_0`, …).
    pub params: Vec<String>,
}

/// Filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `=`
    Eq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `is null`
    IsNull,
    /// `is not null`
    IsNotNull,
    /// `like`
    Like,
}

/// A literal value from the config (filter values, parameters).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Literal {
    /// NULL
    Null,
    /// true / false
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text (also dates, datetimes, uuids and decimals as written).
    Str(String),
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Null => write!(f, "NULL"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x}"),
            Literal::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A sink-field expression computed by the source database in the extract query.
#[derive(Debug, Clone)]
pub struct PushedExpr {
    /// The result column's alias in the extract query.
    pub alias: String,
    /// The expression (over source aliases), known to be expressible in the source dialect.
    pub expr: TypedExpr,
    /// For a decimal expression stored in a decimal field: the field's scale, which the
    /// database rounds the value to (half away from zero, as it rounds a computed decimal
    /// assigned to a column), so that the extract, the row hash and the sink agree.
    pub round_to: Option<u8>,
}

/// The sink side of a pipeline.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The datastore (a SQL database, a webhook or NATS).
    pub store: Store,
    /// Target table (for webhook/NATS: the logical name).
    pub table: TableName,
    /// Rows per write.
    pub batch_size: u32,
    /// How rows are merged.
    pub merge: MergeStrategy,
    /// Columns identifying a row in the sink.
    pub unique_key: Vec<String>,
    /// Conditions restricting which sink rows this pipeline owns (reconciliation, deletes).
    pub filters: Vec<Filter>,
    /// Written columns, in config order.
    pub fields: Vec<SinkField>,
    /// Sink meta columns.
    pub meta: SinkMeta,
    /// Webhook: path appended to the datastore's `base_url`.
    pub url_path: Option<String>,
    /// NATS: subject overriding the datastore's.
    pub subject: Option<String>,
}

impl Sink {
    /// The md5 (32 hex digits) of the sink's scope: the table's schema and name and the
    /// sink `filters`. Pipelines writing one table under different filters own different
    /// rows; ClickHouse staging tables and the run lock are per scope.
    pub fn scope_digest(&self) -> String {
        use md5::{Digest, Md5};
        let t = &self.table;
        let mut text = format!("{:?}\0{}", t.schema, t.name);
        for f in &self.filters {
            text.push_str(&format!(
                "\0{:?}\0{:?}\0{:?}\0{:?}",
                f.column, f.op, f.values, f.dtype
            ));
        }
        hex::encode(Md5::digest(text.as_bytes()))
    }
}

/// Sink meta columns.
#[derive(Debug, Clone, Default)]
pub struct SinkMeta {
    /// Partition column in the sink (defaults to the sink field fed by the source partition column).
    pub partition_column: Option<String>,
    /// Column storing the source row hash, written at load time.
    pub hash_column: Option<String>,
    /// Order column.
    pub order_column: Option<String>,
}

/// Merge strategy settings.
#[derive(Debug, Clone)]
pub struct MergeStrategy {
    /// delete_insert / upsert / collapse.
    pub kind: MergeKind,
    /// Whether sink rows missing from the source are deleted.
    pub allow_delete: bool,
    /// Collapse: the sign column (default `sign`).
    pub sign_column: String,
    /// ClickHouse upsert: the ReplacingMergeTree version column.
    pub version_column: Option<String>,
}

/// Merge strategies (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeKind {
    /// Delete the scope's rows, insert the new ones.
    DeleteInsert,
    /// Insert or update by unique key.
    Upsert,
    /// Cancel old rows (sign −1), insert new ones (sign +1).
    Collapse,
}

/// A written sink column.
#[derive(Debug, Clone)]
pub struct SinkField {
    /// Column name in the sink.
    pub column: String,
    /// Its type.
    pub dtype: Dtype,
    /// Where its value comes from.
    pub value: FieldValue,
    /// Whether it counts in the row hash.
    pub track: bool,
}

/// Where a sink field's value comes from.
#[derive(Debug, Clone)]
pub enum FieldValue {
    /// A source field copied as is, by its alias.
    Column {
        /// The source field alias.
        alias: String,
    },
    /// An expression computed in the extract query; the value arrives as column `alias`.
    Pushed {
        /// The extract column alias (see [`Source::pushed`]).
        alias: String,
    },
    /// An expression the runtime evaluates per row, after enrichment.
    Expr(TypedExpr),
    /// A template the runtime renders per row, after enrichment.
    Template(Template),
    /// An output of an enrichment.
    Enrichment {
        /// The enrichment name.
        name: String,
        /// The output field name (for a single unnamed output: the enrichment name).
        output: String,
    },
}

/// An enrichment step.
#[derive(Debug, Clone)]
pub struct Enrichment {
    /// Unique name; sink fields refer to it with `source:`.
    pub name: String,
    /// The external store.
    pub store: ExternalStore,
    /// The lookup.
    pub lookup: Lookup,
    /// Maps the looked-up value `v` to output fields; `None` = a single output named like the enrichment.
    pub output: Option<TypedExpr>,
    /// The output fields and their types.
    pub outputs: IndexMap<String, Dtype>,
    /// What to do when a lookup fails.
    pub on_error: OnError,
}

/// A reference to an external store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalStore {
    /// Its name.
    pub name: String,
    /// redis or http.
    pub kind: ExternalKind,
}

/// External store kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalKind {
    /// Redis GET, pipelined per batch.
    Redis,
    /// HTTP GET with bounded concurrency.
    Http,
}

/// How an enrichment looks a value up.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Redis `GET <key>`.
    Redis {
        /// The key template.
        key: Template,
    },
    /// HTTP GET `<store url><path>` with query parameters.
    Http {
        /// The path template (appended to the store URL's path), or a whole URL on the
        /// store's own scheme, host and port; its values are printed as encoded path segments
        /// ([`crate::template::Escape::UrlPath`]).
        path: Template,
        /// Query parameters, each a template.
        params: IndexMap<String, Template>,
    },
}

/// Enrichment failure policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop the pipeline.
    Fail,
    /// Use NULL outputs.
    Null,
    /// Drop the row.
    Skip,
}

/// The partition column's type for reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionKind {
    /// Integer ranges.
    Int,
    /// Float ranges.
    Float,
    /// Time ranges, in epoch seconds.
    Datetime,
    /// Date ranges, in days since 1970-01-01.
    Date,
    /// Buckets by hex prefix of md5 of the key.
    Uuid,
    /// Buckets by hex prefix of md5 of the key.
    Str,
}

/// Reconciliation strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconStrategy {
    /// Row hash = 64-bit int from md5; block hash = exact sum + count.
    Md5sumHash,
    /// Block hash = md5 of the ordered concatenation of row md5s.
    HashMd5Hash,
    /// Incremental by watermark.
    Timestamp,
}

/// A range bound: folded at compile time, or evaluated once at run start (uses `now()`).
#[derive(Debug, Clone)]
pub enum Bound {
    /// Known at compile time.
    Const(crate::expr::Value),
    /// Evaluated by the runtime once per run.
    Runtime(TypedExpr),
}

/// One reconciliation entry.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    /// Its name (`apply -r NAME`).
    pub name: String,
    /// Strategy.
    pub strategy: ReconStrategy,
    /// Partition column on the source side.
    pub source_partition: ColumnRef,
    /// Partition column on the sink side.
    pub sink_partition: String,
    /// Partition type.
    pub kind: PartitionKind,
    /// Lower bound (inclusive); `None` = the minimum found on either side.
    pub start: Option<Bound>,
    /// Upper bound (exclusive); `None` = just past the maximum found on either side.
    pub end: Option<Bound>,
    /// Level-1 block width: units of the partition (int/float), seconds (datetime), days
    /// (date; configured in seconds and converted), or the hex-prefix length (uuid/str).
    pub initial_interval: i64,
    /// Blocks with more rows than this are split again.
    pub max_block_size: u64,
    /// Each level divides the interval by this.
    pub reduction_factor: u32,
    /// Optional multiplier applied to the interval of the first level.
    pub partition_multiplier: Option<i64>,
    /// Ordering for `hash_md5_hash` and leaf diffs, on the source side.
    pub source_order: Vec<ColumnRef>,
    /// Timestamp strategy: how far behind the sink watermark to re-read, in seconds.
    pub lookback_seconds: i64,
}

/// What goes into the row hash on each side.
#[derive(Debug, Clone)]
pub struct RowHash {
    /// Hashed values on the source side (by source field alias or pushed alias), in order.
    pub source: Vec<HashInput>,
    /// How the sink side obtains the same hash.
    pub sink: SinkHash,
    /// Whether datetimes hash at whole seconds (when either side keeps only seconds).
    pub seconds_precision: bool,
    /// With a stored sink hash: a fingerprint of what the runtime computes for the sink
    /// (expressions, templates, enrichments), hashed with the source values, so that a
    /// changed definition changes every row's hash and the rows are written again.
    pub definitions: Option<String>,
}

/// One hashed value.
#[derive(Debug, Clone)]
pub struct HashInput {
    /// Source: a source field alias (resolved to its column) or a pushed alias. Sink: a column.
    pub name: String,
    /// The type it is hashed as (the sink field's dtype).
    pub dtype: Dtype,
}

/// How the sink side computes row hashes.
#[derive(Debug, Clone)]
pub enum SinkHash {
    /// From the sink columns, mirroring [`RowHash::source`] one to one.
    Columns(Vec<HashInput>),
    /// Read from a stored hash column written at load time; the empty name for a
    /// transformed sink without `meta_columns.hash_column`, which keeps no row hash (a
    /// reconciliation then needs one, and `check` says so).
    Stored(String),
}

impl SinkHash {
    /// Whether the load writes the source row hash into a sink column, so that the
    /// extract computes it (`_synctool_hash`).
    pub fn is_stored(&self) -> bool {
        matches!(self, SinkHash::Stored(h) if !h.is_empty())
    }
}
