//! The source: datastore, tables and joins, selected fields with their aliases, filters and
//! meta columns.

use super::columns::{self, Scope};
use super::fields::looks_like_expression;
use super::stores::{table_name, Stores};
use super::Diags;
use crate::config::raw::{RawSink, RawSource, RawSourceField, RawTable};
use crate::config::Spanned;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{
    ColumnRef, Join, JoinKind, Source, SourceField, SourceMeta, StoreKind, TableName, TableRef,
};
use crate::sql::DialectKind;
use crate::types::Dtype;

/// Default rows per batch.
pub const DEFAULT_BATCH_SIZE: u32 = 10_000;

fn table_ref(t: &RawTable) -> TableRef {
    TableRef {
        table: table_name(t),
        alias: t.alias.as_ref().map(|a| a.value.clone()),
    }
}

/// Parse a dtype name, reporting unknown names with a hint.
pub fn dtype(s: &Spanned<String>, diags: &mut Diags) -> Option<Dtype> {
    match Dtype::parse(&s.value) {
        Some(d) => Some(d),
        None if s.value.trim().to_ascii_lowercase().starts_with("decimal(")
            || s.value.trim().to_ascii_lowercase().starts_with("numeric(") =>
        {
            diags.push(
                s.error(format!("`{}` is not a decimal synctool keeps", s.value))
                    .with_help("decimal(p,s) takes a precision p from 1 to 38 and a scale s from 0 to p (the widest ClickHouse keeps); a wider PostgreSQL `numeric` or MySQL `decimal` column can be read as `str`, which keeps its text"),
            );
            None
        }
        None => {
            let mut d = s.error(format!("unknown dtype `{}`", s.value));
            d = match did_you_mean(&s.value, Dtype::NAMES.iter().copied()) {
                Some(x) => d.with_help(format!("did you mean `{x}`?")),
                None => d.with_help(format!(
                    "expected one of: {}, or decimal(p,s)",
                    Dtype::NAMES.join(", ")
                )),
            };
            diags.push(d);
            None
        }
    }
}

/// A source without `fields` (the seed README calls them optional) reads the columns its
/// sink fields name: each sink field copying a column (`source_column: u.name`, or no
/// `source_column` and no `source`: the column of its own name) makes a source field of
/// that column, typed by the sink field's `dtype`. `None` when the source has fields, or
/// the sink names none; a copying sink field without a `dtype` is an error.
pub fn implied_fields(r: &RawSource, sink: &RawSink, diags: &mut Diags) -> Option<RawSource> {
    if !r.fields.is_empty() || sink.fields.is_empty() || r.table.is_none() {
        return None;
    }
    let mut out = r.clone();
    for f in &sink.fields {
        if f.source.is_some() {
            continue;
        }
        let column = match &f.source_column {
            Some(c) if c.value.starts_with("TMPL(") || looks_like_expression(&c.value) => continue,
            Some(c) => c.clone(),
            None => f.column.clone(),
        };
        let Some(dtype) = &f.dtype else {
            diags.push(
                column
                    .error(format!(
                        "the source has no `fields`, so sink field `{}` needs a `dtype` (it types the source column `{}`)",
                        f.column.value, column.value
                    ))
                    .with_help("add `dtype`, or list the source's `fields` with their dtypes"),
            );
            continue;
        };
        if out.fields.iter().any(|x| x.column.value == column.value) {
            continue;
        }
        out.fields.push(RawSourceField {
            path: f.path.clone(),
            column,
            dtype: Some(dtype.clone()),
            alias: None,
        });
    }
    Some(out)
}

