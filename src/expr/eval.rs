//! Evaluation of typed expressions against one row (or value). Never panics: overflow,
//! division by zero and invalid dates are [`EvalError`]s.
//!
//! NULL semantics follow SQL: arithmetic and comparison with NULL give NULL, a NULL
//! condition takes the `else` branch, `and` / `or` are three-valued, `x in [..]` is NULL
//! when `x` is NULL or when it is not found and the list holds a NULL.

use super::ast::{BinOp, BoolOp, CmpOp, UnaryOp};
use super::functions::json_get;
use super::typecheck::{TypedExpr, TypedKind};
use super::value::{Decimal, Value};
use crate::diag::{Diagnostic, Span};
use chrono::{Duration, NaiveDateTime, NaiveTime};
use indexmap::IndexMap;
use std::cmp::Ordering;

const DAY_US: i64 = 86_400_000_000;

/// What went wrong while evaluating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalErrorKind {
    /// Division or modulo by zero.
    DivisionByZero,
    /// Integer, decimal or date arithmetic out of range.
    Overflow,
    /// A date or time that does not exist.
    InvalidDate,
    /// A conversion or argument that does not fit (`int("abc")`, unknown unit…).
    InvalidArgument,
    /// A value of an unexpected type at run time (e.g. a row value not matching its dtype).
    Type,
    /// The row has no value for a field alias the expression reads.
    MissingField,
}

/// A run-time evaluation error, located at the sub-expression that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// The category.
    pub kind: EvalErrorKind,
    /// One-line message.
    pub message: String,
    /// The sub-expression that failed (absolute span in the config file).
    pub span: Span,
}

impl From<EvalError> for Diagnostic {
    fn from(e: EvalError) -> Diagnostic {
        Diagnostic::error(e.message).with_span(e.span)
    }
}

/// What an expression is evaluated against. One run uses one fixed `now` (UTC).
#[derive(Debug, Clone, Copy)]
pub struct EvalCtx<'a> {
    /// The row by alias (row expressions).
    pub row: Option<&'a IndexMap<String, Value>>,
    /// The looked-up value bound to the lambda parameter (enrichment outputs).
    pub value: Option<&'a Value>,
    /// The run's "now", returned by `now()` and used by `today()`.
    pub now: NaiveDateTime,
}

impl<'a> EvalCtx<'a> {
    /// No row and no value.
    pub fn constant(now: NaiveDateTime) -> Self {
        EvalCtx {
            row: None,
            value: None,
            now,
        }
    }

    /// A row context.
    pub fn row(row: &'a IndexMap<String, Value>, now: NaiveDateTime) -> Self {
        EvalCtx {
            row: Some(row),
            value: None,
            now,
        }
    }

    /// A value context (enrichment output lambdas).
    pub fn value(value: &'a Value, now: NaiveDateTime) -> Self {
        EvalCtx {
            row: None,
            value: Some(value),
            now,
        }
    }
}

type OpResult = Result<Value, (EvalErrorKind, String)>;

