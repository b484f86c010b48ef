//! The sink side: the table and its reads, DDL, staging, loading, merging and deletes.
//!
//! Merge design (per batch or block; on PostgreSQL and MySQL every writing step runs in one
//! transaction with the load that fed it):
//! - rows are first loaded into a staging table (`_synctool_stage`, a session-local
//!   temporary table on PostgreSQL/MySQL; `<table>__synctool_stage_<scope>`, a `Memory` table, on
//!   ClickHouse, which has no temporary tables over HTTP), then merged with one
//!   `INSERT … SELECT` (plus a delete for `delete_insert`); ClickHouse upserts skip the stage
//!   and insert straight into the `ReplacingMergeTree`;
//! - keys to delete are staged the same way in `_synctool_stage_keys`.
//!
//! ClickHouse staging tables are named per sink scope (table and `filters`,
//! `ir::Sink::scope_digest`), so that pipelines writing one table under different filters never
//! share one, and are dropped at the end of every run (`sink.stage_drop`).

use crate::ir::{MergeKind, Pipeline, Reconciliation};
use crate::sql::build::{self, SelectParts};
use crate::sql::params::Binder;
use crate::sql::source::filter_pred;
use crate::sql::{Dialect, DialectKind};
use crate::types::Dtype;
use sqlparser::ast::{
    helpers::stmt_create_table::CreateTableBuilder, Assignment, AssignmentTarget, BinaryOperator,
    ColumnDef, ColumnOption, ColumnOptionDef, ConflictTarget, CopyOption, CopySource, CopyTarget,
    CreateTableOptions, DataType, Delete, DoUpdate, Expr, FromTable, Ident, IndexColumn, Insert,
    NamedParenthesizedList, ObjectName, OnCommit, OnConflict, OnConflictAction, OnInsert,
    OneOrManyWithParens, OrderByExpr, OrderByOptions, Query, SetExpr, SqlOption, Statement,
    TableConstraint, TableObject, TableWithJoins, TruncateTableTarget, Values,
};

/// Prefix of the row staging table (PostgreSQL/MySQL temporary table).
pub const STAGE: &str = "_synctool_stage_";
/// Prefix of the staging table of keys to delete (PostgreSQL/MySQL temporary table).
pub const STAGE_KEYS: &str = "_synctool_keys_";
/// Suffix of the index on a PostgreSQL collapse table's key.
const KEY_INDEX: &str = "_synctool_key";
/// Alias of a collapse sink version's sign sum ([`SinkCtx::versions`]).
pub const SIGN_SUM: &str = "_synctool_sign";
/// Most rows a ClickHouse sink gathers in its staging tables before it merges them (a
/// `delete_insert` stream's batches or reconciliation's leaves, a collapse stream's
/// batches): each `delete_insert` merge is a mutation, which rewrites the table's parts
/// holding the staged keys.
pub const GATHER_ROWS: usize = 1_000_000;
/// Most bytes of values gathered so: the staging table is a `Memory` table on the server.
pub const GATHER_BYTES: usize = 256 << 20;

/// `prefix` + the sink table name, or + the first 16 hex digits of its md5 when that
/// would exceed the 63/64-character identifier limits of PostgreSQL and MySQL.
fn temp_name(prefix: &str, table: &str) -> String {
    if prefix.len() + table.len() <= 63 {
        return format!("{prefix}{table}");
    }
    use md5::{Digest, Md5};
    let digest = hex::encode(Md5::digest(table.as_bytes()));
    format!("{prefix}{}", &digest[..16])
}

/// Longest sink table name a ClickHouse staging table name carries whole: the table's
/// files are named by it, and file names stop at 255 bytes (escaping may lengthen them).
const CH_STAGE_TABLE_MAX: usize = 160;

/// A ClickHouse staging table's name: `<table>__synctool_<suffix>_<12 hex of the scope's
/// md5>`, the table name cut (at a character boundary) when it is long; the digest covers
/// the whole name, so a cut name still differs per scope.
fn ch_stage_name(table: &str, suffix: &str, digest: &str) -> String {
    let mut end = table.len().min(CH_STAGE_TABLE_MAX);
    while !table.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}__synctool_{suffix}_{}", &table[..end], &digest[..12])
}

/// A sink column and its role.
#[derive(Debug, Clone)]
pub struct SinkCol {
    /// Column name.
    pub name: String,
    /// Its type.
    pub dtype: Dtype,
    /// Part of `unique_key`.
    pub key: bool,
}

/// The sink of one pipeline, for one dialect.
pub struct SinkCtx<'a> {
    /// The pipeline.
    pub p: &'a Pipeline,
    /// The sink dialect.
    pub d: &'static dyn Dialect,
}

impl<'a> SinkCtx<'a> {
    /// The context of `p`'s sink, which must be a SQL store.
    pub fn new(p: &'a Pipeline, d: &'static dyn Dialect) -> Self {
        Self { p, d }
    }

    fn kind(&self) -> MergeKind {
        self.p.sink.merge.kind
    }

    fn is_ch(&self) -> bool {
        self.d.kind() == DialectKind::Clickhouse
    }

    /// The sink table's name.
    pub fn table(&self) -> ObjectName {
        let t = &self.p.sink.table;
        build::object_name(self.d, t.schema.as_deref(), &t.name)
    }

    fn aux_table(&self, base: &str, suffix: &str) -> ObjectName {
        if self.is_ch() {
            let t = &self.p.sink.table;
            build::object_name(
                self.d,
                t.schema.as_deref(),
                &ch_stage_name(&t.name, suffix, &self.p.sink.scope_digest()),
            )
        } else {
            // Temporary tables live in a session schema and are never qualified; the name
            // carries the sink table's so that pipelines sharing a session do not collide.
            build::object_name(self.d, None, &temp_name(base, &self.p.sink.table.name))
        }
    }

    /// The row staging table.
    pub fn stage(&self) -> ObjectName {
        self.aux_table(STAGE, "stage")
    }

    /// The key staging table.
    pub fn stage_keys(&self) -> ObjectName {
        self.aux_table(STAGE_KEYS, "stage_keys")
    }

    /// The stored hash column, if any.
    pub fn hash_column(&self) -> Option<&str> {
        self.p.sink.meta.hash_column.as_deref()
    }

    /// Whether rows are read with `FINAL` (ClickHouse `ReplacingMergeTree`).
    pub fn final_(&self) -> bool {
        self.is_ch() && self.kind() == MergeKind::Upsert
    }

    /// The columns a load writes, in order: the sink fields, then the hash column.
    pub fn load_columns(&self) -> Vec<SinkCol> {
        let key = &self.p.sink.unique_key;
        let mut cols: Vec<SinkCol> = self
            .p
            .sink
            .fields
            .iter()
            .map(|f| SinkCol {
                name: f.column.clone(),
                dtype: f.dtype,
                key: key.contains(&f.column),
            })
            .collect();
        if let Some(h) = self.hash_column() {
            if !cols.iter().any(|c| c.name == h) {
                cols.push(SinkCol {
                    name: h.to_string(),
                    dtype: Dtype::Int,
                    key: false,
                });
            }
        }
        cols
    }

    /// The key columns and their types.
    pub fn key_columns(&self) -> Vec<SinkCol> {
        let cols = self.load_columns();
        self.p
            .sink
            .unique_key
            .iter()
            .map(|k| {
                let dtype = cols
                    .iter()
                    .find(|c| &c.name == k)
                    .map(|c| c.dtype)
                    .or_else(|| {
                        self.p
                            .key
                            .iter()
                            .find(|kp| &kp.sink_column == k)
                            .map(|kp| kp.dtype)
                    })
                    .unwrap_or(Dtype::Str);
                SinkCol {
                    name: k.clone(),
                    dtype,
                    key: true,
                }
            })
            .collect()
    }

    fn idents(&self, cols: &[SinkCol]) -> Vec<Ident> {
        cols.iter().map(|c| self.d.ident(&c.name)).collect()
    }

