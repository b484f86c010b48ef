//! The SQL dialects synctool emits, and the capabilities that differ between them.
//!
//! Everything dialect-specific (identifier quoting, placeholders, column types, hash and
//! date functions) sits behind [`Dialect`]; the generator in this folder is written once
//! against the trait.

use crate::types::Dtype;
use sqlparser::ast::{
    CharacterLength, DataType, ExactNumberInfo, Expr, Ident, ObjectName, TimezoneInfo, Value,
};

/// Which database a statement is for. Serialised as the datastore type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DialectKind {
    /// PostgreSQL (placeholders `$1`).
    Postgres,
    /// MySQL / MariaDB (placeholders `?`).
    Mysql,
    /// ClickHouse (placeholders `{name:Type}`).
    Clickhouse,
}

impl DialectKind {
    /// The datastore type name (`postgres`, `mysql`, `clickhouse`).
    pub fn name(&self) -> &'static str {
        match self {
            DialectKind::Postgres => "postgres",
            DialectKind::Mysql => "mysql",
            DialectKind::Clickhouse => "clickhouse",
        }
    }

    /// The dialect implementation for this kind.
    pub fn dialect(&self) -> &'static dyn Dialect {
        match self {
            DialectKind::Postgres => &Postgres,
            DialectKind::Mysql => &Mysql,
            DialectKind::Clickhouse => &Clickhouse,
        }
    }
}

/// Dialect capabilities used by the generator.
pub trait Dialect: Sync {
    /// Which dialect this is.
    fn kind(&self) -> DialectKind;

    /// The identifier quote character.
    fn quote_char(&self) -> char;

    /// A quoted identifier.
    fn ident(&self, name: &str) -> Ident {
        Ident::with_quote(self.quote_char(), name)
    }

    /// The native column type for a dtype. `key` is true for primary/sort key columns
    /// (MySQL cannot index `LONGTEXT`, so string keys become `VARCHAR`). Nullability is
    /// added by the caller ([`Dialect::nullable`]).
    fn column_type(&self, dtype: Dtype, key: bool) -> DataType;

    /// The type name used in a `{name:Type}` placeholder (ClickHouse) or a cast; for the
    /// other dialects the same as [`Dialect::column_type`] of a non-key column.
    fn param_type(&self, dtype: Dtype) -> DataType {
        self.column_type(dtype, false)
    }

    /// Wraps a column type so that it accepts NULL, where the dialect needs it spelled out
    /// (ClickHouse `Nullable(T)`); PostgreSQL and MySQL columns are nullable by default.
    fn nullable(&self, ty: DataType) -> DataType {
        ty
    }

    /// A bound-parameter placeholder: `$<index>` (1-based), `?`, or `{name:Type}`.
    fn placeholder(&self, index: usize, name: &str, dtype: Dtype) -> Expr;

    /// The function counting characters (not bytes) of a string.
    fn char_length_fn(&self) -> &'static str;

    /// An expression that orders the same way on every dialect: strings by code point
    /// (binary, never under a collation) of their text, whatever the column's type (a `str`
    /// field may read a uuid, integer or enum column), uuids by their lower-case text.
    fn order_key(&self, e: Expr, dtype: Dtype) -> Expr {
        let _ = dtype;
        e
    }

    /// A value of `dtype` as a query gives it to synctool (extract columns, watermarks,
    /// range bounds, keys): the expression itself, except on ClickHouse, whose results
    /// are read as text: a float through `toFloat64` (the shortest text of a `Float32`,
    /// `50137510` for 50137512, is not its value as a double), a datetime through
    /// `toTimeZone(e, 'UTC')` (a `DateTime` prints in its column's time zone, or the
    /// server's; the conversion only changes the type, so it costs nothing per row), a
    /// date as its day number through `toInt32` (18.16 prints dates after 2105 as
    /// 1970-01-01; `Date32` gives negative numbers before 1970).
    fn read_value(&self, e: Expr, dtype: Dtype) -> Expr {
        let _ = dtype;
        e
    }

