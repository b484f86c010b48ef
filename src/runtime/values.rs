//! Conversions between runtime [`Value`]s and the column [`Dtype`]s every connector shares:
//! coercing a decoded or bound value to the declared dtype, and the text forms used where a
//! wire protocol carries values as text.

use crate::expr::value::Decimal;
use crate::expr::Value;
use crate::types::Dtype;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// 1970-01-01 00:00:00.
pub fn unix_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .expect("valid date")
        .and_time(NaiveTime::MIN)
}

/// A short name of the value's variant, for error messages (never the value itself: it may
/// be a secret or personal data).
pub fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
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
        Value::Map(_) => "map",
    }
}

/// Converts `v` to the runtime representation of `dtype`, exactly or not at all.
///
/// NULL stays NULL. Lossless conversions are accepted (an integer as a decimal, `0`/`1` as a
/// boolean, decimal text as a decimal, a UUID in any case as lower-case, JSON text as JSON,
/// a midnight datetime as a date); anything that would lose information is an error
/// describing the mismatch. Decimals are rescaled to the dtype's scale when that is exact
/// and otherwise kept at their own scale (never rounded).
pub fn coerce(v: Value, dtype: Dtype) -> Result<Value, String> {
    if conforms(&v, dtype) {
        return Ok(v);
    }
    let mismatch = |v: &Value| format!("cannot read a {} value as {dtype}", kind_name(v));
    Ok(match (dtype, v) {
        (_, Value::Null) => Value::Null,
        (Dtype::Int, Value::Int(i)) => Value::Int(i),
        (Dtype::Int, Value::Bool(b)) => Value::Int(b as i64),
        (Dtype::Int, Value::Decimal(d)) => {
            let n = d.normalized();
            if n.scale() != 0 {
                return Err(format!("decimal {d} is not an integer"));
            }
            Value::Int(i64::try_from(n.mantissa()).map_err(|_| beyond_int(&d.to_string()))?)
        }
        (Dtype::Int, Value::Float(f)) => {
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.007_199_254_740_992e15 {
                return Err(format!("float {f} is not an exact integer"));
            }
            Value::Int(f as i64)
        }
        (Dtype::Int, Value::Str(s)) => Value::Int(s.trim().parse().map_err(|_| {
            // A whole number too large for 64 bits (ClickHouse `UInt64`, MySQL `bigint
            // unsigned`) is said to be one.
            let digits = s.trim().trim_start_matches(['-', '+']);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                beyond_int(&abbreviate(&s))
            } else {
                format!("text {:?} is not an integer", abbreviate(&s))
            }
        })?),
        (Dtype::Float, Value::Float(f)) => Value::Float(f),
        (Dtype::Float, Value::Int(i)) => Value::Float(i as f64),
        (Dtype::Float, Value::Decimal(d)) => Value::Float(d.to_f64()),
        (Dtype::Float, Value::Str(s)) => Value::Float(
            parse_float(&s).map_err(|why| format!("text {:?} is {why}", abbreviate(&s)))?,
        ),
        (Dtype::Decimal { scale, .. }, Value::Decimal(d)) => Value::Decimal(fit_scale(d, scale)),
        (Dtype::Decimal { scale, .. }, Value::Int(i)) => {
            Value::Decimal(fit_scale(Decimal::from_i64(i), scale))
        }
        (Dtype::Decimal { scale, .. }, Value::Str(s)) => Value::Decimal(fit_scale(
            Decimal::parse(&s)
                .ok_or_else(|| format!("text {:?} is not a decimal", abbreviate(&s)))?,
            scale,
        )),
        (Dtype::Decimal { scale, .. }, Value::Float(f)) => Value::Decimal(fit_scale(
            Decimal::from_f64(f).ok_or_else(|| format!("float {f} is not a finite number"))?,
            scale,
        )),
        (Dtype::Str, Value::Str(s)) => Value::Str(s),
        (Dtype::Str, Value::Uuid(s)) => Value::Str(s),
        (Dtype::Str, v @ (Value::Int(_) | Value::Decimal(_) | Value::Date(_))) => {
            Value::Str(v.to_text())
        }
        (Dtype::Str, Value::Json(j)) => Value::Str(match j.value() {
            serde_json::Value::String(s) => s.clone(),
            _ => j.text().to_string(),
        }),
        (Dtype::Bool, Value::Bool(b)) => Value::Bool(b),
        (Dtype::Bool, Value::Int(i)) => Value::Bool(i != 0),
        (Dtype::Bool, Value::Decimal(d)) => Value::Bool(d.mantissa() != 0),
        (Dtype::Bool, Value::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Value::Bool(true),
            "0" | "f" | "false" => Value::Bool(false),
            // An integer column read as bool (ClickHouse `UInt8`, as MySQL `tinyint(1)`):
            // any other value is true, as the row hash reads it (`c != 0`).
            t => match t.parse::<i64>() {
                Ok(i) => Value::Bool(i != 0),
                Err(_) => return Err(format!("text {:?} is not a boolean", abbreviate(&s))),
            },
        },
        (Dtype::Date, Value::Date(d)) => Value::Date(d),
        (Dtype::Date, Value::Datetime(t)) => {
            if t.time() != NaiveTime::MIN {
                return Err(format!("datetime {t} is not a whole date"));
            }
            Value::Date(t.date())
        }
        (Dtype::Date, Value::Str(s)) => Value::Date(
            parse_date(&s).ok_or_else(|| format!("text {:?} is not a date", abbreviate(&s)))?,
        ),
        (Dtype::Datetime, Value::Datetime(t)) => Value::Datetime(t),
        (Dtype::Datetime, Value::Date(d)) => Value::Datetime(d.and_time(NaiveTime::MIN)),
        (Dtype::Datetime, Value::Str(s)) => Value::Datetime(
            parse_datetime(&s)
                .ok_or_else(|| format!("text {:?} is not a datetime", abbreviate(&s)))?,
        ),
        (Dtype::Uuid, Value::Uuid(s) | Value::Str(s)) => Value::Uuid(
            normalize_uuid(&s).ok_or_else(|| format!("text {:?} is not a UUID", abbreviate(&s)))?,
        ),
        (Dtype::Json, Value::Json(j)) => Value::Json(j),
        (Dtype::Json, Value::Str(s)) => {
            Value::json_text(s).map_err(|e| format!("text is not JSON: {e}"))?
        }
        (Dtype::Json, v @ (Value::Int(_) | Value::Float(_) | Value::Bool(_))) => {
            Value::json(v.to_json())
        }
        (Dtype::Json, v @ (Value::List(_) | Value::Map(_))) => Value::json(v.to_json()),
        (_, v) => return Err(mismatch(&v)),
    })
}