    fn exprs(&self, cols: &[SinkCol]) -> Vec<Expr> {
        cols.iter()
            .map(|c| build::col(self.d, None, &c.name))
            .collect()
    }

    fn key_tuple(&self) -> Expr {
        build::tuple_or_single(self.exprs(&self.key_columns()))
    }

    /// The sink filters as predicates on unqualified columns.
    pub fn filters(&self, b: &mut Binder) -> Vec<Expr> {
        self.p
            .sink
            .filters
            .iter()
            .map(|f| filter_pred(self.d, b, f, build::col(self.d, None, &f.column.name)))
            .collect()
    }

    /// The live rows of a collapse sink matching `preds`: every column but the sign,
    /// grouped, keeping groups whose signs sum above zero (no `FINAL` needed). Used where
    /// only what is live counts (the merge's check of what is already live once the
    /// cancelling rows went in, a timestamp watermark).
    pub fn live_rows(&self, preds: Vec<Expr>, having: Vec<Expr>) -> Query {
        self.grouped(preds, having, BinaryOperator::Gt, false)
    }

    /// The versions of a collapse sink's rows matching `preds` (and `having`): every column
    /// but the sign, grouped, with the version's sign sum as `_synctool_sign`, keeping the
    /// versions whose signs do not sum to zero. A key is live exactly once when it has one
    /// version and its sum is 1; a sum of 2 (two runs that both inserted it) or below zero
    /// (a leftover cancelling row) is drift, which reconciliation reads from here
    /// (`crate::sql::recon` folds the sum into the row hash) and [`Self::cancel`] repairs.
    pub fn versions(&self, preds: Vec<Expr>, having: Vec<Expr>) -> Query {
        self.grouped(preds, having, BinaryOperator::NotEq, true)
    }

    fn grouped(&self, preds: Vec<Expr>, having: Vec<Expr>, op: BinaryOperator, sum: bool) -> Query {
        let cols = self.exprs(&self.load_columns());
        let sign = build::call(
            "sum",
            vec![build::col(self.d, None, &self.p.sink.merge.sign_column)],
        );
        let mut h = vec![build::binop(sign.clone(), op, build::int(0))];
        h.extend(having);
        let mut projection: Vec<_> = cols.iter().cloned().map(build::item).collect();
        if sum {
            projection.push(build::aliased(self.d, sign, SIGN_SUM));
        }
        build::select(SelectParts {
            projection,
            from: Some(build::from(build::table(self.table(), None, false))),
            selection: build::and_all(preds),
            group_by: cols,
            having: build::and_all(h),
            ..Default::default()
        })
    }

    /// FROM and WHERE for reading the sink's current rows with `preds` (filters first).
    /// Collapse sinks read their versions ([`Self::versions`], each with its sign sum);
    /// `ReplacingMergeTree` sinks read with `FINAL`.
    pub fn read(&self, b: &mut Binder, extra: Vec<Expr>) -> (TableWithJoins, Option<Expr>) {
        self.read_as(b, extra, false)
    }

    /// [`Self::read`], but a collapse sink's live rows only (sign sum above zero).
    pub fn read_live(&self, b: &mut Binder, extra: Vec<Expr>) -> (TableWithJoins, Option<Expr>) {
        self.read_as(b, extra, true)
    }

    fn read_as(
        &self,
        b: &mut Binder,
        extra: Vec<Expr>,
        live: bool,
    ) -> (TableWithJoins, Option<Expr>) {
        let mut preds = self.filters(b);
        preds.extend(extra);
        if self.collapses() {
            let q = if live {
                self.live_rows(preds, vec![])
            } else {
                self.versions(preds, vec![])
            };
            let alias = self.d.ident(&self.p.sink.table.name);
            return (build::from(build::derived(q, alias)), None);
        }
        (
            build::from(build::table(self.table(), None, self.final_())),
            build::and_all(preds),
        )
    }

    /// Whether the sink keeps versions with a sign column (`collapse`).
    pub fn collapses(&self) -> bool {
        self.kind() == MergeKind::Collapse
    }

    // ----- DDL -----

    fn column_def(&self, name: &str, ty: DataType, not_null: bool) -> ColumnDef {
        let options = if not_null && !self.is_ch() {
            vec![ColumnOptionDef {
                name: None,
                option: ColumnOption::NotNull,
            }]
        } else {
            vec![]
        };
        let data_type = if not_null { ty } else { self.d.nullable(ty) };
        ColumnDef {
            name: self.d.ident(name),
            data_type,
            options,
        }
    }

    fn data_defs(&self) -> Vec<ColumnDef> {
        let hash = self.hash_column();
        // ReplacingMergeTree rejects a Nullable version column.
        let version = self.p.sink.merge.version_column.as_deref();
        self.load_columns()
            .iter()
            .map(|c| {
                let name = Some(c.name.as_str());
                let not_null = c.key || name == hash || name == version;
                let ty = match (self.d.kind(), c.dtype) {
                    // PostgreSQL `json` keeps a document's text as the source stores it, so
                    // the row hashes of both sides agree (`jsonb` re-serialises it). A
                    // collapse table groups its versions by every column, which needs the
                    // equality only `jsonb` has.
                    (DialectKind::Postgres, Dtype::Json) if self.kind() != MergeKind::Collapse => {
                        DataType::JSON
                    }
                    _ => self.d.column_type(c.dtype, c.key),
                };
                self.column_def(&c.name, ty, not_null)
            })
            .collect()
    }

    fn mysql_options() -> CreateTableOptions {
        CreateTableOptions::Plain(vec![
            SqlOption::NamedParenthesizedList(NamedParenthesizedList {
                key: Ident::new("ENGINE"),
                name: Some(Ident::new("InnoDB")),
                values: vec![],
            }),
            SqlOption::KeyValue {
                key: Ident::new("DEFAULT CHARSET"),
                value: build::keyword("utf8mb4"),
            },
            SqlOption::KeyValue {
                key: Ident::new("COLLATE"),
                value: build::keyword("utf8mb4_bin"),
            },
        ])
    }

    fn engine(name: &str, args: Vec<Ident>) -> CreateTableOptions {
        CreateTableOptions::Plain(vec![SqlOption::NamedParenthesizedList(
            NamedParenthesizedList {
                key: Ident::new("ENGINE"),
                name: Some(Ident::new(name)),
                values: args,
            },
        )])
    }

