//! Reconciliation entries: strategy, partition column on each side and its type, range
//! bounds (folded when constant, else evaluated once per run), block sizing.

use super::fields::expression;
use super::source::lookup;
use super::Diags;
use crate::config::raw::{RawPipeline, RawReconciliation};
use crate::config::Spanned;
use crate::diag::Diagnostic;
use crate::expr::{Env, Type, Value};
use crate::ir::{
    Bound, ColumnRef, FieldValue, PartitionKind, ReconStrategy, Reconciliation, RowHash, Sink,
    SinkHash, Source, StoreKind,
};
use crate::sql::DialectKind;
use crate::types::Dtype;

/// The widest decimal a `float` partition may be where ClickHouse reconciles: every side
/// converts such a decimal to the same (nearest) double, so rows block alike.
const MAX_FLOAT_PARTITION_DIGITS: u8 = 15;

/// Check every reconciliation of a pipeline.
pub fn reconciliations(
    p: &RawPipeline,
    src: &Source,
    sink: &Sink,
    hash: &RowHash,
    diags: &mut Diags,
) -> Vec<Reconciliation> {
    let mut out: Vec<Reconciliation> = Vec::new();
    for r in &p.reconciliation {
        if out.iter().any(|x| x.name == r.name.value) {
            diags.push(
                r.name
                    .error(format!("duplicate reconciliation name `{}`", r.name.value)),
            );
            continue;
        }
        if let Some(x) = one(r, src, sink, hash, diags) {
            out.push(x);
        }
    }
    out
}

