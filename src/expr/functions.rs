//! The typed function library: names, signatures, result types and implementations.
//!
//! Every function is pure except [`Func::Now`] and [`Func::Today`], which read the run's
//! fixed `now` from the evaluation context. All functions except `coalesce` return NULL
//! when any argument that was given is NULL (SQL semantics).

use super::eval::EvalErrorKind;
use super::types::Type;
use super::value::{Decimal, Value};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// A function of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// `datetime.datetime(year, month, day[, hour, minute, second[, microsecond]])`.
    Datetime,
    /// `datetime.date(year, month, day)`.
    Date,
    /// `datetime.timedelta(days=, seconds=, microseconds=, milliseconds=, minutes=, hours=, weeks=)`.
    Timedelta,
    /// `now()`, `datetime.datetime.now()`, `datetime.datetime.utcnow()`: the run's fixed UTC now.
    Now,
    /// `today()`, `datetime.date.today()`: the date of the run's now.
    Today,
    /// `date_trunc(unit, dt)` with unit ∈ year, quarter, month, week, day, hour, minute, second.
    DateTrunc,
    /// `lower(s)`.
    Lower,
    /// `upper(s)`.
    Upper,
    /// `trim(s)`: strips leading and trailing whitespace.
    Trim,
    /// `length(x)` / `len(x)`: characters of a string, elements of a list or JSON array/object.
    Length,
    /// `substr(s, start[, length])`: 1-based start as in SQL; characters, not bytes.
    Substr,
    /// `replace(s, from, to)`.
    Replace,
    /// `concat(a, b, …)`: string concatenation (NULL if any argument is NULL).
    Concat,
    /// `startswith(s, prefix)`.
    StartsWith,
    /// `endswith(s, suffix)`.
    EndsWith,
    /// `str(x)`: Python text form.
    ToStr,
    /// `int(x)`: truncates floats and decimals toward zero; parses text.
    ToInt,
    /// `float(x)`.
    ToFloat,
    /// `round(x[, ndigits])`: half-to-even as Python; without `ndigits` the result is an int.
    Round,
    /// `abs(x)`.
    Abs,
    /// `coalesce(a, b, …)`: the first non-NULL argument.
    Coalesce,
    /// `json_get(j, key)`: object member or array element; NULL when absent.
    JsonGet,
}

/// Every callable name and the function it denotes.
pub const NAMES: &[(&str, Func)] = &[
    ("datetime.datetime", Func::Datetime),
    ("datetime.datetime.now", Func::Now),
    ("datetime.datetime.utcnow", Func::Now),
    ("datetime.date", Func::Date),
    ("datetime.date.today", Func::Today),
    ("datetime.timedelta", Func::Timedelta),
    ("now", Func::Now),
    ("today", Func::Today),
    ("date_trunc", Func::DateTrunc),
    ("lower", Func::Lower),
    ("upper", Func::Upper),
    ("trim", Func::Trim),
    ("length", Func::Length),
    ("len", Func::Length),
    ("substr", Func::Substr),
    ("replace", Func::Replace),
    ("concat", Func::Concat),
    ("startswith", Func::StartsWith),
    ("endswith", Func::EndsWith),
    ("str", Func::ToStr),
    ("int", Func::ToInt),
    ("float", Func::ToFloat),
    ("round", Func::Round),
    ("abs", Func::Abs),
    ("coalesce", Func::Coalesce),
    ("json_get", Func::JsonGet),
];

/// Units accepted by `date_trunc`.
pub const TRUNC_UNITS: &[&str] = &[
    "year", "quarter", "month", "week", "day", "hour", "minute", "second",
];

type FnResult = Result<Value, (EvalErrorKind, String)>;