    /// `CREATE TABLE IF NOT EXISTS` for the sink table.
    pub fn create_table(&self) -> Statement {
        let d = self.d;
        let mut columns = self.data_defs();
        let merge = &self.p.sink.merge;
        let names: Vec<String> = columns.iter().map(|c| c.name.value.clone()).collect();
        if merge.kind == MergeKind::Collapse && !names.contains(&merge.sign_column) {
            let ty = match d.kind() {
                DialectKind::Postgres => DataType::SmallInt(None),
                DialectKind::Mysql => DataType::TinyInt(None),
                DialectKind::Clickhouse => crate::sql::dialect::custom("Int8", &[]),
            };
            // Defaults to 1, so that a load straight into a table this run created
            // (`sink.load_direct`, which lists the load columns only) inserts live rows.
            let mut sign = self.column_def(&merge.sign_column, ty, true);
            sign.options.push(ColumnOptionDef {
                name: None,
                option: ColumnOption::Default(build::int(1)),
            });
            columns.push(sign);
        }
        if let Some(v) = &merge.version_column {
            if merge.kind == MergeKind::Upsert && !names.contains(v) {
                let ty = match d.kind() {
                    DialectKind::Clickhouse => crate::sql::dialect::custom("UInt64", &[]),
                    _ => DataType::BigInt(None),
                };
                columns.push(self.column_def(v, ty, true));
            }
        }
        let keys = self.key_columns();
        // No IF NOT EXISTS: a run that loses a race to create the table learns so from the
        // error, and writes into the winner's table as an existing one.
        let mut b = CreateTableBuilder::new(self.table()).columns(columns);
        match d.kind() {
            DialectKind::Clickhouse => {
                let opts = match merge.kind {
                    MergeKind::Upsert => Self::engine(
                        "ReplacingMergeTree",
                        merge.version_column.iter().map(|v| d.ident(v)).collect(),
                    ),
                    MergeKind::Collapse => {
                        Self::engine("CollapsingMergeTree", vec![d.ident(&merge.sign_column)])
                    }
                    MergeKind::DeleteInsert => Self::engine("MergeTree", vec![]),
                };
                b = b
                    .table_options(opts)
                    .order_by(Some(OneOrManyWithParens::Many(self.exprs(&keys))));
            }
            _ => {
                // Collapse tables are append-only: several rows per key, no primary key,
                // but a (non-unique) index on the key, through which each merge reads the
                // rows of its staged keys only (MySQL: here; PostgreSQL: `create_index`).
                let mut constraints = Vec::new();
                if merge.kind == MergeKind::Collapse
                    && !keys.is_empty()
                    && d.kind() == DialectKind::Mysql
                {
                    constraints.push(self.mysql_key_index());
                }
                // MySQL: the watermark columns' indexes here; PostgreSQL: `create_statements`.
                if d.kind() == DialectKind::Mysql {
                    for c in self.watermark_columns() {
                        constraints.push(TableConstraint::Index {
                            display_as_key: true,
                            name: None,
                            index_type: None,
                            columns: self.index_columns(std::slice::from_ref(&c)),
                            index_options: vec![],
                        });
                    }
                }
                if merge.kind != MergeKind::Collapse && !keys.is_empty() {
                    constraints.push(TableConstraint::PrimaryKey {
                        name: None,
                        index_name: None,
                        index_type: None,
                        columns: self
                            .exprs(&keys)
                            .into_iter()
                            .map(|expr| IndexColumn {
                                column: OrderByExpr {
                                    expr,
                                    options: OrderByOptions {
                                        asc: None,
                                        nulls_first: None,
                                    },
                                    with_fill: None,
                                },
                                operator_class: None,
                            })
                            .collect(),
                        index_options: vec![],
                        characteristics: None,
                    });
                }
                if !constraints.is_empty() {
                    b = b.constraints(constraints);
                }
                if d.kind() == DialectKind::Mysql {
                    b = b.table_options(Self::mysql_options());
                }
            }
        }
        b.build()
    }

    /// The statements of `sink.create`: the table, and on PostgreSQL a collapse table's
    /// index on the key ([`SinkCtx::create_index`]) and the indexes on the watermark
    /// columns ([`SinkCtx::watermark_columns`]).
    pub fn create_statements(&self) -> Vec<Statement> {
        let mut out = vec![self.create_table()];
        out.extend(self.create_index());
        if self.d.kind() == DialectKind::Postgres {
            for c in self.watermark_columns() {
                let name = self.index_name(&format!("_synctool_wm_{}", c.name));
                out.push(self.pg_index(&name, std::slice::from_ref(&c)));
            }
        }
        out
    }

    /// The sink columns a timestamp reconciliation reads its watermark from (`max(col)` at
    /// the start of every run, then the lookback window by range), which a sink table
    /// synctool creates on PostgreSQL or MySQL gets an index on. Not when a `sinkstate`
    /// table holds the partition values instead, nor on ClickHouse, whose `max` reads the
    /// one column (and whose sorting key is the `unique_key`, which its engine merges by).
    pub fn watermark_columns(&self) -> Vec<SinkCol> {
        if self.p.sink_state.is_some() || self.d.kind() == DialectKind::Clickhouse {
            return Vec::new();
        }
        let cols = self.load_columns();
        let mut out: Vec<SinkCol> = Vec::new();
        for r in &self.p.reconciliations {
            if r.strategy != crate::ir::ReconStrategy::Timestamp {
                continue;
            }
            let Some(c) = cols.iter().find(|c| c.name == r.sink_partition) else {
                continue;
            };
            // The key's index (a primary key, or a collapse table's key index) serves a
            // column it starts with.
            let leads_key = self.p.sink.unique_key.first() == Some(&c.name);
            if !leads_key && !out.iter().any(|o| o.name == c.name) {
                out.push(c.clone());
            }
        }
        out
    }

    /// The name of an index on the sink table: `<table><suffix>`, or the first 16 hex
    /// digits of the md5 of the table name and suffix, then `_synctool`, when that would
    /// pass PostgreSQL's 63 bytes.
    fn index_name(&self, suffix: &str) -> String {
        let table = &self.p.sink.table.name;
        if table.len() + suffix.len() <= 63 {
            return format!("{table}{suffix}");
        }
        use md5::{Digest, Md5};
        let digest = hex::encode(Md5::digest(format!("{table}{suffix}").as_bytes()));
        format!("{}_synctool", &digest[..16])
    }

    /// PostgreSQL: `CREATE INDEX IF NOT EXISTS <name> ON <table> (<cols>)`, non-unique.
    fn pg_index(&self, name: &str, cols: &[SinkCol]) -> Statement {
        Statement::CreateIndex(sqlparser::ast::CreateIndex {
            name: Some(ObjectName::from(vec![self.d.ident(name)])),
            table_name: self.table(),
            using: None,
            columns: self.index_columns(cols),
            unique: false,
            concurrently: false,
            if_not_exists: true,
            include: vec![],
            nulls_distinct: None,
            with: vec![],
            predicate: None,
            index_options: vec![],
            alter_options: vec![],
        })
    }

    /// PostgreSQL collapse: `CREATE INDEX IF NOT EXISTS <table>_synctool_key ON <table>
    /// (<key columns>)`, a non-unique index (a key has several rows, cancelled and live):
    /// each batch's merge looks up the live rows of its staged keys through it instead of
    /// grouping the whole table.
    pub fn create_index(&self) -> Option<Statement> {
        let keys = self.key_columns();
        if self.d.kind() != DialectKind::Postgres
            || self.kind() != MergeKind::Collapse
            || keys.is_empty()
        {
            return None;
        }
        // The index lives in the table's schema; the name is `<table>_synctool_key`, or
        // the md5 form of `temp_name` when that would pass PostgreSQL's 63 bytes.
        let table = &self.p.sink.table.name;
        let name = if table.len() + KEY_INDEX.len() <= 63 {
            format!("{table}{KEY_INDEX}")
        } else {
            use md5::{Digest, Md5};
            let digest = hex::encode(Md5::digest(table.as_bytes()));
            format!("{}{KEY_INDEX}", &digest[..16])
        };
        Some(self.pg_index(&name, &keys))
    }

    fn index_columns(&self, cols: &[SinkCol]) -> Vec<IndexColumn> {
        cols.iter()
            .map(|c| IndexColumn {
                column: OrderByExpr {
                    expr: Expr::Identifier(self.d.ident(&c.name)),
                    options: OrderByOptions {
                        asc: None,
                        nulls_first: None,
                    },
                    with_fill: None,
                },
                operator_class: None,
            })
            .collect()
    }

    /// MySQL: a temporary staging table of the dtypes' column types, with a (non-unique)
    /// index on the key: MariaDB evaluates `key [NOT] IN (SELECT key FROM stage)` row by row
    /// without one, which is quadratic in the batch size. (PostgreSQL and ClickHouse stage
    /// in copies of the sink table's columns instead.)
    fn mysql_stage_create(&self, name: ObjectName, cols: Vec<ColumnDef>) -> Statement {
        CreateTableBuilder::new(name)
            .if_not_exists(true)
            .columns(cols)
            .temporary(true)
            .constraints(vec![self.mysql_key_index()])
            .table_options(Self::mysql_options())
            .build()
    }

    /// MySQL `KEY (<key columns>)` for a staging table or a collapse sink table.
    fn mysql_key_index(&self) -> TableConstraint {
        TableConstraint::Index {
            display_as_key: true,
            name: None,
            index_type: None,
            columns: self.index_columns(&self.key_columns()),
            index_options: vec![],
        }
    }

