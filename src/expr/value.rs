//! Runtime values of the expression language, and the exact decimal type they use.

use chrono::{NaiveDate, NaiveDateTime};
use indexmap::IndexMap;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Largest scale a [`Decimal`] keeps (digits after the point), as in SQL `decimal(38, s)`.
pub const MAX_DECIMAL_SCALE: u32 = 38;

/// An exact decimal number: `mantissa × 10^-scale`.
///
/// Arithmetic is checked (overflow of the 128-bit mantissa is an error, never a wrap).
/// Equality and ordering compare numeric values, so `1.50 == 1.5`; [`Display`](fmt::Display)
/// prints the canonical text (no exponent, no trailing fractional zeros, `0` not `-0`).
// Packed to 8-byte alignment: an `i128` field would otherwise align the struct, and every
// `Value`, to 16 bytes, and rows are vectors of values.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(8))]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    /// A decimal from a mantissa and scale (`Decimal::new(150, 2)` is 1.50).
    /// Returns `None` when the scale exceeds [`MAX_DECIMAL_SCALE`].
    pub fn new(mantissa: i128, scale: u32) -> Option<Decimal> {
        (scale <= MAX_DECIMAL_SCALE).then_some(Decimal { mantissa, scale })
    }

    /// An integer as a decimal.
    pub fn from_i64(v: i64) -> Decimal {
        Decimal {
            mantissa: v as i128,
            scale: 0,
        }
    }

    /// The mantissa (unscaled integer value).
    pub fn mantissa(&self) -> i128 {
        self.mantissa
    }

    /// Digits after the decimal point.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// Parse decimal text such as `-12.340`, `+5`, `.5` (no exponent).
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (neg, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let scale = u32::try_from(frac_part.len()).ok()?;
        if scale > MAX_DECIMAL_SCALE {
            return None;
        }
        let mut m: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            m = m.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        Some(Decimal {
            mantissa: if neg { -m } else { m },
            scale,
        })
    }

    /// The same value with trailing fractional zeros removed.
    pub fn normalized(&self) -> Decimal {
        let mut d = *self;
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        d
    }

    /// The value at a larger scale (`None` on overflow or when `scale` is smaller).
    pub fn rescale_up(&self, scale: u32) -> Option<Decimal> {
        if scale < self.scale || scale > MAX_DECIMAL_SCALE {
            return None;
        }
        let m = self
            .mantissa
            .checked_mul(10i128.checked_pow(scale - self.scale)?)?;
        Some(Decimal { mantissa: m, scale })
    }

    /// Round half-to-even to at most `scale` fractional digits.
    pub fn round_to(&self, scale: u32) -> Decimal {
        self.round_with(scale, true)
    }

    /// Round half away from zero to at most `scale` fractional digits, as PostgreSQL,
    /// MySQL and ClickHouse round a decimal stored in a column of a smaller scale.
    pub fn round_half_away(&self, scale: u32) -> Decimal {
        self.round_with(scale, false)
    }

    fn round_with(&self, scale: u32, half_even: bool) -> Decimal {
        if scale >= self.scale {
            return *self;
        }
        let drop = self.scale - scale;
        let Some(div) = 10i128.checked_pow(drop) else {
            return Decimal { mantissa: 0, scale };
        };
        let q = self.mantissa / div;
        let r = self.mantissa % div;
        let twice = r.unsigned_abs() * 2;
        let half = div.unsigned_abs();
        let away = twice > half || (twice == half && (!half_even || q % 2 != 0));
        let q = if away { q + self.mantissa.signum() } else { q };
        Decimal { mantissa: q, scale }
    }

    fn align(a: Decimal, b: Decimal) -> Option<(i128, i128, u32)> {
        let s = a.scale.max(b.scale);
        Some((a.rescale_up(s)?.mantissa, b.rescale_up(s)?.mantissa, s))
    }

    /// Checked addition.
    pub fn checked_add(self, o: Decimal) -> Option<Decimal> {
        let (a, b, s) = Self::align(self, o)?;
        Decimal::new(a.checked_add(b)?, s)
    }

    /// Checked subtraction.
    pub fn checked_sub(self, o: Decimal) -> Option<Decimal> {
        let (a, b, s) = Self::align(self, o)?;
        Decimal::new(a.checked_sub(b)?, s)
    }

    /// Checked multiplication (scales add up; the result is rounded to 38 digits of scale).
    pub fn checked_mul(self, o: Decimal) -> Option<Decimal> {
        let m = self.mantissa.checked_mul(o.mantissa)?;
        let s = self.scale + o.scale;
        if s > MAX_DECIMAL_SCALE {
            let d = Decimal {
                mantissa: m,
                scale: s,
            };
            return Some(d.round_to(MAX_DECIMAL_SCALE));
        }
        Decimal::new(m, s)
    }

    /// Checked division, rounded half-to-even at scale `max(scales) + 6` (at most 38).
    /// `None` on division by zero or overflow.
    pub fn checked_div(self, o: Decimal) -> Option<Decimal> {
        if o.mantissa == 0 {
            return None;
        }
        let target = (self.scale.max(o.scale) + 6).min(MAX_DECIMAL_SCALE);
        // self/o = (ma / mb) * 10^(sb - sa); compute at target + 1 digits then round.
        let shift = (target + 1 + o.scale) as i64 - self.scale as i64;
        let (num, den) = if shift >= 0 {
            (
                self.mantissa
                    .checked_mul(10i128.checked_pow(shift as u32)?)?,
                o.mantissa,
            )
        } else {
            (
                self.mantissa,
                o.mantissa
                    .checked_mul(10i128.checked_pow((-shift) as u32)?)?,
            )
        };
        let q = num.checked_div(den)?;
        let exact = num % den == 0;
        let mut d = Decimal {
            mantissa: q,
            scale: target + 1,
        };
        if !exact && (q % 10).abs() == 5 {
            // A non-zero remainder past a trailing 5 means strictly more than half.
            d.mantissa += q.signum();
        }
        Some(d.round_to(target))
    }

    /// Negation (checked).
    pub fn checked_neg(self) -> Option<Decimal> {
        Some(Decimal {
            mantissa: self.mantissa.checked_neg()?,
            scale: self.scale,
        })
    }

    /// Nearest `f64`.
    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The integer part (truncated toward zero), if it fits in `i64`.
    pub fn trunc_i64(&self) -> Option<i64> {
        let div = 10i128.checked_pow(self.scale)?;
        i64::try_from(self.mantissa / div).ok()
    }

    /// A finite float as a decimal (via its shortest round-trip text).
    pub fn from_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        let text = format!("{f}");
        if text.contains(['e', 'E']) {
            return Decimal::parse(&format!("{f:.20}")).map(|d| d.round_to(20).normalized());
        }
        Decimal::parse(&text)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let a = self.normalized();
        let b = other.normalized();
        match Decimal::align(a, b) {
            Some((x, y, _)) => x.cmp(&y),
            // Cannot overflow after normalisation unless magnitudes differ hugely: compare
            // by sign, then by float approximation.
            None => a
                .to_f64()
                .partial_cmp(&b.to_f64())
                .unwrap_or(Ordering::Equal),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.normalized();
        let neg = d.mantissa < 0;
        let digits = d.mantissa.unsigned_abs().to_string();
        let scale = d.scale as usize;
        let (int_part, frac_part) = if digits.len() > scale {
            let (i, fr) = digits.split_at(digits.len() - scale);
            (i.to_string(), fr.to_string())
        } else {
            (
                "0".to_string(),
                format!("{}{}", "0".repeat(scale - digits.len()), digits),
            )
        };
        if neg {
            write!(f, "-")?;
        }
        if frac_part.is_empty() {
            write!(f, "{int_part}")
        } else {
            write!(f, "{int_part}.{frac_part}")
        }
    }
}