impl Func {
    /// The function a (dotted) call name denotes.
    pub fn lookup(name: &str) -> Option<Func> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The canonical name, used when printing expressions.
    pub fn name(&self) -> &'static str {
        match self {
            Func::Datetime => "datetime.datetime",
            Func::Date => "datetime.date",
            Func::Timedelta => "datetime.timedelta",
            Func::Now => "now",
            Func::Today => "today",
            Func::DateTrunc => "date_trunc",
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Trim => "trim",
            Func::Length => "length",
            Func::Substr => "substr",
            Func::Replace => "replace",
            Func::Concat => "concat",
            Func::StartsWith => "startswith",
            Func::EndsWith => "endswith",
            Func::ToStr => "str",
            Func::ToInt => "int",
            Func::ToFloat => "float",
            Func::Round => "round",
            Func::Abs => "abs",
            Func::Coalesce => "coalesce",
            Func::JsonGet => "json_get",
        }
    }

    /// Parameter names, in positional order (for a variadic function: the first one's name).
    pub fn params(&self) -> &'static [&'static str] {
        match self {
            Func::Datetime => &[
                "year",
                "month",
                "day",
                "hour",
                "minute",
                "second",
                "microsecond",
            ],
            Func::Date => &["year", "month", "day"],
            Func::Timedelta => &[
                "days",
                "seconds",
                "microseconds",
                "milliseconds",
                "minutes",
                "hours",
                "weeks",
            ],
            Func::Now | Func::Today => &[],
            Func::DateTrunc => &["unit", "value"],
            Func::Lower | Func::Upper | Func::Trim => &["s"],
            Func::Length => &["value"],
            Func::Substr => &["s", "start", "length"],
            Func::Replace => &["s", "old", "new"],
            Func::Concat | Func::Coalesce => &["value"],
            Func::StartsWith => &["s", "prefix"],
            Func::EndsWith => &["s", "suffix"],
            Func::ToStr | Func::ToInt | Func::ToFloat | Func::Abs => &["value"],
            Func::Round => &["value", "ndigits"],
            Func::JsonGet => &["json", "key"],
        }
    }

    /// How many leading parameters are required.
    pub fn required(&self) -> usize {
        match self {
            Func::Datetime | Func::Date | Func::Replace => 3,
            Func::Timedelta | Func::Now | Func::Today => 0,
            Func::DateTrunc | Func::Substr | Func::StartsWith | Func::EndsWith | Func::JsonGet => 2,
            _ => 1,
        }
    }

    /// Whether the function takes any number (≥ `required`) of positional arguments.
    pub fn variadic(&self) -> bool {
        matches!(self, Func::Concat | Func::Coalesce)
    }

    /// Whether the result depends on the run's `now` (so it is never folded or pushed down).
    pub fn is_volatile(&self) -> bool {
        matches!(self, Func::Now | Func::Today)
    }

    /// The result type for the given argument types (`None` for an omitted optional
    /// argument). `Err((index, message))` names the offending argument.
    pub fn result_type(&self, args: &[Option<Type>]) -> Result<Type, (usize, String)> {
        let want =
            |i: usize, ok: &dyn Fn(&Type) -> bool, what: &str| -> Result<(), (usize, String)> {
                match args.get(i).cloned().flatten() {
                    None | Some(Type::Null) => Ok(()),
                    Some(t) if ok(&t) => Ok(()),
                    Some(t) => Err((
                        i,
                        format!(
                            "argument `{}` of `{}` must be {what}, found `{t}`",
                            self.params().get(i).copied().unwrap_or("value"),
                            self.name()
                        ),
                    )),
                }
            };
        let is_int = |t: &Type| *t == Type::Int;
        let is_str = |t: &Type| *t == Type::Str;
        let is_num = |t: &Type| t.is_numeric();
        let arg0 = args.first().cloned().flatten().unwrap_or(Type::Null);
        Ok(match self {
            Func::Datetime | Func::Date => {
                for i in 0..args.len() {
                    want(i, &is_int, "an int")?;
                }
                if *self == Func::Date {
                    Type::Date
                } else {
                    Type::Datetime
                }
            }
            Func::Timedelta => {
                for i in 0..args.len() {
                    want(
                        i,
                        &|t: &Type| matches!(t, Type::Int | Type::Float),
                        "an int or float",
                    )?;
                }
                Type::Interval
            }
            Func::Now => Type::Datetime,
            Func::Today => Type::Date,
            Func::DateTrunc => {
                want(0, &is_str, "a str")?;
                want(1, &|t: &Type| t.is_temporal(), "a date or datetime")?;
                match args.get(1).cloned().flatten() {
                    Some(Type::Date) => Type::Date,
                    _ => Type::Datetime,
                }
            }
            Func::Lower | Func::Upper | Func::Trim => {
                want(0, &is_str, "a str")?;
                Type::Str
            }
            Func::Length => {
                want(
                    0,
                    &|t: &Type| matches!(t, Type::Str | Type::Json | Type::List(_) | Type::Map(_)),
                    "a str, list or json",
                )?;
                Type::Int
            }
            Func::Substr => {
                want(0, &is_str, "a str")?;
                want(1, &is_int, "an int")?;
                want(2, &is_int, "an int")?;
                Type::Str
            }
            Func::Replace | Func::Concat => {
                for i in 0..args.len() {
                    want(i, &is_str, "a str")?;
                }
                Type::Str
            }
            Func::StartsWith | Func::EndsWith => {
                want(0, &is_str, "a str")?;
                want(1, &is_str, "a str")?;
                Type::Bool
            }
            Func::ToStr => Type::Str,
            Func::ToInt | Func::ToFloat => {
                want(
                    0,
                    &|t: &Type| t.is_numeric() || matches!(t, Type::Str | Type::Bool | Type::Json),
                    "a number, str, bool or json",
                )?;
                if *self == Func::ToInt {
                    Type::Int
                } else {
                    Type::Float
                }
            }
            Func::Round => {
                want(0, &is_num, "a number")?;
                want(1, &is_int, "an int")?;
                match args.get(1) {
                    Some(Some(_)) => arg0,
                    _ => Type::Int,
                }
            }
            Func::Abs => {
                want(
                    0,
                    &|t: &Type| t.is_numeric() || *t == Type::Interval,
                    "a number or interval",
                )?;
                arg0
            }
            Func::Coalesce => {
                let mut ty = Type::Null;
                for (i, t) in args.iter().enumerate() {
                    let t = t.clone().unwrap_or(Type::Null);
                    ty = ty.unify(&t).ok_or_else(|| {
                        (
                            i,
                            format!("arguments of `coalesce` must have one type: `{ty}` and `{t}` differ"),
                        )
                    })?;
                }
                ty
            }
            Func::JsonGet => {
                want(0, &|t: &Type| *t == Type::Json, "a json value")?;
                want(
                    1,
                    &|t: &Type| matches!(t, Type::Str | Type::Int),
                    "a str or int",
                )?;
                Type::Json
            }
        })
    }

    /// Apply the function to evaluated arguments (`None` for an omitted optional argument).
    pub fn call(&self, args: &[Option<Value>], now: NaiveDateTime) -> FnResult {
        if *self == Func::Coalesce {
            return Ok(args
                .iter()
                .flatten()
                .find(|v| !v.is_null())
                .cloned()
                .unwrap_or(Value::Null));
        }
        if args.iter().flatten().any(Value::is_null) {
            return Ok(Value::Null);
        }
        let int = |i: usize| -> Result<Option<i64>, (EvalErrorKind, String)> {
            match args.get(i).cloned().flatten() {
                None => Ok(None),
                Some(Value::Int(v)) => Ok(Some(v)),
                Some(v) => Err(bad_arg(self, i, &v)),
            }
        };
        let text = |i: usize| -> Result<String, (EvalErrorKind, String)> {
            match args.get(i).cloned().flatten() {
                Some(Value::Str(s)) => Ok(s),
                Some(v) => Err(bad_arg(self, i, &v)),
                None => Err(bad_arg(self, i, &Value::Null)),
            }
        };
        let first = args.first().cloned().flatten().unwrap_or(Value::Null);
        match self {
            Func::Datetime => {
                let g = |i: usize, d: i64| int(i).map(|v| v.unwrap_or(d));
                make_datetime(
                    g(0, 0)?,
                    g(1, 0)?,
                    g(2, 0)?,
                    g(3, 0)?,
                    g(4, 0)?,
                    g(5, 0)?,
                    g(6, 0)?,
                )
                .map(Value::Datetime)
            }
            Func::Date => {
                let g = |i: usize| int(i).map(|v| v.unwrap_or(0));
                make_date(g(0)?, g(1)?, g(2)?).map(Value::Date)
            }
            Func::Timedelta => {
                // Python's positional order: days, seconds, microseconds, milliseconds,
                // minutes, hours, weeks.
                const UNIT_US: [f64; 7] = [86_400e6, 1e6, 1.0, 1e3, 60e6, 3_600e6, 604_800e6];
                const UNIT_US_I: [i64; 7] = [
                    86_400_000_000,
                    1_000_000,
                    1,
                    1_000,
                    60_000_000,
                    3_600_000_000,
                    604_800_000_000,
                ];
                let mut total: i64 = 0;
                for (i, a) in args.iter().enumerate().take(7) {
                    let us = match a {
                        None => 0,
                        Some(Value::Int(v)) => v.checked_mul(UNIT_US_I[i]).ok_or_else(overflow)?,
                        Some(Value::Float(f)) => {
                            let us = (f * UNIT_US[i]).round_ties_even();
                            if !us.is_finite() || us.abs() >= 9.2e18 {
                                return Err(overflow());
                            }
                            us as i64
                        }
                        Some(v) => return Err(bad_arg(self, i, v)),
                    };
                    total = total.checked_add(us).ok_or_else(overflow)?;
                }
                Ok(Value::Interval(total))
            }
            Func::Now => Ok(Value::Datetime(now)),
            Func::Today => Ok(Value::Date(now.date())),
            Func::DateTrunc => {
                let unit = text(0)?;
                match args.get(1).cloned().flatten() {
                    Some(Value::Datetime(t)) => date_trunc(&unit, t).map(Value::Datetime),
                    Some(Value::Date(d)) => {
                        date_trunc(&unit, d.and_time(NaiveTime::MIN)).map(|t| Value::Date(t.date()))
                    }
                    Some(v) => Err(bad_arg(self, 1, &v)),
                    None => Err(bad_arg(self, 1, &Value::Null)),
                }
            }
            Func::Lower => Ok(Value::Str(text(0)?.to_lowercase())),
            Func::Upper => Ok(Value::Str(text(0)?.to_uppercase())),
            Func::Trim => Ok(Value::Str(text(0)?.trim().to_string())),
            Func::Length => {
                let n = match &first {
                    Value::Str(s) => s.chars().count(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    Value::Json(j) => match j.value() {
                        serde_json::Value::Array(a) => a.len(),
                        serde_json::Value::Object(o) => o.len(),
                        serde_json::Value::String(s) => s.chars().count(),
                        _ => return Err(bad_arg(self, 0, &first)),
                    },
                    v => return Err(bad_arg(self, 0, v)),
                };
                Ok(Value::Int(n as i64))
            }
            Func::Substr => {
                let s = text(0)?;
                let start = int(1)?.unwrap_or(1);
                let len = int(2)?;
                Ok(Value::Str(substr(&s, start, len)))
            }
            Func::Replace => Ok(Value::Str(text(0)?.replace(&text(1)?, &text(2)?))),
            Func::Concat => {
                let mut out = String::new();
                for i in 0..args.len() {
                    out.push_str(&text(i)?);
                }
                Ok(Value::Str(out))
            }
            Func::StartsWith => Ok(Value::Bool(text(0)?.starts_with(&text(1)?))),
            Func::EndsWith => Ok(Value::Bool(text(0)?.ends_with(&text(1)?))),
            Func::ToStr => Ok(Value::Str(first.to_text())),
            Func::ToInt => to_int(&first).map(Value::Int),
            Func::ToFloat => to_float(&first).map(Value::Float),
            Func::Round => {
                let nd = int(1)?;
                round(&first, nd)
            }
            Func::Abs => match first {
                Value::Int(i) => i.checked_abs().map(Value::Int).ok_or_else(overflow),
                Value::Float(f) => Ok(Value::Float(f.abs())),
                Value::Decimal(d) => {
                    if d.mantissa() < 0 {
                        d.checked_neg().map(Value::Decimal).ok_or_else(overflow)
                    } else {
                        Ok(Value::Decimal(d))
                    }
                }
                Value::Interval(i) => i.checked_abs().map(Value::Interval).ok_or_else(overflow),
                v => Err(bad_arg(self, 0, &v)),
            },
            Func::Coalesce => Ok(Value::Null),
            Func::JsonGet => {
                let key = args.get(1).cloned().flatten().unwrap_or(Value::Null);
                json_get(&first, &key)
            }
        }
    }
}

