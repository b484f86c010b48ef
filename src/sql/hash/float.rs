//! The canonical float text: 15 significant digits of the shortest round-trip decimal.
//!
//! Every dialect prints a double as its shortest round-trip decimal digits, but in
//! different layouts (`1e+20`, `1e20`, `100000000000000000000`; `1.5e-07`, `0.00000015`,
//! `1.5e-7`). The expression built here parses whichever layout the dialect prints into
//! digits and a decimal exponent using integer and plain string operations only, then
//! rounds with integer arithmetic, so every dialect computes the same text:
//!
//! 1. `t` = text of `|x|` with `e+` replaced by `e`, then `e0` appended, so that
//!    `split(t, 'e')` gives the mantissa (part 1) and the exponent `x` (part 2);
//! 2. `ip` = number of characters before the point in the mantissa; `digits` = the
//!    mantissa without its point; `D` = `digits` without leading zeros; `lz` = how many
//!    were removed; so `|x| = 0.D × 10^E` with `E = x + ip − lz`;
//! 3. `N17` = the first 17 characters of `D` right-padded with zeros, as an integer;
//!    `R` = text of `(N17 + 50) DIV 100` (15 digits, or 16 when rounding carried into
//!    `10^15`);
//! 4. result: sign, the first 15 characters of `R`, `e`, and `E + length(R) − 15`.
//!
//! The value is first widened to a double (PostgreSQL `CAST(x AS DOUBLE PRECISION)`, MySQL
//! `CAST(x AS DOUBLE)`, ClickHouse `toFloat64(x)`), so that a single-precision column
//! (`real`, `FLOAT`, `Float32`) hashes its exact value, as a double column holding the
//! same value does: the shortest round-trip text of a single-precision value (`5.0137512e+07`
//! in PostgreSQL, `50137500` in MariaDB) is not the double's.
//!
//! Zero (including `-0.0`) is `0`; NaN is [`NAN`], +∞ [`INF`], −∞ [`NEG_INF`] (PostgreSQL
//! compares with `CAST('NaN' AS DOUBLE PRECISION)` and the `'Infinity'` / `'-Infinity'`
//! casts, where NaN equals NaN; ClickHouse uses `isNaN` / `isInfinite`; MySQL and MariaDB
//! cannot store them and have no such branches). NULL stays NULL. On ClickHouse the
//! parsing works on `assumeNotNull(x)` (arrays cannot be Nullable on 18.16), replaced by 0
//! when it is not finite (ClickHouse evaluates every branch of a `CASE`, and `toInt64`
//! refuses the digits of `nan`), guarded by `x IS NOT NULL`.

use sqlparser::ast::{BinaryOperator, DataType, ExactNumberInfo, Expr};

use super::build::{add, bin, case, cast, func, lit, num, sub};
use super::{char_len, concat, int_div, ltrim_zeros, replace, split_part, substr, to_int, to_text};
use crate::sql::dialect::DialectKind;

/// Seventeen zeros, the padding of step 3.
const ZEROS17: &str = "00000000000000000";

/// The canonical text of a NaN.
pub const NAN: &str = "nan";

/// The canonical text of +∞.
pub const INF: &str = "inf";

/// The canonical text of −∞.
pub const NEG_INF: &str = "-inf";

/// `c` as a double: exact for a single-precision value.
fn as_double(k: DialectKind, c: Expr) -> Expr {
    match k {
        DialectKind::Postgres => cast(c, DataType::DoublePrecision),
        DialectKind::Mysql => cast(c, DataType::Double(ExactNumberInfo::None)),
        DialectKind::Clickhouse => func("toFloat64", vec![c]),
    }
}

/// The `CASE` branches of NaN and ±∞ for the double `c` (none on MySQL, which cannot
/// store them).
fn non_finite(k: DialectKind, c: &Expr) -> Vec<(Expr, Expr)> {
    match k {
        DialectKind::Postgres => {
            let is = |special: &str| {
                bin(
                    c.clone(),
                    BinaryOperator::Eq,
                    cast(lit(special), DataType::DoublePrecision),
                )
            };
            vec![
                (is("NaN"), lit(NAN)),
                (is("Infinity"), lit(INF)),
                (is("-Infinity"), lit(NEG_INF)),
            ]
        }
        DialectKind::Mysql => Vec::new(),
        DialectKind::Clickhouse => {
            let infinite = func("isInfinite", vec![c.clone()]);
            vec![
                (func("isNaN", vec![c.clone()]), lit(NAN)),
                (
                    bin(
                        infinite.clone(),
                        BinaryOperator::And,
                        bin(c.clone(), BinaryOperator::Gt, num(0)),
                    ),
                    lit(INF),
                ),
                (infinite, lit(NEG_INF)),
            ]
        }
    }
}

/// The canonical float text of `c` (see the module docs). NULL when `c` is NULL.
pub(super) fn canonical(k: DialectKind, c: Expr) -> Expr {
    let c = as_double(k, c);
    let abs = match k {
        DialectKind::Postgres => func("abs", vec![c.clone()]),
        DialectKind::Mysql => func("ABS", vec![c.clone()]),
        // ClickHouse arrays cannot be Nullable (`splitByChar` below); the CASE at the end
        // only uses this branch for finite non-NULL values, but ClickHouse evaluates it
        // for every row, so NaN and ±∞ are parsed as 0.
        DialectKind::Clickhouse => {
            let v = func("assumeNotNull", vec![c.clone()]);
            func(
                "abs",
                vec![func(
                    "if",
                    vec![func("isFinite", vec![v.clone()]), v, num(0)],
                )],
            )
        }
    };
    // Step 1.
    let t = concat(k, vec![replace(k, to_text(k, abs), "e+", "e"), lit("e0")]);
    let mantissa = split_part(k, t.clone(), "e", 1);
    let exponent = to_int(k, split_part(k, t, "e", 2));
    // Step 2.
    let ip = char_len(k, split_part(k, mantissa.clone(), ".", 1));
    let digits = replace(k, mantissa, ".", "");
    let d = ltrim_zeros(k, digits.clone());
    let lz = sub(char_len(k, digits), char_len(k, d.clone()));
    let e = sub(add(exponent, ip), lz);
    // Step 3.
    let n17 = to_int(
        k,
        substr(k, concat(k, vec![d, lit(ZEROS17)]), num(1), num(17)),
    );
    let r = to_text(k, int_div(k, add(n17, num(50)), num(100)));
    // Step 4.
    let sign = case(
        vec![(bin(c.clone(), BinaryOperator::Lt, num(0)), lit("-"))],
        Some(lit("")),
    );
    let out = concat(
        k,
        vec![
            sign,
            substr(k, r.clone(), num(1), num(15)),
            lit("e"),
            to_text(k, sub(add(e, char_len(k, r)), num(15))),
        ],
    );
    let mut whens = vec![(bin(c.clone(), BinaryOperator::Eq, num(0)), lit("0"))];
    whens.extend(non_finite(k, &c));
    whens.push((Expr::IsNotNull(Box::new(c)), out));
    case(whens, None)
}