    /// Whether sink tables of this dialect have a primary key constraint (PostgreSQL,
    /// MySQL) rather than a sorting key (ClickHouse).
    fn has_primary_key(&self) -> bool {
        true
    }
}

/// A type spelled exactly as given (ClickHouse type names are case-sensitive).
pub(crate) fn custom(name: &str, args: &[String]) -> DataType {
    DataType::Custom(ObjectName::from(vec![Ident::new(name)]), args.to_vec())
}

/// `VARCHAR(n)` length used for MySQL string key columns: 191 characters × 4 bytes fits
/// every InnoDB row format's index prefix limit (767 bytes) on old and new servers.
pub const MYSQL_KEY_VARCHAR: u64 = 191;

/// PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;
/// MySQL and MariaDB.
#[derive(Debug, Clone, Copy)]
pub struct Mysql;
/// ClickHouse.
#[derive(Debug, Clone, Copy)]
pub struct Clickhouse;

fn placeholder(text: String) -> Expr {
    Expr::Value(Value::Placeholder(text).with_empty_span())
}

fn collate(e: Expr, collation: &str) -> Expr {
    Expr::Collate {
        expr: Box::new(e),
        collation: ObjectName::from(vec![Ident::with_quote('"', collation)]),
    }
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    super::build::call(name, args)
}

impl Dialect for Postgres {
    fn kind(&self) -> DialectKind {
        DialectKind::Postgres
    }
    fn quote_char(&self) -> char {
        '"'
    }
    fn column_type(&self, dtype: Dtype, _key: bool) -> DataType {
        match dtype {
            Dtype::Int => DataType::BigInt(None),
            Dtype::Float => DataType::DoublePrecision,
            Dtype::Decimal { precision, scale } => DataType::Numeric(
                ExactNumberInfo::PrecisionAndScale(precision.into(), scale.into()),
            ),
            Dtype::Str => DataType::Text,
            Dtype::Bool => DataType::Boolean,
            Dtype::Date => DataType::Date,
            Dtype::Datetime => DataType::Timestamp(Some(6), TimezoneInfo::WithTimeZone),
            Dtype::Uuid => DataType::Uuid,
            Dtype::Json => DataType::JSONB,
        }
    }
    fn placeholder(&self, index: usize, _name: &str, _dtype: Dtype) -> Expr {
        placeholder(format!("${index}"))
    }
    fn char_length_fn(&self) -> &'static str {
        "length"
    }
    fn order_key(&self, e: Expr, dtype: Dtype) -> Expr {
        match dtype {
            // "C" compares UTF-8 bytes, which is code point order. Through the column's text:
            // a `str` field may read a column of another type (a `uuid`, an integer, an
            // enum), which has no collation and would sort by its own order, not its text's.
            // On a `text` column the cast is no cast at all, and on a `varchar` one a
            // relabelling, so an index on a "C"-collated key still serves the order.
            Dtype::Str => collate(super::build::cast(e, DataType::Text), "C"),
            _ => e,
        }
    }
}