fn bad_arg(f: &Func, i: usize, v: &Value) -> (EvalErrorKind, String) {
    (
        EvalErrorKind::Type,
        format!(
            "argument `{}` of `{}` has an unexpected value {}",
            f.params().get(i).copied().unwrap_or("value"),
            f.name(),
            v.shown()
        ),
    )
}

fn overflow() -> (EvalErrorKind, String) {
    (EvalErrorKind::Overflow, "integer overflow".to_string())
}

fn make_date(y: i64, m: i64, d: i64) -> Result<NaiveDate, (EvalErrorKind, String)> {
    let bad = || {
        (
            EvalErrorKind::InvalidDate,
            format!("invalid date {y}-{m}-{d}"),
        )
    };
    let y = i32::try_from(y).map_err(|_| bad())?;
    let m = u32::try_from(m).map_err(|_| bad())?;
    let d = u32::try_from(d).map_err(|_| bad())?;
    if !(1..=9999).contains(&y) {
        return Err(bad());
    }
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(bad)
}

/// Build a datetime from Python's `datetime.datetime` components, validating each.
pub(crate) fn make_datetime(
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    us: i64,
) -> Result<NaiveDateTime, (EvalErrorKind, String)> {
    let date = make_date(y, mo, d)?;
    let bad = || {
        (
            EvalErrorKind::InvalidDate,
            format!("invalid time {h}:{mi}:{s}.{us}"),
        )
    };
    let c = |v: i64, hi: i64| -> Result<u32, (EvalErrorKind, String)> {
        if (0..hi).contains(&v) {
            Ok(v as u32)
        } else {
            Err(bad())
        }
    };
    let t = NaiveTime::from_hms_micro_opt(c(h, 24)?, c(mi, 60)?, c(s, 60)?, c(us, 1_000_000)?)
        .ok_or_else(bad)?;
    Ok(date.and_time(t))
}