/// A JSON document: the exact text it was read as (or serialised to), and its parsed form.
/// A copied document keeps its text byte for byte: numbers beyond `f64` (`1234…7890`, `1.10`),
/// key order and spacing, which a round trip through [`serde_json::Value`] would change.
#[derive(Debug, Clone)]
pub struct Json {
    text: Box<str>,
    /// `None` when a number is beyond `f64`'s range (`1e400`): such a document is copied as
    /// its text, and reads as null in expressions.
    value: Option<serde_json::Value>,
}

impl Json {
    /// A document from its text; an error when the text is not JSON.
    pub fn from_text(text: impl Into<String>) -> Result<Json, serde_json::Error> {
        let text: String = text.into();
        let value = match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                // Valid JSON whose numbers `f64` cannot hold still is a document.
                serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|_| e)?;
                None
            }
        };
        Ok(Json {
            text: text.into_boxed_str(),
            value,
        })
    }

    /// A document from a parsed value (its text is the compact serialisation).
    pub fn from_value(value: serde_json::Value) -> Json {
        Json {
            text: value.to_string().into_boxed_str(),
            value: Some(value),
        }
    }

    /// The document's text, as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed document, or `None` when a number is beyond `f64`'s range: such a
    /// document can only be copied as its text.
    pub fn parsed(&self) -> Option<&serde_json::Value> {
        self.value.as_ref()
    }

    /// Why expressions and templates cannot read the document, when they cannot.
    pub fn unreadable(&self) -> Option<&'static str> {
        self.value.is_none().then_some(
            "holds a JSON number beyond the range of a 64-bit float, which expressions and templates cannot read (the document itself is copied as its text)",
        )
    }

    /// The parsed document (numbers beyond `f64`'s precision rounded; null when one is
    /// beyond its range: see [`Json::parsed`]).
    pub fn value(&self) -> &serde_json::Value {
        const NULL: serde_json::Value = serde_json::Value::Null;
        self.value.as_ref().unwrap_or(&NULL)
    }
}