/// Evaluate a typed expression.
pub fn eval(e: &TypedExpr, ctx: &EvalCtx<'_>) -> Result<Value, EvalError> {
    let at = |(kind, message): (EvalErrorKind, String)| EvalError {
        kind,
        message,
        span: e.span,
    };
    match &e.kind {
        TypedKind::Const(v) => Ok(v.clone()),
        TypedKind::Column(name) => match ctx.row.and_then(|r| r.get(name)) {
            // A document read as nothing would be a silent NULL: refused instead.
            Some(Value::Json(j)) if j.unreadable().is_some() => Err(at((
                EvalErrorKind::InvalidArgument,
                format!("field `{name}` {}", j.unreadable().unwrap_or_default()),
            ))),
            Some(v) => Ok(v.clone()),
            None => Err(at((
                EvalErrorKind::MissingField,
                format!("the row has no field `{name}`"),
            ))),
        },
        TypedKind::Param(name) => ctx.value.cloned().ok_or_else(|| {
            at((
                EvalErrorKind::MissingField,
                format!("no value is bound to `{name}`"),
            ))
        }),
        TypedKind::Get { base, key } => {
            let b = eval(base, ctx)?;
            let k = eval(key, ctx)?;
            get(&b, &k).map_err(at)
        }
        TypedKind::Unary { op, expr } => {
            let v = eval(expr, ctx)?;
            unary(*op, v).map_err(at)
        }
        TypedKind::Binary { op, lhs, rhs } => {
            let l = eval(lhs, ctx)?;
            let r = eval(rhs, ctx)?;
            binary(*op, &l, &r).map_err(at)
        }
        TypedKind::Compare { op, lhs, rhs } => {
            let l = eval(lhs, ctx)?;
            let r = eval(rhs, ctx)?;
            compare(*op, &l, &r).map_err(at)
        }
        TypedKind::IsNull { expr, negated } => {
            let v = eval(expr, ctx)?;
            Ok(Value::Bool(v.is_null() != *negated))
        }
        TypedKind::In {
            expr,
            container,
            negated,
        } => {
            let x = eval(expr, ctx)?;
            let c = eval(container, ctx)?;
            let r = contains(&c, &x).map_err(at)?;
            Ok(match r {
                Value::Bool(b) => Value::Bool(b != *negated),
                other => other,
            })
        }
        TypedKind::Bool { op, lhs, rhs } => {
            let l = truth(&eval(lhs, ctx)?).map_err(at)?;
            match (op, l) {
                (BoolOp::And, Some(false)) => return Ok(Value::Bool(false)),
                (BoolOp::Or, Some(true)) => return Ok(Value::Bool(true)),
                _ => {}
            }
            let r = truth(&eval(rhs, ctx)?).map_err(at)?;
            Ok(match (op, l, r) {
                (BoolOp::And, _, Some(false)) => Value::Bool(false),
                (BoolOp::And, Some(true), Some(true)) => Value::Bool(true),
                (BoolOp::Or, _, Some(true)) => Value::Bool(true),
                (BoolOp::Or, Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            })
        }
        TypedKind::Cond {
            cond,
            then,
            otherwise,
        } => match truth(&eval(cond, ctx)?).map_err(at)? {
            Some(true) => eval(then, ctx),
            _ => eval(otherwise, ctx),
        },
        TypedKind::Call { func, args } => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(match a {
                    Some(a) => Some(eval(a, ctx)?),
                    None => None,
                });
            }
            func.call(&vals, ctx.now).map_err(at)
        }
        TypedKind::List(items) => Ok(Value::List(
            items
                .iter()
                .map(|i| eval(i, ctx))
                .collect::<Result<_, _>>()?,
        )),
        TypedKind::Map(entries) => {
            let mut m = IndexMap::with_capacity(entries.len());
            for (k, v) in entries {
                m.insert(k.clone(), eval(v, ctx)?);
            }
            Ok(Value::map(m))
        }
    }
}

fn type_mismatch(what: &str, a: &Value, b: Option<&Value>) -> (EvalErrorKind, String) {
    let msg = match b {
        Some(b) => format!("cannot {what} {} and {}", a.shown(), b.shown()),
        None => format!("cannot {what} {}", a.shown()),
    };
    (EvalErrorKind::Type, msg)
}

fn overflow(what: &str) -> (EvalErrorKind, String) {
    (EvalErrorKind::Overflow, format!("{what} overflow"))
}

fn div_zero() -> (EvalErrorKind, String) {
    (
        EvalErrorKind::DivisionByZero,
        "division by zero".to_string(),
    )
}

fn truth(v: &Value) -> Result<Option<bool>, (EvalErrorKind, String)> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Json(j) if j.value().is_boolean() => Ok(j.value().as_bool()),
        other => Err(type_mismatch("use as a condition", other, None)),
    }
}

fn get(b: &Value, k: &Value) -> OpResult {
    match (b, k) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::List(l), Value::Int(i)) => {
            let idx = if *i < 0 { l.len() as i64 + i } else { *i };
            Ok(usize::try_from(idx)
                .ok()
                .and_then(|i| l.get(i))
                .cloned()
                .unwrap_or(Value::Null))
        }
        _ => json_get(b, k),
    }
}