/// Why a whole number does not fit `int`, with the dtype that holds it.
fn beyond_int(number: &str) -> String {
    format!("{number} is outside the 64-bit signed range of int (declare the field decimal(20,0))")
}

/// A float from its text: `inf`, `Infinity` and `NaN` (any case, signed) are the values
/// they name, but text that overflows (`1e400`) is refused rather than read as infinity.
/// The error completes "text … is …".
pub fn parse_float(s: &str) -> Result<f64, &'static str> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(f) if f.is_infinite() => {
            let word = t.trim_start_matches(['+', '-']);
            if word.eq_ignore_ascii_case("inf") || word.eq_ignore_ascii_case("infinity") {
                Ok(f)
            } else {
                Err("beyond the range of a 64-bit float")
            }
        }
        Ok(f) => Ok(f),
        Err(_) => Err("not a float"),
    }
}

/// [`coerce`] of a borrowed value: the value itself when it already conforms (no clone),
/// else the coerced copy. For encoders that read every value of a batch.
pub fn coerce_ref(v: &Value, dtype: Dtype) -> Result<std::borrow::Cow<'_, Value>, String> {
    if conforms(v, dtype) {
        Ok(std::borrow::Cow::Borrowed(v))
    } else {
        coerce(v.clone(), dtype).map(std::borrow::Cow::Owned)
    }
}

/// Whether `coerce(v, dtype)` would return `v` unchanged (NULL, or a value of exactly the
/// dtype's kind; decimals at the dtype's scale; uuids already in canonical text).
pub fn conforms(v: &Value, dtype: Dtype) -> bool {
    match (dtype, v) {
        (_, Value::Null) => true,
        (Dtype::Int, Value::Int(_))
        | (Dtype::Float, Value::Float(_))
        | (Dtype::Str, Value::Str(_))
        | (Dtype::Bool, Value::Bool(_))
        | (Dtype::Date, Value::Date(_))
        | (Dtype::Datetime, Value::Datetime(_))
        | (Dtype::Json, Value::Json(_)) => true,
        (Dtype::Decimal { scale, .. }, Value::Decimal(d)) => d.scale() == u32::from(scale),
        (Dtype::Uuid, Value::Uuid(s)) => is_canonical_uuid(s),
        _ => false,
    }
}

/// At most 40 characters of `s`, for error messages.
pub(crate) fn abbreviate(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(40).collect();
        t.push('…');
        t
    }
}

