//! Row transform: an extracted (and enriched) source row → the sink row.
//!
//! The source row is keyed by alias: source field aliases, pushed-expression aliases and
//! the outputs of the enrichments (see [`crate::runtime::enrich`]). [`sink_row`] computes
//! each sink field in config order and coerces it to the sink dtype; [`coerce`] is the one
//! place that decides which value fits which dtype, and [`value_to_json`] the one JSON
//! encoding of values used by the webhook and NATS sinks.
//!
//! Pure code: no I/O.

use super::{Row, RuntimeError};
use crate::expr::{eval, Decimal, EvalCtx, Value};
use crate::ir::{FieldValue, KeyPair, Pipeline};
use crate::template::TemplateError;
use crate::types::Dtype;
use chrono::{NaiveDate, NaiveDateTime, Timelike};
use indexmap::IndexMap;

/// Compute the sink row (one value per [`crate::ir::SinkField`], in sink field order) from a
/// source row keyed by alias. `now` is the run's fixed "now" used by `now()` / `today()`.
///
/// Every value is coerced to its sink dtype; a value that does not fit is a
/// [`RuntimeError::Value`] naming the pipeline, the row's key and the column.
pub fn sink_row(
    pipeline: &Pipeline,
    row: &IndexMap<String, Value>,
    now: NaiveDateTime,
) -> Result<Row, RuntimeError> {
    let mut out = Vec::with_capacity(pipeline.sink.fields.len());
    for f in &pipeline.sink.fields {
        let fail = |message: String| RuntimeError::Value {
            pipeline: pipeline.name.clone(),
            key: row_key(&pipeline.key, row),
            column: f.column.clone(),
            message,
        };
        let raw = match &f.value {
            FieldValue::Column { alias } | FieldValue::Pushed { alias } => row
                .get(alias)
                .cloned()
                .ok_or_else(|| fail(format!("the row has no field `{alias}`")))?,
            FieldValue::Expr(e) => eval(e, &EvalCtx::row(row, now)).map_err(|e| fail(e.message))?,
            // Printing a NULL field gives NULL, as SQL's `||` does (the seed's
            // `{{ name }} - ${{ o__total }}` over a left join).
            FieldValue::Template(t) => match t.render(row) {
                Ok(text) => Value::Str(text),
                Err(TemplateError::NullValue { .. }) => Value::Null,
                Err(e) => return Err(fail(e.to_string())),
            },
            FieldValue::Enrichment { name, output } => {
                row.get(output).cloned().ok_or_else(|| {
                    fail(format!(
                        "the row has no output `{output}` of enrichment `{name}` (did it run?)"
                    ))
                })?
            }
        };
        // Values copied as they are must fit as they are; computed ones are rounded.
        let v = match &f.value {
            FieldValue::Column { .. } => coerce_exact(raw, f.dtype),
            _ => coerce(raw, f.dtype),
        };
        out.push(v.map_err(fail)?);
    }
    Ok(out)
}

/// The row's key values as text for error messages: `id=7, region=eu` (sink column names,
/// values from the row by source alias). Empty when the pipeline has no key.
pub fn row_key(key: &[KeyPair], row: &IndexMap<String, Value>) -> String {
    const NULL: &Value = &Value::Null;
    key_label(key.iter().map(|k| {
        (
            k.sink_column.as_str(),
            row.get(&k.source_alias).unwrap_or(NULL),
        )
    }))
}

/// `id=7, region="eu"`: key columns and their values as messages show them (see
/// [`key_text`]). Every message naming a row's key is spelled by this one function.
pub fn key_label<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Value)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", key_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why `d` does not fit a field's `decimal(precision, scale)` without rounding, if it does
/// not: `5 digits after the point; the field's decimal(12,4) keeps 4 (…)`. The one rule
/// for values copied as they are, checked on rows from messages and alias rows
/// ([`coerce_exact`]) and on load rows (the sink's per-row check).
pub fn scale_misfit(d: &Decimal, precision: u8, scale: u8) -> Option<String> {
    // Most values already have the field's scale: normalise only the others.
    if d.scale() <= u32::from(scale) {
        return None;
    }
    let n = d.normalized().scale();
    (n > u32::from(scale)).then(|| {
        format!(
            "{n} digits after the point; the field's decimal({precision},{scale}) keeps {scale} (declare a larger scale, or round it in the source)"
        )
    })
}

