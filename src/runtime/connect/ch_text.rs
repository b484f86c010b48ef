//! ClickHouse's text forms, for servers without query parameters and for results: finding
//! `{name:Type}` placeholders, typed literals and HTTP parameter values, and decoding
//! `TabSeparated` result lines.

use crate::expr::Value;
use crate::runtime::values::{self, coerce, decimal_fixed_text, kind_name, unix_epoch};
use crate::runtime::Row;
use crate::types::Dtype;
use chrono::NaiveDate;

/// A `{name:Type}` placeholder found in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// Byte offset of `{`.
    pub start: usize,
    /// Byte offset just after `}`.
    pub end: usize,
    /// The parameter name.
    pub name: String,
    /// The declared ClickHouse type (`Nullable(DateTime)`).
    pub ty: String,
}

/// Finds the `{name:Type}` placeholders of a statement, skipping string literals, quoted
/// identifiers and comments.
pub fn scan_placeholders(sql: &str) -> Result<Vec<Placeholder>, String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_quoted = |mut i: usize, q: u8| -> Result<usize, String> {
        i += 1;
        while i < b.len() {
            if b[i] == b'\\' {
                i += 2;
                continue;
            }
            if b[i] == q {
                if b.get(i + 1) == Some(&q) {
                    i += 2;
                    continue;
                }
                return Ok(i + 1);
            }
            i += 1;
        }
        Err("unterminated quoted text in the statement".into())
    };
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => i = skip_quoted(i, q)?,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(b.len(), |p| i + p + 1)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map(|p| i + 2 + p + 2)
                    .ok_or("unterminated comment in the statement")?
            }
            b'{' => {
                let start = i;
                let mut j = i + 1;
                let mut depth = 0i32;
                while j < b.len() && !(b[j] == b'}' && depth == 0) {
                    match b[j] {
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        b'\'' => {
                            j = skip_quoted(j, b'\'')?;
                            continue;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= b.len() {
                    return Err("unterminated `{` in the statement".into());
                }
                let inner = &sql[start + 1..j];
                let (name, ty) = inner
                    .split_once(':')
                    .ok_or_else(|| format!("`{{{inner}}}` is not a `{{name:Type}}` placeholder"))?;
                let name = name.trim();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("invalid placeholder name `{name}`"));
                }
                out.push(Placeholder {
                    start,
                    end: j + 1,
                    name: name.to_string(),
                    ty: ty.trim().to_string(),
                });
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// `inner` of `Wrapper(inner)`.
fn unwrap_type<'a>(ty: &'a str, wrapper: &str) -> Option<&'a str> {
    ty.strip_prefix(wrapper)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')
        .map(str::trim)
}

/// The type's name without arguments (`Decimal` of `Decimal(10, 2)`).
fn base_type(ty: &str) -> &str {
    ty.split('(').next().unwrap_or(ty).trim()
}

/// A ClickHouse single-quoted string literal.
pub fn quote_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Escapes text as ClickHouse's `TabSeparated` (and query-parameter) format does.
pub fn tsv_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out
}

/// The text a value takes in a `String` placeholder.
fn string_text(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Str(s) | Value::Uuid(s) => s.clone(),
        Value::Json(j) => j.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Decimal(d) => decimal_fixed_text(d),
        Value::Bool(b) => (*b as u8).to_string(),
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Datetime(t) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        other => {
            return Err(format!(
                "a {} value cannot be bound as String",
                kind_name(other)
            ))
        }
    })
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