fn date_trunc(unit: &str, t: NaiveDateTime) -> Result<NaiveDateTime, (EvalErrorKind, String)> {
    let d = t.date();
    let mk = |date: Option<NaiveDate>, time: NaiveTime| {
        date.map(|d| d.and_time(time)).ok_or_else(|| {
            (
                EvalErrorKind::InvalidDate,
                format!("cannot truncate {t} to {unit}"),
            )
        })
    };
    let hms = |h, m, s| NaiveTime::from_hms_opt(h, m, s).unwrap_or(NaiveTime::MIN);
    match unit {
        "year" => mk(NaiveDate::from_ymd_opt(d.year(), 1, 1), NaiveTime::MIN),
        "quarter" => mk(
            NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1),
            NaiveTime::MIN,
        ),
        "month" => mk(
            NaiveDate::from_ymd_opt(d.year(), d.month(), 1),
            NaiveTime::MIN,
        ),
        "week" => mk(
            d.checked_sub_signed(Duration::days(d.weekday().num_days_from_monday() as i64)),
            NaiveTime::MIN,
        ),
        "day" => mk(Some(d), NaiveTime::MIN),
        "hour" => mk(Some(d), hms(t.hour(), 0, 0)),
        "minute" => mk(Some(d), hms(t.hour(), t.minute(), 0)),
        "second" => mk(Some(d), hms(t.hour(), t.minute(), t.second())),
        _ => Err((
            EvalErrorKind::InvalidArgument,
            format!(
                "unknown date_trunc unit `{unit}` (expected one of {})",
                TRUNC_UNITS.join(", ")
            ),
        )),
    }
}