    /// Creates the row staging table (the load columns; on MySQL with an index on the key).
    /// On ClickHouse the table is made again from the sink table's own column types (see
    /// [`SinkCtx::ch_stage_from_sink`]).
    pub fn create_stage(&self) -> Vec<Statement> {
        let cols: Vec<String> = self.load_columns().into_iter().map(|c| c.name).collect();
        match self.d.kind() {
            DialectKind::Clickhouse => self.ch_stage_from_sink(self.stage(), &cols),
            DialectKind::Postgres => vec![self.pg_stage_from_sink(self.stage(), &cols, true)],
            DialectKind::Mysql => vec![self.mysql_stage_create(self.stage(), self.data_defs())],
        }
    }

    /// Empties the row staging table before a batch's transaction, or `None` where the
    /// table empties itself (PostgreSQL: `ON COMMIT DELETE ROWS`). MySQL drops and creates
    /// the temporary table again: an InnoDB `DELETE` of a batch of rows costs more than
    /// loading them, and `TRUNCATE` would commit. ClickHouse: `TRUNCATE TABLE`.
    pub fn clear_stage(&self) -> Option<Vec<Statement>> {
        match self.d.kind() {
            DialectKind::Postgres => None,
            DialectKind::Clickhouse => Some(vec![self.clear(self.stage())]),
            DialectKind::Mysql => Some(vec![
                Statement::Drop {
                    object_type: sqlparser::ast::ObjectType::Table,
                    if_exists: true,
                    names: vec![self.stage()],
                    cascade: false,
                    restrict: false,
                    purge: false,
                    temporary: true,
                    table: None,
                },
                self.mysql_stage_create(self.stage(), self.data_defs()),
            ]),
        }
    }

    /// `INSERT INTO stage_keys (keys) SELECT keys FROM stage`: a full sync with deletes
    /// stages the keys of the rows it just staged without sending them again.
    pub fn copy_stage_keys(&self) -> Statement {
        insert(
            self.stage_keys(),
            self.idents(&self.key_columns()),
            self.key_query(self.stage()),
            None,
            None,
        )
    }

    /// Creates the key staging table (on ClickHouse and PostgreSQL from the sink's key
    /// column types).
    pub fn create_stage_keys(&self) -> Vec<Statement> {
        let keys = self.key_columns();
        let cols: Vec<String> = keys.iter().map(|c| c.name.clone()).collect();
        match self.d.kind() {
            DialectKind::Clickhouse => return self.ch_stage_from_sink(self.stage_keys(), &cols),
            DialectKind::Postgres => {
                return vec![self.pg_stage_from_sink(self.stage_keys(), &cols, false)]
            }
            DialectKind::Mysql => {}
        }
        let defs = keys
            .iter()
            .map(|c| self.column_def(&c.name, self.d.column_type(c.dtype, true), true))
            .collect();
        vec![self.mysql_stage_create(self.stage_keys(), defs)]
    }

    /// PostgreSQL: `CREATE TEMPORARY TABLE IF NOT EXISTS stage [ON COMMIT DELETE ROWS] AS
    /// SELECT cols FROM sink WHERE false`, so that the staging columns have the sink's own
    /// types: the merge's `INSERT … SELECT` then needs no cast (PostgreSQL has no implicit
    /// cast from `text` to an enum), and the binary COPY is laid out by those types. With
    /// `per_transaction` the table empties itself at every commit (a cheap truncate, where a
    /// `DELETE` of the batch would leave dead rows); the key stage of a full sync must keep
    /// its rows across the batches' transactions.
    fn pg_stage_from_sink(
        &self,
        name: ObjectName,
        cols: &[String],
        per_transaction: bool,
    ) -> Statement {
        CreateTableBuilder::new(name)
            .temporary(true)
            .if_not_exists(true)
            .on_commit(per_transaction.then_some(OnCommit::DeleteRows))
            .query(Some(Box::new(self.empty_copy(cols))))
            .build()
    }

    /// `SELECT cols FROM sink WHERE false` (ClickHouse: `WHERE 0`).
    fn empty_copy(&self, cols: &[String]) -> Query {
        let never = match self.d.kind() {
            DialectKind::Clickhouse => build::int(0),
            _ => Expr::Value(sqlparser::ast::Value::Boolean(false).with_empty_span()),
        };
        build::select(SelectParts {
            projection: cols
                .iter()
                .map(|c| build::item(build::col(self.d, None, c)))
                .collect(),
            from: Some(build::from(build::table(self.table(), None, false))),
            selection: Some(never),
            ..Default::default()
        })
    }

    /// ClickHouse: `DROP TABLE IF EXISTS stage` and `CREATE TABLE stage ENGINE = Memory AS
    /// SELECT cols FROM sink WHERE 0`. A staging table beside an existing sink table must
    /// have its column types: 18.16 refuses `UInt32 IN (SELECT Int64 …)` (a delete mutation
    /// then never finishes), and RowBinary is laid out by type. Dropping first replaces a
    /// staging table left by an earlier run against a different sink table.
    fn ch_stage_from_sink(&self, name: ObjectName, cols: &[String]) -> Vec<Statement> {
        let drop = Statement::Drop {
            object_type: sqlparser::ast::ObjectType::Table,
            if_exists: true,
            names: vec![name.clone()],
            cascade: false,
            restrict: false,
            purge: false,
            temporary: false,
            table: None,
        };
        let create = CreateTableBuilder::new(name)
            .table_options(Self::engine("Memory", vec![]))
            .query(Some(Box::new(self.empty_copy(cols))))
            .build();
        vec![drop, create]
    }

    /// ClickHouse: `DROP TABLE IF EXISTS` of the staging tables the pipeline uses, at the
    /// end of a run (PostgreSQL and MySQL staging tables are temporary: they go with the
    /// session). `None` on the other dialects.
    pub fn drop_stages(&self, keys: bool) -> Option<Vec<Statement>> {
        if !self.is_ch() {
            return None;
        }
        let direct = self.kind() == MergeKind::Upsert;
        let mut names = Vec::new();
        if !direct {
            names.push(self.stage());
        }
        if keys {
            names.push(self.stage_keys());
        }
        Some(
            names
                .into_iter()
                .map(|name| Statement::Drop {
                    object_type: sqlparser::ast::ObjectType::Table,
                    if_exists: true,
                    names: vec![name],
                    cascade: false,
                    restrict: false,
                    purge: false,
                    temporary: false,
                    table: None,
                })
                .collect(),
        )
    }

    /// MySQL's `ANALYZE TABLE t`, for a sink table the run created and loaded: its index
    /// statistics are those of the empty table until InnoDB recalculates them in the
    /// background, which may take minutes, and a merge planned on them is slower. None on
    /// PostgreSQL (autovacuum analyzes a loaded table within a minute, and `ANALYZE`
    /// samples the table, a fifth of a 1M-row load's time) and ClickHouse (no statistics).
    pub fn analyze(&self) -> Option<Statement> {
        (self.d.kind() == DialectKind::Mysql).then(|| Statement::Analyze {
            table_name: self.table(),
            partitions: None,
            for_columns: false,
            columns: vec![],
            cache_metadata: false,
            noscan: false,
            compute_statistics: false,
            has_table_keyword: true,
        })
    }

    /// Empties a staging table: `DELETE` (transactional) or ClickHouse `TRUNCATE`.
    pub fn clear(&self, name: ObjectName) -> Statement {
        if self.is_ch() {
            Statement::Truncate {
                table_names: vec![TruncateTableTarget { name, only: false }],
                partitions: None,
                table: true,
                identity: None,
                cascade: None,
                on_cluster: None,
            }
        } else {
            delete(name, None)
        }
    }