/// Documents are equal when their parsed forms are (or, when one cannot be parsed, their
/// texts).
impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        match (&self.value, &other.value) {
            (Some(a), Some(b)) => a == b,
            _ => self.text == other.text,
        }
    }
}

/// The document's text, as read.
impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value of the expression language. Datetimes are UTC; intervals are microseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL / Python `None`.
    Null,
    /// 64-bit integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Exact decimal.
    Decimal(Decimal),
    /// UTF-8 text.
    Str(String),
    /// Boolean.
    Bool(bool),
    /// Calendar date.
    Date(NaiveDate),
    /// Timestamp in UTC.
    Datetime(NaiveDateTime),
    /// UUID in canonical lower-case text.
    Uuid(String),
    /// A JSON document (behind a pointer: it is 88 bytes, and keeping it inline would make
    /// every value, and every row, that much larger; shared, so that the rows one lookup's
    /// document goes to hold one copy of it, however large).
    Json(Arc<Json>),
    /// A duration in microseconds.
    Interval(i64),
    /// A list.
    List(Vec<Value>),
    /// A mapping with string keys, in insertion order (boxed, as `Json`).
    Map(Box<IndexMap<String, Value>>),
}

impl Value {
    /// A JSON value.
    pub fn json(j: serde_json::Value) -> Value {
        Value::Json(Arc::new(Json::from_value(j)))
    }

    /// A JSON document from its text, kept as it is; an error when the text is not JSON.
    pub fn json_text(text: impl Into<String>) -> Result<Value, serde_json::Error> {
        Json::from_text(text).map(|j| Value::Json(Arc::new(j)))
    }

    /// A mapping.
    pub fn map(m: IndexMap<String, Value>) -> Value {
        Value::Map(Box::new(m))
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A JSON document as a value: JSON `null` becomes [`Value::Null`], everything else
    /// stays [`Value::Json`].
    pub fn from_json(j: serde_json::Value) -> Value {
        if j.is_null() {
            Value::Null
        } else {
            Value::json(j)
        }
    }

    /// The value as JSON (datetimes and dates as ISO text, decimals as their text,
    /// intervals as microseconds).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Decimal(d) => J::String(d.to_string()),
            Value::Str(s) | Value::Uuid(s) => J::String(s.clone()),
            Value::Bool(b) => J::Bool(*b),
            Value::Date(d) => J::String(d.format("%Y-%m-%d").to_string()),
            Value::Datetime(t) => J::String(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
            Value::Json(j) => j.value().clone(),
            Value::Interval(us) => J::from(*us),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// The value's text as an error message shows it: [`Value::to_text`], cut after
    /// [`SHOWN_CHARS`] characters (on a character boundary) with `…` and the whole text's
    /// length, so that a large value (a lookup's answer) cannot swell a message.
    pub fn shown(&self) -> String {
        match self {
            Value::Str(s) | Value::Uuid(s) => shorten(s),
            Value::Json(j) => match j.value() {
                serde_json::Value::String(s) => shorten(s),
                _ => shorten(j.text()),
            },
            other => shorten(&other.to_text()),
        }
    }

    /// Python-style text of the value, as `str(x)` gives it (`None` for NULL).
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => "None".to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Decimal(d) => d.to_string(),
            Value::Str(s) | Value::Uuid(s) => s.clone(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
            Value::Datetime(t) => format_datetime(t),
            Value::Json(j) => match j.value() {
                serde_json::Value::String(s) => s.clone(),
                _ => j.text().to_string(),
            },
            Value::Interval(us) => format_interval_text(*us),
            Value::List(_) | Value::Map(_) => self.to_json().to_string(),
        }
    }
}

/// How many characters of a value [`Value::shown`] keeps.
pub const SHOWN_CHARS: usize = 200;

/// `text`, or its first [`SHOWN_CHARS`] characters, `…` and its length in bytes.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}… ({} bytes in all)", &text[..end], text.len()),
    }
}

/// Python `repr`-like float text: always a `.` or an exponent for finite values.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{f}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// `2020-02-01 00:00:00` or `2020-02-01 00:00:00.000123` (as Python's `str(datetime)`).
pub fn format_datetime(t: &NaiveDateTime) -> String {
    use chrono::Timelike;
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }
}

