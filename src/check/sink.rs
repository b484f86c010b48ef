//! The sink: datastore and table, merge strategy, unique key, filters, meta columns, and
//! each field's value source.

use super::fields::{expression, looks_like_expression, template, tmpl_inner};
use super::source::{dtype, lookup};
use super::stores::{table_name, Stores};
use super::{columns, Diags};
use crate::config::raw::{RawSink, RawSinkField};
use crate::diag::{did_you_mean, Diagnostic};
use crate::expr::{Env, Type};
use crate::ir::{
    ColumnRef, Enrichment, FieldValue, KeyPair, MergeKind, MergeStrategy, PushedExpr, Sink,
    SinkField, SinkMeta, Source, StoreKind, TableName,
};
use crate::types::Dtype;

/// Check the sink. Pushed-down expressions are appended to `src.pushed`. `broken_refs` are
/// source fields and enrichments that failed their own checks: naming one is not a second
/// error.
pub fn sink(
    r: &RawSink,
    stores: &Stores,
    src: &mut Source,
    enrichments: &[Enrichment],
    broken_refs: &[String],
    diags: &mut Diags,
) -> Option<Sink> {
    let store = stores.datastore(&r.datastore, diags)?;
    let is_sql = store.kind.dialect().is_some();
    let table = match (&r.table, &store.kind) {
        (Some(t), StoreKind::Sql(_)) => table_name(t),
        // A webhook's or NATS sink's logical name, as written.
        (Some(t), _) => TableName {
            schema: t.dbschema.as_ref().map(|s| s.value.clone()),
            name: t.table.value.clone(),
        },
        (None, StoreKind::Sql(_)) => {
            diags.push(
                Diagnostic::error("the sink needs `table`")
                    .at_path(r.path.clone())
                    .with_span(r.datastore.span),
            );
            return None;
        }
        (None, _) => TableName {
            schema: None,
            name: store.name.clone(),
        },
    };
    let merge = merge(r, &store.kind, diags);
    let mut fields: Vec<SinkField> = Vec::new();
    // Sink fields that failed their own check (and said why): naming one as a key,
    // filter or version column is not a second error.
    let mut broken: Vec<&str> = Vec::new();
    for f in &r.fields {
        if fields.iter().any(|x| x.column == f.column.value) {
            diags.push(
                f.column
                    .error(format!("two sink fields write column `{}`", f.column.value)),
            );
            continue;
        }
        // MySQL column names ignore case: `id` and `ID` are one column, which CREATE TABLE
        // refuses and an existing table has once.
        if store.kind.dialect() == Some(crate::sql::DialectKind::Mysql) {
            if let Some(other) = r
                .fields
                .iter()
                .map(|x| &x.column.value)
                .take_while(|x| !std::ptr::eq(*x, &f.column.value))
                .find(|x| x.eq_ignore_ascii_case(&f.column.value))
            {
                diags.push(
                    f.column
                        .error(format!(
                            "sink fields `{other}` and `{}` name one column: MySQL column names ignore case",
                            f.column.value
                        ))
                        .with_help("rename one of them"),
                );
                continue;
            }
        }
        // A constant expression is pushed down only into a key column (`lambda: "eu"`
        // beside the source's own key, for rows of several sources in one table): the key
        // is compared with the source's, which is read from the source query.
        let is_key = r.unique_key.iter().any(|k| k.value == f.column.value);
        match field(f, src, enrichments, broken_refs, is_key, diags) {
            Some(sf) => fields.push(sf),
            None => broken.push(f.column.value.as_str()),
        }
    }
    if r.fields.is_empty() {
        // No mapping given: copy every source field to a column named like its alias.
        for f in &src.fields {
            fields.push(SinkField {
                column: f.alias.clone(),
                dtype: f.dtype,
                value: FieldValue::Column {
                    alias: f.alias.clone(),
                },
                track: true,
            });
        }
    }
    if let Some(d) = store.kind.dialect() {
        let mut named: Vec<(String, Option<&crate::config::Spanned<String>>)> = Vec::new();
        if let Some(t) = &r.table {
            // `shop.orders` is schema `shop`, table `orders`: each is one name.
            let n = super::stores::table_name(t);
            named.push((n.name, Some(&t.table)));
            if let Some(s) = n.schema {
                named.push((s, t.dbschema.as_ref().or(Some(&t.table))));
            }
        }
        for f in &fields {
            let at = r
                .fields
                .iter()
                .map(|x| &x.column)
                .find(|c| c.value == f.column);
            named.push((f.column.clone(), at));
        }
        if let Some(h) = &r.meta.hash_column {
            named.push((h.value.clone(), Some(h)));
        }
        for (name, at) in named {
            if let Some(m) = identifier_too_long(d, &name) {
                let e = match at {
                    Some(sp) => sp.error(m),
                    None => Diagnostic::error(m).at_path(r.path.clone()),
                };
                diags.push(e.with_help(
                    "the database would cut the name short when creating the table, and then not find it; choose a shorter name",
                ));
            }
        }
    }
    let column_names: Vec<&str> = fields.iter().map(|f| f.column.as_str()).collect();
    let mut unique_key = Vec::new();
    for k in &r.unique_key {
        if column_names.contains(&k.value.as_str()) {
            unique_key.push(k.value.clone());
        } else if !broken.contains(&k.value.as_str()) {
            diags.push(not_a_sink_column(k, &column_names, "unique key column"));
        }
    }
    if is_sql && r.unique_key.is_empty() {
        diags.push(
            Diagnostic::error(
                "a database sink needs `unique_key` (the columns that identify a row)",
            )
            .at_path(r.path.clone())
            .with_span(r.datastore.span)
            .with_help("list the sink columns of the primary key, e.g. `unique_key: [id]`"),
        );
    }
    let mut filters = Vec::new();
    for (i, f) in r.filters.iter().enumerate() {
        let name = f.column.value.trim().to_string();
        let Some(sf) = fields.iter().find(|x| x.column == name) else {
            if broken.contains(&name.as_str()) {
                continue;
            }
            diags.push(not_a_sink_column(
                &f.column,
                &column_names,
                "sink filter column",
            ));
            continue;
        };
        let col = ColumnRef {
            qualifier: None,
            name,
        };
        if let Some(flt) = columns::filter(f, i, "sink_", col, Some(sf.dtype), diags) {
            filters.push(flt);
        }
    }
    let meta = SinkMeta {
        partition_column: r.meta.partition_column.as_ref().map(|c| c.value.clone()),
        hash_column: r.meta.hash_column.as_ref().map(|c| c.value.clone()),
        order_column: r.meta.order_column.as_ref().map(|c| c.value.clone()),
    };
    if let Some(h) = &r.meta.hash_column {
        if column_names.contains(&h.value.as_str()) {
            diags.push(
                h.error(format!("hash column `{}` is also a sink field", h.value))
                    .with_help("synctool writes the hash column itself; remove it from `fields`"),
            );
        }
    }
    if let Some(m) = &merge {
        // ClickHouse 18.16 crashes (SIGSEGV) grouping or aggregating a Nullable(Decimal128)
        // column, which the live rows of a collapse sink group by.
        if m.kind == MergeKind::Collapse
            && store.kind == StoreKind::Sql(crate::sql::DialectKind::Clickhouse)
        {
            for f in &fields {
                let wide = matches!(f.dtype, Dtype::Decimal { precision, .. } if precision > 18);
                if wide && !r.unique_key.iter().any(|k| k.value == f.column) {
                    let message = format!(
                        "a ClickHouse collapse sink cannot hold `{}` as {}: ClickHouse 18.16 crashes grouping a Nullable(Decimal128) column, which a collapse merge does",
                        f.column, f.dtype
                    );
                    let d = match r.fields.iter().find(|x| x.column.value == f.column) {
                        Some(x) => x.column.error(message),
                        // The field comes from the source's: point at the strategy.
                        None => match r.merge.as_ref().and_then(|m| m.strategy.as_ref()) {
                            Some(k) => k.error(message),
                            None => Diagnostic::error(message)
                                .at_path(format!("{}.merge_strategy", r.path))
                                .with_span(r.datastore.span),
                        },
                    };
                    diags.push(d.with_help(
                        "use decimal(18,s) or narrower, or the upsert strategy (a ReplacingMergeTree)",
                    ));
                }
            }
        }
        if m.kind == MergeKind::Collapse && column_names.contains(&m.sign_column.as_str()) {
            diags.push(
                Diagnostic::error(format!(
                    "sign column `{}` is also a sink field",
                    m.sign_column
                ))
                .at_path(format!("{}.merge_strategy", r.path))
                .with_help("synctool writes the sign column itself; remove it from `fields`"),
            );
        }
        if let Some(v) = &m.version_column {
            if !column_names.contains(&v.as_str()) && !broken.contains(&v.as_str()) {
                diags.push(
                    Diagnostic::error(format!("version column `{v}` is not a sink field"))
                        .at_path(format!("{}.merge_strategy.version_column", r.path))
                        .with_help(
                            "the version column must be one of the sink `fields` (e.g. updated_at)",
                        ),
                );
            }
        }
    }
    if !is_sql {
        if let Some(m) = &r.merge {
            if m.strategy.is_some() {
                diags.push(
                    Diagnostic::warning(format!(
                        "merge_strategy has no effect on a {} sink",
                        store.kind.name()
                    ))
                    .at_path(m.path.clone()),
                );
            }
        }
    }
    if store.kind != StoreKind::Webhook {
        if let Some(u) = &r.url_path {
            diags.push(u.error("`url_path` applies only to webhook sinks"));
        }
    } else if let Some(u) = &r.url_path {
        // As the runtime joins it onto `base_url`: a `.` or `..` segment is refused there.
        let base = reqwest::Url::parse("http://base/").expect("a valid URL");
        if let Err(e) = crate::config::urls::join_path(&base, &u.value) {
            diags.push(u.error(format!("`url_path`: {e}")).with_help(
                "write the path as it should reach the server; `.` and `..` would be resolved away",
            ));
        }
    }
    if store.kind != StoreKind::Nats {
        if let Some(s) = &r.subject {
            diags.push(s.error("`subject` applies only to NATS sinks"));
        }
    }
    Some(Sink {
        store,
        table,
        batch_size: r
            .batch_size
            .as_ref()
            .map(|b| b.value)
            .unwrap_or(src.batch_size),
        merge: merge.unwrap_or(MergeStrategy {
            kind: MergeKind::Upsert,
            allow_delete: false,
            sign_column: "sign".into(),
            version_column: None,
        }),
        unique_key,
        filters,
        fields,
        meta,
        url_path: r.url_path.as_ref().map(|u| u.value.clone()),
        subject: r.subject.as_ref().map(|s| s.value.clone()),
    })
}