/// Check the source.
/// `declared` receives every name a field is declared under (its column as written and as
/// resolved, its alias and default alias): the caller takes those that no kept field answers
/// to for fields refused by their own checks, whose later uses are not reported again.
pub fn source(
    r: &RawSource,
    stores: &Stores,
    declared: &mut Vec<String>,
    diags: &mut Diags,
) -> Option<Source> {
    let store = stores.datastore(&r.datastore, diags)?;
    let sql = match store.kind {
        StoreKind::Sql(_) => true,
        StoreKind::Nats => false,
        StoreKind::Webhook => {
            diags.push(
                r.datastore
                    .error("a webhook datastore cannot be a source")
                    .with_help("sources are postgres, mysql, clickhouse or nats"),
            );
            return None;
        }
    };
    let table = match (&r.table, sql) {
        (Some(t), _) => table_ref(t),
        (None, true) => {
            diags.push(
                Diagnostic::error("the source needs `table`")
                    .at_path(r.path.clone())
                    .with_span(r.datastore.span),
            );
            return None;
        }
        (None, false) => TableRef {
            table: TableName {
                schema: None,
                name: store.name.clone(),
            },
            alias: None,
        },
    };
    if !sql {
        nats_source_limits(r, diags);
    }
    let mut scope = Scope {
        tables: vec![table.clone()],
    };
    let mut joins = Vec::new();
    for j in &r.joins {
        let mut t = table_ref(&j.table);
        // A joined table without a schema lives in the source table's.
        if t.table.schema.is_none() {
            t.table.schema = table.table.schema.clone();
        }
        if scope.tables.iter().any(|x| x.qualifier() == t.qualifier()) {
            diags.push(
                j.table
                    .alias
                    .as_ref()
                    .unwrap_or(&j.table.table)
                    .error(format!(
                        "`{}` is already used by another table of this source",
                        t.qualifier()
                    ))
                    .with_help("give the joined table a distinct `alias`"),
            );
            continue;
        }
        scope.tables.push(t.clone());
        let kind = match j.kind.as_ref().map(|k| k.value.to_ascii_lowercase()) {
            None => JoinKind::Inner,
            Some(k) => match k.trim_end_matches(" outer").trim_end_matches(" join") {
                "inner" => JoinKind::Inner,
                "left" => JoinKind::Left,
                "right" => JoinKind::Right,
                "full" => JoinKind::Full,
                other => {
                    let kk = j.kind.as_ref().expect("some");
                    diags.push(
                        kk.error(format!("unknown join type `{other}`"))
                            .with_choices(other, &["inner", "left", "right", "full"]),
                    );
                    continue;
                }
            },
        };
        if matches!(kind, JoinKind::Full | JoinKind::Right)
            && store.kind == StoreKind::Sql(DialectKind::Clickhouse)
        {
            let kk = j
                .kind
                .as_ref()
                .expect("a right or full join names its type");
            diags.push(
                kk.error("a ClickHouse source takes inner and left joins only")
                    .with_label("not on a clickhouse source")
                    .with_help("ClickHouse 18.16 fails, or crashes, on right and full joins that give NULL for unmatched rows; make the other table the source and use a left join"),
            );
            continue;
        }
        if kind == JoinKind::Full && store.kind == StoreKind::Sql(DialectKind::Mysql) {
            let kk = j.kind.as_ref().expect("a full join names its type");
            diags.push(
                kk.error("MySQL and MariaDB have no FULL JOIN")
                    .with_label("not on a mysql source")
                    .with_help("use a left or right join, or read the tables in two pipelines"),
            );
            continue;
        }
        joins.push((j, t, kind));
    }
    // Join conditions can name any table of the source, so they are resolved once all are known.
    let joins: Vec<Join> = joins
        .into_iter()
        .filter_map(|(j, t, kind)| {
            let on = scope.join_on(&j.on, diags)?;
            Some(Join { kind, table: t, on })
        })
        .collect();

    let mut fields: Vec<SourceField> = Vec::new();
    for f in &r.fields {
        declared.push(f.column.value.trim().to_string());
        declared.extend(f.alias.iter().map(|a| a.value.clone()));
        if let Some((q, c)) = f.column.value.trim().split_once('.') {
            declared.push(format!("{q}__{c}"));
        }
        let Some(column) = scope.column(&f.column, diags) else {
            continue;
        };
        declared.push(default_alias(&column));
        let dt = match &f.dtype {
            Some(d) => dtype(d, diags),
            None => {
                diags.push(
                    Diagnostic::error(format!("source field `{}` needs a `dtype`", f.column.value))
                        .at_path(f.path.clone())
                        .with_span(f.column.span)
                        .with_help(format!("one of: {}", Dtype::NAMES.join(", "))),
                );
                None
            }
        };
        let alias = match &f.alias {
            Some(a) => {
                if !valid_alias(&a.value) {
                    diags.push(
                        a.error(format!("`{}` is not a valid alias", a.value))
                            .with_help("use letters, digits and `_`, not starting with a digit"),
                    );
                    continue;
                }
                a.value.clone()
            }
            None => default_alias(&column),
        };
        if fields.iter().any(|x| x.alias == alias) {
            diags.push(
                f.alias
                    .as_ref()
                    .unwrap_or(&f.column)
                    .error(format!("two source fields have the alias `{alias}`"))
                    .with_help("give one of them a distinct `alias`"),
            );
            continue;
        }
        if let Some(dt) = dt {
            fields.push(SourceField {
                column,
                alias,
                dtype: dt,
            });
        }
    }
    if r.fields.is_empty() {
        diags.push(
            Diagnostic::error("the source needs `fields` (each with `column` and `dtype`)")
                .at_path(r.path.clone())
                .with_span(r.datastore.span)
                .with_help("or give the sink fields a `dtype`: the source then reads the columns they copy"),
        );
    }
    let mut filters = Vec::new();
    for (i, f) in r.filters.iter().enumerate() {
        let Some(col) = scope.column(&f.column, diags) else {
            continue;
        };
        let dt = field_for(&fields, &col).map(|x| x.dtype);
        if let Some(flt) = columns::filter(f, i, "", col, dt, diags) {
            filters.push(flt);
        }
    }
    let meta = SourceMeta {
        partition_column: r
            .meta
            .partition_column
            .as_ref()
            .and_then(|c| scope.column(c, diags)),
        hash_column: r
            .meta
            .hash_column
            .as_ref()
            .and_then(|c| scope.column(c, diags)),
        order_column: r
            .meta
            .order_column
            .as_ref()
            .and_then(|c| scope.column(c, diags)),
        unique_columns: r
            .meta
            .unique_columns
            .iter()
            .filter_map(|c| scope.column(c, diags))
            .collect(),
    };
    let final_ = r.final_.as_ref().and_then(|f| {
        if store.kind == StoreKind::Sql(DialectKind::Clickhouse) {
            Some(f.value)
        } else {
            diags.push(
                f.error("`final` applies to ClickHouse sources only")
                    .with_label("not on this source")
                    .with_help(
                        "remove it: only ClickHouse has tables whose rows merge in the background",
                    ),
            );
            None
        }
    });
    Some(Source {
        store,
        table,
        joins,
        filters,
        fields,
        pushed: Vec::new(),
        batch_size: r
            .batch_size
            .as_ref()
            .map(|b| b.value)
            .unwrap_or(DEFAULT_BATCH_SIZE),
        meta,
        final_,
    })
}

