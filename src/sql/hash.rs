//! The canonical row encoding of hash reconciliation (SPEC §5), as SQL AST builders.
//!
//! The same logical row must hash to the same value in PostgreSQL, MySQL/MariaDB and
//! ClickHouse (18.16 and current releases alike). Every builder here returns a
//! [`sqlparser::ast::Expr`] for one dialect; nothing is assembled by string concatenation.
//!
//! # Canonical text of a row
//!
//! The columns are encoded one by one, in the order given, and joined with
//! [`SEPARATOR`] (`|`). A NULL column is the [`NULL_MARKER`] (`N`), which no encoded value
//! equals (no encoding below is a bare `N`). Per dtype:
//!
//! | dtype | canonical form | example |
//! |---|---|---|
//! | `int` | decimal text | `-42` |
//! | `bool` | `0` / `1` (MySQL / ClickHouse: `x <> 0`) | `1` |
//! | `decimal` | plain decimal text without trailing fractional zeros and without a trailing point | `1.5`, `-12.34`, `100`, `0` |
//! | `str` | `<character count>:<UTF-8 text>` | `2:é!` |
//! | `json` | as `str`, over the stored JSON text | `7:{"a":1}` |
//! | `uuid` | lower-case hyphenated text | `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11` |
//! | `date` | days since 1970-01-01 (negative before) | `-165` |
//! | `datetime` | microseconds since 1970-01-01 00:00:00 UTC; at [`TimePrecision::Seconds`] whole seconds (floored toward −∞) × 10⁶ | `-499999` |
//! | `float` | see below; NaN `nan`, +∞ `inf`, −∞ `-inf` | `150000000000000e1` |
//!
//! ## Floats
//!
//! A float is rounded to [`FLOAT_DIGITS`] (15) significant decimal digits and written as
//! `[-]<15 digits>e<exponent>`, meaning `0.<15 digits> × 10^exponent`; zero (and `-0.0`) is
//! `0`. The digits are taken from the value's shortest round-trip decimal representation
//! (what PostgreSQL ≥ 12 with `extra_float_digits > 0`, MariaDB and every ClickHouse release
//! print, and Rust's `{:e}`): its first 17 significant digits (right-padded with zeros) are
//! rounded half-up to 15. So `1e20` → `100000000000000e21`, `1.5` → `150000000000000e1`,
//! `0.1 + 0.2` and `0.3` → `300000000000000e0`, `-0.0` → `0`. NaN is `nan`, +∞ `inf` and
//! −∞ `-inf` (PostgreSQL and ClickHouse store them; MySQL cannot, and its expression has
//! no such branches). The value is hashed as a double: a single-precision column
//! (PostgreSQL `real`, MySQL `FLOAT`, ClickHouse `Float32`) is widened exactly first, so
//! it hashes like a double column holding the same value.
//!
//! ## Limits
//!
//! - `json` hashes the stored text verbatim: two sides agree only when they store the same
//!   text (PostgreSQL `jsonb` and MySQL 8 `JSON` re-serialise documents; use `json`/text
//!   columns, or the hash column, when that matters).
//! - PostgreSQL databases must use the UTF8 server encoding (md5 hashes the server bytes).
//! - A `uuid` kept in a text column is normalised by PostgreSQL (any form its `uuid` type
//!   reads; a value it cannot read fails the query) but only lower-cased by MySQL and
//!   ClickHouse: keep hyphenated text there (synctool writes uuids that way).
//! - ClickHouse `DateTime` keeps whole seconds from 1970 on: hash at
//!   [`TimePrecision::Seconds`] whenever one side is ClickHouse.
//! - Keys passed to [`block_md5_concat`] must be non-NULL; build them with [`order_key`].

mod build;
mod float;

use sqlparser::ast::{
    BinaryOperator, ContextModifier, DataType, DateTimeField, ExactNumberInfo, Expr, ExtractSyntax,
    FunctionArgumentClause, Ident, LambdaFunction, ObjectName, OneOrManyWithParens, OrderByExpr,
    OrderByOptions, Set, Statement, TrimWhereField, Value,
};

use crate::sql::dialect::{Dialect, DialectKind};
use crate::types::Dtype;
use build::{bin, case, cast, func, func_star, func_with, keyword, like, lit, mul, num, sub};

/// The text standing for a NULL column in the canonical row text.
pub const NULL_MARKER: &str = "N";

/// The text between two columns in the canonical row text.
pub const SEPARATOR: &str = "|";

/// Significant decimal digits a float keeps in the canonical row text.
pub const FLOAT_DIGITS: usize = 15;

/// MySQL `group_concat_max_len` set by [`session_setup`]: 1 GiB, the MariaDB 10.11 maximum
/// (MySQL allows more), room for 33 million row md5s per block.
pub const MYSQL_GROUP_CONCAT_MAX_LEN: u64 = 1_073_741_824;

/// The MySQL `sql_mode` set by [`session_setup`]: strict, and with
/// `NO_BACKSLASH_ESCAPES` so that string literals mean what standard SQL says (the AST
/// renderer only doubles single quotes).
pub const MYSQL_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_BACKSLASH_ESCAPES";

/// The precision datetimes are hashed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimePrecision {
    /// Microseconds (PostgreSQL and MySQL keep them).
    Micros,
    /// Whole seconds, floored toward −∞ (ClickHouse `DateTime` keeps nothing finer).
    Seconds,
}

impl TimePrecision {
    /// The precision two sides of a reconciliation both keep: [`TimePrecision::Seconds`]
    /// when either is ClickHouse, else [`TimePrecision::Micros`].
    pub fn common(a: DialectKind, b: DialectKind) -> TimePrecision {
        if a == DialectKind::Clickhouse || b == DialectKind::Clickhouse {
            TimePrecision::Seconds
        } else {
            TimePrecision::Micros
        }
    }
}