impl Dialect for Mysql {
    fn kind(&self) -> DialectKind {
        DialectKind::Mysql
    }
    fn quote_char(&self) -> char {
        '`'
    }
    fn column_type(&self, dtype: Dtype, key: bool) -> DataType {
        match dtype {
            Dtype::Int => DataType::BigInt(None),
            Dtype::Float => DataType::Double(ExactNumberInfo::None),
            Dtype::Decimal { precision, scale } => DataType::Decimal(
                ExactNumberInfo::PrecisionAndScale(precision.into(), scale.into()),
            ),
            Dtype::Str if key => DataType::Varchar(Some(CharacterLength::IntegerLength {
                length: MYSQL_KEY_VARCHAR,
                unit: None,
            })),
            Dtype::Str => DataType::LongText,
            Dtype::Bool => DataType::Boolean,
            Dtype::Date => DataType::Date,
            Dtype::Datetime => DataType::Datetime(Some(6)),
            Dtype::Uuid => DataType::Char(Some(CharacterLength::IntegerLength {
                length: 36,
                unit: None,
            })),
            Dtype::Json => DataType::JSON,
        }
    }
    fn placeholder(&self, _index: usize, _name: &str, _dtype: Dtype) -> Expr {
        placeholder("?".to_string())
    }
    fn char_length_fn(&self) -> &'static str {
        "CHAR_LENGTH"
    }
    fn order_key(&self, e: Expr, dtype: Dtype) -> Expr {
        // The UTF-8 bytes (latin1 and utf8mb3 columns converted first) as a binary string,
        // compared byte by byte whatever the column's collation. Not `COLLATE utf8mb4_bin`:
        // that collation is PAD SPACE, so `'a\t'` would sort before `'a'`.
        let utf8 = |e: Expr| Expr::Convert {
            is_try: false,
            expr: Box::new(e),
            data_type: None,
            charset: Some(ObjectName::from(vec![Ident::new("utf8mb4")])),
            target_before_value: false,
            styles: vec![],
        };
        let bin = |e: Expr| super::build::cast(e, DataType::Binary(None));
        match dtype {
            Dtype::Str => bin(utf8(e)),
            Dtype::Uuid => bin(utf8(call("LOWER", vec![e]))),
            _ => e,
        }
    }
}

impl Dialect for Clickhouse {
    fn kind(&self) -> DialectKind {
        DialectKind::Clickhouse
    }
    fn quote_char(&self) -> char {
        '"'
    }
    fn column_type(&self, dtype: Dtype, _key: bool) -> DataType {
        match dtype {
            Dtype::Int => custom("Int64", &[]),
            Dtype::Float => custom("Float64", &[]),
            Dtype::Decimal { precision, scale } => {
                custom("Decimal", &[precision.to_string(), scale.to_string()])
            }
            Dtype::Str | Dtype::Json => custom("String", &[]),
            // 18.16 has no Bool type.
            Dtype::Bool => custom("UInt8", &[]),
            Dtype::Date => custom("Date", &[]),
            // 18.16 has no DateTime64: whole seconds, stored as UTC.
            Dtype::Datetime => custom("DateTime", &["'UTC'".to_string()]),
            Dtype::Uuid => custom("UUID", &[]),
        }
    }
    fn param_type(&self, dtype: Dtype) -> DataType {
        match dtype {
            Dtype::Datetime => custom("DateTime", &[]),
            other => self.column_type(other, false),
        }
    }
    fn nullable(&self, ty: DataType) -> DataType {
        DataType::Nullable(Box::new(ty))
    }
    fn placeholder(&self, _index: usize, name: &str, dtype: Dtype) -> Expr {
        placeholder(format!("{{{name}:{}}}", self.param_type(dtype)))
    }
    fn char_length_fn(&self) -> &'static str {
        "lengthUTF8"
    }
    fn read_value(&self, e: Expr, dtype: Dtype) -> Expr {
        match dtype {
            Dtype::Float => call("toFloat64", vec![e]),
            Dtype::Datetime => call("toTimeZone", vec![e, super::build::string("UTC")]),
            // The day number: ClickHouse 18.16 prints a `Date` after 2105 as 1970-01-01.
            Dtype::Date => call("toInt32", vec![e]),
            _ => e,
        }
    }
    fn order_key(&self, e: Expr, dtype: Dtype) -> Expr {
        match dtype {
            // UUIDs sort by their internal halves, not their text; a `str` field may read
            // a column of another type (a `UUID`, an integer, an `Enum`, which sorts by its
            // number), so it orders by its text too (free on a `String`, and a current
            // server still reads a table in its sorting key's order for it).
            Dtype::Uuid | Dtype::Str => call("toString", vec![e]),
            _ => e,
        }
    }
    fn has_primary_key(&self) -> bool {
        false
    }
}