fn one(
    r: &RawReconciliation,
    src: &Source,
    sink: &Sink,
    hash: &RowHash,
    diags: &mut Diags,
) -> Option<Reconciliation> {
    let strategy = match r.strategy.as_ref().map(|s| s.value.as_str()) {
        None | Some("md5sum_hash") => ReconStrategy::Md5sumHash,
        Some("hash_md5_hash") => ReconStrategy::HashMd5Hash,
        Some("timestamp") => ReconStrategy::Timestamp,
        Some(other) => {
            let s = r.strategy.as_ref().expect("some");
            diags.push(
                s.error(format!("unknown reconciliation strategy `{other}`"))
                    .with_choices(other, &["md5sum_hash", "hash_md5_hash", "timestamp"]),
            );
            return None;
        }
    };
    if src.store.kind.dialect().is_none() || sink.store.kind.dialect().is_none() {
        diags.push(
            r.name
                .error("reconciliation needs a database on both sides")
                .with_help("webhook and NATS sinks (and NATS sources) are synced, not reconciled"),
        );
        return None;
    }
    if strategy == ReconStrategy::Timestamp
        && matches!(&hash.sink, SinkHash::Stored(h) if h.is_empty())
    {
        diags.push(
            Diagnostic::warning(
                "the sink's fields are transformed or enriched and no `hash_column` keeps the row hash: every run merges the lookback window and the watermark's own rows whole, reports them written, and `plan --exit-code` reports drift",
            )
            .at_path(r.path.clone())
            .with_span(r.name.span)
            .with_help("add `meta_columns: {hash_column: _synctool_hash}` to the sink to compare those rows instead"),
        );
    }
    if strategy != ReconStrategy::Timestamp {
        if let SinkHash::Stored(h) = &hash.sink {
            if h.is_empty() {
                diags.push(
                    r.name
                        .error("the sink's fields are transformed or enriched, so the sink cannot recompute the source's row hash")
                        .with_label("hash reconciliation needs a stored hash")
                        .with_help("add `meta_columns: {hash_column: _synctool_hash}` to the sink: synctool writes the source hash there at load time"),
                );
                return None;
            }
        }
    }
    // Partition column: per-side overrides, else `partition_column`, else the source meta.
    let src_part_text = r
        .source_meta
        .partition_column
        .as_ref()
        .or(r.partition_column.as_ref());
    let Some(src_part_text) = src_part_text else {
        diags.push(
            Diagnostic::error("a reconciliation needs `partition_column`")
                .at_path(r.path.clone())
                .with_span(r.name.span),
        );
        return None;
    };
    let (source_partition, src_dtype, feeding_alias) = match lookup(src, &src_part_text.value) {
        Some(f) => (f.column.clone(), Some(f.dtype), Some(f.alias.clone())),
        None => {
            let scope = super::columns::Scope {
                tables: std::iter::once(src.table.clone())
                    .chain(src.joins.iter().map(|j| j.table.clone()))
                    .collect(),
            };
            let c = scope.column(src_part_text, diags)?;
            let c = if c.qualifier.is_none() && !src.joins.is_empty() {
                ColumnRef {
                    qualifier: Some(src.table.qualifier().to_string()),
                    name: c.name,
                }
            } else {
                c
            };
            (c, None, None)
        }
    };
    let sink_partition = match (
        r.sink_meta.partition_column.as_ref(),
        &sink.meta.partition_column,
    ) {
        (Some(s), _) => s.value.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => {
            let fed = feeding_alias.as_ref().and_then(|a| {
                sink.fields
                    .iter()
                    .find(|f| matches!(&f.value, FieldValue::Column { alias } if alias == a))
            });
            match fed {
                Some(f) => f.column.clone(),
                None if sink.fields.iter().any(|f| {
                    f.column == src_part_text.value && !matches!(f.value, FieldValue::Column { .. })
                }) =>
                {
                    diags.push(
                        src_part_text
                            .error(format!(
                                "the sink column `{}` is computed, so its values are not the source's `{}`",
                                src_part_text.value, src_part_text.value
                            ))
                            .with_label("reconciliation compares this column's values on both sides")
                            .with_help("partition by a column the sink copies as it is, or name the sink's copy of it with `sink_pfield` / `sink_meta_columns.partition_column`"),
                    );
                    return None;
                }
                None if sink.fields.iter().any(|f| f.column == src_part_text.value) => {
                    src_part_text.value.clone()
                }
                None => {
                    diags.push(
                        src_part_text
                            .error(format!("no sink column corresponds to partition column `{}`", src_part_text.value))
                            .with_help("map it to a sink field, or name the sink's column with `sink_pfield` / `sink_meta_columns.partition_column`"),
                    );
                    return None;
                }
            }
        }
    };
    let sink_dtype = sink
        .fields
        .iter()
        .find(|f| f.column == sink_partition)
        .map(|f| f.dtype);
    let kind = match &r.partition_column_type {
        Some(t) => match t.value.as_str() {
            "int" => PartitionKind::Int,
            "float" => PartitionKind::Float,
            "datetime" => PartitionKind::Datetime,
            "date" => PartitionKind::Date,
            "uuid" => PartitionKind::Uuid,
            "str" | "string" => PartitionKind::Str,
            other => {
                diags.push(
                    t.error(format!("unknown partition_column_type `{other}`"))
                        .with_choices(other, &["int", "float", "datetime", "date", "uuid", "str"]),
                );
                return None;
            }
        },
        None => match src_dtype.or(sink_dtype) {
            Some(Dtype::Int) => PartitionKind::Int,
            Some(Dtype::Float | Dtype::Decimal { .. }) => PartitionKind::Float,
            Some(Dtype::Datetime) => PartitionKind::Datetime,
            Some(Dtype::Date) => PartitionKind::Date,
            Some(Dtype::Uuid) => PartitionKind::Uuid,
            Some(Dtype::Str) => PartitionKind::Str,
            _ => {
                diags.push(
                    Diagnostic::error("cannot tell the partition column's type")
                        .at_path(r.path.clone())
                        .with_span(src_part_text.span)
                        .with_help("add `partition_column_type: int|float|datetime|date|uuid|str`"),
                );
                return None;
            }
        },
    };
    if let Some(dt) = src_dtype.or(sink_dtype) {
        let ok = matches!(
            (kind, dt),
            (PartitionKind::Int, Dtype::Int)
                | (
                    PartitionKind::Float,
                    Dtype::Float | Dtype::Decimal { .. } | Dtype::Int
                )
                | (PartitionKind::Datetime, Dtype::Datetime)
                | (PartitionKind::Date, Dtype::Date)
                | (PartitionKind::Uuid, Dtype::Uuid)
                | (PartitionKind::Str, Dtype::Str)
        );
        if !ok {
            let t = r.partition_column_type.as_ref().unwrap_or(src_part_text);
            diags.push(
                t.error(
                    format!(
                        "partition_column_type {kind:?} does not match the column's dtype {dt}"
                    )
                    .to_lowercase(),
                ),
            );
            return None;
        }
    }
    if kind == PartitionKind::Float {
        let clickhouse = [&src.store.kind, &sink.store.kind]
            .iter()
            .any(|k| matches!(k, StoreKind::Sql(DialectKind::Clickhouse)));
        let wide = [src_dtype, sink_dtype]
            .into_iter()
            .flatten()
            .find(|t| {
                matches!(t, Dtype::Decimal { precision, .. } if *precision > MAX_FLOAT_PARTITION_DIGITS)
            });
        if let (true, Some(t)) = (clickhouse, wide) {
            diags.push(
                src_part_text
                    .error(format!(
                        "a {t} partition column cannot be reconciled as float with ClickHouse on either side: ClickHouse converts decimals of more than {MAX_FLOAT_PARTITION_DIGITS} digits to Float64 up to one unit in the last place away from PostgreSQL and MySQL, so a row could fall in different blocks on each side"
                    ))
                    .with_help(format!("partition by another column, or declare the column with at most {MAX_FLOAT_PARTITION_DIGITS} digits (decimal({MAX_FLOAT_PARTITION_DIGITS},s))")),
            );
            return None;
        }
    }
    if strategy == ReconStrategy::Timestamp
        && !matches!(
            kind,
            PartitionKind::Datetime | PartitionKind::Date | PartitionKind::Int
        )
    {
        diags.push(
            src_part_text
                .error("the timestamp strategy needs a datetime, date or int watermark column"),
        );
        return None;
    }
    if strategy == ReconStrategy::Timestamp && sink.merge.allow_delete {
        diags.push(
            Diagnostic::warning(
                "a timestamp reconciliation copies newer rows and never deletes: `allow_delete` applies to full syncs and block-hash reconciliations only",
            )
            .at_path(format!("{}.strategy", r.path))
            .with_span(r.strategy.as_ref().map_or(r.name.span, |s| s.span)),
        );
    }
    if strategy == ReconStrategy::Timestamp {
        for b in [&r.start, &r.end].into_iter().flatten() {
            diags.push(
                b.error("`start` and `end` do not apply to a timestamp reconciliation")
                    .with_help("it goes on from the sink's newest value (minus `lookback`); use a block-hash reconciliation for a range"),
            );
        }
    }
    let bound_type = match kind {
        PartitionKind::Int => Some(Type::Int),
        PartitionKind::Float => Some(Type::Float),
        PartitionKind::Datetime => Some(Type::Datetime),
        PartitionKind::Date => Some(Type::Date),
        PartitionKind::Uuid | PartitionKind::Str => None,
    };
    let start = bound(r.start.as_ref(), bound_type.as_ref(), "start", diags);
    let end = bound(r.end.as_ref(), bound_type.as_ref(), "end", diags);
    if let (Some(Bound::Const(a)), Some(Bound::Const(b)), Some(e)) = (&start, &end, &r.end) {
        if crate::expr::eval::order(b, a).is_ok_and(|o| o.is_some_and(|o| o.is_le())) {
            diags.push(
                e.error(format!(
                    "`end` ({}) is not after `start` ({}): the range is empty",
                    b.to_text(),
                    a.to_text()
                ))
                .with_help(
                    "`start` is the first value of the range, `end` the first value past it",
                ),
            );
        }
    }
    let initial_interval = match &r.initial_partition_interval {
        Some(s) => {
            let t = expression(s, &Env::constant(), diags)?;
            match t.const_value() {
                Some(Value::Int(i)) if i > 0 => i,
                Some(Value::Interval(us)) if us >= 1_000_000 => us / 1_000_000,
                _ => {
                    diags.push(s.error("`initial_partition_interval` must be a positive constant integer (seconds for time partitions)"));
                    return None;
                }
            }
        }
        None => match kind {
            PartitionKind::Datetime | PartitionKind::Date => 30 * 24 * 60 * 60,
            PartitionKind::Int | PartitionKind::Float => 1_000_000,
            PartitionKind::Uuid | PartitionKind::Str => 1,
        },
    };
    if matches!(kind, PartitionKind::Uuid | PartitionKind::Str)
        && !(1..=8).contains(&initial_interval)
    {
        let s = r
            .initial_partition_interval
            .as_ref()
            .expect("only a given value can be out of range");
        diags.push(s.error("for uuid/str partitions `initial_partition_interval` is the hex-prefix length of the first level (1 to 8)"));
        return None;
    }
    let max_block_size = positive("max_block_size", r.max_block_size.as_ref(), 1000, diags)? as u64;
    let reduction_factor = positive(
        "interval_reduction_factor",
        r.interval_reduction_factor.as_ref(),
        10,
        diags,
    )?;
    if reduction_factor < 2 {
        diags.push(
            r.interval_reduction_factor
                .as_ref()
                .expect("given")
                .error("`interval_reduction_factor` must be at least 2"),
        );
        return None;
    }
    let partition_multiplier = match &r.partition_multiplier {
        Some(m) if m.value > 0 => Some(m.value),
        Some(m) => {
            diags.push(m.error("`partition_multiplier` must be positive"));
            return None;
        }
        None => None,
    };
    let order_text = r
        .source_meta
        .order_column
        .as_ref()
        .or(r.source_order_column.as_ref());
    let source_order = match order_text {
        Some(o) => match lookup(src, &o.value) {
            Some(f) => vec![f.column.clone()],
            None => {
                diags.push(o.error(format!("order column `{}` is not a source field", o.value)));
                return None;
            }
        },
        None => Vec::new(),
    };
    let lookback_seconds = match &r.lookback {
        Some(l) => {
            let t = expression(l, &Env::constant(), diags)?;
            match t.const_value().as_ref().map(lookback_value) {
                Some(Ok(s)) => s,
                got => {
                    let what = match got {
                        Some(Err(v)) => format!(", not {v}"),
                        _ => ", known when the config is read".to_string(),
                    };
                    diags.push(
                        l.error(format!(
                            "`lookback` must be a non-negative number of whole seconds{what}"
                        ))
                        .with_help("an integer (`600`, `10*60`) or a timedelta of whole seconds (`datetime.timedelta(minutes=10)`); the window is compared in whole seconds, so a fraction would be lost"),
                    );
                    return None;
                }
            }
        }
        None => 0,
    };
    if matches!(kind, PartitionKind::Datetime | PartitionKind::Date)
        && lookback_seconds > MAX_TIME_LOOKBACK
    {
        if let Some(l) = &r.lookback {
            diags.push(l.error(format!(
                "`lookback` of a date or datetime watermark must be at most {MAX_TIME_LOOKBACK} seconds (100 years)"
            )));
            return None;
        }
    }
    Some(Reconciliation {
        name: r.name.value.clone(),
        strategy,
        source_partition,
        sink_partition,
        kind,
        start,
        end,
        initial_interval,
        max_block_size,
        reduction_factor: reduction_factor as u32,
        partition_multiplier,
        source_order,
        lookback_seconds,
    })
}