    /// The bulk load of `cols` into `table`: PostgreSQL `COPY … FROM STDIN (FORMAT binary)`,
    /// ClickHouse `INSERT … FORMAT RowBinary`, MySQL `LOAD DATA LOCAL INFILE` (where the
    /// server refuses it, the runtime falls back to [`SinkCtx::values_insert`]).
    pub fn bulk_load(&self, table: ObjectName, cols: &[SinkCol]) -> crate::sql::Stmt {
        match self.d.kind() {
            DialectKind::Postgres => crate::sql::Stmt::Ast(Box::new(Statement::Copy {
                source: CopySource::Table {
                    table_name: table,
                    columns: self.idents(cols),
                },
                to: false,
                target: CopyTarget::Stdin,
                options: vec![CopyOption::Format(Ident::new("binary"))],
                legacy_options: vec![],
                values: vec![],
            })),
            DialectKind::Clickhouse => crate::sql::Stmt::ClickhouseInsertRowBinary {
                table,
                columns: self.idents(cols),
            },
            DialectKind::Mysql => crate::sql::Stmt::MysqlLoadDataLocal {
                table,
                columns: self.idents(cols),
            },
        }
    }

    /// A multi-row `INSERT INTO table (cols) VALUES (?, …), …` of `rows` rows; each value is
    /// a parameter named by its column.
    pub fn values_insert(
        &self,
        b: &mut Binder,
        table: ObjectName,
        cols: &[SinkCol],
        rows: usize,
    ) -> Statement {
        let rows = (0..rows.max(1))
            .map(|_| cols.iter().map(|c| b.bind(&c.name, c.dtype)).collect())
            .collect();
        let body = SetExpr::Values(Values {
            explicit_row: false,
            rows,
        });
        let q = Query {
            body: Box::new(body),
            ..build::select(SelectParts::default())
        };
        insert(table, self.idents(cols), q, None, None)
    }

    // ----- merge -----

    fn select_stage(&self, cols: &[SinkCol], extra: Vec<Expr>, where_: Option<Expr>) -> Query {
        let mut projection: Vec<_> = self.exprs(cols).into_iter().map(build::item).collect();
        projection.extend(extra.into_iter().map(build::item));
        build::select(SelectParts {
            projection,
            from: Some(build::from(build::table(self.stage(), None, false))),
            selection: where_,
            ..Default::default()
        })
    }

    fn key_query(&self, table: ObjectName) -> Query {
        build::select(SelectParts {
            projection: self
                .exprs(&self.key_columns())
                .into_iter()
                .map(build::item)
                .collect(),
            from: Some(build::from(build::table(table, None, false))),
            ..Default::default()
        })
    }

    /// The statements merging the staged rows into the sink, or `None` when the load goes
    /// straight into the sink (ClickHouse upsert).
    pub fn merge(&self) -> Option<Vec<crate::sql::Stmt>> {
        use crate::sql::Stmt;
        let d = self.d;
        let cols = self.load_columns();
        let target = self.table();
        match (self.kind(), d.kind()) {
            (MergeKind::Upsert, DialectKind::Clickhouse) => None,
            (MergeKind::Upsert, DialectKind::Postgres) => {
                let alias = d.ident(&self.p.sink.table.name);
                let non_key: Vec<&SinkCol> = cols.iter().filter(|c| !c.key).collect();
                let excluded = |c: &SinkCol| {
                    Expr::CompoundIdentifier(vec![Ident::new("EXCLUDED"), d.ident(&c.name)])
                };
                let current =
                    |c: &SinkCol| Expr::CompoundIdentifier(vec![alias.clone(), d.ident(&c.name)]);
                let action = if non_key.is_empty() {
                    OnConflictAction::DoNothing
                } else {
                    // Skip rows whose values did not change (no dead tuples, no WAL). Every
                    // written column is compared, the hash column's too: the row hash covers
                    // the source's columns only, so a new enrichment output or a refreshed
                    // `track: false` column must still be written. Text and JSON compare as
                    // text: a `json` column has no `=`, and `citext` would call a case-only
                    // change no change.
                    let compared = |e: Expr, c: &SinkCol| match c.dtype {
                        Dtype::Str | Dtype::Json => build::cast(e, DataType::Text),
                        _ => e,
                    };
                    let changed = Expr::IsDistinctFrom(
                        Box::new(build::tuple_or_single(
                            non_key.iter().map(|c| compared(current(c), c)).collect(),
                        )),
                        Box::new(build::tuple_or_single(
                            non_key.iter().map(|c| compared(excluded(c), c)).collect(),
                        )),
                    );
                    OnConflictAction::DoUpdate(DoUpdate {
                        assignments: non_key
                            .iter()
                            .map(|c| assign(d, &c.name, excluded(c)))
                            .collect(),
                        selection: Some(changed),
                    })
                };
                let on = OnInsert::OnConflict(OnConflict {
                    conflict_target: Some(ConflictTarget::Columns(
                        self.idents(&self.key_columns()),
                    )),
                    action,
                });
                Some(vec![Stmt::ast(insert(
                    target,
                    self.idents(&cols),
                    self.select_stage(&cols, vec![], None),
                    Some(on),
                    Some(alias),
                ))])
            }
            (MergeKind::Upsert, DialectKind::Mysql) => {
                // `VALUES(c)` is what MariaDB and MySQL 8 both accept (MySQL's row alias
                // syntax is unknown to MariaDB). Unchanged rows are not rewritten by MySQL.
                let update: Vec<&SinkCol> = match cols.iter().filter(|c| !c.key).count() {
                    0 => cols.iter().take(1).collect(),
                    _ => cols.iter().filter(|c| !c.key).collect(),
                };
                let on = OnInsert::DuplicateKeyUpdate(
                    update
                        .iter()
                        .map(|c| {
                            assign(
                                d,
                                &c.name,
                                build::call("VALUES", vec![build::col(d, None, &c.name)]),
                            )
                        })
                        .collect(),
                );
                Some(vec![Stmt::ast(insert(
                    target,
                    self.idents(&cols),
                    self.select_stage(&cols, vec![], None),
                    Some(on),
                    None,
                ))])
            }
            (MergeKind::DeleteInsert, _) => {
                let delete = if d.kind() == DialectKind::Mysql {
                    self.delete_joined(self.stage(), vec![])
                } else {
                    let scope =
                        build::in_subquery(self.key_tuple(), self.key_query(self.stage()), false);
                    self.delete_where(scope)
                };
                Some(vec![
                    delete,
                    Stmt::ast(insert(
                        target,
                        self.idents(&cols),
                        self.select_stage(&cols, vec![], None),
                        None,
                        None,
                    )),
                ])
            }
            (MergeKind::Collapse, _) => Some(self.collapse_merge()),
        }
    }

    /// `DELETE FROM t WHERE sel`, or the ClickHouse mutation `ALTER TABLE t DELETE WHERE
    /// ifNull(sel, 0)`: ClickHouse runs a delete as keeping the rows where `NOT sel`, so a
    /// row for which `sel` is NULL (a NULL partition value against a range, a NULL in a
    /// filtered column) would be deleted, where SQL's `DELETE` keeps it.
    fn delete_where(&self, selection: Expr) -> crate::sql::Stmt {
        if self.is_ch() {
            crate::sql::Stmt::ClickhouseAlterDelete {
                table: self.table(),
                selection: Box::new(build::call("ifNull", vec![selection, build::int(0)])),
            }
        } else {
            crate::sql::Stmt::Ast(Box::new(delete(self.table(), Some(selection))))
        }
    }

    fn sign_cols(&self) -> (Vec<SinkCol>, Vec<Ident>) {
        let cols = self.load_columns();
        let mut idents = self.idents(&cols);
        idents.push(self.d.ident(&self.p.sink.merge.sign_column));
        (cols, idents)
    }