/// Python's `str(timedelta)`: `1 day, 2:00:00`, `-1 day, 23:59:59`, `0:00:01.500000`.
pub fn format_interval_text(us: i64) -> String {
    let (days, rem) = split_interval(us);
    let secs = rem / 1_000_000;
    let micros = rem % 1_000_000;
    let hms = format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
    let hms = if micros != 0 {
        format!("{hms}.{micros:06}")
    } else {
        hms
    };
    if days == 0 {
        hms
    } else {
        let unit = if days.abs() == 1 { "day" } else { "days" };
        format!("{days} {unit}, {hms}")
    }
}

/// Split microseconds into Python-normalised (days, microseconds within the day ≥ 0).
pub fn split_interval(us: i64) -> (i64, i64) {
    const DAY: i64 = 86_400_000_000;
    (us.div_euclid(DAY), us.rem_euclid(DAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_are_cut_on_a_character_boundary_with_their_length() {
        assert_eq!(Value::Str("short".into()).shown(), "short");
        let long = Value::Str(format!("a{}", "é".repeat(300)));
        let shown = long.shown();
        assert_eq!(shown, format!("a{}… (601 bytes in all)", "é".repeat(199)));
        let j = Value::json_text(format!("[{}]", "1,".repeat(300) + "1")).unwrap();
        assert!(j.shown().ends_with("… (603 bytes in all)"), "{}", j.shown());
    }

    #[test]
    fn values_stay_small() {
        // Rows are vectors of values: every byte here is a byte per column per row in flight.
        assert_eq!(std::mem::size_of::<Value>(), 32);
        assert_eq!(std::mem::size_of::<Decimal>(), 24);
    }

    #[test]
    fn json_keeps_its_text() {
        let doc = r#"{"big": 123456789012345678901234567890, "p": 1.10}"#;
        let j = Json::from_text(doc).unwrap();
        assert_eq!(j.to_string(), doc);
        assert_eq!(j.value()["p"], serde_json::json!(1.1));
        // Beyond f64's range: still a document, copied as text, null to expressions.
        let far = Json::from_text("[1e400]").unwrap();
        assert_eq!(far.text(), "[1e400]");
        assert!(far.value().is_null());
        assert!(Json::from_text("{nope").is_err());
        assert_eq!(
            Json::from_text("[1.10]").unwrap(),
            Json::from_value(serde_json::json!([1.1]))
        );
    }

    #[test]
    fn decimal_parse_display_normalises() {
        let d = Decimal::parse("-012.3400").unwrap();
        assert_eq!(d.to_string(), "-12.34");
        assert_eq!(Decimal::parse("0.000").unwrap().to_string(), "0");
        assert_eq!(Decimal::parse(".5").unwrap().to_string(), "0.5");
        assert_eq!(Decimal::parse("-0.05").unwrap().to_string(), "-0.05");
        assert!(Decimal::parse("1e5").is_none());
        assert!(Decimal::parse("").is_none());
        assert!(Decimal::parse("-").is_none());
        assert_eq!(Decimal::parse("1.50"), Decimal::parse("1.5"));
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        let a = Decimal::parse("0.1").unwrap();
        let b = Decimal::parse("0.2").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "0.3");
        assert_eq!(a.checked_sub(b).unwrap().to_string(), "-0.1");
        assert_eq!(a.checked_mul(b).unwrap().to_string(), "0.02");
        let one = Decimal::from_i64(1);
        let three = Decimal::from_i64(3);
        assert_eq!(one.checked_div(three).unwrap().to_string(), "0.333333");
        assert_eq!(
            Decimal::from_i64(2).checked_div(three).unwrap().to_string(),
            "0.666667"
        );
        assert!(one.checked_div(Decimal::from_i64(0)).is_none());
        assert_eq!(Decimal::parse("2.5").unwrap().round_to(0).to_string(), "2");
        assert_eq!(Decimal::parse("3.5").unwrap().round_to(0).to_string(), "4");
        assert_eq!(
            Decimal::parse("-2.55").unwrap().round_to(1).to_string(),
            "-2.6"
        );
        let away = |s: &str, n: u32| Decimal::parse(s).unwrap().round_half_away(n).to_string();
        assert_eq!(away("2.5", 0), "3");
        assert_eq!(away("0.125", 2), "0.13");
        assert_eq!(away("-0.125", 2), "-0.13");
        assert_eq!(away("103.0225", 2), "103.02");
        assert!(Decimal::new(i128::MAX, 0)
            .unwrap()
            .checked_add(one)
            .is_none());
    }

    #[test]
    fn python_text_forms() {
        assert_eq!(format_float(1.0), "1.0");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(
            format_interval_text(86_400_000_000 + 7_200_000_000),
            "1 day, 2:00:00"
        );
        assert_eq!(format_interval_text(-1_000_000), "-1 day, 23:59:59");
        assert_eq!(format_interval_text(1_500_000), "0:00:01.500000");
    }
}