/// A constant `lookback` in whole seconds: an integer, a float without a fraction (`1e3`,
/// `600.0`) or a timedelta of whole seconds, not negative; else the value as written in the
/// error.
fn lookback_value(v: &Value) -> Result<i64, String> {
    let secs = match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Some(*f as i64),
        Value::Interval(us) if us % 1_000_000 == 0 => Some(us / 1_000_000),
        _ => None,
    };
    match (secs, v) {
        (Some(s), _) if s >= 0 => Ok(s),
        (_, Value::Interval(us)) => Err(format!(
            "a timedelta of {} seconds",
            crate::expr::Decimal::new(i128::from(*us), 6)
                .map(|d| d.normalized().to_string())
                .unwrap_or_else(|| format!("{us} µs"))
        )),
        (_, v) => Err(v.to_text()),
    }
}

/// The longest `lookback` of a date or datetime watermark, in seconds: 100 years.
pub const MAX_TIME_LOOKBACK: i64 = 36_525 * 86_400;

/// The value of the key `key`, a positive integer of at most 32 bits, or `default`.
fn positive(key: &str, v: Option<&Spanned<i64>>, default: i64, diags: &mut Diags) -> Option<i64> {
    match v {
        None => Some(default),
        Some(x) if x.value > 0 && x.value <= u32::MAX as i64 => Some(x.value),
        Some(x) => {
            diags.push(x.error(format!(
                "`{key}` must be a positive integer of at most {}, not {}",
                u32::MAX,
                x.value
            )));
            None
        }
    }
}

fn bound(
    s: Option<&Spanned<String>>,
    want: Option<&Type>,
    what: &str,
    diags: &mut Diags,
) -> Option<Bound> {
    let s = s?;
    let t = expression(s, &Env::constant(), diags)?;
    match want {
        None => {
            diags.push(s.error(format!(
                "`{what}` does not apply to uuid/str partitions (they are split by hash prefix)"
            )));
            return None;
        }
        Some(w) => {
            let ok = &t.ty == w
                || (matches!(w, Type::Float) && t.ty == Type::Int)
                || (matches!(w, Type::Datetime) && t.ty == Type::Date);
            if !ok {
                diags.push(s.error(format!(
                    "`{what}` gives {}, but the partition column is {w}",
                    t.ty
                )));
                return None;
            }
        }
    }
    match t.const_value() {
        Some(v) => Some(Bound::Const(v)),
        None => Some(Bound::Runtime(t)),
    }
}