    /// Brings the sign sum of every version matching `preds` (and `having`) back to zero:
    /// `INSERT INTO t (cols, sign) SELECT cols, <n> FROM (versions) AS _synctool_live`. A
    /// version live once gets one cancelling row (-1), one inserted twice gets two, one left
    /// below zero by a stray cancelling row gets as many +1 rows. ClickHouse's
    /// `CollapsingMergeTree` takes signs of 1 and -1 only, so there a version's rows are
    /// repeated `arrayJoin(replicate(if(s > 0, -1, 1), range(toUInt64(abs(s)))))`; the
    /// plain tables of PostgreSQL and MySQL take one row of sign `-s`.
    fn cancel(&self, preds: Vec<Expr>, having: Vec<Expr>) -> crate::sql::Stmt {
        let (cols, idents) = self.sign_cols();
        let versions = self.versions(preds, having);
        let d = self.d;
        let s = build::col(d, None, SIGN_SUM);
        let sign = if self.is_ch() {
            let each = build::call(
                "if",
                vec![
                    build::binop(s.clone(), BinaryOperator::Gt, build::int(0)),
                    build::int(-1),
                    build::int(1),
                ],
            );
            let times = build::call(
                "range",
                vec![build::call("toUInt64", vec![build::call("abs", vec![s])])],
            );
            build::call(
                "arrayJoin",
                vec![build::call("replicate", vec![each, times])],
            )
        } else {
            Expr::UnaryOp {
                op: sqlparser::ast::UnaryOperator::Minus,
                expr: Box::new(s),
            }
        };
        let mut projection: Vec<_> = self.exprs(&cols).into_iter().map(build::item).collect();
        projection.push(build::item(sign));
        let q = build::select(SelectParts {
            projection,
            from: Some(build::from(build::derived(
                versions,
                self.d.ident("_synctool_live"),
            ))),
            ..Default::default()
        });
        crate::sql::Stmt::Ast(Box::new(insert(self.table(), idents, q, None, None)))
    }

    /// A leaf repair's cancel of the keys the source no longer holds: like
    /// `sink.delete_keys` (staged keys, within `sink.filters`), but only the versions whose
    /// partition value lies in the leaf (`range`: the leaf's range predicates, or `p IS
    /// NULL` for the NULL-partition block). A key whose current version lives in another
    /// block (its partition value moved) keeps it: that block's own diff decides about it.
    pub fn cancel_leaf_keys(&self, b: &mut Binder, range: Vec<Expr>) -> crate::sql::Stmt {
        let mut preds = self.filters(b);
        preds.push(build::in_subquery(
            self.key_tuple(),
            self.key_query(self.stage_keys()),
            false,
        ));
        preds.extend(range);
        self.cancel(preds, vec![])
    }

    /// A row's key columns and the row hash of every written column (NULL-safe, one
    /// canonical text per dtype): two rows with equal tuples are the same row, written alike.
    fn key_and_fingerprint(&self, keys: &[SinkCol], cols: &[SinkCol]) -> Vec<Expr> {
        let precision = crate::sql::source::precision(self.p);
        let hashed: Vec<crate::sql::hash::HashCol> = cols
            .iter()
            .map(|c| crate::sql::hash::HashCol {
                expr: build::col(self.d, None, &c.name),
                dtype: c.dtype,
                precision,
            })
            .collect();
        let mut out = self.exprs(keys);
        out.push(crate::sql::hash::row_hash(self.d, &hashed));
        out
    }

    /// Collapse: bring to zero the versions of the staged keys that are not live exactly
    /// once as the stage holds them (another version, or the staged one with a sign sum
    /// other than 1), then insert the staged rows that are not live as they are (sign +1).
    /// A row compares by its key and the row hash of every written column, so that an
    /// unchanged row is left alone (a re-run writes nothing) and any changed column,
    /// tracked or not, is rewritten; afterwards every staged key is live exactly once.
    fn collapse_merge(&self) -> Vec<crate::sql::Stmt> {
        let keys = self.key_columns();
        let staged_keys = build::in_subquery(self.key_tuple(), self.key_query(self.stage()), false);
        let (cols, idents) = self.sign_cols();
        let kh = self.key_and_fingerprint(&keys, &cols);
        let kh_tuple = build::tuple_or_single(kh.clone());
        let staged_kh = build::select(SelectParts {
            projection: kh.iter().cloned().map(build::item).collect(),
            from: Some(build::from(build::table(self.stage(), None, false))),
            ..Default::default()
        });
        let sum = build::call(
            "sum",
            vec![build::col(self.d, None, &self.p.sink.merge.sign_column)],
        );
        let not_once = build::binop(
            build::binop(sum, BinaryOperator::NotEq, build::int(1)),
            BinaryOperator::Or,
            build::in_subquery(kh_tuple.clone(), staged_kh, true),
        );
        let cancel = self.cancel(
            vec![staged_keys.clone()],
            vec![Expr::Nested(Box::new(not_once))],
        );
        // Live (key, fingerprint) pairs after the cancellation above.
        let live = self.live_rows(vec![staged_keys], vec![]);
        let live_kh = build::select(SelectParts {
            projection: kh.iter().cloned().map(build::item).collect(),
            from: Some(build::from(build::derived(
                live,
                self.d.ident("_synctool_live"),
            ))),
            ..Default::default()
        });
        let q = self.select_stage(
            &cols,
            vec![build::int(1)],
            Some(build::in_subquery(kh_tuple, live_kh, true)),
        );
        vec![
            cancel,
            crate::sql::Stmt::Ast(Box::new(insert(self.table(), idents, q, None, None))),
        ]
    }

    /// Deletes the sink rows (within `sink.filters`) whose key is (`negated`: is not) in the
    /// key stage; collapse sinks get cancelling rows instead.
    pub fn delete_keys(&self, b: &mut Binder, negated: bool) -> crate::sql::Stmt {
        let mut preds = self.filters(b);
        if !negated && self.d.kind() == DialectKind::Mysql && self.kind() != MergeKind::Collapse {
            return self.delete_joined(self.stage_keys(), preds);
        }
        if negated && !self.is_ch() {
            preds.push(self.key_not_staged());
        } else {
            preds.push(build::in_subquery(
                self.key_tuple(),
                self.key_query(self.stage_keys()),
                negated,
            ));
        }
        if self.kind() == MergeKind::Collapse {
            return self.cancel(preds, vec![]);
        }
        self.delete_where(build::and_all(preds).expect("at least one predicate"))
    }

    /// Deletes the sink rows (within `sink.filters`) whose partition column lies in one
    /// range (`$range_start` ≤ p < `$range_end`, on MySQL dates and datetimes p ≤
    /// `$range_last`): a block of the reconciliation that the source no longer holds any
    /// row of. `None` where removing a range's rows is not removing its keys: collapse
    /// sinks (a cancelling row repeats the row) and `ReplacingMergeTree` sinks (a key's
    /// older version, outside the range, would resurface).
    pub fn delete_range(&self, b: &mut Binder, r: &Reconciliation) -> Option<crate::sql::Stmt> {
        if self.kind() == MergeKind::Collapse || self.final_() {
            return None;
        }
        let mut preds = self.filters(b);
        let part = build::col(self.d, None, &r.sink_partition);
        preds.extend(crate::sql::recon::range_preds(self.d, b, part, r.kind));
        Some(self.delete_where(build::and_all(preds).expect("range predicates")))
    }

    /// MySQL: `DELETE s FROM <sink> AS s JOIN (SELECT k1 AS _synctool_k1, … FROM <keys>) AS
    /// _synctool_k ON s.k1 = _synctool_k._synctool_k1 … WHERE preds`. MariaDB (before
    /// 11.1) runs a single-table `DELETE … WHERE key IN (subquery)` as a dependent subquery
    /// over every sink row, a full scan (and lock) of the table per statement; the join
    /// deletes through the primary key. The keys are renamed so that `preds` (on unqualified
    /// sink columns) stay unambiguous.
    fn delete_joined(&self, keys_table: ObjectName, preds: Vec<Expr>) -> crate::sql::Stmt {
        let d = self.d;
        let (s, k) = (d.ident("_synctool_s"), d.ident("_synctool_k"));
        let keys = self.key_columns();
        let renamed = |i: usize| format!("_synctool_k{}", i + 1);
        let q = build::select(SelectParts {
            projection: keys
                .iter()
                .enumerate()
                .map(|(i, c)| build::aliased(d, build::col(d, None, &c.name), &renamed(i)))
                .collect(),
            from: Some(build::from(build::table(keys_table, None, false))),
            ..Default::default()
        });
        let on = build::and_all(
            keys.iter()
                .enumerate()
                .map(|(i, c)| {
                    build::eq(
                        Expr::CompoundIdentifier(vec![s.clone(), d.ident(&c.name)]),
                        Expr::CompoundIdentifier(vec![k.clone(), d.ident(&renamed(i))]),
                    )
                })
                .collect(),
        )
        .expect("a key column");
        let mut from = build::from(build::table(self.table(), Some(s.clone()), false));
        from.joins.push(build::join_on(build::derived(q, k), on));
        crate::sql::Stmt::Ast(Box::new(Statement::Delete(Delete {
            tables: vec![ObjectName::from(vec![s])],
            from: FromTable::WithFromKeyword(vec![from]),
            using: None,
            selection: build::and_all(preds),
            returning: None,
            order_by: vec![],
            limit: None,
        })))
    }