/// SQL `substr`: 1-based start; a start before 1 eats into the length as in PostgreSQL.
fn substr(s: &str, start: i64, len: Option<i64>) -> String {
    let (from, to) = match len {
        None => (start.max(1), i64::MAX),
        Some(l) if l < 0 => return String::new(),
        Some(l) => (start.max(1), start.saturating_add(l)),
    };
    s.chars()
        .enumerate()
        .filter(|(i, _)| {
            let pos = *i as i64 + 1;
            pos >= from && pos < to
        })
        .map(|(_, c)| c)
        .collect()
}

fn conversion(v: &Value, to: &str) -> (EvalErrorKind, String) {
    (
        EvalErrorKind::InvalidArgument,
        format!("cannot convert {} to {to}", v.shown()),
    )
}

/// 2^63 as a float: the exclusive bound of floats that fit in `i64`.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn float_to_i64(f: f64) -> Option<i64> {
    let t = f.trunc();
    (t.is_finite() && (-I64_BOUND..I64_BOUND).contains(&t)).then_some(t as i64)
}

fn to_int(v: &Value) -> Result<i64, (EvalErrorKind, String)> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(*b as i64),
        Value::Float(f) => float_to_i64(*f).ok_or_else(|| conversion(v, "int")),
        Value::Decimal(d) => d.trunc_i64().ok_or_else(|| conversion(v, "int")),
        Value::Str(s) => {
            let t: String = s.trim().chars().filter(|c| *c != '_').collect();
            t.parse::<i64>().map_err(|_| conversion(v, "int"))
        }
        Value::Json(j) => match j.value() {
            serde_json::Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().and_then(float_to_i64))
                .ok_or_else(|| conversion(v, "int")),
            serde_json::Value::String(s) => to_int(&Value::Str(s.clone())),
            serde_json::Value::Bool(b) => Ok(*b as i64),
            _ => Err(conversion(v, "int")),
        },
        _ => Err(conversion(v, "int")),
    }
}

