//! The source side: FROM with joins, filters, field expressions and the extract queries.

use crate::ir::{ColumnRef, Filter, FilterOp, Join, JoinKind, Pipeline};
use crate::sql::build::{self, SelectParts};
use crate::sql::hash::{self, HashCol, TimePrecision};
use crate::sql::params::Binder;
use crate::sql::{pushdown, Dialect, DialectKind, SqlError};
use crate::types::Dtype;
use sqlparser::ast::{
    visit_expressions_mut, BinaryOperator, Expr, Join as AstJoin, JoinConstraint, JoinOperator,
    Query, SelectItem, TableWithJoins,
};
use std::ops::ControlFlow;

/// The extract column carrying the source row hash when the sink stores it.
pub const HASH_ALIAS: &str = "_synctool_hash";

/// A column of a filtered table as an expression: `"q"."c"` or `"c"`.
pub fn column(d: &dyn Dialect, c: &ColumnRef) -> Expr {
    build::col(d, c.qualifier.as_deref(), &c.name)
}

/// One filter as a predicate; values become bound parameters named by the filter.
pub fn filter_pred(d: &dyn Dialect, b: &mut Binder, f: &Filter, col: Expr) -> Expr {
    let op = match f.op {
        FilterOp::Eq => BinaryOperator::Eq,
        FilterOp::NotEq => BinaryOperator::NotEq,
        FilterOp::Lt => BinaryOperator::Lt,
        FilterOp::LtEq => BinaryOperator::LtEq,
        FilterOp::Gt => BinaryOperator::Gt,
        FilterOp::GtEq => BinaryOperator::GtEq,
        FilterOp::IsNull => return Expr::IsNull(Box::new(col)),
        FilterOp::IsNotNull => return Expr::IsNotNull(Box::new(col)),
        FilterOp::In | FilterOp::NotIn => {
            let negated = f.op == FilterOp::NotIn;
            if f.params.is_empty() {
                // `IN ()` is not SQL: an empty list matches nothing (NOT IN: everything).
                let never = build::eq(build::int(1), build::int(0));
                return if negated {
                    build::eq(build::int(1), build::int(1))
                } else {
                    never
                };
            }
            let list = f.params.iter().map(|p| b.bind(p, f.dtype)).collect();
            return Expr::InList {
                expr: Box::new(col),
                list,
                negated,
            };
        }
        FilterOp::Like => {
            let pattern = b.bind(param_name(f, 0), f.dtype);
            return Expr::Like {
                negated: false,
                any: false,
                expr: Box::new(col),
                pattern: Box::new(pattern),
                escape_char: None,
            };
        }
    };
    let _ = d;
    let v = b.bind(param_name(f, 0), f.dtype);
    build::binop(col, op, v)
}

fn param_name(f: &Filter, i: usize) -> &str {
    f.params.get(i).map(String::as_str).unwrap_or("filter")
}

