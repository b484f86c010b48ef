//! Reconciliation reads: partition range, grouped block hashes, leaf diffs, watermark.
//!
//! Each side (source, sink, or a state table) is a [`Reader`]: where its rows come from,
//! its partition column, key and row hash. The queries are written once over a reader.

use crate::ir::{PartitionKind, Pipeline, Reconciliation, SinkHash, StateTable};
use crate::sql::build::{self, SelectParts};
use crate::sql::hash::{self, HashCol};
use crate::sql::params::Binder;
use crate::sql::sink::SinkCtx;
use crate::sql::source::{self, SourceCtx};
use crate::sql::{Dialect, DialectKind, SqlError};
use crate::types::Dtype;
use sqlparser::ast::{BinaryOperator, Expr, Query, TableWithJoins};

/// Output alias of the block id.
pub const BLOCK: &str = "_synctool_block";
/// Output alias of a row count.
pub const ROWS: &str = "_synctool_rows";
/// Output alias of a row or block hash.
pub const HASH: &str = "_synctool_hash";
/// Output alias of a row's partition value (timestamp leaf diffs).
pub const PARTITION: &str = "_synctool_partition";

/// Where one side's reconciliation rows come from.
pub enum Reader<'a> {
    /// The pipeline's source query.
    Source(SourceCtx<'a>),
    /// The sink table.
    Sink(SinkCtx<'a>),
    /// A `sourcestate` / `sinkstate` table holding partition and hash columns.
    State {
        /// The pipeline.
        p: &'a Pipeline,
        /// The state table.
        st: &'a StateTable,
        /// Its dialect.
        d: &'static dyn Dialect,
        /// `source` or `sink`.
        which: &'static str,
    },
}

/// The dtype range bounds of a partition kind are bound as.
pub fn partition_dtype(kind: PartitionKind) -> Dtype {
    match kind {
        PartitionKind::Int => Dtype::Int,
        PartitionKind::Float => Dtype::Float,
        PartitionKind::Datetime => Dtype::Datetime,
        PartitionKind::Date => Dtype::Date,
        PartitionKind::Uuid => Dtype::Uuid,
        PartitionKind::Str => Dtype::Str,
    }
}

/// Whether a timestamp reconciliation compares its lookback window block by block (both
/// sides hash rows), rather than merging it whole (a transformed sink without a stored
/// hash).
pub fn compares_window(p: &Pipeline) -> bool {
    !matches!(&p.row_hash.sink, SinkHash::Stored(h) if h.is_empty())
}

/// Whether the partition kind splits by md5 hex prefix rather than by value ranges.
pub fn is_bucketed(kind: PartitionKind) -> bool {
    matches!(kind, PartitionKind::Uuid | PartitionKind::Str)
}

/// Whether some side reads a stored row hash; then `hash_md5_hash` hashes that integer on
/// both sides, so that the two agree.
fn stored_hash(p: &Pipeline) -> bool {
    matches!(p.row_hash.sink, SinkHash::Stored(_))
        || p.source_state.is_some()
        || p.sink_state.is_some()
        || p.source.meta.hash_column.is_some()
}

/// The predicate restricting rows to one range: `p >= $range_start AND p < $range_end`, or
/// for md5-bucketed partitions, rows in any of several buckets of one prefix length:
/// `key_bucket(canonical(p), $prefix_len)` listed in `$prefixes` (`,a3,f0,`), so that one
/// scan serves every changed bucket of a level (the buckets cannot use an index).
///
/// A MySQL date or datetime range ends inclusively instead, at `$range_last`, the range's
/// last instant (a datetime, the microsecond before the end, for a `DATE` column too):
/// MySQL's types end at 9999-12-31 23:59:59.999999, where no exclusive end can be bound,
/// so that the last range of the types still covers their last value (a `9999-12-31`
/// stand-in for "never"). MySQL keeps at most microseconds, so both forms select the same
/// rows, whether the column is a `DATE` or a `DATETIME`.
pub fn range_preds(d: &dyn Dialect, b: &mut Binder, p: Expr, kind: PartitionKind) -> Vec<Expr> {
    if is_bucketed(kind) {
        // The bucket of the key's canonical text, as `block_hash` groups it.
        let bucket = hash::block_id(d, p, kind, b.bind("prefix_len", Dtype::Int));
        return vec![listed(d, bucket, b.bind("prefixes", Dtype::Str))];
    }
    let t = partition_dtype(kind);
    let p = match kind {
        PartitionKind::Float => hash::float_partition(d.kind(), p),
        _ => p,
    };
    let end = if ends_inclusively(d.kind(), kind) {
        build::binop(
            p.clone(),
            BinaryOperator::LtEq,
            b.bind("range_last", Dtype::Datetime),
        )
    } else {
        build::binop(p.clone(), BinaryOperator::Lt, b.bind("range_end", t))
    };
    vec![
        build::binop(p, BinaryOperator::GtEq, b.bind("range_start", t)),
        end,
    ]
}

/// A text key as plain text: PostgreSQL `CAST(k AS TEXT)` (a `citext` column orders
/// ignoring case, an enum by its labels' declared order, and `COLLATE "C"` is refused on
/// an enum; a `char(n)` loses its padding, as its `=` ignores it), ClickHouse
/// `toString(k)` (an `Enum8` orders by its numbers). MySQL's binary order key already
/// orders every text-like column by its bytes.
fn as_text_key(d: &dyn Dialect, e: Expr, t: Dtype) -> Expr {
    match (d.kind(), t) {
        (crate::sql::DialectKind::Postgres, Dtype::Str) => {
            build::cast(e, sqlparser::ast::DataType::Text)
        }
        (crate::sql::DialectKind::Clickhouse, Dtype::Str) => build::call("toString", vec![e]),
        _ => e,
    }
}

/// Whether [`range_preds`] of `dialect` ends a range of `kind` at its last value
/// (`$range_last`, inclusive) rather than at `$range_end` (exclusive): MySQL dates and
/// datetimes, whose types leave no value to bind past their last one.
pub fn ends_inclusively(dialect: DialectKind, kind: PartitionKind) -> bool {
    dialect == DialectKind::Mysql && matches!(kind, PartitionKind::Date | PartitionKind::Datetime)
}

/// Whether `item` is one of the comma-separated items of `list`, which starts and ends with
/// a comma (`,a3,f0,`; `,,` lists the empty prefix): `',' || item || ','` occurs in it.
fn listed(d: &dyn Dialect, item: Expr, list: Expr) -> Expr {
    let comma = || build::string(",");
    let needle = build::call("concat", vec![comma(), item, comma()]);
    let at = match d.kind() {
        crate::sql::DialectKind::Postgres => build::call("strpos", vec![list, needle]),
        crate::sql::DialectKind::Mysql => build::call("LOCATE", vec![needle, list]),
        crate::sql::DialectKind::Clickhouse => build::call("position", vec![list, needle]),
    };
    build::binop(at, BinaryOperator::Gt, build::int(0))
}

impl<'a> Reader<'a> {
    fn d(&self) -> &'static dyn Dialect {
        match self {
            Reader::Source(s) => s.d,
            Reader::Sink(s) => s.d,
            Reader::State { d, .. } => *d,
        }
    }

    fn p(&self) -> &'a Pipeline {
        match self {
            Reader::Source(s) => s.p,
            Reader::Sink(s) => s.p,
            Reader::State { p, .. } => p,
        }
    }

    /// FROM and WHERE with `extra` predicates after the side's filters.
    fn rows(
        &self,
        b: &mut Binder,
        extra: Vec<Expr>,
    ) -> Result<(TableWithJoins, Option<Expr>), SqlError> {
        match self {
            Reader::Source(s) => {
                let mut preds = s.filters(b);
                preds.extend(extra);
                Ok((s.from()?, build::and_all(preds)))
            }
            Reader::Sink(s) => Ok(s.read(b, extra)),
            Reader::State { st, d, .. } => Ok((
                build::from(build::table(
                    build::object_name(*d, st.table.schema.as_deref(), &st.table.name),
                    None,
                    false,
                )),
                build::and_all(extra),
            )),
        }
    }

    /// [`Reader::rows`], but a collapse sink's live rows only (sign sum above zero): what
    /// a timestamp watermark is read from, which a stray cancelling row must not move.
    fn live_rows(
        &self,
        b: &mut Binder,
        extra: Vec<Expr>,
    ) -> Result<(TableWithJoins, Option<Expr>), SqlError> {
        match self {
            Reader::Sink(s) => Ok(s.read_live(b, extra)),
            _ => self.rows(b, extra),
        }
    }

    /// A collapse sink's row hash `h` (`md5`: the row's md5 text) as compared: `h` for a
    /// version live exactly once (sign sum 1), else a value that never equals it (`-1 - h`,
    /// which is `h`'s bitwise complement and cannot overflow, or the md5 text with `~`
    /// appended), so that a key inserted twice or left below zero compares as changed on
    /// the block and the leaf level alike. The sink reads group per version already
    /// ([`crate::sql::sink::SinkCtx::versions`]); the sum comes with that grouping, and the
    /// `CASE` is one comparison per row, so an unchanged sink costs what it did. Other
    /// readers' hashes are `h`.
    fn signed(&self, h: Expr, md5: bool) -> Expr {
        let Reader::Sink(s) = self else { return h };
        if !s.collapses() {
            return h;
        }
        let d = self.d();
        let once = build::eq(
            build::col(d, None, crate::sql::sink::SIGN_SUM),
            build::int(1),
        );
        let other = if md5 {
            build::call("concat", vec![h.clone(), build::string("~")])
        } else {
            build::binop(build::int(-1), BinaryOperator::Minus, h.clone())
        };
        Expr::Case {
            case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![sqlparser::ast::CaseWhen {
                condition: once,
                result: h,
            }],
            else_result: Some(Box::new(other)),
        }
    }

    /// The partition column.
    fn partition(&self, r: &Reconciliation) -> Expr {
        let d = self.d();
        match self {
            Reader::Source(_) => source::column(d, &r.source_partition),
            Reader::Sink(_) => build::col(d, None, &r.sink_partition),
            Reader::State { st, which, .. } => {
                let fallback = if *which == "source" {
                    &r.source_partition.name
                } else {
                    &r.sink_partition
                };
                build::col(d, None, st.partition_column.as_deref().unwrap_or(fallback))
            }
        }
    }

    /// Key expressions, dtypes and output aliases (the sink key columns).
    fn keys(&self) -> Result<Vec<(Expr, Dtype, String)>, SqlError> {
        let p = self.p();
        if p.key.is_empty() {
            return Err(SqlError::MissingKey {
                pipeline: p.name.clone(),
                what: "reconciliation",
            });
        }
        let d = self.d();
        match self {
            Reader::Source(s) => s.keys(),
            Reader::Sink(_) => Ok(p
                .key
                .iter()
                .map(|k| {
                    (
                        build::col(d, None, &k.sink_column),
                        k.dtype,
                        k.sink_column.clone(),
                    )
                })
                .collect()),
            Reader::State { which, .. } => Ok(p
                .key
                .iter()
                .map(|k| {
                    // A source state table names its key columns like the source columns.
                    let name = if *which == "source" {
                        p.source
                            .fields
                            .iter()
                            .find(|f| f.alias == k.source_alias)
                            .map(|f| f.column.name.clone())
                            .unwrap_or_else(|| k.source_alias.clone())
                    } else {
                        k.sink_column.clone()
                    };
                    (build::col(d, None, &name), k.dtype, k.sink_column.clone())
                })
                .collect()),
        }
    }

    /// The hashed columns, or the stored 64-bit row hash.
    fn hash_input(&self) -> Result<Result<Vec<HashCol>, Expr>, SqlError> {
        let d = self.d();
        let p = self.p();
        match self {
            Reader::Source(s) => match &p.source.meta.hash_column {
                Some(c) => Ok(Err(source::column(d, c))),
                None => Ok(Ok(s.hash_cols()?)),
            },
            Reader::Sink(_) => match &p.row_hash.sink {
                SinkHash::Stored(c) => Ok(Err(build::col(d, None, c))),
                SinkHash::Columns(cols) => Ok(Ok(cols
                    .iter()
                    .map(|h| HashCol {
                        expr: build::col(d, None, &h.name),
                        dtype: h.dtype,
                        precision: source::precision(p),
                    })
                    .collect())),
            },
            Reader::State { st, which, .. } => match &st.hash_column {
                Some(c) => Ok(Err(build::col(d, None, c))),
                None => Err(SqlError::StateColumn {
                    pipeline: p.name.clone(),
                    side: which,
                    what: "hash column",
                }),
            },
        }
    }

    /// The 64-bit signed row hash.
    fn row_hash(&self) -> Result<Expr, SqlError> {
        Ok(match self.hash_input()? {
            Ok(cols) => hash::row_hash(self.d(), &cols),
            Err(stored) => stored,
        })
    }

    /// The row md5 (hex text) `hash_md5_hash` concatenates.
    fn row_md5(&self) -> Result<Expr, SqlError> {
        let d = self.d();
        if stored_hash(self.p()) {
            let h = self.row_hash()?;
            return Ok(hash::row_md5(
                d,
                &[HashCol {
                    expr: h,
                    dtype: Dtype::Int,
                    precision: source::precision(self.p()),
                }],
            ));
        }
        match self.hash_input()? {
            Ok(cols) => Ok(hash::row_md5(d, &cols)),
            Err(stored) => Ok(stored),
        }
    }

    fn order(&self) -> Result<Vec<Expr>, SqlError> {
        let d = self.d();
        Ok(self
            .keys()?
            .into_iter()
            .map(|(e, t, _)| d.order_key(e, t))
            .collect())
    }

    /// `SELECT min(p), max(p) FROM rows WHERE filters`.
    pub fn range(&self, b: &mut Binder, r: &Reconciliation) -> Result<Query, SqlError> {
        let d = self.d();
        let part = self.partition(r);
        // Read as the runtime decodes them (a ClickHouse datetime in UTC, whatever its
        // column's time zone), converted once per aggregate rather than per row.
        let t = partition_dtype(r.kind);
        let projection = vec![
            build::aliased(
                d,
                d.read_value(build::call("min", vec![part.clone()]), t),
                "_synctool_min",
            ),
            build::aliased(
                d,
                d.read_value(build::call("max", vec![part]), t),
                "_synctool_max",
            ),
        ];
        let (from, selection) = self.rows(b, vec![])?;
        Ok(build::select(SelectParts {
            projection,
            from: Some(from),
            selection,
            ..Default::default()
        }))
    }

    /// `(rows, hash)` of the rows whose partition column is NULL (within the filters),
    /// which no range block holds: compared as one block of their own.
    pub fn nulls(&self, b: &mut Binder, r: &Reconciliation) -> Result<Query, SqlError> {
        let d = self.d();
        let projection = vec![
            build::aliased(d, hash::block_count(d), ROWS),
            build::aliased(d, self.block_aggregate(r)?, HASH),
        ];
        let (from, selection) = self.rows(b, vec![self.is_null(r)])?;
        Ok(build::select(SelectParts {
            projection,
            from: Some(from),
            selection,
            ..Default::default()
        }))
    }

    /// `p IS NULL`.
    fn is_null(&self, r: &Reconciliation) -> Expr {
        Expr::IsNull(Box::new(self.partition(r)))
    }

    /// A block's hash: the strategy's aggregate of its row hashes.
    fn block_aggregate(&self, r: &Reconciliation) -> Result<Expr, SqlError> {
        let d = self.d();
        Ok(match r.strategy {
            crate::ir::ReconStrategy::HashMd5Hash => {
                hash::block_md5_concat(d, self.signed(self.row_md5()?, true), &self.order()?)
            }
            _ => hash::block_sum(d, self.signed(self.row_hash()?, false)),
        })
    }

    /// One grouped query returning (block, rows, hash) for every block under a parent range.
    pub fn block_hash(&self, b: &mut Binder, r: &Reconciliation) -> Result<Query, SqlError> {
        let d = self.d();
        let part = self.partition(r);
        // For uuid/str partitions the "interval" is the md5 prefix length of the key's
        // canonical text.
        let interval = if is_bucketed(r.kind) {
            "block_prefix_len"
        } else {
            "interval"
        };
        let block = hash::block_id(d, part.clone(), r.kind, b.bind(interval, Dtype::Int));
        let block_hash = self.block_aggregate(r)?;
        let projection = vec![
            build::aliased(d, block, BLOCK),
            build::aliased(d, hash::block_count(d), ROWS),
            build::aliased(d, block_hash, HASH),
        ];
        let range = range_preds(d, b, part, r.kind);
        let (from, selection) = self.rows(b, range)?;
        let block_ref = build::col(d, None, BLOCK);
        Ok(build::select(SelectParts {
            projection,
            from: Some(from),
            selection,
            group_by: vec![block_ref.clone()],
            order_by: vec![block_ref],
            ..Default::default()
        }))
    }

    /// Key columns and row hash of every row of a range, ordered by key; for a timestamp
    /// reconciliation also the partition value, so that a row that differs although its
    /// timestamp did not move can be told apart.
    pub fn leaf_diff(&self, b: &mut Binder, r: &Reconciliation) -> Result<Query, SqlError> {
        let range = range_preds(self.d(), b, self.partition(r), r.kind);
        self.keyed_hashes(b, r, range)
    }

    /// [`Reader::leaf_diff`] of the rows whose partition column is NULL.
    pub fn null_leaf_diff(&self, b: &mut Binder, r: &Reconciliation) -> Result<Query, SqlError> {
        self.keyed_hashes(b, r, vec![self.is_null(r)])
    }

    /// Key columns and row hash of every row matching `preds` (and for a timestamp
    /// reconciliation its partition value), ordered by key.
    fn keyed_hashes(
        &self,
        b: &mut Binder,
        r: &Reconciliation,
        preds: Vec<Expr>,
    ) -> Result<Query, SqlError> {
        let d = self.d();
        let mut projection: Vec<_> = self
            .keys()?
            .into_iter()
            .map(|(e, t, alias)| build::read_item(d, d.read_value(e, t), &alias))
            .collect();
        projection.push(build::aliased(
            d,
            self.signed(self.row_hash()?, false),
            HASH,
        ));
        if r.strategy == crate::ir::ReconStrategy::Timestamp {
            let part = d.read_value(self.partition(r), partition_dtype(r.kind));
            projection.push(build::aliased(d, part, PARTITION));
        }
        let order_by = self.order()?;
        build::unshadow_order(d, &mut projection, &order_by);
        let (from, selection) = self.rows(b, preds)?;
        Ok(build::select(SelectParts {
            projection,
            from: Some(from),
            selection,
            order_by,
            ..Default::default()
        }))
    }

    /// Every key (within the side's filters; a collapse sink's live rows), one row per row,
    /// ordered by key in the order the runtime compares keys in on every dialect: numbers
    /// and times by value, text by its UTF-8 bytes, uuids by their lower-case text. Text
    /// keys are read as text first (PostgreSQL `CAST(k AS TEXT)`, ClickHouse `toString`),
    /// so that a column whose own order is not its text's (`citext`, an enum, a
    /// `char(n)`'s padding) still comes in byte order. Two such reads, one per side, are
    /// merged to count the sink rows whose key the source lacks.
    pub fn ordered_keys(&self, b: &mut Binder) -> Result<Query, SqlError> {
        let d = self.d();
        let keys = self.keys()?;
        let mut projection: Vec<_> = keys
            .iter()
            .map(|(e, t, alias)| {
                build::read_item(d, d.read_value(as_text_key(d, e.clone(), *t), *t), alias)
            })
            .collect();
        // `order_key` orders a text key by its text already (a cast on PostgreSQL,
        // `toString` on ClickHouse).
        let order_by: Vec<_> = keys
            .into_iter()
            .map(|(e, t, _)| d.order_key(e, t))
            .collect();
        build::unshadow_order(d, &mut projection, &order_by);
        let (from, selection) = self.rows(b, vec![])?;
        Ok(build::select(SelectParts {
            projection,
            from: Some(from),
            selection,
            order_by,
            ..Default::default()
        }))
    }

    /// `SELECT max(p) FROM rows WHERE filters` — the timestamp strategy's watermark.
    pub fn watermark(&self, b: &mut Binder, r: &Reconciliation) -> Result<Query, SqlError> {
        let d = self.d();
        let projection = vec![build::aliased(
            d,
            d.read_value(
                build::call("max", vec![self.partition(r)]),
                partition_dtype(r.kind),
            ),
            "_synctool_watermark",
        )];
        let (from, selection) = self.live_rows(b, vec![])?;
        Ok(build::select(SelectParts {
            projection,
            from: Some(from),
            selection,
            ..Default::default()
        }))
    }
}