    /// ClickHouse: the number of sink rows (within `sink.filters`) whose key is not staged,
    /// which `sink.delete_absent` is about to delete or cancel: ClickHouse reports no count
    /// for either.
    pub fn count_absent(&self, b: &mut Binder) -> Query {
        let not_staged =
            build::in_subquery(self.key_tuple(), self.key_query(self.stage_keys()), true);
        let (from, selection) = self.read(b, vec![not_staged]);
        build::select(SelectParts {
            projection: vec![build::aliased(
                self.d,
                crate::sql::hash::block_count(self.d),
                "_synctool_absent",
            )],
            from: Some(from),
            selection,
            ..Default::default()
        })
    }

    /// `NOT EXISTS (SELECT 1 FROM <key stage> AS k WHERE k.c = <sink>.c …)`: the anti-join
    /// form of "key not staged". PostgreSQL runs `NOT IN (subquery)` as a hashed subplan only
    /// while the subquery fits in `work_mem`, and row by row otherwise (a 1M-key full sync
    /// never finished); `NOT EXISTS` becomes a hash or merge anti-join on every size.
    fn key_not_staged(&self) -> Expr {
        let k = self.d.ident("_synctool_k");
        let sink_parts: Vec<Ident> = self
            .table()
            .0
            .iter()
            .filter_map(|p| match p {
                sqlparser::ast::ObjectNamePart::Identifier(i) => Some(i.clone()),
                _ => None,
            })
            .collect();
        let eqs = self
            .key_columns()
            .iter()
            .map(|c| {
                let col = self.d.ident(&c.name);
                let mut outer = sink_parts.clone();
                outer.push(col.clone());
                Expr::BinaryOp {
                    left: Box::new(Expr::CompoundIdentifier(vec![k.clone(), col])),
                    op: sqlparser::ast::BinaryOperator::Eq,
                    right: Box::new(Expr::CompoundIdentifier(outer)),
                }
            })
            .collect();
        let q = build::select(SelectParts {
            projection: vec![build::item(build::int(1))],
            from: Some(build::from(build::table(self.stage_keys(), Some(k), false))),
            selection: build::and_all(eqs),
            ..Default::default()
        });
        Expr::Exists {
            subquery: Box::new(q),
            negated: true,
        }
    }

    /// The query listing the existing sink table's columns and types.
    pub fn columns_query(&self, b: &mut Binder) -> Query {
        let d = self.d;
        let (table, name, ty, schema_col, table_col, current) = match d.kind() {
            DialectKind::Postgres => (
                build::builtin_name(&["information_schema", "columns"]),
                "column_name",
                "data_type",
                "table_schema",
                "table_name",
                "current_schema",
            ),
            DialectKind::Mysql => (
                build::builtin_name(&["information_schema", "columns"]),
                "column_name",
                "column_type",
                "table_schema",
                "table_name",
                "DATABASE",
            ),
            DialectKind::Clickhouse => (
                build::builtin_name(&["system", "columns"]),
                "name",
                "type",
                "database",
                "table",
                "currentDatabase",
            ),
        };
        let schema_value = self.schema_or(b, current);
        let mut projection = vec![
            build::aliased(d, build::keyword(name), "name"),
            build::aliased(d, build::keyword(ty), "type"),
        ];
        if d.kind() != DialectKind::Clickhouse {
            projection.push(build::aliased(d, build::keyword("is_nullable"), "nullable"));
        }
        // Whether the database fills a column the pipeline does not write: a default, an
        // identity or a generated column (ClickHouse always fills omitted columns).
        match d.kind() {
            DialectKind::Postgres => {
                for (col, alias) in [
                    ("column_default", "default_value"),
                    ("is_identity", "identity"),
                    ("is_generated", "generated"),
                ] {
                    projection.push(build::aliased(d, build::keyword(col), alias));
                }
            }
            DialectKind::Mysql => {
                for (col, alias) in [
                    ("column_default", "default_value"),
                    ("extra", "extra"),
                    ("collation_name", "collation"),
                ] {
                    projection.push(build::aliased(d, build::keyword(col), alias));
                }
            }
            DialectKind::Clickhouse => {}
        }
        if d.kind() == DialectKind::Postgres {
            // `data_type` carries no length or precision; the runtime checks rows against them.
            for (col, alias) in [
                ("character_maximum_length", "max_chars"),
                ("numeric_precision", "precision"),
                ("numeric_scale", "scale"),
                ("datetime_precision", "time_precision"),
                // The type's own name where `data_type` says `USER-DEFINED` (`citext`).
                ("udt_name", "udt"),
            ] {
                projection.push(build::aliased(d, build::keyword(col), alias));
            }
        }
        let preds = vec![
            build::eq(build::keyword(schema_col), schema_value),
            build::eq(build::keyword(table_col), b.bind("table", Dtype::Str)),
        ];
        build::select(SelectParts {
            projection,
            from: Some(build::from(build::table(table, None, false))),
            selection: build::and_all(preds),
            order_by: vec![build::keyword(name)],
            ..Default::default()
        })
    }

    /// PostgreSQL: the labels of the sink table's enum columns, `(column, label)` in each
    /// type's order, so that a value outside them is refused per row, naming its key.
    pub fn enum_labels_query(&self, b: &mut Binder) -> Query {
        let d = self.d;
        let col = |t: &str, c: &str| build::col(d, Some(t), c);
        let catalog = |t: &str| build::builtin_name(&["pg_catalog", t]);
        let schema = self.schema_or(b, "current_schema");
        let mut from = build::from(build::table(
            catalog("pg_attribute"),
            Some(d.ident("a")),
            false,
        ));
        for (t, alias, on) in [
            (
                "pg_class",
                "c",
                build::eq(col("c", "oid"), col("a", "attrelid")),
            ),
            (
                "pg_namespace",
                "n",
                build::eq(col("n", "oid"), col("c", "relnamespace")),
            ),
            (
                "pg_enum",
                "e",
                build::eq(col("e", "enumtypid"), col("a", "atttypid")),
            ),
        ] {
            from.joins.push(build::join_on(
                build::table(catalog(t), Some(d.ident(alias)), false),
                on,
            ));
        }
        let preds = vec![
            build::eq(col("n", "nspname"), schema),
            build::eq(col("c", "relname"), b.bind("table", Dtype::Str)),
            build::binop(
                col("a", "attnum"),
                sqlparser::ast::BinaryOperator::Gt,
                build::int(0),
            ),
            Expr::UnaryOp {
                op: sqlparser::ast::UnaryOperator::Not,
                expr: Box::new(col("a", "attisdropped")),
            },
        ];
        build::select(SelectParts {
            projection: vec![
                build::aliased(d, build::cast(col("a", "attname"), DataType::Text), "name"),
                build::aliased(
                    d,
                    build::cast(col("e", "enumlabel"), DataType::Text),
                    "label",
                ),
                build::aliased(
                    d,
                    build::cast(
                        build::call(
                            "format_type",
                            vec![col("a", "atttypid"), col("a", "atttypmod")],
                        ),
                        DataType::Text,
                    ),
                    "type",
                ),
            ],
            from: Some(from),
            selection: build::and_all(preds),
            order_by: vec![col("a", "attname"), col("e", "enumsortorder")],
            ..Default::default()
        })
    }

