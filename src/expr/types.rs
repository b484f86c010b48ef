//! Static types of the expression language.

use crate::types::{Dtype, DEFAULT_DECIMAL};
use std::fmt;

/// The static type of an expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    /// The type of `None` alone; unifies with every type.
    Null,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// Exact decimal.
    Decimal,
    /// Text.
    Str,
    /// Boolean.
    Bool,
    /// Calendar date.
    Date,
    /// UTC timestamp.
    Datetime,
    /// UUID.
    Uuid,
    /// JSON document (dynamically typed inside).
    Json,
    /// Duration (Python `timedelta`).
    Interval,
    /// A list of one element type.
    List(Box<Type>),
    /// A mapping with known string keys (a record), in source order.
    Map(Vec<(String, Type)>),
}

impl Type {
    /// The expression type of a field dtype.
    pub fn from_dtype(d: Dtype) -> Type {
        match d {
            Dtype::Int => Type::Int,
            Dtype::Float => Type::Float,
            Dtype::Decimal { .. } => Type::Decimal,
            Dtype::Str => Type::Str,
            Dtype::Bool => Type::Bool,
            Dtype::Date => Type::Date,
            Dtype::Datetime => Type::Datetime,
            Dtype::Uuid => Type::Uuid,
            Dtype::Json => Type::Json,
        }
    }

    /// The field dtype that stores values of this type, if there is one. Decimals get the
    /// default precision; lists and mappings are stored as JSON; intervals and `Null` have
    /// no dtype.
    pub fn to_dtype(&self) -> Option<Dtype> {
        Some(match self {
            Type::Int => Dtype::Int,
            Type::Float => Dtype::Float,
            Type::Decimal => Dtype::Decimal {
                precision: DEFAULT_DECIMAL.0,
                scale: DEFAULT_DECIMAL.1,
            },
            Type::Str => Dtype::Str,
            Type::Bool => Dtype::Bool,
            Type::Date => Dtype::Date,
            Type::Datetime => Dtype::Datetime,
            Type::Uuid => Dtype::Uuid,
            Type::Json | Type::List(_) | Type::Map(_) => Dtype::Json,
            Type::Null | Type::Interval => return None,
        })
    }

    /// Int, float or decimal.
    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Float | Type::Decimal)
    }

    /// Date or datetime.
    pub fn is_temporal(&self) -> bool {
        matches!(self, Type::Date | Type::Datetime)
    }

    /// The common type of two branches / list elements, if they are compatible.
    /// `Null` unifies with anything; numeric types widen (int → decimal → float);
    /// date widens to datetime.
    pub fn unify(&self, other: &Type) -> Option<Type> {
        use Type::*;
        Some(match (self, other) {
            (a, b) if a == b => a.clone(),
            (Null, t) | (t, Null) => t.clone(),
            (Int, Float) | (Float, Int) | (Decimal, Float) | (Float, Decimal) => Float,
            (Int, Decimal) | (Decimal, Int) => Decimal,
            (Date, Datetime) | (Datetime, Date) => Datetime,
            (List(a), List(b)) => List(Box::new(a.unify(b)?)),
            (Map(a), Map(b)) if a.len() == b.len() => {
                let mut out = Vec::with_capacity(a.len());
                for ((ka, ta), (kb, tb)) in a.iter().zip(b) {
                    if ka != kb {
                        return None;
                    }
                    out.push((ka.clone(), ta.unify(tb)?));
                }
                Map(out)
            }
            _ => return None,
        })
    }

    /// Whether `==`/`<`… between the two types is allowed (JSON compares dynamically).
    pub fn comparable(&self, other: &Type) -> bool {
        use Type::*;
        match (self, other) {
            (Null, _) | (_, Null) | (Json, _) | (_, Json) => true,
            (a, b) if a.is_numeric() && b.is_numeric() => true,
            (a, b) if a.is_temporal() && b.is_temporal() => true,
            (Uuid, Str) | (Str, Uuid) => true,
            (List(a), List(b)) => a.comparable(b),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Null => write!(f, "None"),
            Type::Int => write!(f, "int"),
            Type::Float => write!(f, "float"),
            Type::Decimal => write!(f, "decimal"),
            Type::Str => write!(f, "str"),
            Type::Bool => write!(f, "bool"),
            Type::Date => write!(f, "date"),
            Type::Datetime => write!(f, "datetime"),
            Type::Uuid => write!(f, "uuid"),
            Type::Json => write!(f, "json"),
            Type::Interval => write!(f, "interval"),
            Type::List(t) => write!(f, "list[{t}]"),
            Type::Map(fields) => {
                write!(f, "{{")?;
                for (i, (k, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k:?}: {t}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_round_trip_and_unify() {
        for d in [
            Dtype::Int,
            Dtype::Float,
            Dtype::Str,
            Dtype::Bool,
            Dtype::Date,
            Dtype::Datetime,
        ] {
            assert_eq!(Type::from_dtype(d).to_dtype(), Some(d));
        }
        assert_eq!(Type::Null.unify(&Type::Int), Some(Type::Int));
        assert_eq!(Type::Int.unify(&Type::Float), Some(Type::Float));
        assert_eq!(Type::Int.unify(&Type::Str), None);
        assert!(Type::Date.comparable(&Type::Datetime));
        assert!(!Type::Str.comparable(&Type::Int));
        assert_eq!(
            Type::Map(vec![("a".into(), Type::List(Box::new(Type::Int)))]).to_string(),
            "{\"a\": list[int]}"
        );
    }
}