fn unary(op: UnaryOp, v: Value) -> OpResult {
    match (op, v) {
        (_, Value::Null) => Ok(Value::Null),
        (UnaryOp::Pos, v) => Ok(v),
        (UnaryOp::Neg, Value::Int(i)) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or_else(|| overflow("integer")),
        (UnaryOp::Neg, Value::Float(f)) => Ok(Value::Float(-f)),
        (UnaryOp::Neg, Value::Decimal(d)) => d
            .checked_neg()
            .map(Value::Decimal)
            .ok_or_else(|| overflow("decimal")),
        (UnaryOp::Neg, Value::Interval(i)) => i
            .checked_neg()
            .map(Value::Interval)
            .ok_or_else(|| overflow("interval")),
        (UnaryOp::Not, v) => match truth(&v)? {
            Some(b) => Ok(Value::Bool(!b)),
            None => Ok(Value::Null),
        },
        (UnaryOp::Neg, v) => Err(type_mismatch("negate", &v, None)),
    }
}

/// Python floor division on integers (checked).
pub(crate) fn int_floordiv(a: i64, b: i64) -> OpResult {
    if b == 0 {
        return Err(div_zero());
    }
    let q = a.checked_div(b).ok_or_else(|| overflow("integer"))?;
    let q = if a % b != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    };
    Ok(Value::Int(q))
}

/// Python modulo on integers (result has the sign of the divisor).
pub(crate) fn int_mod(a: i64, b: i64) -> OpResult {
    if b == 0 {
        return Err(div_zero());
    }
    let r = a.checked_rem(b).unwrap_or(0);
    Ok(Value::Int(if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }))
}

fn float_op(op: BinOp, a: f64, b: f64) -> OpResult {
    Ok(Value::Float(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div | BinOp::FloorDiv | BinOp::Mod if b == 0.0 => return Err(div_zero()),
        BinOp::Div => a / b,
        BinOp::FloorDiv => (a / b).floor(),
        BinOp::Mod => {
            let r = a % b;
            if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
                r + b
            } else {
                r
            }
        }
    }))
}

fn decimal_op(op: BinOp, a: Decimal, b: Decimal) -> OpResult {
    let ov = || overflow("decimal");
    let r = match op {
        BinOp::Add => a.checked_add(b).ok_or_else(ov)?,
        BinOp::Sub => a.checked_sub(b).ok_or_else(ov)?,
        BinOp::Mul => a.checked_mul(b).ok_or_else(ov)?,
        BinOp::Div => {
            if b.mantissa() == 0 {
                return Err(div_zero());
            }
            a.checked_div(b).ok_or_else(ov)?
        }
        BinOp::FloorDiv | BinOp::Mod => {
            if b.mantissa() == 0 {
                return Err(div_zero());
            }
            let s = a.scale().max(b.scale());
            let x = a.rescale_up(s).ok_or_else(ov)?.mantissa();
            let y = b.rescale_up(s).ok_or_else(ov)?.mantissa();
            let q = x.checked_div(y).ok_or_else(ov)?;
            let q = if x % y != 0 && ((x < 0) != (y < 0)) {
                q - 1
            } else {
                q
            };
            if op == BinOp::FloorDiv {
                Decimal::new(q, 0).ok_or_else(ov)?
            } else {
                let m = x
                    .checked_sub(q.checked_mul(y).ok_or_else(ov)?)
                    .ok_or_else(ov)?;
                Decimal::new(m, s).ok_or_else(ov)?
            }
        }
    };
    Ok(Value::Decimal(r))
}

fn as_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal::from_i64(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Decimal(d) => Some(d.to_f64()),
        _ => None,
    }
}

fn to_datetime(v: &Value) -> Option<NaiveDateTime> {
    match v {
        Value::Datetime(t) => Some(*t),
        Value::Date(d) => Some(d.and_time(NaiveTime::MIN)),
        _ => None,
    }
}

fn add_interval(t: NaiveDateTime, us: i64) -> OpResult {
    t.checked_add_signed(Duration::microseconds(us))
        .map(Value::Datetime)
        .ok_or_else(|| {
            (
                EvalErrorKind::InvalidDate,
                "datetime out of range".to_string(),
            )
        })
}