    /// PostgreSQL and MySQL: the sink table's unique indexes (primary key included), which
    /// an upsert's `ON CONFLICT (key)` / `ON DUPLICATE KEY` needs on exactly the
    /// `unique_key` columns, and which a collapse table's cancelling rows would break.
    /// MySQL lists (index, column, prefix length or NULL): `ON DUPLICATE KEY` fires on
    /// every unique index, prefix ones included. PostgreSQL lists (index, column, partial,
    /// deferrable): `ON CONFLICT` can use neither a partial index nor a deferrable
    /// constraint.
    pub fn unique_indexes_query(&self, b: &mut Binder) -> Query {
        let d = self.d;
        if d.kind() == DialectKind::Mysql {
            let preds = vec![
                build::eq(
                    build::keyword("table_schema"),
                    self.schema_or(b, "DATABASE"),
                ),
                build::eq(build::keyword("table_name"), b.bind("table", Dtype::Str)),
                build::eq(build::keyword("non_unique"), build::int(0)),
            ];
            return build::select(SelectParts {
                projection: vec![
                    build::aliased(d, build::keyword("index_name"), "index"),
                    build::aliased(d, build::keyword("column_name"), "name"),
                    build::aliased(d, build::keyword("sub_part"), "prefix"),
                ],
                from: Some(build::from(build::table(
                    build::builtin_name(&["information_schema", "statistics"]),
                    None,
                    false,
                ))),
                selection: build::and_all(preds),
                order_by: vec![build::keyword("index_name"), build::keyword("column_name")],
                ..Default::default()
            });
        }
        let col = |t: &str, c: &str| build::col(d, Some(t), c);
        let catalog = |t: &str| build::builtin_name(&["pg_catalog", t]);
        let schema = self.schema_or(b, "current_schema");
        let mut from = build::from(build::table(catalog("pg_index"), Some(d.ident("x")), false));
        let attnum_in_index = Expr::AnyOp {
            left: Box::new(col("a", "attnum")),
            compare_op: sqlparser::ast::BinaryOperator::Eq,
            right: Box::new(col("x", "indkey")),
            is_some: false,
        };
        for (t, alias, on) in [
            (
                "pg_class",
                "c",
                build::eq(col("c", "oid"), col("x", "indrelid")),
            ),
            (
                "pg_namespace",
                "n",
                build::eq(col("n", "oid"), col("c", "relnamespace")),
            ),
            (
                "pg_class",
                "i",
                build::eq(col("i", "oid"), col("x", "indexrelid")),
            ),
            (
                "pg_attribute",
                "a",
                build::and_all(vec![
                    build::eq(col("a", "attrelid"), col("c", "oid")),
                    attnum_in_index,
                ])
                .expect("two predicates"),
            ),
        ] {
            from.joins.push(build::join_on(
                build::table(catalog(t), Some(d.ident(alias)), false),
                on,
            ));
        }
        let preds = vec![
            col("x", "indisunique"),
            build::eq(col("n", "nspname"), schema),
            build::eq(col("c", "relname"), b.bind("table", Dtype::Str)),
        ];
        build::select(SelectParts {
            projection: vec![
                build::aliased(d, build::cast(col("i", "relname"), DataType::Text), "index"),
                build::aliased(d, build::cast(col("a", "attname"), DataType::Text), "name"),
                build::aliased(d, Expr::IsNotNull(Box::new(col("x", "indpred"))), "partial"),
                // A deferrable constraint's index checks uniqueness at commit, not on insert.
                build::aliased(
                    d,
                    Expr::UnaryOp {
                        op: sqlparser::ast::UnaryOperator::Not,
                        expr: Box::new(col("x", "indimmediate")),
                    },
                    "deferrable",
                ),
            ],
            from: Some(from),
            selection: build::and_all(preds),
            order_by: vec![col("i", "relname"), col("a", "attname")],
            ..Default::default()
        })
    }

    /// MySQL: the sink table's storage engine (`information_schema.tables.engine`); on a
    /// non-transactional one (MyISAM, Aria, MEMORY) a batch is not written all or nothing.
    pub fn storage_engine_query(&self, b: &mut Binder) -> Query {
        let d = self.d;
        let preds = vec![
            build::eq(
                build::keyword("table_schema"),
                self.schema_or(b, "DATABASE"),
            ),
            build::eq(build::keyword("table_name"), b.bind("table", Dtype::Str)),
        ];
        build::select(SelectParts {
            projection: vec![build::aliased(d, build::keyword("engine"), "engine")],
            from: Some(build::from(build::table(
                build::builtin_name(&["information_schema", "tables"]),
                None,
                false,
            ))),
            selection: build::and_all(preds),
            ..Default::default()
        })
    }

    /// `{schema}` when the sink table names one, else the dialect's current schema
    /// (`current_function()`).
    fn schema_or(&self, b: &mut Binder, current_function: &str) -> Expr {
        match &self.p.sink.table.schema {
            Some(_) => b.bind("schema", Dtype::Str),
            None => build::call(current_function, vec![]),
        }
    }

    /// ClickHouse system-table predicates naming the sink table: `database = {schema}` (or
    /// the current database) and `<name_column> = {table}`.
    fn ch_table_preds(&self, b: &mut Binder, name_column: &str) -> Vec<Expr> {
        let db = self.schema_or(b, "currentDatabase");
        vec![
            build::eq(build::keyword("database"), db),
            build::eq(build::keyword(name_column), b.bind("table", Dtype::Str)),
        ]
    }

    /// ClickHouse: the sink table's engine (`system.tables`: `engine`, `engine_full` with
    /// its parameters, and `sorting_key`), which must fit the merge strategy: a plain
    /// `MergeTree` under upsert would keep every version of every row, a `CollapsingMergeTree`
    /// on another sign column would take rows written with sign 0, and a sorting key other
    /// than the unique_key merges distinct rows or keeps duplicates.
    pub fn engine_query(&self, b: &mut Binder) -> Query {
        let preds = self.ch_table_preds(b, "name");
        build::ch_engine_query(self.d, &["engine", "engine_full", "sorting_key"], preds)
    }

    /// ClickHouse: the number of unfinished mutations on the sink table.
    pub fn mutations_query(&self, b: &mut Binder) -> Query {
        let mut preds = self.ch_table_preds(b, "table");
        preds.push(build::eq(build::keyword("is_done"), build::int(0)));
        build::select(SelectParts {
            projection: vec![build::aliased(self.d, build::count_star(), "pending")],
            from: Some(build::from(build::table(
                build::builtin_name(&["system", "mutations"]),
                None,
                false,
            ))),
            selection: build::and_all(preds),
            ..Default::default()
        })
    }
}

fn assign(d: &dyn Dialect, column: &str, value: Expr) -> Assignment {
    Assignment {
        target: AssignmentTarget::ColumnName(ObjectName::from(vec![d.ident(column)])),
        value,
    }
}

/// `INSERT INTO table [AS alias] (columns) <source> [ON …]`.
pub fn insert(
    table: ObjectName,
    columns: Vec<Ident>,
    source: Query,
    on: Option<OnInsert>,
    alias: Option<Ident>,
) -> Statement {
    Statement::Insert(Insert {
        or: None,
        ignore: false,
        into: true,
        table: TableObject::TableName(table),
        table_alias: alias,
        columns,
        overwrite: false,
        source: Some(Box::new(source)),
        assignments: vec![],
        partitioned: None,
        after_columns: vec![],
        has_table_keyword: false,
        on,
        returning: None,
        replace_into: false,
        priority: None,
        insert_alias: None,
        settings: None,
        format_clause: None,
    })
}

/// `DELETE FROM table [WHERE selection]`.
pub fn delete(table: ObjectName, selection: Option<Expr>) -> Statement {
    Statement::Delete(Delete {
        tables: vec![],
        from: FromTable::WithFromKeyword(vec![build::from(build::table(table, None, false))]),
        using: None,
        selection,
        returning: None,
        order_by: vec![],
        limit: None,
    })
}