/// A key value as error messages show it: text quoted, NULL as `NULL`.
pub(crate) fn key_text(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Str(s) => format!("{s:?}"),
        other => other.to_text(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Decimal(_) => "decimal",
        Value::Str(_) => "str",
        Value::Bool(_) => "bool",
        Value::Date(_) => "date",
        Value::Datetime(_) => "datetime",
        Value::Uuid(_) => "uuid",
        Value::Json(_) => "json",
        Value::Interval(_) => "interval",
        Value::List(_) => "list",
        Value::Map(_) => "mapping",
    }
}

fn dtype_name(d: Dtype) -> String {
    match d {
        Dtype::Int => "int".into(),
        Dtype::Float => "float".into(),
        Dtype::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        Dtype::Str => "str".into(),
        Dtype::Bool => "bool".into(),
        Dtype::Date => "date".into(),
        Dtype::Datetime => "datetime".into(),
        Dtype::Uuid => "uuid".into(),
        Dtype::Json => "json".into(),
    }
}

fn shown(v: &Value) -> String {
    let t = v.to_text();
    if t.chars().count() > 60 {
        format!("{}…", t.chars().take(60).collect::<String>())
    } else {
        t
    }
}

/// Coerce a value to a dtype. Widening conversions always succeed (int → float/decimal,
/// date → datetime, uuid → str, anything → json); narrowing ones succeed only when nothing
/// is lost (an integral float → int, a midnight datetime → date); text is parsed for
/// numbers, booleans, dates, datetimes (ISO 8601; an offset is converted to UTC) and uuids;
/// JSON scalars are unwrapped first. Decimals are rounded half-to-even to the column scale
/// and must fit its precision. NULL stays NULL. The error says what did not fit.
pub fn coerce(v: Value, dtype: Dtype) -> Result<Value, String> {
    coerce_with(v, dtype, true)
}

/// [`coerce`] for a value taken as it is (a source column, a message's value): a decimal
/// with more digits after the point than the dtype's scale is refused, not rounded, as the
/// sink's per-row check refuses it from a database source.
pub fn coerce_exact(v: Value, dtype: Dtype) -> Result<Value, String> {
    coerce_with(v, dtype, false)
}