/// Why `name` cannot be a table or column name on dialect `d`, if it cannot: PostgreSQL
/// silently truncates names beyond 63 bytes, MySQL refuses names beyond 64 characters.
pub fn identifier_too_long(d: crate::sql::DialectKind, name: &str) -> Option<String> {
    use crate::sql::DialectKind;
    match d {
        DialectKind::Postgres if name.len() > 63 => Some(format!(
            "`{name}` is {} bytes long; PostgreSQL names hold at most 63",
            name.len()
        )),
        DialectKind::Mysql if name.chars().count() > 64 => Some(format!(
            "`{name}` is {} characters long; MySQL names hold at most 64",
            name.chars().count()
        )),
        _ => None,
    }
}

/// Moves `local`'s diagnostics into `diags`, but for those saying (`unknown(name)`) that a
/// field which failed its own check is unknown: it was reported once already.
fn keep_unless_broken(
    local: Diags,
    broken_refs: &[String],
    diags: &mut Diags,
    unknown: impl Fn(&str) -> String,
) {
    for d in local.list {
        if !broken_refs.iter().any(|b| d.message == unknown(b)) {
            diags.push(d);
        }
    }
}

fn not_a_sink_column(k: &crate::config::Spanned<String>, cols: &[&str], what: &str) -> Diagnostic {
    let mut d = k.error(format!("{what} `{}` is not a sink field", k.value));
    d = match did_you_mean(&k.value, cols.iter().copied()) {
        Some(x) => d.with_help(format!("did you mean `{x}`?")),
        None => d.with_help(format!("sink fields: {}", crate::diag::name_list(cols))),
    };
    d
}

