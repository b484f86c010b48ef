//! Field data types (SPEC §4) shared by every stage.

use std::fmt;

/// Default precision and scale of a bare `decimal` dtype.
pub const DEFAULT_DECIMAL: (u8, u8) = (38, 10);

/// A field's logical data type. Each SQL dialect maps it to a native column type and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 64-bit signed integer.
    Int,
    /// 64-bit IEEE float.
    Float,
    /// Exact decimal with precision and scale.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// UTF-8 text (`string` is accepted as an alias).
    Str,
    /// Boolean.
    Bool,
    /// Calendar date.
    Date,
    /// Timestamp in UTC, microsecond precision.
    Datetime,
    /// UUID.
    Uuid,
    /// JSON document.
    Json,
}

impl Dtype {
    /// Parse a dtype name as written in the config (`int`, `str`, `string`, `decimal(18,4)`…).
    pub fn parse(s: &str) -> Option<Dtype> {
        let t = s.trim().to_ascii_lowercase();
        Some(match t.as_str() {
            "int" | "integer" | "bigint" => Dtype::Int,
            "float" | "double" => Dtype::Float,
            "decimal" | "numeric" => Dtype::Decimal {
                precision: DEFAULT_DECIMAL.0,
                scale: DEFAULT_DECIMAL.1,
            },
            "str" | "string" | "text" => Dtype::Str,
            "bool" | "boolean" => Dtype::Bool,
            "date" => Dtype::Date,
            "datetime" | "timestamp" => Dtype::Datetime,
            "uuid" => Dtype::Uuid,
            "json" => Dtype::Json,
            _ => {
                let inner = t
                    .strip_prefix("decimal(")
                    .or_else(|| t.strip_prefix("numeric("))?
                    .strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let precision: u8 = p.trim().parse().ok()?;
                let scale: u8 = s.trim().parse().ok()?;
                if precision == 0 || precision > 38 || scale > precision {
                    return None;
                }
                Dtype::Decimal { precision, scale }
            }
        })
    }

    /// The accepted spellings, for "did you mean" hints.
    pub const NAMES: &'static [&'static str] = &[
        "int", "float", "decimal", "str", "string", "bool", "date", "datetime", "uuid", "json",
    ];

    /// True for int, float and decimal.
    pub fn is_numeric(&self) -> bool {
        matches!(self, Dtype::Int | Dtype::Float | Dtype::Decimal { .. })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dtype::Int => write!(f, "int"),
            Dtype::Float => write!(f, "float"),
            Dtype::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Dtype::Str => write!(f, "str"),
            Dtype::Bool => write!(f, "bool"),
            Dtype::Date => write!(f, "date"),
            Dtype::Datetime => write!(f, "datetime"),
            Dtype::Uuid => write!(f, "uuid"),
            Dtype::Json => write!(f, "json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_and_spec_names() {
        assert_eq!(Dtype::parse("string"), Some(Dtype::Str));
        assert_eq!(Dtype::parse("str"), Some(Dtype::Str));
        assert_eq!(
            Dtype::parse("decimal(18, 4)"),
            Some(Dtype::Decimal {
                precision: 18,
                scale: 4
            })
        );
        assert_eq!(Dtype::parse("decimal(4,5)"), None);
        assert_eq!(Dtype::parse("varchar"), None);
        assert_eq!(
            Dtype::Decimal {
                precision: 18,
                scale: 4
            }
            .to_string(),
            "decimal(18,4)"
        );
    }
}