fn int_text(v: &Value, ty: &str) -> Result<String, String> {
    let i = match coerce(v.clone(), Dtype::Int)? {
        Value::Int(i) => i,
        _ => unreachable!("coerce to int yields an int"),
    };
    let (lo, hi): (i128, i128) = match ty {
        "Int8" => (i8::MIN.into(), i8::MAX.into()),
        "Int16" => (i16::MIN.into(), i16::MAX.into()),
        "Int32" => (i32::MIN.into(), i32::MAX.into()),
        "UInt8" => (0, u8::MAX.into()),
        "UInt16" => (0, u16::MAX.into()),
        "UInt32" => (0, u32::MAX.into()),
        "UInt64" => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    if !(lo..=hi).contains(&i128::from(i)) {
        return Err(format!("{i} is out of range for {ty}"));
    }
    Ok(i.to_string())
}

fn epoch_seconds(v: &Value) -> Result<i64, String> {
    let t = match coerce(v.clone(), Dtype::Datetime)? {
        Value::Datetime(t) => t,
        _ => unreachable!("coerce to datetime yields a datetime"),
    };
    let s = values::epoch_micros(&t).div_euclid(1_000_000);
    if !(0..=i64::from(u32::MAX)).contains(&s) {
        return Err(format!(
            "{t} is outside ClickHouse DateTime's range (1970–2106)"
        ));
    }
    Ok(s)
}

fn date_text(v: &Value) -> Result<String, String> {
    match coerce(v.clone(), Dtype::Date)? {
        Value::Date(d) => Ok(d.format("%Y-%m-%d").to_string()),
        _ => unreachable!("coerce to date yields a date"),
    }
}

/// A `Date` literal for the servers without query parameters (18.16): the day number
/// (`toDate(toUInt16(55000))`) for a date `Date` holds, 1970-01-01 to 2149-06-06, as
/// 18.16 parses the text of a date after 2105 as 0000-00-00 (a range bound or watermark
/// there matched no row); the text otherwise, whatever the server makes of it.
fn date_literal(v: &Value) -> Result<String, String> {
    let d = match coerce(v.clone(), Dtype::Date)? {
        Value::Date(d) => d,
        _ => unreachable!("coerce to date yields a date"),
    };
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let days = (d - epoch).num_days();
    Ok(match u16::try_from(days) {
        Ok(n) => format!("toDate(toUInt16({n}))"),
        Err(_) => format!(
            "toDate({})",
            quote_string(&d.format("%Y-%m-%d").to_string())
        ),
    })
}

fn uuid_text(v: &Value) -> Result<String, String> {
    match coerce(v.clone(), Dtype::Uuid)? {
        Value::Uuid(s) => Ok(s),
        _ => unreachable!("coerce to uuid yields a uuid"),
    }
}

fn decimal_text(v: &Value, ty: &str) -> Result<String, String> {
    let d = match v {
        Value::Decimal(d) => *d,
        other => match coerce(
            other.clone(),
            Dtype::Decimal {
                precision: 38,
                scale: 0,
            },
        )? {
            Value::Decimal(d) => d,
            _ => unreachable!("coerce to decimal yields a decimal"),
        },
    };
    let _ = ty;
    Ok(decimal_fixed_text(&d))
}

/// A driver-side literal for a placeholder of ClickHouse type `ty` (servers without query
/// parameters).
pub fn literal(v: &Value, ty: &str) -> Result<String, String> {
    if let Some(inner) = unwrap_type(ty, "Nullable") {
        return if v.is_null() {
            Ok("NULL".into())
        } else {
            literal(v, inner)
        };
    }
    if let Some(inner) = unwrap_type(ty, "LowCardinality") {
        return literal(v, inner);
    }
    if v.is_null() {
        return Err(format!(
            "NULL bound to the non-Nullable placeholder type {ty}"
        ));
    }
    let neg = |s: String| {
        if s.starts_with('-') {
            format!("({s})")
        } else {
            s
        }
    };
    Ok(match base_type(ty) {
        "String" | "FixedString" => quote_string(&string_text(v)?),
        // Typed, as a query parameter would be: a bare `4294967296` is a UInt64 to
        // ClickHouse, which makes `intDiv(id, 4294967296)` unsigned for negative ids.
        t @ ("Int8" | "Int16" | "Int32" | "Int64" | "UInt8" | "UInt16" | "UInt32" | "UInt64") => {
            format!("to{t}({})", int_text(v, t)?)
        }
        "Float32" | "Float64" => match coerce(v.clone(), Dtype::Float)? {
            Value::Float(f) => neg(float_text(f)),
            _ => unreachable!("coerce to float yields a float"),
        },
        "Decimal" | "Decimal32" | "Decimal64" | "Decimal128" => {
            format!("CAST({} AS {ty})", quote_string(&decimal_text(v, ty)?))
        }
        "Date" => date_literal(v)?,
        "DateTime" => match unwrap_type(ty, "DateTime") {
            Some(tz) if !tz.is_empty() => format!("toDateTime({}, {tz})", epoch_seconds(v)?),
            _ => format!("toDateTime({})", epoch_seconds(v)?),
        },
        "UUID" => format!("toUUID({})", quote_string(&uuid_text(v)?)),
        _ => return Err(format!("placeholders of type {ty} are not supported")),
    })
}

/// The `param_<name>` text for a placeholder of type `ty` (servers with query parameters):
/// the value as the `TabSeparated` format writes it, `\N` for NULL.
pub fn param_text(v: &Value, ty: &str) -> Result<String, String> {
    if let Some(inner) = unwrap_type(ty, "Nullable") {
        return if v.is_null() {
            Ok("\\N".into())
        } else {
            param_text(v, inner)
        };
    }
    if let Some(inner) = unwrap_type(ty, "LowCardinality") {
        return param_text(v, inner);
    }
    if v.is_null() {
        return Err(format!(
            "NULL bound to the non-Nullable placeholder type {ty}"
        ));
    }
    Ok(match base_type(ty) {
        "String" | "FixedString" => tsv_escape(&string_text(v)?),
        t @ ("Int8" | "Int16" | "Int32" | "Int64" | "UInt8" | "UInt16" | "UInt32" | "UInt64") => {
            int_text(v, t)?
        }
        "Bool" => match coerce(v.clone(), Dtype::Bool)? {
            Value::Bool(b) => b.to_string(),
            _ => unreachable!("coerce to bool yields a bool"),
        },
        "Float32" | "Float64" => match coerce(v.clone(), Dtype::Float)? {
            Value::Float(f) => float_text(f),
            _ => unreachable!("coerce to float yields a float"),
        },
        "Decimal" | "Decimal32" | "Decimal64" | "Decimal128" | "Decimal256" => decimal_text(v, ty)?,
        "Date" | "Date32" => date_text(v)?,
        // A Unix timestamp: the same instant whatever the server's time zone.
        "DateTime" => epoch_seconds(v)?.to_string(),
        "UUID" => uuid_text(v)?,
        _ => return Err(format!("placeholders of type {ty} are not supported")),
    })
}

/// Undoes `TabSeparated` escaping.
fn tsv_unescape(field: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let c = field[i];
        if c == b'\\' && i + 1 < field.len() {
            out.push(match field[i + 1] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'0' => 0,
                b'b' => 8,
                b'f' => 12,
                b'a' => 7,
                b'v' => 11,
                other => other,
            });
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the value is not UTF-8 text".to_string())
}

/// One `TabSeparated` line as a row of `out`; the error carries the 1-based column.
pub fn decode_tsv_line(line: &[u8], out: &[Dtype]) -> Result<Row, (usize, String)> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
    if fields.len() != out.len() {
        return Err((
            0,
            format!(
                "a row has {} columns but {} dtypes were given",
                fields.len(),
                out.len()
            ),
        ));
    }
    fields
        .iter()
        .zip(out)
        .enumerate()
        .map(|(i, (f, d))| decode_tsv_field(f, *d).map_err(|m| (i + 1, m)))
        .collect()
}