fn to_float(v: &Value) -> Result<f64, (EvalErrorKind, String)> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Bool(b) => Ok(*b as i64 as f64),
        Value::Float(f) => Ok(*f),
        Value::Decimal(d) => Ok(d.to_f64()),
        Value::Str(s) => s.trim().parse::<f64>().map_err(|_| conversion(v, "float")),
        Value::Json(j) => match j.value() {
            serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| conversion(v, "float")),
            serde_json::Value::String(s) => to_float(&Value::Str(s.clone())),
            serde_json::Value::Bool(b) => Ok(*b as i64 as f64),
            _ => Err(conversion(v, "float")),
        },
        _ => Err(conversion(v, "float")),
    }
}

fn round(v: &Value, ndigits: Option<i64>) -> FnResult {
    match (v, ndigits) {
        (Value::Int(i), None) => Ok(Value::Int(*i)),
        (Value::Int(i), Some(n)) if n >= 0 => Ok(Value::Int(*i)),
        (Value::Int(i), Some(n)) => {
            let p = 10i64.checked_pow(u32::try_from(-n).unwrap_or(u32::MAX));
            match p {
                None => Ok(Value::Int(0)),
                Some(p) => {
                    let d = Decimal::from_i64(*i)
                        .checked_div(Decimal::from_i64(p))
                        .ok_or_else(overflow)?
                        .round_to(0);
                    let r = d
                        .trunc_i64()
                        .and_then(|q| q.checked_mul(p))
                        .ok_or_else(overflow)?;
                    Ok(Value::Int(r))
                }
            }
        }
        (Value::Float(f), None) => float_to_i64(f.round_ties_even())
            .map(Value::Int)
            .ok_or_else(|| conversion(v, "int")),
        (Value::Float(f), Some(n)) => {
            let n = n.clamp(-308, 308) as i32;
            let p = 10f64.powi(n);
            let r = (f * p).round_ties_even() / p;
            Ok(Value::Float(if r.is_finite() { r } else { *f }))
        }
        (Value::Decimal(d), None) => d
            .round_to(0)
            .trunc_i64()
            .map(Value::Int)
            .ok_or_else(overflow),
        (Value::Decimal(d), Some(n)) => Ok(Value::Decimal(
            d.round_to(u32::try_from(n.max(0)).unwrap_or(0)),
        )),
        _ => Err(conversion(v, "a rounded number")),
    }
}

/// JSON member / element access: NULL when absent or when the value is not a container.
pub(crate) fn json_get(base: &Value, key: &Value) -> FnResult {
    let j = match base {
        Value::Null => return Ok(Value::Null),
        Value::Json(j) => j.value(),
        Value::Map(m) => {
            return Ok(match key {
                Value::Str(k) => m.get(k).cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            })
        }
        v => return Err(conversion(v, "json")),
    };
    let out = match (j, key) {
        (_, Value::Null) => None,
        (serde_json::Value::Object(o), Value::Str(k)) => o.get(k),
        (serde_json::Value::Array(a), Value::Int(i)) => {
            let idx = if *i < 0 { a.len() as i64 + i } else { *i };
            usize::try_from(idx).ok().and_then(|i| a.get(i))
        }
        _ => None,
    };
    Ok(out.cloned().map_or(Value::Null, Value::from_json))
}