fn coerce_with(v: Value, dtype: Dtype, round: bool) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if dtype == Dtype::Json {
        return Ok(match v {
            // A document is kept as read, as `values::coerce` keeps it for the rows of a
            // full sync: a JSON `null` stays a document, and one whose numbers `f64` cannot
            // hold (`1e400`, parsed as nothing) keeps its text instead of becoming NULL.
            v @ Value::Json(_) => v,
            other => Value::json(value_to_json(&other)),
        });
    }
    let v = match v {
        // A document with a number beyond `f64`'s range: its text, for a `str` field;
        // refused for any other (a `decimal` field reads the bare number's text).
        Value::Json(j) if j.parsed().is_none() => match dtype {
            Dtype::Str => Value::Str(j.text().to_string()),
            Dtype::Decimal { .. } => Value::Decimal(Decimal::parse(j.text().trim()).ok_or_else(
                || format!("a JSON document with a number beyond the range of a 64-bit float does not fit {}", dtype_name(dtype)),
            )?),
            _ => {
                return Err(format!(
                    "a JSON document with a number beyond the range of a 64-bit float does not fit {}",
                    dtype_name(dtype)
                ))
            }
        },
        Value::Json(j) => match j.value() {
            serde_json::Value::Null => return Ok(Value::Null),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            // The number's own text: exact beyond what `f64` holds.
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => match Decimal::parse(j.text().trim()) {
                    Some(d) if dtype != Dtype::Float => Value::Decimal(d),
                    _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
            },
            _ if dtype == Dtype::Str => Value::Str(j.text().to_string()),
            other => {
                return Err(format!(
                    "a JSON {} does not fit {}",
                    if other.is_array() { "array" } else { "object" },
                    dtype_name(dtype)
                ))
            }
        },
        other => other,
    };
    let no_fit = |v: &Value, why: &str| {
        let mut m = format!(
            "{} value `{}` does not fit {}",
            type_name(v),
            shown(v),
            dtype_name(dtype)
        );
        if !why.is_empty() {
            m.push_str(": ");
            m.push_str(why);
        }
        m
    };
    match dtype {
        Dtype::Json => unreachable!("handled above"),
        Dtype::Int => match &v {
            Value::Int(_) => Ok(v),
            Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
            Value::Float(f) => {
                if f.is_finite()
                    && f.fract() == 0.0
                    && *f >= -9.223_372_036_854_776e18
                    && *f < 9.223_372_036_854_776e18
                {
                    Ok(Value::Int(*f as i64))
                } else {
                    Err(no_fit(&v, "not a whole number in the 64-bit range"))
                }
            }
            Value::Decimal(d) => {
                if d.normalized().scale() == 0 {
                    d.trunc_i64()
                        .map(Value::Int)
                        .ok_or_else(|| no_fit(&v, "out of the 64-bit range"))
                } else {
                    Err(no_fit(&v, "not a whole number"))
                }
            }
            Value::Str(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| no_fit(&v, "not an integer")),
            _ => Err(no_fit(&v, "")),
        },
        Dtype::Float => match &v {
            Value::Float(_) => Ok(v),
            Value::Int(i) => Ok(Value::Float(*i as f64)),
            Value::Decimal(d) => Ok(Value::Float(d.to_f64())),
            Value::Str(s) => super::values::parse_float(s)
                .map(Value::Float)
                .map_err(|why| no_fit(&v, why)),
            _ => Err(no_fit(&v, "")),
        },
        Dtype::Decimal { precision, scale } => {
            let d = match &v {
                Value::Decimal(d) => Some(*d),
                Value::Int(i) => Some(Decimal::from_i64(*i)),
                Value::Float(f) => Decimal::from_f64(*f),
                Value::Str(s) => Decimal::parse(s),
                _ => None,
            };
            let Some(d) = d else {
                return Err(no_fit(&v, "not a decimal number"));
            };
            if let (false, Some(m)) = (round, scale_misfit(&d, precision, scale)) {
                return Err(no_fit(&v, &m));
            }
            // Half away from zero: the databases' rounding, also of pushed-down values.
            let d = d.round_half_away(u32::from(scale));
            let digits = d.normalized().mantissa().unsigned_abs().to_string();
            let int_digits = digits.len().saturating_sub(d.normalized().scale() as usize);
            let allowed = usize::from(precision - scale);
            if d.normalized().mantissa() != 0 && int_digits > allowed {
                return Err(no_fit(
                    &v,
                    &format!("more than {allowed} digits before the decimal point"),
                ));
            }
            Ok(Value::Decimal(d))
        }
        Dtype::Str => Ok(match v {
            Value::Str(_) => v,
            Value::Uuid(s) => Value::Str(s),
            Value::Datetime(t) => Value::Str(datetime_iso(&t)),
            other => Value::Str(other.to_text()),
        }),
        Dtype::Bool => match &v {
            Value::Bool(_) => Ok(v),
            Value::Int(0) => Ok(Value::Bool(false)),
            Value::Int(1) => Ok(Value::Bool(true)),
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" => Ok(Value::Bool(true)),
                "false" | "f" | "0" | "no" | "n" => Ok(Value::Bool(false)),
                _ => Err(no_fit(&v, "not a boolean")),
            },
            _ => Err(no_fit(&v, "")),
        },
        Dtype::Date => match &v {
            Value::Date(_) => Ok(v),
            Value::Datetime(t) => {
                if t.time() == chrono::NaiveTime::MIN {
                    Ok(Value::Date(t.date()))
                } else {
                    Err(no_fit(&v, "it has a time of day"))
                }
            }
            Value::Str(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map(Value::Date)
                .map_err(|_| no_fit(&v, "expected YYYY-MM-DD")),
            _ => Err(no_fit(&v, "")),
        },
        Dtype::Datetime => {
            let t = match &v {
                Value::Datetime(t) => *t,
                Value::Date(d) => d.and_time(chrono::NaiveTime::MIN),
                Value::Str(s) => {
                    parse_datetime(s).ok_or_else(|| no_fit(&v, "expected an ISO 8601 timestamp"))?
                }
                _ => return Err(no_fit(&v, "")),
            };
            // A finer fraction (ClickHouse `DateTime64(9)`, Go's RFC 3339 with nanoseconds)
            // is cut to the microseconds every sink keeps: no dtype holds more.
            Ok(Value::Datetime(truncate_micros(t)))
        }
        Dtype::Uuid => match &v {
            Value::Uuid(_) => Ok(v),
            Value::Str(s) => parse_uuid(s)
                .map(Value::Uuid)
                .ok_or_else(|| no_fit(&v, "not a UUID")),
            _ => Err(no_fit(&v, "")),
        },
    }
}