/// Re-quotes every identifier of a join condition for `d`.
pub fn requote(d: &dyn Dialect, e: &Expr) -> Expr {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        match x {
            Expr::Identifier(i) => *i = d.ident(&i.value),
            Expr::CompoundIdentifier(parts) => {
                for p in parts.iter_mut() {
                    *p = d.ident(&p.value);
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    e
}

/// Whether `e` is a conjunction of equalities between columns, the join condition every
/// ClickHouse release accepts.
fn is_equi_conjunction(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_equi_conjunction(inner),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => is_equi_conjunction(left) && is_equi_conjunction(right),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => is_column(left) && is_column(right),
        _ => false,
    }
}

fn is_column(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

fn join(d: &dyn Dialect, p: &Pipeline, j: &Join) -> Result<AstJoin, SqlError> {
    if d.kind() == DialectKind::Clickhouse && !is_equi_conjunction(&j.on) {
        return Err(SqlError::UnsupportedJoin {
            pipeline: p.name.clone(),
            dialect: d.kind().name(),
            table: j.table.qualifier().to_string(),
            reason: "ClickHouse joins need `ON a.x = b.y [AND …]` between columns",
        });
    }
    let on = JoinConstraint::On(requote(d, &j.on));
    let join_operator = match j.kind {
        JoinKind::Inner => JoinOperator::Inner(on),
        JoinKind::Left => JoinOperator::Left(on),
        JoinKind::Right => JoinOperator::Right(on),
        JoinKind::Full => JoinOperator::FullOuter(on),
    };
    Ok(AstJoin {
        relation: table_ref(d, &j.table),
        global: false,
        join_operator,
    })
}

fn table_ref(d: &dyn Dialect, t: &crate::ir::TableRef) -> sqlparser::ast::TableFactor {
    build::table(
        build::object_name(d, t.table.schema.as_deref(), &t.table.name),
        t.alias.as_deref().map(|a| d.ident(a)),
        false,
    )
}

/// Resolves names of the source row (field aliases, pushed aliases) to SQL expressions.
pub struct SourceCtx<'a> {
    /// The pipeline.
    pub p: &'a Pipeline,
    /// The source dialect.
    pub d: &'static dyn Dialect,
}

impl<'a> SourceCtx<'a> {
    /// The context of `p`'s source, which must be a SQL store.
    pub fn new(p: &'a Pipeline, d: &'static dyn Dialect) -> Self {
        Self { p, d }
    }

    /// FROM the main table with its joins.
    pub fn from(&self) -> Result<TableWithJoins, SqlError> {
        let s = &self.p.source;
        let mut relation = table_ref(self.d, &s.table);
        if s.final_ == Some(true) {
            if let sqlparser::ast::TableFactor::Table { version, .. } = &mut relation {
                *version = Some(sqlparser::ast::TableVersion::Function(build::keyword(
                    "FINAL",
                )));
            }
        }
        Ok(TableWithJoins {
            relation,
            joins: s
                .joins
                .iter()
                .map(|j| join(self.d, self.p, j))
                .collect::<Result<_, _>>()?,
        })
    }

    /// ClickHouse: the engine of the main table (`system.tables.engine`), for a source that
    /// leaves `final` unset: a table whose engine merges rows in the background is refused
    /// then, as reading its parts as they are would give older versions of rows.
    pub fn engine_query(&self, b: &mut Binder) -> sqlparser::ast::Query {
        let db = match &self.p.source.table.table.schema {
            Some(_) => b.bind("schema", Dtype::Str),
            None => build::call("currentDatabase", vec![]),
        };
        build::ch_engine_query(
            self.d,
            &["engine"],
            vec![
                build::eq(build::keyword("database"), db),
                build::eq(build::keyword("name"), b.bind("table", Dtype::Str)),
            ],
        )
    }

    /// Whether the main table's own row-count estimate stands for the number of rows a full
    /// sync reads: the source has no filters (with one, the table's count is only an upper
    /// bound, however few rows pass) and joins nothing but LEFT joins (which keep every row
    /// of the main table: the count is the table's when each row finds at most one match, as
    /// a lookup by key does; an inner, right or full join can drop or add any number of
    /// rows).
    pub fn estimates_rows(&self) -> bool {
        let s = &self.p.source;
        s.filters.is_empty() && s.joins.iter().all(|j| j.kind == JoinKind::Left)
    }

    /// MySQL: the columns of the main table with their collations (`information_schema.
    /// columns`: name, collation; NULL for a binary column), read for the text key columns
    /// of [`text_key_columns`].
    pub fn collations_query(&self, b: &mut Binder) -> Query {
        let d = self.d;
        let schema = match &self.p.source.table.table.schema {
            Some(_) => b.bind("schema", Dtype::Str),
            None => build::call("DATABASE", vec![]),
        };
        build::select(SelectParts {
            projection: vec![
                build::aliased(d, build::keyword("column_name"), "name"),
                build::aliased(d, build::keyword("collation_name"), "collation"),
            ],
            from: Some(build::from(build::table(
                build::builtin_name(&["information_schema", "columns"]),
                None,
                false,
            ))),
            selection: build::and_all(vec![
                build::eq(build::keyword("table_schema"), schema),
                build::eq(build::keyword("table_name"), b.bind("table", Dtype::Str)),
            ]),
            order_by: vec![build::keyword("column_name")],
            ..Default::default()
        })
    }

    /// The database's own estimate of the main table's row count, from its catalog (no
    /// scan), as one row with one column, `estimate`:
    /// - PostgreSQL: `pg_class.reltuples` as a bigint (`-1` for a table never vacuumed or
    ///   analyzed since PostgreSQL 14, `0` for one that may be either empty or unanalyzed
    ///   before; a partitioned table's own entry stays so until ANALYZE runs on it, which
    ///   autovacuum never does; `-1` for a view). The table is found as
    ///   the extract finds it: in its `dbschema`, else by the search path
    ///   (`pg_table_is_visible`).
    /// - MySQL / MariaDB: `information_schema.tables.table_rows` (InnoDB's sampled
    ///   estimate; NULL for a view).
    /// - ClickHouse: `sum(rows)` of the table's active parts in `system.parts` (`0` for an
    ///   engine without parts, such as `Memory` or a view), which counts the rows of parts
    ///   not merged yet as they are (older versions of a row included).
    ///
    /// No row at all when the table is not found.
    pub fn row_estimate_query(&self, b: &mut Binder) -> Query {
        let d = self.d;
        let estimate = |e: Expr| vec![build::aliased(d, e, "estimate")];
        let table = &self.p.source.table.table;
        match d.kind() {
            DialectKind::Postgres => {
                let col = |t: &str, c: &str| build::col(d, Some(t), c);
                let catalog = |t: &str| build::builtin_name(&["pg_catalog", t]);
                let mut from =
                    build::from(build::table(catalog("pg_class"), Some(d.ident("c")), false));
                let mut preds = Vec::new();
                match &table.schema {
                    Some(_) => {
                        from.joins.push(build::join_on(
                            build::table(catalog("pg_namespace"), Some(d.ident("n")), false),
                            build::eq(col("n", "oid"), col("c", "relnamespace")),
                        ));
                        preds.push(build::eq(col("n", "nspname"), b.bind("schema", Dtype::Str)));
                        preds.push(build::eq(col("c", "relname"), b.bind("table", Dtype::Str)));
                    }
                    None => {
                        preds.push(build::eq(col("c", "relname"), b.bind("table", Dtype::Str)));
                        preds.push(build::call("pg_table_is_visible", vec![col("c", "oid")]));
                    }
                }
                build::select(SelectParts {
                    projection: estimate(build::cast(
                        col("c", "reltuples"),
                        sqlparser::ast::DataType::BigInt(None),
                    )),
                    from: Some(from),
                    selection: build::and_all(preds),
                    ..Default::default()
                })
            }
            DialectKind::Mysql => {
                let schema = match &table.schema {
                    Some(_) => b.bind("schema", Dtype::Str),
                    None => build::call("DATABASE", vec![]),
                };
                build::select(SelectParts {
                    projection: estimate(build::keyword("table_rows")),
                    from: Some(build::from(build::table(
                        build::builtin_name(&["information_schema", "tables"]),
                        None,
                        false,
                    ))),
                    selection: build::and_all(vec![
                        build::eq(build::keyword("table_schema"), schema),
                        build::eq(build::keyword("table_name"), b.bind("table", Dtype::Str)),
                    ]),
                    ..Default::default()
                })
            }
            DialectKind::Clickhouse => {
                let db = match &table.schema {
                    Some(_) => b.bind("schema", Dtype::Str),
                    None => build::call("currentDatabase", vec![]),
                };
                build::select(SelectParts {
                    projection: estimate(build::call("sum", vec![build::keyword("rows")])),
                    from: Some(build::from(build::table(
                        build::builtin_name(&["system", "parts"]),
                        None,
                        false,
                    ))),
                    selection: build::and_all(vec![
                        build::eq(build::keyword("database"), db),
                        build::eq(build::keyword("table"), b.bind("table", Dtype::Str)),
                        build::eq(build::keyword("active"), build::int(1)),
                    ]),
                    ..Default::default()
                })
            }
        }
    }

    /// The source filters as predicates.
    pub fn filters(&self, b: &mut Binder) -> Vec<Expr> {
        self.p
            .source
            .filters
            .iter()
            .map(|f| filter_pred(self.d, b, f, column(self.d, &f.column)))
            .collect()
    }

    /// The column behind a source field alias.
    pub fn field(&self, alias: &str) -> Option<Expr> {
        self.p
            .source
            .fields
            .iter()
            .find(|f| f.alias == alias)
            .map(|f| column(self.d, &f.column))
    }

    /// A source field alias or a pushed alias as an expression.
    pub fn resolve(&self, name: &str) -> Result<Expr, SqlError> {
        if let Some(e) = self.field(name) {
            return Ok(e);
        }
        if let Some(px) = self.p.source.pushed.iter().find(|x| x.alias == name) {
            return self.pushed(px);
        }
        Err(SqlError::UnknownAlias {
            pipeline: self.p.name.clone(),
            name: name.to_string(),
        })
    }

    /// A pushed-down expression, rounded to its decimal field's scale (`round(e, s)`, half
    /// away from zero on every dialect) where [`crate::ir::PushedExpr::round_to`] says so.
    fn pushed(&self, px: &crate::ir::PushedExpr) -> Result<Expr, SqlError> {
        let lookup = |a: &str| self.field(a);
        let e =
            pushdown::to_sql(&px.expr, self.d, &lookup).ok_or_else(|| SqlError::NotPushable {
                pipeline: self.p.name.clone(),
                alias: px.alias.clone(),
                dialect: self.d.kind().name(),
            })?;
        Ok(match px.round_to {
            Some(scale) => build::call("round", vec![e, build::int(i64::from(scale))]),
            None => e,
        })
    }

    /// The time precision datetimes hash at.
    pub fn precision(&self) -> TimePrecision {
        precision(self.p)
    }

    /// The hashed source columns, in [`crate::ir::RowHash::source`] order.
    pub fn hash_cols(&self) -> Result<Vec<HashCol>, SqlError> {
        let mut cols = self
            .p
            .row_hash
            .source
            .iter()
            .map(|h| {
                Ok(HashCol {
                    expr: self.resolve(&h.name)?,
                    dtype: h.dtype,
                    precision: self.precision(),
                })
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        // The definitions' fingerprint, last: 16 hex digits the checker derived (no config
        // text), so a literal like the canonical form's separators.
        if let Some(f) = &self.p.row_hash.definitions {
            cols.push(HashCol {
                expr: build::string(f),
                dtype: Dtype::Str,
                precision: self.precision(),
            });
        }
        Ok(cols)
    }

    /// The key columns: expression, dtype, output alias (the sink column).
    pub fn keys(&self) -> Result<Vec<(Expr, Dtype, String)>, SqlError> {
        self.p
            .key
            .iter()
            .map(|k| {
                Ok((
                    self.resolve(&k.source_alias)?,
                    k.dtype,
                    k.sink_column.clone(),
                ))
            })
            .collect()
    }

    /// The streaming order: with a `timestamp` reconciliation, its partition column, then
    /// the key; else the configured order column, else the key.
    ///
    /// A timestamp run resumes from the sink's newest partition value, so the rows must
    /// reach the sink in that column's order: a run stopped part way (killed, or by a row
    /// that does not fit) then leaves a sink whose newest row has every older row before
    /// it, and the next run's watermark misses none. In key order, the rows after the stop
    /// that are older than a written one would never be read again. Rows whose partition
    /// value is NULL, which no watermark orders, are compared on every run instead.
    pub fn order(&self) -> Result<Vec<Expr>, SqlError> {
        if let Some(r) = self
            .p
            .reconciliations
            .iter()
            .find(|r| r.strategy == crate::ir::ReconStrategy::Timestamp)
        {
            // The column itself, so that an index on it serves the order; no other
            // side needs to match it.
            let mut out = vec![column(self.d, &r.source_partition)];
            out.extend(
                self.keys()?
                    .into_iter()
                    .map(|(e, t, _)| self.d.order_key(e, t)),
            );
            return Ok(out);
        }
        if let Some(c) = &self.p.source.meta.order_column {
            let dtype = self
                .p
                .source
                .fields
                .iter()
                .find(|f| &f.column == c)
                .map(|f| f.dtype)
                .unwrap_or(Dtype::Int);
            return Ok(vec![self.d.order_key(column(self.d, c), dtype)]);
        }
        Ok(self
            .keys()?
            .into_iter()
            .map(|(e, t, _)| self.d.order_key(e, t))
            .collect())
    }

    /// The extract projection: fields, pushed expressions, and the row hash when the sink
    /// stores it.
    pub fn projection(&self) -> Result<Vec<SelectItem>, SqlError> {
        let d = self.d;
        let mut items: Vec<SelectItem> = self
            .p
            .source
            .fields
            .iter()
            .map(|f| build::read_item(d, d.read_value(column(d, &f.column), f.dtype), &f.alias))
            .collect();
        for px in &self.p.source.pushed {
            let e = match px.expr.ty.to_dtype() {
                Some(t) => d.read_value(self.pushed(px)?, t),
                None => self.pushed(px)?,
            };
            items.push(build::read_item(d, e, &px.alias));
        }
        if self.p.row_hash.sink.is_stored() {
            let h = hash::row_hash(d, &self.hash_cols()?);
            items.push(build::aliased(d, h, HASH_ALIAS));
        }
        Ok(items)
    }

    /// The extract of the rows whose partition column `partition` is NULL.
    pub fn extract_null(
        &self,
        b: &mut Binder,
        partition: &ColumnRef,
    ) -> Result<sqlparser::ast::Query, SqlError> {
        let null = Expr::IsNull(Box::new(column(self.d, partition)));
        self.extract(b, vec![null])
    }

    /// The extract query with `extra` predicates after the filters, ordered for streaming.
    pub fn extract(&self, b: &mut Binder, extra: Vec<Expr>) -> Result<Query, SqlError> {
        let mut preds = self.filters(b);
        preds.extend(extra);
        let mut projection = self.projection()?;
        let order_by = self.order()?;
        build::unshadow_order(self.d, &mut projection, &order_by);
        Ok(build::select(SelectParts {
            projection,
            from: Some(self.from()?),
            selection: build::and_all(preds),
            order_by,
            ..Default::default()
        }))
    }
}

/// The text key columns a MySQL source copies from its main table into a MySQL sink, as
/// (sink column, source column) pairs: `source.collations` reads the source columns'
/// collations, to refuse a case-sensitive source key into a sink key that ignores case.
/// Empty unless both sides are MySQL.
pub fn text_key_columns(p: &Pipeline) -> Vec<(String, String)> {
    let mysql = Some(DialectKind::Mysql);
    if p.source.store.kind.dialect() != mysql || p.sink.store.kind.dialect() != mysql {
        return Vec::new();
    }
    let main = p.source.table.qualifier();
    p.key
        .iter()
        .filter(|k| k.dtype == Dtype::Str)
        .filter_map(|k| {
            let f = p.source.fields.iter().find(|f| f.alias == k.source_alias)?;
            let ours = f.column.qualifier.as_deref().is_none_or(|q| q == main);
            ours.then(|| (k.sink_column.clone(), f.column.name.clone()))
        })
        .collect()
}

/// The precision datetimes hash at in `p`.
pub fn precision(p: &Pipeline) -> TimePrecision {
    if p.row_hash.seconds_precision {
        TimePrecision::Seconds
    } else {
        TimePrecision::Micros
    }
}
