//! Canonical, deterministic printing of typed expressions (used in plan output).
//!
//! The output is valid expression syntax for everything a user can write: row fields are
//! printed as bare aliases (`r["x"]` → `x`), operators get minimal parentheses, strings use
//! double quotes. Folded constants of types without a literal (datetimes, intervals…) print
//! as the library call that builds them.

use super::ast::{BoolOp, UnaryOp};
use super::functions::Func;
use super::typecheck::{TypedExpr, TypedKind};
use super::value::{format_float, split_interval, Value};
use chrono::{Datelike, Timelike};
use std::fmt::{self, Write};

const P_COND: u8 = 1;
const P_OR: u8 = 2;
const P_AND: u8 = 3;
const P_NOT: u8 = 4;
const P_CMP: u8 = 5;
const P_ADD: u8 = 6;
const P_MUL: u8 = 7;
const P_NEG: u8 = 8;
const P_ATOM: u8 = 9;

fn prec(e: &TypedExpr) -> u8 {
    match &e.kind {
        TypedKind::Cond { .. } => P_COND,
        TypedKind::Bool { op: BoolOp::Or, .. } => P_OR,
        TypedKind::Bool {
            op: BoolOp::And, ..
        } => P_AND,
        TypedKind::Unary {
            op: UnaryOp::Not, ..
        } => P_NOT,
        TypedKind::Compare { .. } | TypedKind::IsNull { .. } | TypedKind::In { .. } => P_CMP,
        TypedKind::Binary { op, .. } => match op {
            super::ast::BinOp::Add | super::ast::BinOp::Sub => P_ADD,
            _ => P_MUL,
        },
        TypedKind::Unary { .. } => P_NEG,
        TypedKind::Const(v) => match v {
            Value::Int(i) if *i < 0 => P_NEG,
            Value::Float(f) if f.is_sign_negative() => P_NEG,
            Value::Decimal(d) if d.mantissa() < 0 => P_NEG,
            _ => P_ATOM,
        },
        _ => P_ATOM,
    }
}

fn is_ident(s: &str) -> bool {
    const KW: &[&str] = &[
        "lambda", "if", "else", "and", "or", "not", "in", "is", "True", "False", "None",
    ];
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KW.contains(&s)
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::Null => write!(f, "None"),
        Value::Int(i) => write!(f, "{i}"),
        Value::Float(x) => write!(f, "{}", format_float(*x)),
        Value::Decimal(d) => write!(f, "decimal({})", quote(&d.to_string())),
        Value::Str(s) => write!(f, "{}", quote(s)),
        Value::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
        Value::Date(d) => write!(f, "datetime.date({}, {}, {})", d.year(), d.month(), d.day()),
        Value::Datetime(t) => {
            write!(
                f,
                "datetime.datetime({}, {}, {}",
                t.year(),
                t.month(),
                t.day()
            )?;
            let parts = [t.hour(), t.minute(), t.second(), t.nanosecond() / 1000];
            let keep = parts.iter().rposition(|p| *p != 0).map_or(0, |i| i + 1);
            for p in &parts[..keep] {
                write!(f, ", {p}")?;
            }
            write!(f, ")")
        }
        Value::Uuid(u) => write!(f, "uuid({})", quote(u)),
        Value::Json(j) => write!(f, "json({})", quote(&j.to_string())),
        Value::Interval(us) => {
            let (days, rem) = split_interval(*us);
            let (secs, micros) = (rem / 1_000_000, rem % 1_000_000);
            let mut parts = Vec::new();
            if days != 0 {
                parts.push(format!("days={days}"));
            }
            if secs != 0 {
                parts.push(format!("seconds={secs}"));
            }
            if micros != 0 {
                parts.push(format!("microseconds={micros}"));
            }
            write!(f, "datetime.timedelta({})", parts.join(", "))
        }
        Value::List(items) => {
            write!(f, "[")?;
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write_value(f, x)?;
            }
            write!(f, "]")
        }
        Value::Map(m) => {
            write!(f, "{{")?;
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{}: ", quote(k))?;
                write_value(f, x)?;
            }
            write!(f, "}}")
        }
    }
}

fn child(f: &mut fmt::Formatter<'_>, e: &TypedExpr, min: u8) -> fmt::Result {
    if prec(e) < min {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for TypedExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TypedKind::Const(v) => write_value(f, v),
            TypedKind::Column(c) => {
                if is_ident(c) && Func::lookup(c).is_none() && c != "datetime" {
                    write!(f, "{c}")
                } else {
                    write!(f, "row[{}]", quote(c))
                }
            }
            TypedKind::Param(p) => write!(f, "{p}"),
            TypedKind::Get { base, key } => {
                child(f, base, P_ATOM)?;
                write!(f, "[{key}]")
            }
            TypedKind::Unary { op, expr } => match op {
                UnaryOp::Not => {
                    write!(f, "not ")?;
                    child(f, expr, P_NOT)
                }
                _ => {
                    write!(f, "-")?;
                    // `- -1` must not print as `--1` (still valid, but clearer spaced).
                    if prec(expr) == P_NEG {
                        write!(f, "({expr})")
                    } else {
                        child(f, expr, P_NEG)
                    }
                }
            },
            TypedKind::Binary { op, lhs, rhs } => {
                let p = prec(self);
                child(f, lhs, p)?;
                write!(f, " {} ", op.symbol())?;
                child(f, rhs, p + 1)
            }
            TypedKind::Compare { op, lhs, rhs } => {
                child(f, lhs, P_CMP + 1)?;
                write!(f, " {} ", op.symbol())?;
                child(f, rhs, P_CMP + 1)
            }
            TypedKind::IsNull { expr, negated } => {
                child(f, expr, P_CMP + 1)?;
                write!(f, "{}", if *negated { " is not None" } else { " is None" })
            }
            TypedKind::In {
                expr,
                container,
                negated,
            } => {
                child(f, expr, P_CMP + 1)?;
                write!(f, "{}", if *negated { " not in " } else { " in " })?;
                child(f, container, P_CMP + 1)
            }
            TypedKind::Bool { op, lhs, rhs } => {
                let p = prec(self);
                child(f, lhs, p)?;
                write!(f, "{}", if *op == BoolOp::And { " and " } else { " or " })?;
                child(f, rhs, p + 1)
            }
            TypedKind::Cond {
                cond,
                then,
                otherwise,
            } => {
                child(f, then, P_OR)?;
                write!(f, " if ")?;
                child(f, cond, P_OR)?;
                write!(f, " else ")?;
                child(f, otherwise, P_COND)
            }
            TypedKind::Call { func, args } => {
                write!(f, "{}(", func.name())?;
                let params = func.params();
                let mut first = true;
                let mut positional = true;
                for (i, a) in args.iter().enumerate() {
                    let Some(a) = a else {
                        positional = false;
                        continue;
                    };
                    if !first {
                        write!(f, ", ")?;
                    }
                    first = false;
                    if !positional {
                        write!(f, "{}=", params.get(i).copied().unwrap_or("value"))?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, ")")
            }
            TypedKind::List(items) => {
                write!(f, "[")?;
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
            TypedKind::Map(entries) => {
                write!(f, "{{")?;
                for (i, (k, x)) in entries.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}: {x}", quote(k))?;
                }
                write!(f, "}}")
            }
        }
    }
}