/// Arithmetic on two values (NULL in, NULL out).
pub(crate) fn binary(op: BinOp, l: &Value, r: &Value) -> OpResult {
    use Value::*;
    let ovi = || overflow("integer");
    match (l, r) {
        (Null, _) | (_, Null) => Ok(Null),
        (Int(a), Int(b)) => match op {
            BinOp::Add => a.checked_add(*b).map(Int).ok_or_else(ovi),
            BinOp::Sub => a.checked_sub(*b).map(Int).ok_or_else(ovi),
            BinOp::Mul => a.checked_mul(*b).map(Int).ok_or_else(ovi),
            BinOp::Div => float_op(op, *a as f64, *b as f64),
            BinOp::FloorDiv => int_floordiv(*a, *b),
            BinOp::Mod => int_mod(*a, *b),
        },
        (Float(_), _) | (_, Float(_)) if as_f64(l).is_some() && as_f64(r).is_some() => float_op(
            op,
            as_f64(l).unwrap_or(f64::NAN),
            as_f64(r).unwrap_or(f64::NAN),
        ),
        (Decimal(_), _) | (_, Decimal(_)) if as_decimal(l).is_some() && as_decimal(r).is_some() => {
            match (as_decimal(l), as_decimal(r)) {
                (Some(a), Some(b)) => decimal_op(op, a, b),
                _ => Err(type_mismatch("combine", l, Some(r))),
            }
        }
        (Str(a), Str(b)) if op == BinOp::Add => Ok(Str(format!("{a}{b}"))),
        (Datetime(t), Interval(us)) | (Interval(us), Datetime(t)) if op == BinOp::Add => {
            add_interval(*t, *us)
        }
        (Datetime(t), Interval(us)) if op == BinOp::Sub => {
            add_interval(*t, us.checked_neg().ok_or_else(|| overflow("interval"))?)
        }
        (Date(d), Interval(us)) | (Interval(us), Date(d))
            if op == BinOp::Add || (op == BinOp::Sub && matches!(l, Date(_))) =>
        {
            let us = if op == BinOp::Sub {
                us.checked_neg().ok_or_else(|| overflow("interval"))?
            } else {
                *us
            };
            // Python uses the interval's (floored) day count.
            let days = us.div_euclid(DAY_US);
            d.checked_add_signed(Duration::days(days))
                .map(Date)
                .ok_or_else(|| (EvalErrorKind::InvalidDate, "date out of range".to_string()))
        }
        (Datetime(_) | Date(_), Datetime(_) | Date(_)) if op == BinOp::Sub => {
            let (a, b) = (to_datetime(l), to_datetime(r));
            match (a, b) {
                (Some(a), Some(b)) => (a - b)
                    .num_microseconds()
                    .map(Interval)
                    .ok_or_else(|| overflow("interval")),
                _ => Err(type_mismatch("subtract", l, Some(r))),
            }
        }
        (Interval(a), Interval(b)) => match op {
            BinOp::Add => a
                .checked_add(*b)
                .map(Interval)
                .ok_or_else(|| overflow("interval")),
            BinOp::Sub => a
                .checked_sub(*b)
                .map(Interval)
                .ok_or_else(|| overflow("interval")),
            BinOp::Div => float_op(op, *a as f64, *b as f64),
            _ => Err(type_mismatch("combine", l, Some(r))),
        },
        (Interval(a), Int(b)) | (Int(b), Interval(a)) if op == BinOp::Mul => a
            .checked_mul(*b)
            .map(Interval)
            .ok_or_else(|| overflow("interval")),
        _ => Err(type_mismatch(
            &format!("apply `{}` to", op.symbol()),
            l,
            Some(r),
        )),
    }
}

fn json_scalar(j: &serde_json::Value) -> Option<Value> {
    Some(match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::Str(s.clone()),
        _ => return None,
    })
}