fn merge(r: &RawSink, kind: &StoreKind, diags: &mut Diags) -> Option<MergeStrategy> {
    let m = r.merge.as_ref();
    let strategy = match m.and_then(|m| m.strategy.as_ref()) {
        None => MergeKind::Upsert,
        Some(s) => match s.value.as_str() {
            "delete_insert" => MergeKind::DeleteInsert,
            "upsert" => MergeKind::Upsert,
            "collapse" => MergeKind::Collapse,
            other => {
                diags.push(
                    s.error(format!("unknown merge strategy `{other}`"))
                        .with_choices(other, &["delete_insert", "upsert", "collapse"]),
                );
                return None;
            }
        },
    };
    let version_column = m.and_then(|m| m.version_column.as_ref());
    if let Some(v) = version_column {
        if !(matches!(kind, StoreKind::Sql(crate::sql::DialectKind::Clickhouse))
            && strategy == MergeKind::Upsert)
        {
            diags.push(v.error(
                "`version_column` applies only to upserts into ClickHouse (ReplacingMergeTree)",
            ));
        }
    }
    if let Some(s) = m.and_then(|m| m.sign_column.as_ref()) {
        if strategy != MergeKind::Collapse {
            diags.push(s.error("`sign_column` applies only to the collapse strategy"));
        }
    }
    Some(MergeStrategy {
        kind: strategy,
        allow_delete: m
            .and_then(|m| m.allow_delete.as_ref())
            .is_some_and(|a| a.value),
        sign_column: m
            .and_then(|m| m.sign_column.as_ref())
            .map(|s| s.value.clone())
            .unwrap_or_else(|| "sign".into()),
        version_column: version_column.map(|v| v.value.clone()),
    })
}

