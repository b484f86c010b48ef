//! Bound values computed from the IR: filter literals, sink table names, reconciliation
//! bounds (evaluated once per run with a fixed `now`) and `--start/--end` overrides.

use super::steps::Binds;
use crate::diag::Span;
use crate::expr::{eval, Decimal, EvalCtx, TypedExpr, Value};
use crate::ir::{Bound, Filter, Literal, Pipeline};
use crate::runtime::RuntimeError;
use crate::types::Dtype;
use chrono::{NaiveDate, NaiveDateTime};

/// A config literal as a value of `dtype`.
pub fn literal_value(l: &Literal, dtype: Dtype) -> Result<Value, String> {
    let bad = || format!("{l} is not a valid {dtype}");
    Ok(match (l, dtype) {
        (Literal::Null, _) => Value::Null,
        (Literal::Bool(b), Dtype::Bool) => Value::Bool(*b),
        (Literal::Bool(b), Dtype::Int) => Value::Int(*b as i64),
        (Literal::Int(i), Dtype::Int) => Value::Int(*i),
        (Literal::Int(i), Dtype::Float) => Value::Float(*i as f64),
        (Literal::Int(i), Dtype::Decimal { .. }) => Value::Decimal(Decimal::from_i64(*i)),
        (Literal::Int(i), Dtype::Bool) => Value::Bool(*i != 0),
        (Literal::Int(i), Dtype::Str) => Value::Str(i.to_string()),
        (Literal::Float(f), Dtype::Float) => Value::Float(*f),
        (Literal::Float(f), Dtype::Decimal { .. }) => {
            Value::Decimal(Decimal::from_f64(*f).ok_or_else(bad)?)
        }
        (Literal::Float(f), Dtype::Str) => Value::Str(f.to_string()),
        (Literal::Str(s), Dtype::Str) => Value::Str(s.clone()),
        (Literal::Str(s), Dtype::Uuid) => Value::Uuid(s.to_ascii_lowercase()),
        (Literal::Str(s), Dtype::Int) => Value::Int(s.trim().parse().map_err(|_| bad())?),
        (Literal::Str(s), Dtype::Float) => Value::Float(s.trim().parse().map_err(|_| bad())?),
        (Literal::Str(s), Dtype::Decimal { .. }) => {
            Value::Decimal(Decimal::parse(s).ok_or_else(bad)?)
        }
        (Literal::Str(s), Dtype::Bool) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Value::Bool(true),
            "false" | "f" | "0" => Value::Bool(false),
            _ => return Err(bad()),
        },
        (Literal::Str(s), Dtype::Date) => {
            Value::Date(NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| bad())?)
        }
        (Literal::Str(s), Dtype::Datetime) => Value::Datetime(parse_datetime(s).ok_or_else(bad)?),
        (Literal::Str(s), Dtype::Json) => Value::json_text(s.as_str())
            .unwrap_or_else(|_| Value::json(serde_json::Value::String(s.clone()))),
        _ => return Err(bad()),
    })
}

fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
        if f == "%Y-%m-%d" {
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return d.and_hms_opt(0, 0, 0);
            }
        }
    }
    None
}

fn bind_filters(
    b: &mut Binds,
    source: bool,
    filters: &[Filter],
    pipeline: &str,
) -> Result<(), RuntimeError> {
    for f in filters {
        for (name, lit) in f.params.iter().zip(&f.values) {
            let v = literal_value(lit, f.dtype).map_err(|m| {
                RuntimeError::Config(format!(
                    "pipeline `{pipeline}`: filter on `{}`: {m}",
                    f.column
                ))
            })?;
            b.set(source, name, v);
        }
    }
    Ok(())
}

/// The values every run binds: source and sink filter values, and the sink table's schema
/// and name (for `sink.columns` and `sink.mutations`).
pub fn base_binds(p: &Pipeline) -> Result<Binds, RuntimeError> {
    let mut b = Binds::default();
    bind_filters(&mut b, true, &p.source.filters, &p.name)?;
    bind_filters(&mut b, false, &p.sink.filters, &p.name)?;
    if let Some(s) = &p.sink.table.schema {
        b.set(false, "schema", Value::Str(s.clone()));
    }
    b.set(false, "table", Value::Str(p.sink.table.name.clone()));
    if let Some(s) = &p.source.table.table.schema {
        b.set(true, "schema", Value::Str(s.clone()));
    }
    b.set(true, "table", Value::Str(p.source.table.table.name.clone()));
    Ok(b)
}

/// Evaluates a range bound once, with the run's `now`.
pub fn bound_value(b: &Bound, now: NaiveDateTime) -> Result<Value, RuntimeError> {
    match b {
        Bound::Const(v) => Ok(v.clone()),
        Bound::Runtime(e) => eval_bound(e, now),
    }
}

/// Evaluates a checked constant expression with the run's `now`.
pub fn eval_bound(e: &TypedExpr, now: NaiveDateTime) -> Result<Value, RuntimeError> {
    eval(e, &EvalCtx::constant(now))
        .map_err(|err| RuntimeError::Config(format!("range bound: {}", err.message)))
}

/// Parses and checks a `--start` / `--end` expression (no row, no value: constants and
/// functions such as `now()` only). The message is meant for the command line.
pub fn parse_bound(text: &str) -> Result<TypedExpr, String> {
    let parsed = crate::expr::parse(text, Span::new(0, text.len())).map_err(|e| e.message)?;
    let typed =
        crate::expr::check(&parsed.lambda, &crate::expr::Env::constant()).map_err(|e| e.message)?;
    typed.fold().map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_take_the_filter_dtype() {
        assert_eq!(
            literal_value(&Literal::Str("2024-01-02".into()), Dtype::Date),
            Ok(Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()))
        );
        assert_eq!(
            literal_value(&Literal::Int(3), Dtype::Float),
            Ok(Value::Float(3.0))
        );
        assert!(literal_value(&Literal::Str("x".into()), Dtype::Int).is_err());
        assert!(matches!(
            literal_value(&Literal::Str("2024-01-02 03:04:05".into()), Dtype::Datetime),
            Ok(Value::Datetime(_))
        ));
    }

    #[test]
    fn bounds_parse_and_evaluate_once() {
        let now = NaiveDate::from_ymd_opt(2024, 5, 6)
            .unwrap()
            .and_hms_opt(7, 8, 9)
            .unwrap();
        // The examples `--help` gives.
        for text in [
            "datetime.datetime(2024, 1, 1)",
            "now() - datetime.timedelta(days=7)",
        ] {
            assert_eq!(
                parse_bound(text).unwrap().ty,
                crate::expr::Type::Datetime,
                "{text}"
            );
        }
        let e = parse_bound("lambda: datetime.datetime(2020,2,1)").unwrap();
        assert_eq!(
            eval_bound(&e, now).unwrap(),
            Value::Datetime(
                NaiveDate::from_ymd_opt(2020, 2, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
            )
        );
        assert_eq!(
            eval_bound(&parse_bound("10*10").unwrap(), now).unwrap(),
            Value::Int(100)
        );
        assert!(parse_bound("r[\"x\"] + 1").is_err());
    }
}
