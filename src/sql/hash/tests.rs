//! Unit tests: the SQL each builder renders, per dialect.

use super::*;
use crate::sql::dialect::{Clickhouse, Mysql, Postgres};

fn dialects() -> [&'static dyn Dialect; 3] {
    [&Postgres, &Mysql, &Clickhouse]
}

fn col(d: &dyn Dialect, name: &str, dtype: Dtype, precision: TimePrecision) -> HashCol {
    HashCol {
        expr: Expr::CompoundIdentifier(vec![d.ident("t"), d.ident(name)]),
        dtype,
        precision,
    }
}

fn all_cols(d: &dyn Dialect, precision: TimePrecision) -> Vec<HashCol> {
    vec![
        col(d, "i", Dtype::Int, precision),
        col(d, "f", Dtype::Float, precision),
        col(
            d,
            "d",
            Dtype::Decimal {
                precision: 18,
                scale: 4,
            },
            precision,
        ),
        col(d, "s", Dtype::Str, precision),
        col(d, "b", Dtype::Bool, precision),
        col(d, "dt", Dtype::Date, precision),
        col(d, "ts", Dtype::Datetime, precision),
        col(d, "u", Dtype::Uuid, precision),
        col(d, "j", Dtype::Json, precision),
    ]
}

/// Every builder's SQL for every dialect, one snapshot per dialect.
#[test]
fn rendered_sql_per_dialect() {
    for d in dialects() {
        let mut out = String::new();
        let mut line = |label: &str, e: &dyn std::fmt::Display| {
            out.push_str(&format!("-- {label}\n{e}\n\n"));
        };
        for c in all_cols(d, TimePrecision::Micros) {
            line(
                &format!("canonical_value {}", c.dtype),
                &canonical_value(d, &c),
            );
        }
        let ts = col(d, "ts", Dtype::Datetime, TimePrecision::Seconds);
        line(
            "canonical_value datetime (seconds)",
            &canonical_value(d, &ts),
        );
        let cols = vec![
            col(d, "i", Dtype::Int, TimePrecision::Micros),
            col(d, "s", Dtype::Str, TimePrecision::Micros),
        ];
        line("canonical_text (i, s)", &canonical_text(d, &cols));
        line("row_md5 (i, s)", &row_md5(d, &cols));
        let h = row_hash(d, &cols);
        line("row_hash (i, s)", &h);
        line("block_sum", &block_sum(d, h));
        line("block_count", &block_count(d));
        let key = order_key(d, &cols[0]);
        let skey = order_key(d, &cols[1]);
        line(
            "block_md5_concat",
            &block_md5_concat(d, row_md5(d, &cols), &[key, skey]),
        );
        let p = |i, name: &str, ty| param(d, i, name, ty);
        line("param", &p(1, "interval", Dtype::Int));
        for (kind, name) in [
            (PartitionKind::Int, "i"),
            (PartitionKind::Float, "f"),
            (PartitionKind::Datetime, "ts"),
            (PartitionKind::Date, "dt"),
            (PartitionKind::Uuid, "u"),
            (PartitionKind::Str, "s"),
        ] {
            let e = Expr::CompoundIdentifier(vec![d.ident("t"), d.ident(name)]);
            let ty = match kind {
                PartitionKind::Float => Dtype::Float,
                _ => Dtype::Int,
            };
            line(
                &format!("block_id {}", kind.name()),
                &block_id(d, e, kind, p(1, "interval", ty)),
            );
        }
        for s in session_setup(d) {
            line("session_setup", &s);
        }
        insta::assert_snapshot!(format!("hash_sql_{}", d.kind().name()), out);
    }
}

#[test]
fn placeholders() {
    assert_eq!(param(&Postgres, 3, "x", Dtype::Int).to_string(), "$3");
    assert_eq!(param(&Mysql, 3, "x", Dtype::Int).to_string(), "?");
    assert_eq!(
        param(&Clickhouse, 3, "start", Dtype::Datetime).to_string(),
        "{start:DateTime}"
    );
    assert_eq!(
        param(
            &Clickhouse,
            1,
            "d",
            Dtype::Decimal {
                precision: 18,
                scale: 4
            }
        )
        .to_string(),
        "{d:Decimal(18, 4)}"
    );
}