/// Resolve one sink field's value.
fn field(
    f: &RawSinkField,
    src: &mut Source,
    enrichments: &[Enrichment],
    broken_refs: &[String],
    is_key: bool,
    diags: &mut Diags,
) -> Option<SinkField> {
    let declared = match &f.dtype {
        Some(d) => Some(dtype(d, diags)?),
        None => None,
    };
    let track = f.track.as_ref().map(|t| t.value).unwrap_or(true);
    let outputs: Vec<(String, String, Dtype)> = enrichments
        .iter()
        .flat_map(|e| {
            e.outputs
                .iter()
                .map(|(k, d)| (e.name.clone(), k.clone(), *d))
        })
        .collect();

    // `source: <enrichment>`: the value is one of its outputs.
    if let Some(en) = &f.source {
        let Some(e) = enrichments.iter().find(|e| e.name == en.value) else {
            if broken_refs.contains(&en.value) {
                return None;
            }
            diags.push(super::stores::unknown(
                "enrichment",
                en,
                enrichments.iter().map(|e| e.name.as_str()),
            ));
            return None;
        };
        let output = match &f.source_column {
            Some(sc) => sc.value.clone(),
            None if e.outputs.len() == 1 => e.outputs.keys().next().expect("one").clone(),
            None => f.column.value.clone(),
        };
        let Some(dt) = e.outputs.get(&output) else {
            let sc = f.source_column.as_ref().unwrap_or(en);
            let mut d = sc.error(format!("enrichment `{}` has no output `{output}`", e.name));
            d = match did_you_mean(&output, e.outputs.keys().map(String::as_str)) {
                Some(x) => d.with_help(format!("did you mean `{x}`?")),
                None => d.with_help(format!(
                    "its outputs: {}",
                    e.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            };
            diags.push(d);
            return None;
        };
        return Some(SinkField {
            column: f.column.value.clone(),
            dtype: declared.unwrap_or(*dt),
            value: FieldValue::Enrichment {
                name: e.name.clone(),
                output,
            },
            track,
        });
    }

    let default_ref;
    let sc = match &f.source_column {
        Some(sc) => sc,
        None => {
            default_ref = crate::config::Spanned {
                value: f.column.value.clone(),
                span: f.column.span,
                path: f.column.path.clone(),
            };
            &default_ref
        }
    };
    let text = sc.value.trim();
    let known: Vec<String> = src
        .fields
        .iter()
        .map(|x| x.alias.clone())
        .chain(outputs.iter().map(|(_, k, _)| k.clone()))
        .collect();

    if text.starts_with("TMPL(") && tmpl_inner(text).is_none() {
        diags.push(
            sc.error("a template is written `TMPL(...)`: the closing `)` is missing")
                .with_help("end the value with `)`, e.g. `TMPL({{ name }})`"),
        );
        return None;
    }
    if tmpl_inner(text).is_some() {
        let refs: Vec<&str> = known.iter().map(String::as_str).collect();
        let mut local = Diags::default();
        let t = template(sc, &refs, &mut local);
        keep_unless_broken(local, broken_refs, diags, |b| {
            format!("unknown variable `{b}` in template")
        });
        let t = t?;
        if let Some(d) = declared {
            if d != Dtype::Str {
                diags.push(
                    sc.error(format!(
                        "a template renders text, but the field's dtype is {d}"
                    ))
                    .with_help("use `dtype: str` or compute the value with an expression"),
                );
            }
        }
        return Some(SinkField {
            column: f.column.value.clone(),
            dtype: Dtype::Str,
            value: FieldValue::Template(t),
            track,
        });
    }
    if !looks_like_expression(text) {
        if let Some(sf) = lookup(src, text) {
            let dt = declared.unwrap_or(sf.dtype);
            if !assignable(sf.dtype, dt) {
                diags.push(sc.error(format!(
                    "source field `{}` is {} but the sink field `{}` is {dt}",
                    sf.alias, sf.dtype, f.column.value
                )));
                return None;
            }
            return Some(SinkField {
                column: f.column.value.clone(),
                dtype: dt,
                value: FieldValue::Column {
                    alias: sf.alias.clone(),
                },
                track,
            });
        }
        if let Some((en, out, dt)) = outputs.iter().find(|(_, k, _)| k == text) {
            return Some(SinkField {
                column: f.column.value.clone(),
                dtype: declared.unwrap_or(*dt),
                value: FieldValue::Enrichment {
                    name: en.clone(),
                    output: out.clone(),
                },
                track,
            });
        }
        if broken_refs.iter().any(|b| b == text) {
            return None;
        }
        if f.source_column.is_none() {
            diags.push(
                Diagnostic::error(format!(
                    "sink field `{}` needs `source_column` (or `source`)",
                    f.column.value
                ))
                .at_path(f.path.clone())
                .with_span(f.column.span)
                .with_help("no source field has the same name"),
            );
        } else {
            let mut d = sc
                .error(format!("unknown source column `{text}`"))
                .with_label("not a source field alias, column or enrichment output");
            let mut cands: Vec<String> = known.clone();
            cands.extend(src.fields.iter().map(|x| x.column.to_string()));
            d = match did_you_mean(text, cands.iter().map(String::as_str)) {
                Some(x) => d.with_help(format!("did you mean `{x}`?")),
                None => d.with_help(format!("source fields: {}", crate::diag::name_list(&known))),
            };
            diags.push(d);
        }
        return None;
    }

    // An expression over the row (source aliases + enrichment outputs).
    let env_fields: Vec<(String, Dtype)> = src
        .fields
        .iter()
        .map(|x| (x.alias.clone(), x.dtype))
        .chain(outputs.iter().map(|(_, k, d)| (k.clone(), *d)))
        .collect();
    let mut local = Diags::default();
    let typed = expression(sc, &Env::row(env_fields), &mut local);
    keep_unless_broken(local, broken_refs, diags, |b| {
        format!("unknown field `{b}`")
    });
    let typed = typed?;
    let result = typed.ty.to_dtype();
    let dt = match (declared, result) {
        (Some(d), Some(r)) if assignable(r, d) => d,
        (Some(d), None) if typed.ty == Type::Null => d,
        (Some(d), Some(r)) => {
            let mut e = sc
                .error(format!(
                    "this expression gives {r}, but the field's dtype is {d}"
                ))
                .with_label(format!("{r}"));
            // A JSON value (`json_get(j, "a")`) is converted by name.
            let conv = match d {
                Dtype::Int => Some("int"),
                Dtype::Float => Some("float"),
                Dtype::Str => Some("str"),
                _ => None,
            };
            if let (Dtype::Json, Some(c)) = (r, conv) {
                e = e.with_help(format!(
                    "convert the JSON value to {d} with `{c}(…)`, e.g. `{c}(json_get(j, \"a\"))`"
                ));
            }
            diags.push(e);
            return None;
        }
        (None, Some(r)) => r,
        (_, None) => {
            diags.push(sc.error(format!(
                "this expression gives {}, which no column can store",
                typed.ty
            )));
            return None;
        }
    };
    let uses_outputs = typed
        .columns()
        .iter()
        .any(|c| outputs.iter().any(|(_, k, _)| k == c));
    let pushable = !uses_outputs
        && (is_key || !typed.is_constant())
        && result.is_some_and(|r| read_as(r, dt))
        && src.store.kind.dialect().is_some_and(|d| {
            let mapper = |alias: &str| -> Option<sqlparser::ast::Expr> {
                src.fields
                    .iter()
                    .find(|x| x.alias == alias)
                    .map(|x| column_expr(d.dialect(), &x.column))
            };
            crate::sql::pushdown::to_sql(&typed, d.dialect(), &mapper).is_some()
        });
    if pushable {
        let alias = format!("_expr_{}", f.column.value);
        let round_to = match dt {
            Dtype::Decimal { scale, .. } if typed.ty == Type::Decimal => Some(scale),
            _ => None,
        };
        src.pushed.push(PushedExpr {
            alias: alias.clone(),
            expr: typed,
            round_to,
        });
        return Some(SinkField {
            column: f.column.value.clone(),
            dtype: dt,
            value: FieldValue::Pushed { alias },
            track,
        });
    }
    Some(SinkField {
        column: f.column.value.clone(),
        dtype: dt,
        value: FieldValue::Expr(typed),
        track,
    })
}

/// A quoted, qualified column expression (only used to ask pushdown whether it can translate).
fn column_expr(d: &dyn crate::sql::Dialect, c: &ColumnRef) -> sqlparser::ast::Expr {
    match &c.qualifier {
        Some(q) => sqlparser::ast::Expr::CompoundIdentifier(vec![d.ident(q), d.ident(&c.name)]),
        None => sqlparser::ast::Expr::Identifier(d.ident(&c.name)),
    }
}

/// Whether a value of type `from` can be stored in a column of type `to` without loss.
/// Whether a value of dtype `from` computed by the source database can be read as a field
/// of dtype `to` as it is, the row hash seeing the same value: the same dtype (decimals of
/// any scale, which [`PushedExpr::round_to`] rounds), an int widened to a number, or an int
/// or uuid as text. Other conversions (a float, decimal, bool or datetime as text, whose
/// text each database writes its own way) are the runtime's.
fn read_as(from: Dtype, to: Dtype) -> bool {
    std::mem::discriminant(&from) == std::mem::discriminant(&to)
        || matches!(
            (from, to),
            (Dtype::Int, Dtype::Float | Dtype::Decimal { .. })
                | (Dtype::Int | Dtype::Uuid, Dtype::Str)
        )
}

pub fn assignable(from: Dtype, to: Dtype) -> bool {
    from == to
        || matches!(
            (from, to),
            (Dtype::Int, Dtype::Float | Dtype::Decimal { .. })
                | (Dtype::Decimal { .. }, Dtype::Decimal { .. })
                | (Dtype::Date, Dtype::Datetime)
                | (Dtype::Uuid, Dtype::Str)
                | (Dtype::Json, Dtype::Str)
                | (
                    Dtype::Int
                        | Dtype::Bool
                        | Dtype::Date
                        | Dtype::Datetime
                        | Dtype::Decimal { .. }
                        | Dtype::Float,
                    Dtype::Str
                )
        )
}

/// The key on both sides: each `unique_key` column must be fed straight from the source.
pub fn key_pairs(r: &RawSink, sink: &Sink, diags: &mut Diags) -> Vec<KeyPair> {
    let mut out = Vec::new();
    for (k, raw) in sink.unique_key.iter().zip(&r.unique_key) {
        let Some(f) = sink.fields.iter().find(|f| &f.column == k) else {
            continue;
        };
        match &f.value {
            FieldValue::Column { alias } | FieldValue::Pushed { alias } => out.push(KeyPair {
                source_alias: alias.clone(),
                sink_column: k.clone(),
                dtype: f.dtype,
            }),
            _ => diags.push(
                raw.error(format!("unique key column `{k}` must be a source column or a pushed-down expression"))
                    .with_help("a key computed after extract (template, enrichment, runtime expression) cannot be compared with the source"),
            ),
        }
    }
    out
}