/// `d` at exactly `scale` digits when that loses nothing; otherwise `d` unchanged.
pub fn fit_scale(d: Decimal, scale: u8) -> Decimal {
    let scale = u32::from(scale);
    if d.scale() == scale {
        return d;
    }
    if d.scale() < scale {
        return d.rescale_up(scale).unwrap_or(d);
    }
    let n = d.normalized();
    if n.scale() <= scale {
        n.rescale_up(scale).unwrap_or(n)
    } else {
        d
    }
}

/// `d` at exactly `scale` digits, or an error when that would drop non-zero digits.
pub fn exact_scale(d: Decimal, scale: u8) -> Result<Decimal, String> {
    let f = fit_scale(d, scale);
    if f.scale() == u32::from(scale) {
        Ok(f)
    } else {
        Err(format!(
            "decimal {d} has more than {scale} digits after the point"
        ))
    }
}

/// The decimal's text with exactly its own scale (trailing zeros kept: `1.50`).
pub fn decimal_fixed_text(d: &Decimal) -> String {
    let neg = d.mantissa() < 0;
    let digits = d.mantissa().unsigned_abs().to_string();
    let scale = d.scale() as usize;
    let mut out = String::with_capacity(digits.len() + 3);
    if neg {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (i, f) = digits.split_at(digits.len() - scale);
        out.push_str(i);
        out.push('.');
        out.push_str(f);
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat(scale - digits.len()));
        out.push_str(&digits);
    }
    out
}

/// `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// `YYYY-MM-DD hh:mm:ss[.ffffff]` or the same with a `T`, optionally followed by `Z` or
/// `+00:00` (only UTC offsets are accepted: runtime datetimes are UTC).
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .or_else(|| s.strip_suffix("+00"))
        .unwrap_or(s);
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(truncate_to_micros(t));
        }
    }
    parse_date(s).map(|d| d.and_time(NaiveTime::MIN))
}

/// Drops sub-microsecond digits.
pub fn truncate_to_micros(t: NaiveDateTime) -> NaiveDateTime {
    let ns = t.nanosecond();
    t.with_nanosecond(ns - ns % 1000).unwrap_or(t)
}

/// Microseconds since 1970-01-01 00:00:00 UTC.
pub fn epoch_micros(t: &NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// The datetime `us` microseconds after the Unix epoch.
pub fn from_epoch_micros(us: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp_micros(us).map(|t| t.naive_utc())
}

/// Canonical lower-case `8-4-4-4-12` text of a UUID given with or without hyphens or braces.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let b = parse_uuid(s)?;
    Some(format_uuid(&b))
}

/// Whether `s` is already what [`normalize_uuid`] returns: lower-case `8-4-4-4-12` hex.
fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// The 16 bytes of a UUID written as text (hyphens and braces optional).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; 16];
    let mut n = 0usize;
    let mut high: Option<u8> = None;
    for c in s.bytes() {
        if c == b'-' {
            continue;
        }
        let v = nibble(c)?;
        match high.take() {
            None => high = Some(v),
            Some(h) => {
                *out.get_mut(n)? = (h << 4) | v;
                n += 1;
            }
        }
    }
    (n == 16 && high.is_none()).then_some(out)
}