/// One column of a row hash.
#[derive(Debug, Clone, PartialEq)]
pub struct HashCol {
    /// The column reference (already qualified and quoted for the dialect).
    pub expr: Expr,
    /// The column's dtype, which selects the canonical form.
    pub dtype: Dtype,
    /// The precision datetimes are hashed at (ignored for other dtypes).
    pub precision: TimePrecision,
}

pub use crate::ir::PartitionKind;

impl PartitionKind {
    /// Parse a `partition_column_type` value as written in the config.
    pub fn parse(s: &str) -> Option<PartitionKind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "int" => PartitionKind::Int,
            "float" => PartitionKind::Float,
            "datetime" => PartitionKind::Datetime,
            "date" => PartitionKind::Date,
            "uuid" => PartitionKind::Uuid,
            "str" | "string" => PartitionKind::Str,
            _ => return None,
        })
    }

    /// The config spelling.
    pub fn name(&self) -> &'static str {
        match self {
            PartitionKind::Int => "int",
            PartitionKind::Float => "float",
            PartitionKind::Datetime => "datetime",
            PartitionKind::Date => "date",
            PartitionKind::Uuid => "uuid",
            PartitionKind::Str => "str",
        }
    }

    /// True for the kinds split by md5 hex prefix ([`key_bucket`]) instead of a numeric
    /// interval.
    pub fn is_hex_prefix(&self) -> bool {
        matches!(self, PartitionKind::Uuid | PartitionKind::Str)
    }

    /// The dtype of the partition value.
    pub fn dtype(&self) -> Dtype {
        match self {
            PartitionKind::Int => Dtype::Int,
            PartitionKind::Float => Dtype::Float,
            PartitionKind::Datetime => Dtype::Datetime,
            PartitionKind::Date => Dtype::Date,
            PartitionKind::Uuid => Dtype::Uuid,
            PartitionKind::Str => Dtype::Str,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Per-dialect primitives.

/// Text of a value.
fn to_text(k: DialectKind, e: Expr) -> Expr {
    match k {
        DialectKind::Postgres => cast(e, DataType::Text),
        DialectKind::Mysql => cast(e, DataType::Char(None)),
        DialectKind::Clickhouse => func("toString", vec![e]),
    }
}

/// A 64-bit signed integer from a number or an integer text.
fn to_int(k: DialectKind, e: Expr) -> Expr {
    match k {
        DialectKind::Postgres => cast(e, DataType::BigInt(None)),
        DialectKind::Mysql => cast(e, DataType::Signed),
        DialectKind::Clickhouse => func("toInt64", vec![e]),
    }
}

/// Length in characters, as a signed integer.
fn char_len(k: DialectKind, e: Expr) -> Expr {
    match k {
        DialectKind::Postgres => func("length", vec![e]),
        DialectKind::Mysql => func("CHAR_LENGTH", vec![e]),
        DialectKind::Clickhouse => func("toInt64", vec![func("lengthUTF8", vec![e])]),
    }
}

/// Concatenation that yields NULL when any part is NULL.
fn concat(k: DialectKind, parts: Vec<Expr>) -> Expr {
    match k {
        DialectKind::Postgres => {
            let mut it = parts.into_iter();
            let first = it.next().unwrap_or_else(|| lit(""));
            it.fold(first, |acc, p| bin(acc, BinaryOperator::StringConcat, p))
        }
        _ if parts.len() == 1 => parts.into_iter().next().unwrap_or_else(|| lit("")),
        DialectKind::Mysql => func("CONCAT", parts),
        DialectKind::Clickhouse => func("concat", parts),
    }
}

/// `COALESCE(e, fallback)`.
fn coalesce(k: DialectKind, e: Expr, fallback: Expr) -> Expr {
    match k {
        DialectKind::Clickhouse => func("coalesce", vec![e, fallback]),
        _ => func("COALESCE", vec![e, fallback]),
    }
}

/// `substring(s, from, len)` (1-based).
fn substr(k: DialectKind, s: Expr, from: Expr, len: Expr) -> Expr {
    match k {
        DialectKind::Postgres => func("substr", vec![s, from, len]),
        DialectKind::Mysql => func("SUBSTR", vec![s, from, len]),
        DialectKind::Clickhouse => func("substring", vec![s, from, len]),
    }
}

/// `replace(s, from, to)` (every occurrence).
fn replace(k: DialectKind, s: Expr, from: &str, to: &str) -> Expr {
    match k {
        DialectKind::Postgres => func("replace", vec![s, lit(from), lit(to)]),
        DialectKind::Mysql => func("REPLACE", vec![s, lit(from), lit(to)]),
        DialectKind::Clickhouse => func("replaceAll", vec![s, lit(from), lit(to)]),
    }
}

/// The `n`-th (1-based) part of `s` split on the one-character `sep`.
fn split_part(k: DialectKind, s: Expr, sep: &str, n: i64) -> Expr {
    match k {
        DialectKind::Postgres => func("split_part", vec![s, lit(sep), num(n)]),
        DialectKind::Mysql => {
            let head = func("SUBSTRING_INDEX", vec![s, lit(sep), num(n)]);
            if n == 1 {
                head
            } else {
                func("SUBSTRING_INDEX", vec![head, lit(sep), num(-1)])
            }
        }
        DialectKind::Clickhouse => func(
            "arrayElement",
            vec![func("splitByChar", vec![lit(sep), s]), num(n)],
        ),
    }
}

/// `s` without leading `0` characters.
fn ltrim_zeros(k: DialectKind, s: Expr) -> Expr {
    match k {
        DialectKind::Postgres => func("ltrim", vec![s, lit("0")]),
        DialectKind::Mysql => Expr::Trim {
            expr: Box::new(s),
            trim_where: Some(TrimWhereField::Leading),
            trim_what: Some(Box::new(lit("0"))),
            trim_characters: None,
        },
        DialectKind::Clickhouse => func("replaceRegexpOne", vec![s, lit("^0+"), lit("")]),
    }
}

/// Integer division of two integers, truncating (both operands are non-negative where used).
fn int_div(k: DialectKind, a: Expr, b: Expr) -> Expr {
    match k {
        DialectKind::Postgres => bin(a, BinaryOperator::Divide, b),
        DialectKind::Mysql => bin(a, BinaryOperator::MyIntegerDivide, b),
        DialectKind::Clickhouse => func("intDiv", vec![a, b]),
    }
}

/// Lower-case hex md5 of a text.
fn md5_hex(k: DialectKind, s: Expr) -> Expr {
    match k {
        DialectKind::Postgres => func("md5", vec![s]),
        DialectKind::Mysql => func("LOWER", vec![func("MD5", vec![s])]),
        DialectKind::Clickhouse => func("lower", vec![func("hex", vec![func("MD5", vec![s])])]),
    }
}

/// Lower-case text.
fn lower(k: DialectKind, s: Expr) -> Expr {
    match k {
        DialectKind::Postgres => func("lower", vec![s]),
        DialectKind::Mysql => func("LOWER", vec![s]),
        DialectKind::Clickhouse => func("lower", vec![s]),
    }
}

/// The lower-case hyphenated text of a uuid. PostgreSQL prints a `uuid` that way, and
/// casting a text column to `uuid` first normalises upper case, braces and missing hyphens
/// (a `uuid` column casts to itself for free): far cheaper than `lower()`, which goes
/// through the column's collation. MySQL and ClickHouse lower-case the text.
fn uuid_text(k: DialectKind, e: Expr) -> Expr {
    match k {
        DialectKind::Postgres => to_text(k, cast(e, DataType::Uuid)),
        _ => lower(k, to_text(k, e)),
    }
}

/// MySQL `CONVERT(e USING utf8mb4)`.
fn mysql_utf8mb4(e: Expr) -> Expr {
    Expr::Convert {
        is_try: false,
        expr: Box::new(e),
        data_type: None,
        charset: Some(ObjectName::from(vec![Ident::new("utf8mb4")])),
        target_before_value: false,
        styles: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Time.

/// Microseconds since 1970-01-01 00:00:00 UTC of a datetime, as a 64-bit integer.
///
/// PostgreSQL `CAST(EXTRACT(EPOCH FROM e) * 1000000 AS BIGINT)` (exact: `EXTRACT` returns
/// numeric), MySQL `TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', e)` (independent of
/// the session time zone for `DATETIME`), ClickHouse `toInt64(toUnixTimestamp(e)) * 1000000`
/// (`DateTime` keeps whole seconds).
pub fn epoch_micros(d: &dyn Dialect, e: Expr) -> Expr {
    match d.kind() {
        DialectKind::Postgres => cast(
            mul(pg_extract_epoch(e), num(1_000_000)),
            DataType::BigInt(None),
        ),
        DialectKind::Mysql => func(
            "TIMESTAMPDIFF",
            vec![keyword("MICROSECOND"), lit("1970-01-01 00:00:00"), e],
        ),
        DialectKind::Clickhouse => mul(
            func("toInt64", vec![func("toUnixTimestamp", vec![e])]),
            num(1_000_000),
        ),
    }
}

/// Whole seconds since 1970-01-01 00:00:00 UTC of a datetime, floored toward −∞ (so
/// `1969-12-31 23:59:59.5` is −1), as a 64-bit integer.
pub fn epoch_seconds(d: &dyn Dialect, e: Expr) -> Expr {
    match d.kind() {
        DialectKind::Postgres => cast(
            func("floor", vec![pg_extract_epoch(e)]),
            DataType::BigInt(None),
        ),
        DialectKind::Mysql => floor_div(d, epoch_micros(d, e), num(1_000_000)),
        DialectKind::Clickhouse => func("toInt64", vec![func("toUnixTimestamp", vec![e])]),
    }
}

/// Days since 1970-01-01 of a date (negative before), as an integer.
pub fn epoch_days(d: &dyn Dialect, e: Expr) -> Expr {
    match d.kind() {
        DialectKind::Postgres => cast(
            sub(e, cast(lit("1970-01-01"), DataType::Date)),
            DataType::BigInt(None),
        ),
        DialectKind::Mysql => func("DATEDIFF", vec![e, lit("1970-01-01")]),
        DialectKind::Clickhouse => func(
            "toInt64",
            vec![func(
                "dateDiff",
                vec![lit("day"), func("toDate", vec![lit("1970-01-01")]), e],
            )],
        ),
    }
}

fn pg_extract_epoch(e: Expr) -> Expr {
    Expr::Extract {
        field: DateTimeField::Epoch,
        syntax: ExtractSyntax::From,
        expr: Box::new(e),
    }
}

/// Floor division `⌊a / b⌋` of two integers for `b > 0`, identical on every dialect (the
/// native integer divisions truncate toward zero):
/// `(a DIV b) - CASE WHEN (a % b) < 0 THEN 1 ELSE 0 END`, which cannot overflow.
pub fn floor_div(d: &dyn Dialect, a: Expr, b: Expr) -> Expr {
    let k = d.kind();
    let negative_rest = bin(
        bin(a.clone(), BinaryOperator::Modulo, b.clone()),
        BinaryOperator::Lt,
        num(0),
    );
    sub(
        int_div(k, a, b),
        case(vec![(negative_rest, num(1))], Some(num(0))),
    )
}

// ---------------------------------------------------------------------------------------
// Canonical text.

/// The canonical form of one column (see the module docs), with NULL replaced by
/// [`NULL_MARKER`]. Never NULL.
pub fn canonical_value(d: &dyn Dialect, col: &HashCol) -> Expr {
    let k = d.kind();
    coalesce(k, encode(d, col), lit(NULL_MARKER))
}

/// The canonical form of one column, NULL when the column is NULL.
fn encode(d: &dyn Dialect, col: &HashCol) -> Expr {
    let k = d.kind();
    let c = col.expr.clone();
    match col.dtype {
        Dtype::Int => to_text(k, c),
        Dtype::Bool => match k {
            DialectKind::Postgres => to_text(k, cast(c, DataType::Integer(None))),
            DialectKind::Mysql => to_text(k, bin(c, BinaryOperator::NotEq, num(0))),
            DialectKind::Clickhouse => to_text(
                k,
                func("toUInt8", vec![bin(c, BinaryOperator::NotEq, num(0))]),
            ),
        },
        Dtype::Decimal { precision, scale } => decimal_text(k, c, precision - scale, scale),
        // ClickHouse: through `toString`, which is free on a `String` and makes the label
        // of an `Enum` column (string functions refuse enums).
        // Text of enum columns too: ClickHouse `Enum` and PostgreSQL enums (whose
        // `length()` does not exist) are read as their label.
        Dtype::Str => length_prefixed(
            k,
            match k {
                DialectKind::Clickhouse => func("toString", vec![c]),
                DialectKind::Postgres => cast(c, DataType::Text),
                DialectKind::Mysql => c,
            },
        ),
        Dtype::Json => length_prefixed(
            k,
            match k {
                DialectKind::Postgres => cast(c, DataType::Text),
                DialectKind::Mysql => c,
                DialectKind::Clickhouse => func("toString", vec![c]),
            },
        ),
        Dtype::Uuid => uuid_text(k, c),
        Dtype::Date => to_text(k, epoch_days(d, c)),
        Dtype::Datetime => match col.precision {
            TimePrecision::Micros => to_text(k, epoch_micros(d, c)),
            TimePrecision::Seconds => to_text(k, mul(epoch_seconds(d, c), num(1_000_000))),
        },
        Dtype::Float => float::canonical(k, c),
    }
}

/// `<character count>:<text>`, with MySQL text converted to utf8mb4 first.
fn length_prefixed(k: DialectKind, c: Expr) -> Expr {
    let c = match k {
        DialectKind::Mysql => mysql_utf8mb4(c),
        _ => c,
    };
    concat(k, vec![to_text(k, char_len(k, c.clone())), lit(":"), c])
}

/// A decimal without trailing fractional zeros or a trailing point. `int_digits` is the
/// most digits the dtype holds before the point (`precision - scale`).
///
/// PostgreSQL `trim_scale`; MySQL and ClickHouse strip zeros and then the point from the
/// text, only when it has a point (ClickHouse 18.16 prints `1.50` for `Decimal(18,2)`,
/// current releases `1.5`; both become `1.5`). ClickHouse writes the text with `toString`,
/// except where the integer part may reach 10^18 ([`ch_wide_decimal_text`]).
fn decimal_text(k: DialectKind, c: Expr, int_digits: u8, scale: u8) -> Expr {
    match k {
        DialectKind::Postgres => cast(func("trim_scale", vec![c]), DataType::Text),
        DialectKind::Mysql => {
            let t = cast(c, DataType::Char(None));
            let trimmed = trim_trailing(trim_trailing(t.clone(), "0"), ".");
            case(vec![(like(t.clone(), "%.%"), trimmed)], Some(t))
        }
        DialectKind::Clickhouse => {
            let t = if u32::from(int_digits) > CH_LIMB_DIGITS {
                ch_wide_decimal_text(c, int_digits, scale)
            } else {
                func("toString", vec![c])
            };
            let no_zeros = func("replaceRegexpOne", vec![t.clone(), lit("0+$"), lit("")]);
            let trimmed = func("replaceRegexpOne", vec![no_zeros, lit("[.]$"), lit("")]);
            case(vec![(like(t.clone(), "%.%"), trimmed)], Some(t))
        }
    }
}

/// Digits of one limb of [`ch_wide_decimal_text`]: a limb is below 10^18, so it and
/// 10^18 plus it fit a `UInt64`.
const CH_LIMB_DIGITS: u32 = 18;

/// ClickHouse text of a decimal whose integer part may have more than [`CH_LIMB_DIGITS`]
/// digits (a `Decimal128` dtype), identical to what `toString` prints (trailing zeros
/// included), without `toString` of a `Decimal` whose integer part reaches 10^18.
///
/// ClickHouse 18.16's `toString` of such a `Decimal128` table column writes wrong bytes
/// (`9\0\0…` for `99…`), and over a whole table it can crash the server. So the absolute
/// value `a` is cut into limbs of 18 digits: `q1 = ⌊a / 10^18⌋` (a `Decimal` quotient
/// keeps the dividend's scale, truncated, and `toDecimal128(…, 0)` truncates it to an
/// integer), the low part `a - q1·10^18` (below 10^18, with the fraction), and, when the
/// dtype holds more than 36 integer digits, `q1` cut the same way. Every limb is printed
/// as a `UInt64`, the top non-zero one as it is and those below it zero-padded to 18
/// digits (`toString(limb + 10^18)` without its leading `1`: 18.16 has no `leftPad`);
/// the fraction is the low part's `toString` after its integer digits. ClickHouse
/// evaluates every branch of `if`/`multiIf` for every row, which is safe here: no branch
/// formats a big value. A NULL stays NULL (`concat` of a NULL is NULL).
fn ch_wide_decimal_text(c: Expr, int_digits: u8, scale: u8) -> Expr {
    // A `Decimal128` of the field's scale whatever the column is (a `Float64` or integer
    // column read as a decimal field: `Decimal` arithmetic refuses floats).
    let c = func("toDecimal128", vec![c, num(i64::from(scale))]);
    let limb_base = || func("toDecimal128", vec![num(CH_LIMB), num(0)]);
    let whole_div = |e: Expr| {
        func(
            "toDecimal128",
            vec![bin(e, BinaryOperator::Divide, limb_base()), num(0)],
        )
    };
    let to_u64 = |e: Expr| func("toUInt64", vec![e]);
    let a = func("abs", vec![c.clone()]);
    let q1 = whole_div(a.clone());
    let low = sub(a, mul(q1.clone(), limb_base()));
    // Limbs, lowest first.
    let mut limbs = vec![to_u64(low.clone())];
    if u32::from(int_digits) > 2 * CH_LIMB_DIGITS {
        let q2 = whole_div(q1.clone());
        limbs.push(to_u64(sub(q1, mul(q2.clone(), limb_base()))));
        limbs.push(to_u64(q2));
    } else {
        limbs.push(to_u64(q1));
    }
    let text = |e: Expr| func("toString", vec![e]);
    let padded = |e: Expr| {
        func(
            "substring",
            vec![text(bin(e, BinaryOperator::Plus, num(CH_LIMB))), num(2)],
        )
    };
    // The integer digits: from the highest non-zero limb down (the lowest limb alone for
    // a value below 10^18).
    let mut branches = Vec::new();
    for top in (1..limbs.len()).rev() {
        let mut parts = vec![text(limbs[top].clone())];
        parts.extend(limbs[..top].iter().rev().map(|l| padded(l.clone())));
        branches.push((
            bin(limbs[top].clone(), BinaryOperator::NotEq, num(0)),
            func("concat", parts),
        ));
    }
    let mut args = Vec::with_capacity(branches.len() * 2 + 1);
    for (cond, then) in branches {
        args.push(cond);
        args.push(then);
    }
    args.push(text(limbs[0].clone()));
    let digits = func("multiIf", args);
    let fraction = func("replaceRegexpOne", vec![text(low), lit("^[0-9]+"), lit("")]);
    let sign = func(
        "if",
        vec![bin(c, BinaryOperator::Lt, num(0)), lit("-"), lit("")],
    );
    func("concat", vec![sign, digits, fraction])
}

/// 10^[`CH_LIMB_DIGITS`].
const CH_LIMB: i64 = 1_000_000_000_000_000_000;

/// MySQL `TRIM(TRAILING 'ch' FROM e)`.
fn trim_trailing(e: Expr, ch: &str) -> Expr {
    Expr::Trim {
        expr: Box::new(e),
        trim_where: Some(TrimWhereField::Trailing),
        trim_what: Some(Box::new(lit(ch))),
        trim_characters: None,
    }
}

/// The canonical text of a row: each column's [`canonical_value`], joined with
/// [`SEPARATOR`]. Never NULL.
pub fn canonical_text(d: &dyn Dialect, cols: &[HashCol]) -> Expr {
    let k = d.kind();
    let mut parts = Vec::with_capacity(cols.len() * 2);
    for (i, col) in cols.iter().enumerate() {
        if i > 0 {
            parts.push(lit(SEPARATOR));
        }
        parts.push(canonical_value(d, col));
    }
    if parts.is_empty() {
        return lit("");
    }
    match k {
        // The parts are never NULL, so PostgreSQL's `concat()` (which skips NULLs) gives
        // the same text as `||`, building it once instead of once per operator.
        DialectKind::Postgres if parts.len() > 1 => pg_concat(parts),
        _ => concat(k, parts),
    }
}

/// Most arguments a PostgreSQL function call takes (`FUNC_MAX_ARGS`).
const PG_MAX_ARGS: usize = 100;

/// PostgreSQL `concat(parts…)`, nested in calls of at most [`PG_MAX_ARGS`] arguments (a
/// row of more than 50 columns has more parts than one call takes).
fn pg_concat(mut parts: Vec<Expr>) -> Expr {
    while parts.len() > PG_MAX_ARGS {
        parts = parts
            .chunks(PG_MAX_ARGS)
            .map(|c| match c {
                [one] => one.clone(),
                _ => func("concat", c.to_vec()),
            })
            .collect();
    }
    func("concat", parts)
}

/// The lower-case hex md5 of the row's canonical text (the `hash_md5_hash` row value).
pub fn row_md5(d: &dyn Dialect, cols: &[HashCol]) -> Expr {
    md5_hex(d.kind(), canonical_text(d, cols))
}

/// The `md5sum_hash` row hash: the first 8 bytes of md5 of the canonical text, read as a
/// big-endian 64-bit SIGNED integer.
///
/// PostgreSQL `CAST(CAST('x' || substr(md5(s), 1, 16) AS BIT(64)) AS BIGINT)`, MySQL
/// `CAST(CONV(SUBSTR(MD5(s), 1, 16), 16, -10) AS SIGNED)` (a negative base gives the
/// value as signed, in range: `CAST` of the unsigned text of a hash past 2^63 would wrap it
/// too, but with a note, which MariaDB counts as a warning of the read), ClickHouse
/// `reinterpretAsInt64(reverse(unhex(substring(hex(MD5(s)), 1, 16))))`.
pub fn row_hash(d: &dyn Dialect, cols: &[HashCol]) -> Expr {
    let s = canonical_text(d, cols);
    match d.kind() {
        DialectKind::Postgres => {
            let hex16 = func("substr", vec![func("md5", vec![s]), num(1), num(16)]);
            cast(
                cast(
                    bin(lit("x"), BinaryOperator::StringConcat, hex16),
                    DataType::Bit(Some(64)),
                ),
                DataType::BigInt(None),
            )
        }
        DialectKind::Mysql => {
            let hex16 = func("SUBSTR", vec![func("MD5", vec![s]), num(1), num(16)]);
            cast(
                func("CONV", vec![hex16, num(16), num(-10)]),
                DataType::Signed,
            )
        }
        DialectKind::Clickhouse => {
            let hex16 = func(
                "substring",
                vec![func("hex", vec![func("MD5", vec![s])]), num(1), num(16)],
            );
            func(
                "reinterpretAsInt64",
                vec![func("reverse", vec![func("unhex", vec![hex16])])],
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Block aggregates.

/// The exact sum of the row hashes `h` of a block (`0` for no rows), read back as a
/// decimal of scale 0 on every dialect.
///
/// PostgreSQL and MySQL sum `BIGINT` into exact decimals, given as text; ClickHouse would
/// wrap `Int64`, so it sums `toDecimal128(h, 0)`, given as the decimal itself: 18.16's
/// `toString` of a `Decimal128` writes NUL bytes for some zero digits
/// (`-1\0472…` for `-10472…`), while its text output of the value is right.
///
/// A NULL `h` (a stored hash column that is nullable) adds nothing on every dialect: the
/// row's block then differs from the source's, and its leaf diff rewrites the row.
/// ClickHouse sums `ifNull(h, 0)`, which is `h` itself for a non-nullable column; the sum
/// of a `Nullable` column would be NULL for a block of NULLs.
pub fn block_sum(d: &dyn Dialect, h: Expr) -> Expr {
    let k = d.kind();
    match k {
        DialectKind::Postgres => coalesce(k, cast(func("sum", vec![h]), DataType::Text), lit("0")),
        DialectKind::Mysql => coalesce(
            k,
            cast(func("SUM", vec![h]), DataType::Char(None)),
            lit("0"),
        ),
        DialectKind::Clickhouse => func(
            "sum",
            vec![func(
                "toDecimal128",
                vec![func("ifNull", vec![h, num(0)]), num(0)],
            )],
        ),
    }
}

/// The row count of a block, as a signed 64-bit integer on every dialect.
pub fn block_count(d: &dyn Dialect) -> Expr {
    match d.kind() {
        DialectKind::Postgres => func_star("count"),
        DialectKind::Mysql => func_star("COUNT"),
        DialectKind::Clickhouse => func("toInt64", vec![func("count", Vec::new())]),
    }
}

/// A key that orders identically on every dialect, never under a collation: strings and
/// JSON compare by the UTF-8 bytes of their text, whatever the column's type
/// (PostgreSQL `CAST(e AS TEXT) COLLATE "C"`, MySQL
/// `CAST(CONVERT(e USING utf8mb4) AS BINARY)`, ClickHouse `toString(e)`), uuids by their
/// lower-case text, datetimes by their epoch integer at the column's precision, dates by
/// epoch days, booleans as 0/1, numbers natively.
pub fn order_key(d: &dyn Dialect, col: &HashCol) -> Expr {
    let k = d.kind();
    let e = col.expr.clone();
    match col.dtype {
        // A `str` or `json` field may read a column of another type (a uuid, an integer,
        // an enum): its text is what orders, as on the other side.
        Dtype::Str | Dtype::Json => binary_text(
            k,
            match k {
                DialectKind::Mysql => e,
                _ => to_text(k, e),
            },
        ),
        Dtype::Uuid => binary_text(k, uuid_text(k, e)),
        Dtype::Datetime => match col.precision {
            TimePrecision::Micros => epoch_micros(d, e),
            TimePrecision::Seconds => epoch_seconds(d, e),
        },
        Dtype::Date => epoch_days(d, e),
        Dtype::Bool => match k {
            DialectKind::Postgres => cast(e, DataType::Integer(None)),
            DialectKind::Mysql => bin(e, BinaryOperator::NotEq, num(0)),
            DialectKind::Clickhouse => func("toUInt8", vec![bin(e, BinaryOperator::NotEq, num(0))]),
        },
        Dtype::Int | Dtype::Float | Dtype::Decimal { .. } => e,
    }
}

/// Text compared by bytes.
fn binary_text(k: DialectKind, e: Expr) -> Expr {
    match k {
        DialectKind::Postgres => Expr::Collate {
            expr: Box::new(e),
            collation: ObjectName::from(vec![Ident::with_quote('"', "C")]),
        },
        DialectKind::Mysql => cast(mysql_utf8mb4(e), DataType::Binary(None)),
        DialectKind::Clickhouse => e,
    }
}

/// md5 (lower-case hex) of the concatenation of a block's row md5s, ordered by `order_by`
/// (build each key with [`order_key`]; keys must be non-NULL) and then by the row md5
/// itself, so duplicates of a key still order identically. An empty block gives md5 of
/// the empty string.
///
/// PostgreSQL `md5(COALESCE(string_agg(m, '' ORDER BY k.., m COLLATE "C"), ''))`; MySQL
/// `LOWER(MD5(COALESCE(GROUP_CONCAT(m ORDER BY k.., m SEPARATOR ''), '')))` (needs the
/// session `group_concat_max_len` of [`session_setup`]); ClickHouse sorts
/// `groupArray(tuple(k.., m))` with `arraySort` and joins the last tuple elements
/// (works on 18.16 and current releases).
pub fn block_md5_concat(d: &dyn Dialect, row_md5: Expr, order_by: &[Expr]) -> Expr {
    let k = d.kind();
    let mut keys: Vec<Expr> = order_by.to_vec();
    keys.push(binary_text(k, row_md5.clone()));
    let order_clause = || {
        FunctionArgumentClause::OrderBy(
            keys.iter()
                .cloned()
                .map(|expr| OrderByExpr {
                    expr,
                    options: OrderByOptions {
                        asc: None,
                        nulls_first: None,
                    },
                    with_fill: None,
                })
                .collect(),
        )
    };
    match k {
        DialectKind::Postgres => {
            let agg = func_with("string_agg", vec![row_md5, lit("")], vec![order_clause()]);
            func("md5", vec![coalesce(k, agg, lit(""))])
        }
        DialectKind::Mysql => {
            let agg = func_with(
                "GROUP_CONCAT",
                vec![row_md5],
                vec![
                    order_clause(),
                    FunctionArgumentClause::Separator(Value::SingleQuotedString(String::new())),
                ],
            );
            md5_hex(k, coalesce(k, agg, lit("")))
        }
        DialectKind::Clickhouse => {
            let n = order_by.len() as i64 + 1;
            let mut tuple_parts = order_by.to_vec();
            tuple_parts.push(row_md5);
            let sorted = func(
                "arraySort",
                vec![func("groupArray", vec![func("tuple", tuple_parts)])],
            );
            let t = Ident::new("hash_t");
            let lambda = Expr::Lambda(LambdaFunction {
                params: OneOrManyWithParens::One(t.clone()),
                body: Box::new(func("tupleElement", vec![Expr::Identifier(t), num(n)])),
            });
            let joined = func(
                "arrayStringConcat",
                vec![func("arrayMap", vec![lambda, sorted])],
            );
            md5_hex(k, joined)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Blocks.

/// The block a row belongs to: `⌊value / interval⌋` (floor, not truncation, so negative
/// and pre-1970 values work) of the partition value — integers as they are, floats
/// floored after a float division, datetimes as [`epoch_seconds`], dates as
/// [`epoch_days`] — as a 64-bit integer. `interval` must be positive; on PostgreSQL and
/// MySQL it is cast to `BIGINT` (`DOUBLE PRECISION` for floats), so a placeholder there is
/// bound with that type.
///
/// For [`PartitionKind::Uuid`] and [`PartitionKind::Str`], `interval` is the prefix length
/// and the result is the [`key_bucket`] of the value's canonical text.
pub fn block_id(d: &dyn Dialect, partition: Expr, kind: PartitionKind, interval: Expr) -> Expr {
    let k = d.kind();
    match kind {
        PartitionKind::Int => floor_div(d, partition, int_interval(k, interval)),
        PartitionKind::Datetime => {
            floor_div(d, epoch_seconds(d, partition), int_interval(k, interval))
        }
        PartitionKind::Date => floor_div(d, epoch_days(d, partition), int_interval(k, interval)),
        PartitionKind::Float => {
            let interval = match k {
                DialectKind::Postgres => cast(interval, DataType::DoublePrecision),
                DialectKind::Mysql => cast(interval, DataType::Double(ExactNumberInfo::None)),
                DialectKind::Clickhouse => interval,
            };
            let value = float_partition(k, partition);
            let q = bin(value.clone(), BinaryOperator::Divide, interval.clone());
            let q = match k {
                DialectKind::Postgres => pg_quotient_without_underflow(value, interval, q),
                _ => q,
            };
            let floor = match k {
                DialectKind::Mysql => func("FLOOR", vec![q]),
                _ => func("floor", vec![q]),
            };
            to_int(k, floor)
        }
        PartitionKind::Uuid | PartitionKind::Str => {
            let key = canonical_value(
                d,
                &HashCol {
                    expr: partition,
                    dtype: kind.dtype(),
                    precision: TimePrecision::Micros,
                },
            );
            key_bucket(d, key, interval)
        }
    }
}

/// A `float` partition value as a double. ClickHouse has no comparison or division between
/// `Decimal` and `Float64`, so a decimal column is converted with `toFloat64` (a no-op on
/// `Float64`); PostgreSQL and MySQL convert a decimal compared with, or divided by, a double
/// themselves. Every side converts a decimal of up to 15 digits to the nearest double
/// (checked against PostgreSQL, MariaDB, ClickHouse 18.16 and a current release); wider
/// decimals ClickHouse may convert one unit in the last place away, so `check` refuses them
/// as a float partition where ClickHouse reconciles.
pub fn float_partition(k: DialectKind, e: Expr) -> Expr {
    match k {
        DialectKind::Clickhouse => func("toFloat64", vec![e]),
        _ => e,
    }
}

/// PostgreSQL's `v / interval` with IEEE underflow: PostgreSQL raises "value out of range:
/// underflow" where the quotient of non-zero values rounds to zero (a subnormal `v`, or a
/// huge interval), which MySQL and ClickHouse give as ±0, so block 0. The quotient rounds
/// to zero exactly when `|v| × 2^1075 ≤ interval`, which the second branch computes
/// exactly (multiplying by powers of two) for `|v| < 2^-60`; the first, for every ordinary
/// value, is one comparison. NaN compares above every number in PostgreSQL and keeps the
/// division; NULL falls through to it.
fn pg_quotient_without_underflow(v: Expr, interval: Expr, q: Expr) -> Expr {
    let pow2 = |e: i32| {
        cast(
            Expr::value(Value::Number(format!("{:e}", 2f64.powi(e)), false)),
            DataType::DoublePrecision,
        )
    };
    let abs = || func("abs", vec![v.clone()]);
    let ordinary = bin(abs(), BinaryOperator::GtEq, pow2(-60));
    let rounds_to_zero = bin(
        mul(mul(abs(), pow2(1000)), pow2(75)),
        BinaryOperator::LtEq,
        interval,
    );
    case(
        vec![(ordinary, q.clone()), (rounds_to_zero, num(0))],
        Some(q),
    )
}

fn int_interval(k: DialectKind, interval: Expr) -> Expr {
    match k {
        DialectKind::Postgres => cast(interval, DataType::BigInt(None)),
        DialectKind::Mysql => cast(interval, DataType::Signed),
        DialectKind::Clickhouse => interval,
    }
}

/// The block of a `uuid`/`str` partition: the first `prefix_len` lower-case hex characters
/// of md5 of `key`, which must be the key's canonical text ([`canonical_value`]). Blocks
/// split by extending the prefix. On PostgreSQL `prefix_len` is cast to `INTEGER`.
pub fn key_bucket(d: &dyn Dialect, key: Expr, prefix_len: Expr) -> Expr {
    let k = d.kind();
    let prefix_len = match k {
        DialectKind::Postgres => cast(prefix_len, DataType::Integer(None)),
        DialectKind::Mysql => cast(prefix_len, DataType::Signed),
        DialectKind::Clickhouse => prefix_len,
    };
    substr(k, md5_hex(k, key), num(1), prefix_len)
}

// ---------------------------------------------------------------------------------------
// Sessions and parameters.

/// Statements to run on every new connection before hashing.
///
/// - PostgreSQL: `SET TIME ZONE 'UTC'`, `SET extra_float_digits = 1` (shortest round-trip
///   float text, which the float rule reads).
/// - MySQL: `SET time_zone = '+00:00'`, `SET NAMES utf8mb4`, a strict `sql_mode` with
///   `NO_BACKSLASH_ESCAPES` ([`MYSQL_SQL_MODE`]), and `group_concat_max_len` raised to
///   [`MYSQL_GROUP_CONCAT_MAX_LEN`].
/// - ClickHouse: `SET join_use_nulls = 1`, so that an outer join gives NULL for the
///   columns of an unmatched row, as on PostgreSQL and MySQL, not the type's default (`''`,
///   `0`). Nothing else: `toUnixTimestamp` of a `DateTime` does not depend on the time
///   zone, and every function used exists on 18.16 and current releases.
pub fn session_setup(d: &dyn Dialect) -> Vec<Statement> {
    let assign = |scope: Option<ContextModifier>, name: &str, value: Expr| {
        Statement::Set(Set::SingleAssignment {
            scope,
            hivevar: false,
            variable: ObjectName::from(vec![Ident::new(name)]),
            values: vec![value],
        })
    };
    match d.kind() {
        DialectKind::Postgres => vec![
            Statement::Set(Set::SetTimeZone {
                local: false,
                value: lit("UTC"),
            }),
            assign(None, "extra_float_digits", num(1)),
        ],
        DialectKind::Mysql => vec![
            assign(Some(ContextModifier::Session), "time_zone", lit("+00:00")),
            Statement::Set(Set::SetNames {
                charset_name: Ident::new("utf8mb4"),
                collation_name: None,
            }),
            assign(
                Some(ContextModifier::Session),
                "sql_mode",
                lit(MYSQL_SQL_MODE),
            ),
            assign(
                Some(ContextModifier::Session),
                "group_concat_max_len",
                Expr::value(Value::Number(MYSQL_GROUP_CONCAT_MAX_LEN.to_string(), false)),
            ),
        ],
        DialectKind::Clickhouse => vec![assign(None, "join_use_nulls", num(1))],
    }
}

/// The ClickHouse type name a parameter of this dtype is declared with.
pub fn clickhouse_param_type(ty: Dtype) -> String {
    match ty {
        Dtype::Int => "Int64".into(),
        Dtype::Float => "Float64".into(),
        Dtype::Decimal { precision, scale } => format!("Decimal({precision}, {scale})"),
        Dtype::Str | Dtype::Json => "String".into(),
        Dtype::Bool => "UInt8".into(),
        Dtype::Date => "Date".into(),
        Dtype::Datetime => "DateTime".into(),
        Dtype::Uuid => "UUID".into(),
    }
}

/// A bound parameter: `$index` (PostgreSQL, 1-based), `?` (MySQL, bound in order of
/// appearance), `{name:Type}` (ClickHouse, bound by name), as a
/// [`Value::Placeholder`]. ClickHouse 18.16 has no query parameters: there the runtime
/// substitutes a typed literal for the placeholder.
///
/// Builders may use a parameter expression more than once ([`block_id`] and
/// [`floor_div`] use the interval twice): MySQL's `?` is then bound once per occurrence,
/// in the order of the rendered text.
pub fn param(d: &dyn Dialect, index: usize, name: &str, ty: Dtype) -> Expr {
    let text = match d.kind() {
        DialectKind::Postgres => format!("${index}"),
        DialectKind::Mysql => "?".to_string(),
        DialectKind::Clickhouse => format!("{{{name}:{}}}", clickhouse_param_type(ty)),
    };
    Expr::value(Value::Placeholder(text))
}

#[cfg(test)]
mod tests;