fn truncate_micros(t: NaiveDateTime) -> NaiveDateTime {
    let ns = t.nanosecond();
    t.with_nanosecond(ns - ns % 1000).unwrap_or(t)
}

/// Parse an ISO 8601 timestamp: `T` or a space between date and time, optional fraction,
/// optional `Z` or `±hh:mm` offset (converted to UTC), or a bare date (midnight).
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.naive_utc());
    }
    let t = s.strip_suffix('Z').unwrap_or(s);
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(chrono::NaiveTime::MIN))
    })
}

/// A UUID in canonical lower-case 8-4-4-4-12 form (also accepts braces, upper case and the
/// 32-digit form without hyphens).
pub fn parse_uuid(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let dashes_ok = s.len() == 32
        || (s.len() == 36 && [8, 13, 18, 23].iter().all(|i| s.as_bytes()[*i] == b'-'));
    if hex.len() != 32 || !dashes_ok || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A UTC timestamp as ISO 8601 with microseconds and `Z`: `2024-01-02T03:04:05.000006Z`.
pub fn datetime_iso(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The wire JSON of a value (webhook and NATS payloads): decimals as strings (exact),
/// datetimes as ISO 8601 UTC with microseconds and `Z`, dates as `YYYY-MM-DD`, uuids as
/// strings, NULL as `null`, JSON as is, intervals as microseconds. A non-finite float, which
/// JSON numbers cannot hold, is the string `"NaN"`, `"Infinity"` or `"-Infinity"` (the
/// canonical JSON mapping of protobuf), so that it stays distinct from NULL.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Int(i) => J::from(*i),
        Value::Float(f) => float_to_json(*f),
        Value::Decimal(d) => J::String(d.to_string()),
        Value::Str(s) | Value::Uuid(s) => J::String(s.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Date(d) => J::String(d.format("%Y-%m-%d").to_string()),
        Value::Datetime(t) => J::String(datetime_iso(t)),
        Value::Json(j) => j.value().clone(),
        Value::Interval(us) => J::from(*us),
        Value::List(l) => J::Array(l.iter().map(value_to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// A float as JSON: a number when finite, else `"NaN"`, `"Infinity"` or `"-Infinity"`.
pub fn float_to_json(f: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => serde_json::Value::Number(n),
        None if f.is_nan() => serde_json::Value::String("NaN".into()),
        None if f > 0.0 => serde_json::Value::String("Infinity".into()),
        None => serde_json::Value::String("-Infinity".into()),
    }
}

/// A sink row as a JSON object, keys being the sink column names in sink field order: the
/// reference [`write_row_json`]'s bytes are checked against (webhooks and NATS write those).
#[cfg(test)]
pub fn row_to_json(columns: &[String], row: &[Value]) -> serde_json::Value {
    serde_json::Value::Object(
        columns
            .iter()
            .zip(row)
            .map(|(c, v)| (c.clone(), value_to_json(v)))
            .collect(),
    )
}

/// Appends a sink row as a JSON object, as [`row_to_json`] serialises it, except that a
/// document with a number beyond `f64`'s range (which a `serde_json::Value` cannot hold) is
/// written as its text rather than as `null`. The bytes of webhook bodies and NATS messages.
pub fn write_row_json(out: &mut Vec<u8>, columns: &[String], row: &[Value]) {
    out.push(b'{');
    for (i, (c, v)) in columns.iter().zip(row).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, c).expect("a string always serialises");
        out.push(b':');
        match v {
            // Valid JSON: `Json::from_text` checked it.
            Value::Json(j) if j.parsed().is_none() => {
                out.extend_from_slice(j.text().trim().as_bytes())
            }
            v => serde_json::to_writer(&mut *out, &value_to_json(v))
                .expect("JSON values always serialise"),
        }
    }
    out.push(b'}');
}

/// Decode one JSON object (a NATS message) into a row keyed by alias: for each
/// `(json key, alias, dtype)` the value is read by key, else by alias (missing → NULL), and
/// coerced to the dtype. Errors name the offending key.
pub fn row_from_json(
    obj: &serde_json::Map<String, serde_json::Value>,
    fields: &[(String, String, Dtype)],
) -> Result<IndexMap<String, Value>, (String, String)> {
    let mut row = IndexMap::with_capacity(fields.len());
    for (key, alias, dtype) in fields {
        let j = obj
            .get(key)
            .or_else(|| obj.get(alias))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        if let (Dtype::Decimal { .. }, serde_json::Value::Number(n)) = (dtype, &j) {
            if !n.is_i64() && !n.is_u64() && !n.as_f64().is_some_and(float_is_exact) {
                return Err((
                    key.clone(),
                    format!("the JSON number {n} may have lost digits: JSON numbers are read as 64-bit floats, which hold 15 significant digits exactly; send the decimal as a string (\"123.45\")"),
                ));
            }
        }
        let v = coerce_exact(Value::from_json(j), *dtype).map_err(|m| (key.clone(), m))?;
        row.insert(alias.clone(), v);
    }
    Ok(row)
}

/// Whether a float read from a JSON number is that number's text exactly: true when its
/// shortest form has at most 15 significant digits (every such decimal text survives the
/// trip through a 64-bit float). A longer one, such as `12345678901234567.89` read as
/// `12345678901234568`, may not be what the message said.
fn float_is_exact(f: f64) -> bool {
    let text = format!("{}", f.abs());
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    f.is_finite() && significant.len() <= 15
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn dt(s: &str) -> NaiveDateTime {
        parse_datetime(s).unwrap()
    }

    #[test]
    fn non_finite_floats_are_json_strings_and_read_back() {
        let row = [
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(1.5),
            Value::Null,
            Value::List(vec![Value::Float(f64::NAN)]),
        ];
        let cols: Vec<String> = ["a", "b", "c", "d", "e", "f"].map(String::from).into();
        let j = row_to_json(&cols, &row);
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            r#"{"a":"NaN","b":"Infinity","c":"-Infinity","d":1.5,"e":null,"f":["NaN"]}"#
        );
        // A NATS source reads them back as the floats they were.
        let fields: Vec<(String, String, Dtype)> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|c| (c.to_string(), c.to_string(), Dtype::Float))
            .collect();
        let back = row_from_json(j.as_object().unwrap(), &fields).unwrap();
        assert!(matches!(back["a"], Value::Float(f) if f.is_nan()));
        assert_eq!(back["b"], Value::Float(f64::INFINITY));
        assert_eq!(back["c"], Value::Float(f64::NEG_INFINITY));
        assert_eq!(back["d"], Value::Float(1.5));
        assert_eq!(back["e"], Value::Null);
    }

    /// A decimal sent as a JSON number with more digits than a float holds is refused,
    /// not stored with digits changed; a string, an integer or a short number is exact.
    #[test]
    fn long_json_numbers_into_decimals_are_refused() {
        let d = Dtype::Decimal {
            precision: 30,
            scale: 2,
        };
        let fields = vec![("amt".to_string(), "amt".to_string(), d)];
        let read = |text: &str| {
            let obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).unwrap();
            row_from_json(&obj, &fields).map(|r| r["amt"].to_text())
        };
        for bad in [
            r#"{"amt": 12345678901234567.89}"#,
            r#"{"amt": 123456789012345678901234.56}"#,
        ] {
            let (key, msg) = read(bad).unwrap_err();
            assert_eq!(key, "amt");
            assert!(msg.contains("send the decimal as a string"), "{msg}");
        }
        assert_eq!(
            read(r#"{"amt": "12345678901234567.89"}"#).unwrap(),
            "12345678901234567.89"
        );
        assert_eq!(
            read(r#"{"amt": 1234567890123.45}"#).unwrap(),
            "1234567890123.45"
        );
        assert_eq!(
            read(r#"{"amt": 9007199254740993}"#).unwrap(),
            "9007199254740993"
        );
        assert_eq!(read(r#"{"amt": 0.1}"#).unwrap(), "0.1");
    }

    #[test]
    fn widening_coercions() {
        assert_eq!(coerce(Value::Int(3), Dtype::Float), Ok(Value::Float(3.0)));
        // Taken as it is, a decimal must fit the scale; computed, it is rounded.
        let d124 = Dtype::Decimal {
            precision: 12,
            scale: 4,
        };
        let e = coerce_exact(Value::Str("1.23456".into()), d124).unwrap_err();
        assert!(e.contains("5 digits after the point"), "{e}");
        assert_eq!(
            coerce_exact(Value::Str("1.2300".into()), d124),
            Ok(Value::Decimal(Decimal::parse("1.2300").unwrap()))
        );
        assert!(coerce(Value::Str("1.23456".into()), d124).is_ok());
        // A message's value is taken as it is: a string or a JSON number alike.
        let fields = vec![("amount".to_string(), "amount".to_string(), d124)];
        for text in [r#"{"amount": "1.23456"}"#, r#"{"amount": 1e-7}"#] {
            let obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).unwrap();
            let (key, e) = row_from_json(&obj, &fields).unwrap_err();
            assert_eq!(key, "amount");
            assert!(e.contains("digits after the point"), "{text}: {e}");
        }
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(
            coerce(Value::Date(d), Dtype::Datetime),
            Ok(Value::Datetime(d.and_hms_opt(0, 0, 0).unwrap()))
        );
        assert_eq!(
            coerce(
                Value::Int(7),
                Dtype::Decimal {
                    precision: 10,
                    scale: 2
                }
            ),
            Ok(Value::Decimal(Decimal::parse("7").unwrap()))
        );
        assert_eq!(
            coerce(Value::Uuid("a".into()), Dtype::Str),
            Ok(Value::Str("a".into()))
        );
        assert_eq!(coerce(Value::Null, Dtype::Int), Ok(Value::Null));
        assert_eq!(
            coerce(Value::Int(1), Dtype::Json),
            Ok(Value::json(serde_json::json!(1)))
        );
    }

    #[test]
    fn narrowing_only_when_lossless() {
        assert_eq!(coerce(Value::Float(4.0), Dtype::Int), Ok(Value::Int(4)));
        assert!(coerce(Value::Float(4.5), Dtype::Int)
            .unwrap_err()
            .contains("does not fit int"));
        assert!(coerce(Value::Float(f64::NAN), Dtype::Int).is_err());
        assert!(coerce(Value::Float(1e19), Dtype::Int).is_err());
        assert!(coerce(Value::Datetime(dt("2024-01-01T10:00:00")), Dtype::Date).is_err());
        assert_eq!(
            coerce(Value::Datetime(dt("2024-01-01T00:00:00")), Dtype::Date),
            Ok(Value::Date(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()))
        );
        assert!(coerce(Value::Str("abc".into()), Dtype::Int).is_err());
        assert!(coerce(Value::Int(2), Dtype::Bool).is_err());
    }

    #[test]
    fn decimal_scale_and_precision() {
        let d52 = Dtype::Decimal {
            precision: 5,
            scale: 2,
        };
        assert_eq!(
            coerce(Value::Str("123.455".into()), d52),
            Ok(Value::Decimal(Decimal::parse("123.46").unwrap()))
        );
        assert!(coerce(Value::Int(1234), d52)
            .unwrap_err()
            .contains("more than 3 digits"));
        assert_eq!(
            coerce(Value::json(serde_json::json!(0.1)), d52),
            Ok(Value::Decimal(Decimal::parse("0.1").unwrap()))
        );
    }

    #[test]
    fn a_json_number_becomes_a_decimal_from_its_text() {
        let n = Value::json_text("123456789012345678901234567890.5").unwrap();
        let d = Dtype::Decimal {
            precision: 38,
            scale: 1,
        };
        assert_eq!(
            coerce(n, d).unwrap().to_text(),
            "123456789012345678901234567890.5"
        );
    }

    #[test]
    fn text_parsing() {
        assert_eq!(
            coerce(
                Value::Str("2024-01-02T03:04:05.123456+02:00".into()),
                Dtype::Datetime
            ),
            Ok(Value::Datetime(dt("2024-01-02 01:04:05.123456")))
        );
        assert_eq!(
            coerce(Value::Str("2024-01-02 03:04:05Z".into()), Dtype::Datetime),
            Ok(Value::Datetime(dt("2024-01-02T03:04:05")))
        );
        assert_eq!(
            coerce(
                Value::Str("{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}".into()),
                Dtype::Uuid
            ),
            Ok(Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()))
        );
        assert!(coerce(Value::Str("a0eebc99-9c0b".into()), Dtype::Uuid).is_err());
        assert_eq!(
            coerce(Value::Str("yes".into()), Dtype::Bool),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            coerce(Value::json(serde_json::json!("42")), Dtype::Int),
            Ok(Value::Int(42))
        );
        assert!(coerce(Value::json(serde_json::json!({"a": 1})), Dtype::Int).is_err());
        assert_eq!(
            coerce(Value::json(serde_json::json!({"a": 1})), Dtype::Str),
            Ok(Value::Str("{\"a\":1}".into()))
        );
    }

    /// Text that overflows a float is refused rather than stored as infinity.
    #[test]
    fn overflowing_float_text_is_refused() {
        for text in ["1e400", "-1e309", " 2E308 "] {
            let e = coerce_exact(Value::Str(text.into()), Dtype::Float).unwrap_err();
            assert!(e.contains("beyond the range of a 64-bit float"), "{e}");
            assert!(coerce(Value::Str(text.into()), Dtype::Float).is_err());
        }
        for (text, want) in [
            ("Infinity", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("+INF", f64::INFINITY),
            ("1e-400", 0.0),
            ("1.7976931348623157e308", f64::MAX),
        ] {
            assert_eq!(
                coerce_exact(Value::Str(text.into()), Dtype::Float),
                Ok(Value::Float(want)),
                "{text}"
            );
        }
        // Nanoseconds are cut to the microseconds a datetime keeps.
        assert_eq!(
            coerce_exact(
                Value::Str("2024-01-02T03:04:05.123456789Z".into()),
                Dtype::Datetime
            ),
            Ok(Value::Datetime(dt("2024-01-02T03:04:05.123456")))
        );
    }

    #[test]
    fn wire_json() {
        let row = vec![
            Value::Decimal(Decimal::parse("12345678901234567890.123456789").unwrap()),
            Value::Datetime(dt("2024-01-02T03:04:05.000006")),
            Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
            Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
            Value::Null,
            Value::Int(5),
        ];
        let cols: Vec<String> = ["d", "t", "day", "u", "n", "i"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            row_to_json(&cols, &row).to_string(),
            r#"{"d":"12345678901234567890.123456789","t":"2024-01-02T03:04:05.000006Z","day":"2024-01-02","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","n":null,"i":5}"#
        );
    }

    /// A document `f64` cannot read (`1e400`) and a JSON `null` are copied as the documents
    /// they are, as the full sync's coercion copies them; a field that is not `json` gets
    /// the text or an error, never NULL.
    #[test]
    fn documents_beyond_f64_and_json_null_are_kept() {
        let far = || Value::json_text(r#"{"x": 1e400}"#).unwrap();
        for v in [
            coerce_exact(far(), Dtype::Json).unwrap(),
            coerce(far(), Dtype::Json).unwrap(),
            crate::runtime::values::coerce(far(), Dtype::Json).unwrap(),
        ] {
            assert_eq!(v.to_text(), r#"{"x": 1e400}"#);
        }
        let null = || Value::json_text("null").unwrap();
        assert_eq!(coerce_exact(null(), Dtype::Json).unwrap(), null());
        assert_eq!(
            crate::runtime::values::coerce(null(), Dtype::Json).unwrap(),
            null()
        );
        assert_eq!(
            coerce_exact(far(), Dtype::Str).unwrap(),
            Value::Str(r#"{"x": 1e400}"#.into())
        );
        let e = coerce_exact(far(), Dtype::Float).unwrap_err();
        assert!(e.contains("beyond the range of a 64-bit float"), "{e}");

        let cols = vec!["id".to_string(), "doc".to_string()];
        let mut out = Vec::new();
        write_row_json(&mut out, &cols, &[Value::Int(1), far()]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"id":1,"doc":{"x": 1e400}}"#
        );
        let row = [
            Value::Int(1),
            Value::json_text(r#"{"a": [1, 2.5]}"#).unwrap(),
        ];
        let mut out = Vec::new();
        write_row_json(&mut out, &cols, &row);
        assert_eq!(out, serde_json::to_vec(&row_to_json(&cols, &row)).unwrap());
    }

    #[test]
    fn json_rows_decode_by_field() {
        let obj = serde_json::json!({"id": "7", "at": "2024-01-01T00:00:00Z", "x": 1.5});
        let fields = vec![
            ("id".to_string(), "id".to_string(), Dtype::Int),
            ("at".to_string(), "at".to_string(), Dtype::Datetime),
            ("missing".to_string(), "m".to_string(), Dtype::Str),
        ];
        let row = row_from_json(obj.as_object().unwrap(), &fields).unwrap();
        assert_eq!(row["id"], Value::Int(7));
        assert_eq!(row["at"], Value::Datetime(dt("2024-01-01T00:00:00")));
        assert_eq!(row["m"], Value::Null);
        let bad = serde_json::json!({"id": "x"});
        let err = row_from_json(bad.as_object().unwrap(), &fields[..1]).unwrap_err();
        assert_eq!(err.0, "id");
    }
}

#[cfg(test)]
mod sink_row_tests {
    use super::*;
    use crate::ir::FieldValue;
    use std::collections::HashMap;

    const CONFIG: &str = r#"
datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, username: u, database: d}
externalstores:
  - {name: cache, type: redis, host: 127.0.0.1}
pipelines:
  - name: orders
    source:
      datastore: pg
      table: t
      fields:
        - {column: id, dtype: int}
        - {column: name, dtype: str}
        - {column: amount, dtype: int}
        - {column: day, dtype: date}
    sink:
      datastore: pg
      table: s
      unique_key: [id]
      fields:
        - {column: id, source_column: id}
        - {column: amount_f, dtype: float, source_column: amount}
        - {column: day_ts, dtype: datetime, source_column: day}
        - {column: greeting, dtype: str, source_column: "TMPL(hi {{ name }})"}
        - {column: seg, dtype: int, source: segment}
        - {column: stamp, dtype: datetime, source_column: "lambda: now()"}
        - {column: label, dtype: str, source_column: 'lambda r: r["segment"] + "!"'}
    enrichment:
      - {externalstore: cache, name: segment, key_template: "seg:{{ id }}"}
"#;

    fn pipeline() -> Pipeline {
        let fe = crate::driver::frontend("t.yaml", CONFIG, &HashMap::<String, String>::new(), &[])
            .unwrap_or_else(|f| panic!("{}", f.render()));
        fe.checked.program.pipelines[0].clone()
    }

    fn row(seg: &str) -> IndexMap<String, Value> {
        let mut r = IndexMap::new();
        r.insert("id".to_string(), Value::Int(7));
        r.insert("name".to_string(), Value::Str("Ann".into()));
        r.insert("amount".to_string(), Value::Int(1500));
        r.insert(
            "day".to_string(),
            Value::Date(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()),
        );
        r.insert("segment".to_string(), Value::Str(seg.into()));
        r
    }

    #[test]
    fn every_field_kind_is_computed_and_coerced() {
        let p = pipeline();
        assert!(matches!(p.sink.fields[3].value, FieldValue::Template(_)));
        assert!(matches!(
            p.sink.fields[4].value,
            FieldValue::Enrichment { .. }
        ));
        let now = parse_datetime("2024-05-06T07:08:09.123456").unwrap();
        let out = sink_row(&p, &row("42"), now).unwrap();
        assert_eq!(out[0], Value::Int(7));
        assert_eq!(out[1], Value::Float(1500.0));
        assert_eq!(
            out[2],
            Value::Datetime(parse_datetime("2024-03-01").unwrap())
        );
        assert_eq!(out[3], Value::Str("hi Ann".into()));
        assert_eq!(out[4], Value::Int(42));
        assert_eq!(out[5], Value::Datetime(now));
        assert_eq!(out[6], Value::Str("42!".into()));
        // A template printing a NULL field gives NULL.
        let mut r = row("42");
        r.insert("name".to_string(), Value::Null);
        assert_eq!(sink_row(&p, &r, now).unwrap()[3], Value::Null);
    }

    #[test]
    fn a_value_that_does_not_fit_names_pipeline_key_and_column() {
        let p = pipeline();
        let now = parse_datetime("2024-05-06").unwrap();
        let err = sink_row(&p, &row("gold"), now).unwrap_err();
        match &err {
            RuntimeError::Value {
                pipeline,
                key,
                column,
                ..
            } => {
                assert_eq!(pipeline, "orders");
                assert_eq!(key, "id=7");
                assert_eq!(column, "seg");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string()
                .contains("str value `gold` does not fit int"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_enrichment_output_is_an_error() {
        let p = pipeline();
        let mut r = row("1");
        r.shift_remove("segment");
        let err = sink_row(&p, &r, parse_datetime("2024-05-06").unwrap()).unwrap_err();
        assert!(err.to_string().contains("enrichment `segment`"), "{err}");
    }
}