/// Lower-case `8-4-4-4-12` text of 16 UUID bytes.
pub fn format_uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut j = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        out[j] = HEX[(byte >> 4) as usize];
        out[j + 1] = HEX[(byte & 0xf) as usize];
        j += 2;
    }
    String::from_utf8(out.to_vec()).expect("ASCII hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_text_that_overflows_is_refused() {
        let e = coerce(Value::Str("1e400".into()), Dtype::Float).unwrap_err();
        assert!(e.contains("beyond the range of a 64-bit float"), "{e}");
        assert_eq!(parse_float(" -Infinity "), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_float("inf"), Ok(f64::INFINITY));
        assert!(parse_float("NaN").is_ok_and(f64::is_nan));
        assert_eq!(parse_float("x"), Err("not a float"));
    }

    #[test]
    fn a_whole_number_beyond_64_bits_is_named_as_one() {
        for v in [
            Value::Str("18446744073709551615".into()),
            Value::Decimal(crate::expr::Decimal::parse("18446744073709551615").unwrap()),
        ] {
            let e = coerce(v, Dtype::Int).unwrap_err();
            assert!(e.contains("outside the 64-bit signed range"), "{e}");
        }
        let e = coerce(Value::Str("12a".into()), Dtype::Int).unwrap_err();
        assert!(e.contains("is not an integer"), "{e}");
    }

    #[test]
    fn uuids_parse_in_any_case_and_format_lower_case() {
        let b = parse_uuid("{550E8400-E29B-41D4-A716-446655440000}").unwrap();
        assert_eq!(format_uuid(&b), "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(parse_uuid("550e8400e29b41d4a716446655440000"), Some(b));
        assert_eq!(parse_uuid("550e8400-e29b-41d4-a716-44665544000"), None);
        assert_eq!(parse_uuid("550e8400-e29b-41d4-a716-4466554400000"), None);
        assert_eq!(parse_uuid("550e8400-e29b-41d4-a716-44665544000g"), None);
    }

    #[test]
    fn conforming_values_are_exactly_what_coerce_keeps() {
        let dec = |s: &str| Value::Decimal(Decimal::parse(s).unwrap());
        let d2 = Dtype::Decimal {
            precision: 12,
            scale: 2,
        };
        assert!(conforms(&dec("1.50"), d2));
        assert!(!conforms(&dec("1.5"), d2));
        assert!(conforms(&Value::Null, Dtype::Uuid));
        assert!(!conforms(&Value::Str("x".into()), Dtype::Uuid));
        for (v, d) in [
            (Value::Int(7), Dtype::Int),
            (dec("1.50"), d2),
            (Value::Str("a".into()), Dtype::Str),
            (
                Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                Dtype::Uuid,
            ),
        ] {
            assert!(conforms(&v, d));
            assert_eq!(coerce(v.clone(), d).unwrap(), v);
            assert!(matches!(
                coerce_ref(&v, d),
                Ok(std::borrow::Cow::Borrowed(_))
            ));
        }
        // A uuid in another form is normalised, so it does not conform.
        let upper = Value::Uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".into());
        assert!(!conforms(&upper, Dtype::Uuid));
        assert_eq!(
            coerce_ref(&upper, Dtype::Uuid).unwrap().into_owned(),
            Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        );
        assert!(!conforms(
            &Value::Uuid("a0eebc999c0b4ef8bb6d6bb9bd380a11".into()),
            Dtype::Uuid
        ));
    }

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn decimals_keep_or_fit_scale_exactly() {
        let d = Dtype::Decimal {
            precision: 10,
            scale: 2,
        };
        let Value::Decimal(x) = coerce(Value::Decimal(dec("1.5")), d).unwrap() else {
            panic!()
        };
        assert_eq!((x.mantissa(), x.scale()), (150, 2));
        let Value::Decimal(x) = coerce(Value::Decimal(dec("1.23400")), d).unwrap() else {
            panic!()
        };
        assert_eq!((x.mantissa(), x.scale()), (123400, 5), "never rounded");
        assert!(exact_scale(dec("1.234"), 2).is_err());
        assert_eq!(decimal_fixed_text(&dec("-0.0500")), "-0.0500");
        assert_eq!(decimal_fixed_text(&dec("12")), "12");
        assert_eq!(decimal_fixed_text(&dec("-12.30")), "-12.30");
    }

    #[test]
    fn coercions_are_lossless_or_errors() {
        assert_eq!(
            coerce(Value::Int(1), Dtype::Bool).unwrap(),
            Value::Bool(true)
        );
        // ClickHouse's UInt8 text: nonzero is true, as the row hash reads it.
        assert_eq!(
            coerce(Value::Str("2".into()), Dtype::Bool).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            coerce(Value::Str("0".into()), Dtype::Bool).unwrap(),
            Value::Bool(false)
        );
        assert!(coerce(Value::Str("yes".into()), Dtype::Bool).is_err());
        assert_eq!(
            coerce(
                Value::Str("6F1E0000-0000-0000-0000-00000000000A".into()),
                Dtype::Uuid
            )
            .unwrap(),
            Value::Uuid("6f1e0000-0000-0000-0000-00000000000a".into())
        );
        assert!(coerce(Value::Float(1.5), Dtype::Int).is_err());
        assert!(coerce(Value::Decimal(dec("1.5")), Dtype::Int).is_err());
        assert_eq!(
            coerce(Value::Decimal(dec("3.000")), Dtype::Int).unwrap(),
            Value::Int(3)
        );
        assert_eq!(coerce(Value::Null, Dtype::Int).unwrap(), Value::Null);
        let t = parse_datetime("2020-01-02 03:04:05.123456").unwrap();
        assert_eq!(t.nanosecond(), 123_456_000);
        assert_eq!(
            from_epoch_micros(epoch_micros(&t)).unwrap(),
            t,
            "epoch round trip"
        );
        assert!(coerce(Value::Datetime(t), Dtype::Date).is_err());
    }
}