#[test]
fn row_hash_matches_the_verified_forms() {
    let s = |d: &dyn Dialect| HashCol {
        expr: Expr::Identifier(d.ident("s")),
        dtype: Dtype::Int,
        precision: TimePrecision::Micros,
    };
    assert_eq!(
        row_hash(&Postgres, &[s(&Postgres)]).to_string(),
        "CAST(CAST(('x' || substr(md5(COALESCE(CAST(\"s\" AS TEXT), 'N')), 1, 16)) AS BIT(64)) AS BIGINT)"
    );
    assert_eq!(
        row_hash(&Mysql, &[s(&Mysql)]).to_string(),
        "CAST(CONV(SUBSTR(MD5(COALESCE(CAST(`s` AS CHAR), 'N')), 1, 16), 16, -10) AS SIGNED)"
    );
    assert_eq!(
        row_hash(&Clickhouse, &[s(&Clickhouse)]).to_string(),
        "reinterpretAsInt64(reverse(unhex(substring(hex(MD5(coalesce(toString(\"s\"), 'N'))), 1, 16))))"
    );
}

#[test]
fn seconds_when_either_side_is_clickhouse() {
    use DialectKind::*;
    assert_eq!(
        TimePrecision::common(Postgres, Mysql),
        TimePrecision::Micros
    );
    assert_eq!(
        TimePrecision::common(Postgres, Clickhouse),
        TimePrecision::Seconds
    );
    assert_eq!(
        TimePrecision::common(Clickhouse, Mysql),
        TimePrecision::Seconds
    );
}

#[test]
fn partition_kinds_parse() {
    for k in [
        PartitionKind::Int,
        PartitionKind::Float,
        PartitionKind::Datetime,
        PartitionKind::Date,
        PartitionKind::Uuid,
        PartitionKind::Str,
    ] {
        assert_eq!(PartitionKind::parse(k.name()), Some(k));
    }
    assert_eq!(PartitionKind::parse("string"), Some(PartitionKind::Str));
    assert_eq!(PartitionKind::parse("timestamp"), None);
}

/// The rendered SQL parses back with sqlparser's dialect of the same database.
#[test]
fn rendered_sql_parses_back() {
    use sqlparser::dialect::{ClickHouseDialect, MySqlDialect, PostgreSqlDialect};
    use sqlparser::parser::Parser;
    for d in dialects() {
        let cols = all_cols(d, TimePrecision::Seconds);
        let m = row_md5(d, &cols);
        let key = order_key(d, &cols[0]);
        let sql = format!(
            "SELECT {}, {}, {}, {} FROM t",
            row_hash(d, &cols),
            block_count(d),
            block_sum(d, row_hash(d, &cols)),
            block_md5_concat(d, m, &[key])
        );
        let parse = |dialect: &dyn sqlparser::dialect::Dialect| {
            Parser::new(dialect)
                .with_recursion_limit(1000)
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_statements())
        };
        let parsed = match d.kind() {
            DialectKind::Postgres => parse(&PostgreSqlDialect {}),
            DialectKind::Mysql => parse(&MySqlDialect {}),
            DialectKind::Clickhouse => parse(&ClickHouseDialect {}),
        };
        assert!(
            parsed.is_ok(),
            "{}: {:?}\n{sql}",
            d.kind().name(),
            parsed.err()
        );
    }
}

/// The ClickHouse canonical text of decimals: `toString` up to 18 digits before the point
/// (`Decimal64` and narrower dtypes, and `decimal(38,38)`), 18-digit limbs beyond (two
/// up to 36 digits, three above).
#[test]
fn clickhouse_decimal_text_by_integer_digits() {
    let d = &Clickhouse;
    let mut out = String::new();
    for (precision, scale) in [(18, 4), (38, 38), (30, 12), (38, 10), (36, 0), (38, 0)] {
        let c = col(
            d,
            "d",
            Dtype::Decimal { precision, scale },
            TimePrecision::Micros,
        );
        out.push_str(&format!(
            "-- decimal({precision},{scale})\n{}\n\n",
            canonical_value(d, &c)
        ));
    }
    for (precision, scale) in [(18, 4), (38, 38), (30, 12)] {
        let c = col(
            d,
            "d",
            Dtype::Decimal { precision, scale },
            TimePrecision::Micros,
        );
        let sql = canonical_value(d, &c).to_string();
        assert!(!sql.contains("toUInt64"), "{sql}");
    }
    insta::assert_snapshot!(out);
}