/// A NATS source is a stream of JSON messages, not a table: nothing can be joined to it or
/// filtered by a query. Joins and filters are errors (rather than being ignored, which would
/// sync rows the config says to leave out).
fn nats_source_limits(r: &RawSource, diags: &mut Diags) {
    for j in &r.joins {
        diags.push(
            j.table
                .table
                .error("a NATS source cannot have joins")
                .with_label("joins need a SQL source")
                .with_help("a NATS source reads one JSON object per message; join in the sink database or enrich the rows (`enrichment:`) instead"),
        );
    }
    for f in &r.filters {
        diags.push(
            f.column
                .error("a NATS source cannot have filters")
                .with_label("filters run in the source's SQL query")
                .with_help("every message consumed is written; filter before publishing, or route messages to another `subject`"),
        );
    }
}

/// Sink settings that have no meaning when the source is NATS (checked once the sink is
/// known): `allow_delete` (the messages of one run are not the whole table, so "absent from
/// the source" would delete almost every row) and a stored row hash (`meta_columns.
/// hash_column`, computed by the source's extract query, which a NATS source has not).
pub fn nats_sink_limits(sink: &crate::config::raw::RawSink, diags: &mut Diags) {
    if let Some(a) = sink.merge.as_ref().and_then(|m| m.allow_delete.as_ref()) {
        if a.value {
            diags.push(
                a.error("`allow_delete` cannot be used with a NATS source")
                    .with_label("a run's messages are not the whole table")
                    .with_help(
                        "remove `allow_delete`: rows are only inserted or updated from messages",
                    ),
            );
        }
    }
    if let Some(h) = &sink.meta.hash_column {
        diags.push(
            h.error("a NATS source has no row hash to store in `hash_column`")
                .with_label("the row hash is computed by a SQL source's extract query")
                .with_help(
                    "remove `meta_columns.hash_column`: a pipeline from NATS is never reconciled",
                ),
        );
    }
}

/// `u.name` → `u__name`; `name` → `name`.
pub fn default_alias(c: &ColumnRef) -> String {
    match &c.qualifier {
        Some(q) => format!("{q}__{}", c.name),
        None => c.name.clone(),
    }
}

fn valid_alias(s: &str) -> bool {
    let mut ch = s.chars();
    ch.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && ch.all(|c| c.is_alphanumeric() || c == '_')
}

/// The selected field reading this column, if any. An unqualified reference matches a field
/// of the same column name when only one field has it.
pub fn field_for<'a>(fields: &'a [SourceField], c: &ColumnRef) -> Option<&'a SourceField> {
    if let Some(f) = fields.iter().find(|f| &f.column == c) {
        return Some(f);
    }
    if c.qualifier.is_none() {
        let mut it = fields.iter().filter(|f| f.column.name == c.name);
        let first = it.next()?;
        if it.next().is_none() {
            return Some(first);
        }
    }
    None
}

/// Find a source field by a reference as written in the config: its alias, its column
/// (`u.name`), or the default alias (`u__name`).
pub fn lookup<'a>(src: &'a Source, text: &str) -> Option<&'a SourceField> {
    let t = text.trim();
    if let Some(f) = src.fields.iter().find(|f| f.alias == t) {
        return Some(f);
    }
    let (q, name) = match t.split_once('.') {
        Some((q, n)) => (Some(q), n),
        None => (None, t),
    };
    let q = match q {
        Some(q) => {
            let scope = Scope {
                tables: std::iter::once(src.table.clone())
                    .chain(src.joins.iter().map(|j| j.table.clone()))
                    .collect(),
            };
            Some(scope.qualifier(q)?)
        }
        None => None,
    };
    field_for(
        &src.fields,
        &ColumnRef {
            qualifier: q,
            name: name.to_string(),
        },
    )
}