/// Order two non-NULL values; `Ok(None)` when unordered (NaN, or JSON containers).
pub(crate) fn order(l: &Value, r: &Value) -> Result<Option<Ordering>, (EvalErrorKind, String)> {
    use Value::*;
    Ok(match (l, r) {
        (Int(a), Int(b)) => Some(a.cmp(b)),
        (Float(_), _) | (_, Float(_)) if as_f64(l).is_some() && as_f64(r).is_some() => {
            match (as_f64(l), as_f64(r)) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => None,
            }
        }
        (Decimal(_), _) | (_, Decimal(_)) if as_decimal(l).is_some() && as_decimal(r).is_some() => {
            as_decimal(l).cmp(&as_decimal(r)).into()
        }
        (Str(a), Str(b)) => Some(a.cmp(b)),
        (Uuid(a), Uuid(b)) | (Uuid(a), Str(b)) | (Str(a), Uuid(b)) => {
            Some(a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()))
        }
        (Bool(a), Bool(b)) => Some(a.cmp(b)),
        (Date(a), Date(b)) => Some(a.cmp(b)),
        (Datetime(_) | Date(_), Datetime(_) | Date(_)) => {
            to_datetime(l).cmp(&to_datetime(r)).into()
        }
        (Interval(a), Interval(b)) => Some(a.cmp(b)),
        (Json(a), Json(b)) => match (json_scalar(a.value()), json_scalar(b.value())) {
            (Some(x), Some(y)) if !x.is_null() && !y.is_null() => order(&x, &y)?,
            _ => (a == b).then_some(Ordering::Equal),
        },
        (Json(a), other) | (other, Json(a)) => {
            let Some(x) = json_scalar(a.value()) else {
                return Ok(None);
            };
            let flip = matches!(r, Json(_));
            let o = if x.is_null() { None } else { order(&x, other)? };
            if flip {
                o.map(Ordering::reverse)
            } else {
                o
            }
        }
        (List(a), List(b)) => {
            for (x, y) in a.iter().zip(b) {
                if x.is_null() || y.is_null() {
                    return Ok(None);
                }
                match order(x, y)? {
                    Some(Ordering::Equal) => continue,
                    o => return Ok(o),
                }
            }
            Some(a.len().cmp(&b.len()))
        }
        (Map(a), Map(b)) => (a == b).then_some(Ordering::Equal),
        _ => return Err(type_mismatch("compare", l, Some(r))),
    })
}

/// A comparison (NULL in, NULL out).
pub(crate) fn compare(op: CmpOp, l: &Value, r: &Value) -> OpResult {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    let o = order(l, r)?;
    let b = match (op, o) {
        (CmpOp::Ne, None) => true,
        (_, None) => false,
        (CmpOp::Eq, Some(o)) => o == Ordering::Equal,
        (CmpOp::Ne, Some(o)) => o != Ordering::Equal,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
        _ => {
            return Err((
                EvalErrorKind::Type,
                format!("`{}` is not an ordering", op.symbol()),
            ))
        }
    };
    Ok(Value::Bool(b))
}

/// Membership `x in c` with SQL NULL semantics.
fn contains(c: &Value, x: &Value) -> OpResult {
    match c {
        Value::Null => Ok(Value::Null),
        Value::Str(s) => match x {
            Value::Null => Ok(Value::Null),
            Value::Str(n) => Ok(Value::Bool(s.contains(n.as_str()))),
            other => Err(type_mismatch("look for", other, Some(c))),
        },
        Value::Map(m) => match x {
            Value::Null => Ok(Value::Null),
            Value::Str(k) => Ok(Value::Bool(m.contains_key(k))),
            other => Err(type_mismatch("look for", other, Some(c))),
        },
        Value::List(items) => list_contains(items.iter().cloned(), x),
        Value::Json(j) => match j.value() {
            serde_json::Value::Object(o) => match x {
                Value::Null => Ok(Value::Null),
                Value::Str(k) => Ok(Value::Bool(o.contains_key(k))),
                _ => Ok(Value::Bool(false)),
            },
            serde_json::Value::Array(a) => {
                list_contains(a.iter().cloned().map(Value::from_json), x)
            }
            serde_json::Value::String(s) => match x {
                Value::Null => Ok(Value::Null),
                Value::Str(n) => Ok(Value::Bool(s.contains(n.as_str()))),
                _ => Ok(Value::Bool(false)),
            },
            _ => Err(type_mismatch("look into", c, None)),
        },
        _ => Err(type_mismatch("look into", c, None)),
    }
}

fn list_contains(items: impl Iterator<Item = Value>, x: &Value) -> OpResult {
    if x.is_null() {
        return Ok(Value::Null);
    }
    let mut saw_null = false;
    for i in items {
        if i.is_null() {
            saw_null = true;
            continue;
        }
        if order(x, &i).unwrap_or(None) == Some(Ordering::Equal) {
            return Ok(Value::Bool(true));
        }
    }
    Ok(if saw_null {
        Value::Null
    } else {
        Value::Bool(false)
    })
}