/// Cell `i` (0-based) of a `TabSeparated` line, decoded as `d`; `None` when it does not
/// decode. For messages naming the row of a cell that failed.
pub fn decode_tsv_cell(line: &[u8], i: usize, d: Dtype) -> Option<Value> {
    let f = line.split(|b| *b == b'\t').nth(i)?;
    decode_tsv_field(f, d).ok()
}

fn decode_tsv_field(f: &[u8], d: Dtype) -> Result<Value, String> {
    if f == b"\\N" {
        return Ok(Value::Null);
    }
    let text = tsv_unescape(f)?;
    match d {
        // ClickHouse prints its zero date / datetime (the epoch) as zeros.
        Dtype::Date if text == "0000-00-00" => Ok(Value::Date(
            NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid"),
        )),
        Dtype::Datetime if text == "0000-00-00 00:00:00" => Ok(Value::Datetime(unix_epoch())),
        // Dates are read as day numbers (`Dialect::read_value`).
        Dtype::Date
            if !text.is_empty()
                && text
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            text.parse::<i64>()
                .ok()
                .and_then(|days| {
                    NaiveDate::from_ymd_opt(1970, 1, 1)?
                        .checked_add_signed(chrono::Duration::try_days(days)?)
                })
                .map(Value::Date)
                .ok_or_else(|| format!("day number {text} is not a date"))
        }
        _ => coerce(Value::Str(text), d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::value::Decimal;

    #[test]
    fn finds_placeholders_outside_literals_and_comments() {
        let sql = "SELECT '{no:String}', \"{x:y}\" -- {c:Int64}\n /* {d:Int8} */ FROM t WHERE a = {a:Int64} AND b IN ({b:Nullable(DateTime('UTC'))}) AND c = 'it''s {z:Int8}'";
        let h = scan_placeholders(sql).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "a");
        assert_eq!(h[0].ty, "Int64");
        assert_eq!(&sql[h[0].start..h[0].end], "{a:Int64}");
        assert_eq!(h[1].ty, "Nullable(DateTime('UTC'))");
        assert!(scan_placeholders("SELECT {oops}").is_err());
    }

    #[test]
    fn literals_escape_and_type_values() {
        assert_eq!(
            literal(
                &Value::Str("it's a \\ \n\t\0 é {x:String}".into()),
                "String"
            )
            .unwrap(),
            "'it\\'s a \\\\ \\n\\t\\0 é {x:String}'"
        );
        assert_eq!(literal(&Value::Int(-5), "Int64").unwrap(), "toInt64(-5)");
        assert_eq!(
            literal(&Value::Int(4_294_967_296), "Int64").unwrap(),
            "toInt64(4294967296)"
        );
        assert!(literal(&Value::Int(300), "UInt8").is_err());
        assert_eq!(literal(&Value::Null, "Nullable(Int64)").unwrap(), "NULL");
        assert!(literal(&Value::Null, "Int64").is_err());
        assert_eq!(
            literal(
                &Value::Decimal(Decimal::parse("-1.50").unwrap()),
                "Decimal(10, 2)"
            )
            .unwrap(),
            "CAST('-1.50' AS Decimal(10, 2))"
        );
        let t = values::parse_datetime("2020-01-02 03:04:05.9").unwrap();
        assert_eq!(
            literal(&Value::Datetime(t), "DateTime").unwrap(),
            "toDateTime(1577934245)"
        );
        assert_eq!(
            param_text(&Value::Datetime(t), "DateTime").unwrap(),
            "1577934245"
        );
        assert_eq!(
            param_text(&Value::Str("a\tb\\".into()), "String").unwrap(),
            "a\\tb\\\\"
        );
        assert_eq!(param_text(&Value::Null, "Nullable(String)").unwrap(), "\\N");
        assert_eq!(
            literal(&Value::Float(f64::NEG_INFINITY), "Float64").unwrap(),
            "(-inf)"
        );
        // Dates by their day number where `Date` holds them (18.16 parses the text of one
        // after 2105 as 0000-00-00).
        let date = |y, m, d| Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert_eq!(
            literal(&date(2120, 5, 5), "Nullable(Date)").unwrap(),
            "toDate(toUInt16(54911))"
        );
        assert_eq!(
            literal(&date(1970, 1, 1), "Date").unwrap(),
            "toDate(toUInt16(0))"
        );
        assert_eq!(
            literal(&date(2149, 6, 6), "Date").unwrap(),
            "toDate(toUInt16(65535))"
        );
        assert_eq!(
            literal(&date(1969, 12, 31), "Date").unwrap(),
            "toDate('1969-12-31')"
        );
    }

    #[test]
    fn tsv_lines_decode_per_dtype() {
        let out = [
            Dtype::Int,
            Dtype::Str,
            Dtype::Bool,
            Dtype::Date,
            Dtype::Datetime,
        ];
        let row = decode_tsv_line(b"-7\ta\\tb\\\\c\\nd\\'e\t1\t0000-00-00\t\\N", &out).unwrap();
        assert_eq!(row[0], Value::Int(-7));
        assert_eq!(row[1], Value::Str("a\tb\\c\nd'e".into()));
        assert_eq!(row[2], Value::Bool(true));
        assert_eq!(
            row[3],
            Value::Date(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        );
        assert_eq!(row[4], Value::Null);
        assert!(decode_tsv_line(b"1\t2", &out).is_err());
    }
}
