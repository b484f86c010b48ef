//! Golden test of the canonical row encoding (SPEC §5).
//!
//! The same table, with one column per dtype and edge-case rows, is created in PostgreSQL,
//! MariaDB, ClickHouse 18.16 (the server) and a current ClickHouse (chdb). Row hashes, row
//! md5s, canonical texts, block ids, block counts and sums, and ordered block md5s are
//! computed in every database with the `synctool::sql::hash` builders and compared with
//! each other and with a pure-Rust reference implemented here, independently of the
//! builders.
//!
//! ClickHouse `DateTime`/`Date` start at 1970 and keep whole seconds, so rows are split:
//! ids below 1000 are the ClickHouse-compatible set (datetimes ≥ 1970; ClickHouse stores
//! them truncated to the second while PostgreSQL and MariaDB keep the microseconds), ids
//! from 1000 on hold pre-1970 dates and datetimes and live only in PostgreSQL and MariaDB.
//! - PostgreSQL vs MariaDB vs reference: every row, at `Micros` and at `Seconds`.
//! - PostgreSQL vs MariaDB vs ClickHouse 18.16 vs chdb vs reference: ids < 1000, at
//!   `Seconds` (so the microseconds PostgreSQL and MariaDB keep are floored away).
//!
//! MariaDB cannot store NaN or ±infinity: the rows holding them (ids 15–17) are left out of
//! its table and of what it is compared with.
//!
//! ClickHouse 18.16 has no query parameters: its queries take the interval as a literal;
//! chdb binds `{interval:Type}` for real, PostgreSQL `$1` and MariaDB `?`.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};
use synctool::sql::dialect::{Clickhouse, Dialect, DialectKind, Mysql, Postgres};
use synctool::sql::hash::{
    block_count, block_id, block_md5_concat, block_sum, canonical_text, canonical_value, order_key,
    param, row_hash, row_md5, HashCol, PartitionKind, TimePrecision,
};
use synctool::types::Dtype;

use crate::support::{self, ChdbStatement, Row};

/// First id of the rows ClickHouse cannot hold.
const PRE_1970: i64 = 1000;

/// Whether MariaDB can hold the row (it has no NaN or infinity).
fn in_maria(r: &R) -> bool {
    r.p.is_finite() && r.f.is_none_or(f64::is_finite)
}

/// The rows of `set` MariaDB holds.
fn maria_rows(set: &[R]) -> Vec<R> {
    set.iter().copied().filter(in_maria).collect()
}

/// One logical row, as the literals every database is loaded with.
#[derive(Clone, Copy)]
struct R {
    id: i64,
    /// Non-NULL string key (ordering and `str` partitions).
    k: &'static str,
    /// Non-NULL float (float partitions).
    p: f64,
    i: Option<i64>,
    f: Option<f64>,
    d: Option<&'static str>,
    s: Option<&'static str>,
    /// Stored latin1 in MariaDB.
    l: Option<&'static str>,
    b: Option<bool>,
    dt: Option<&'static str>,
    ts: Option<&'static str>,
    u: Option<&'static str>,
    j: Option<&'static str>,
}

const EMPTY: R = R {
    id: 0,
    k: "",
    p: 0.0,
    i: None,
    f: None,
    d: None,
    s: None,
    l: None,
    b: None,
    dt: None,
    ts: None,
    u: None,
    j: None,
};

fn rows() -> Vec<R> {
    vec![
        R {
            id: 1,
            k: "a",
            p: 0.0,
            ..EMPTY
        },
        R {
            id: 2,
            k: "A",
            p: -0.5,
            i: Some(0),
            f: Some(0.0),
            d: Some("0.0000"),
            s: Some(""),
            l: Some(""),
            b: Some(false),
            dt: Some("1970-01-01"),
            ts: Some("1970-01-01 00:00:00"),
            u: Some("00000000-0000-0000-0000-000000000000"),
            j: Some("{}"),
        },
        R {
            id: 3,
            k: "a ",
            p: 0.1 + 0.2,
            i: Some(-1),
            f: Some(-0.0),
            d: Some("-12.3400"),
            s: Some("N"),
            l: Some("N"),
            b: Some(true),
            dt: Some("1970-01-02"),
            ts: Some("1970-01-01 00:00:01.999999"),
            u: Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            j: Some("null"),
        },
        R {
            id: 4,
            k: "é",
            p: 7.75,
            i: Some(i64::MAX),
            f: Some(1e20),
            d: Some("1.5000"),
            s: Some("a|b:c'd\\e\"f"),
            l: Some("é|x"),
            b: Some(false),
            dt: Some("2000-02-29"),
            ts: Some("2024-02-29 12:34:56.789012"),
            u: Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            j: Some(r#"{"a":[1,"x|y"],"é":null}"#),
        },
        R {
            id: 5,
            k: "e",
            p: -2.5,
            i: Some(i64::MIN),
            f: Some(0.1 + 0.2),
            d: Some("99999999999999.9999"),
            s: Some("é😀 Ünïcödé"),
            l: Some("ÿ"),
            b: Some(true),
            dt: Some("2100-02-28"),
            ts: Some("2038-01-19 03:14:07.999999"),
            u: Some("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"),
            j: Some(r#"["N","1:N"]"#),
        },
        R {
            id: 6,
            k: "Z",
            p: 1e6,
            i: Some(42),
            f: Some(1.5),
            d: Some("-0.0001"),
            s: Some("1:N"),
            l: Some("|"),
            ts: Some("2001-09-09 01:46:40"),
            ..EMPTY
        },
        R {
            id: 7,
            k: "😀",
            p: 123.456,
            i: Some(-42),
            f: Some(-2.5e-7),
            d: Some("100.0000"),
            s: Some("\t\n\r ' '' \\\\ "),
            ..EMPTY
        },
        R {
            id: 8,
            k: "ab",
            p: -7.25,
            f: Some(123456789012345680.0),
            d: Some("-99999999999999.9999"),
            ..EMPTY
        },
        R {
            id: 9,
            k: "b",
            p: 2.5,
            f: Some(1.7976931348623157e308),
            ..EMPTY
        },
        // ClickHouse 18.16 reads subnormal literals as 0: the smallest normal here, a
        // subnormal in the PostgreSQL/MariaDB-only rows.
        R {
            id: 10,
            k: "bb",
            p: 5.0,
            f: Some(-2.2250738585072014e-308),
            ..EMPTY
        },
        R {
            id: 11,
            k: "c",
            p: 0.25,
            f: Some(0.3),
            ..EMPTY
        },
        R {
            id: 12,
            k: "cc",
            p: 9.5,
            f: Some(1e15),
            ..EMPTY
        },
        R {
            id: 13,
            k: "d",
            p: 11.0,
            f: Some(123456.789),
            ..EMPTY
        },
        R {
            id: 14,
            k: "dd",
            p: -11.0,
            f: Some(1e23),
            ..EMPTY
        },
        // NaN and ±∞: PostgreSQL and ClickHouse only (MariaDB cannot store them).
        R {
            id: 15,
            k: "n",
            p: 12.5,
            f: Some(f64::NAN),
            ..EMPTY
        },
        R {
            id: 16,
            k: "nn",
            p: -12.5,
            f: Some(f64::INFINITY),
            ..EMPTY
        },
        R {
            id: 17,
            k: "o",
            p: 13.0,
            f: Some(f64::NEG_INFINITY),
            ..EMPTY
        },
        // Pre-1970: PostgreSQL and MariaDB only.
        R {
            id: PRE_1970 + 1,
            k: "f",
            p: -999999.5,
            i: Some(-7),
            f: Some(-1.5),
            dt: Some("1969-07-20"),
            ts: Some("1969-12-31 23:59:59.500001"),
            ..EMPTY
        },
        R {
            id: PRE_1970 + 2,
            k: "F",
            p: -3.0,
            i: Some(1999),
            dt: Some("1900-03-01"),
            ts: Some("1900-01-01 00:00:00.000001"),
            ..EMPTY
        },
        R {
            id: PRE_1970 + 3,
            k: "é2",
            p: -3.5,
            i: Some(-1000),
            dt: Some("1969-12-31"),
            ts: Some("1969-12-31 23:59:59"),
            ..EMPTY
        },
        R {
            id: PRE_1970 + 4,
            k: "g",
            p: 3.5,
            i: Some(-1001),
            f: Some(-5e-324),
            ts: Some("1969-12-31 23:59:59.999999"),
            ..EMPTY
        },
    ]
}

// ---------------------------------------------------------------------------------------
// The pure-Rust reference.

fn ref_float(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format!("{:e}", x.abs());
    let (m, e) = s.split_once('e').expect("{:e} has an exponent");
    let digits: String = m.chars().filter(|c| *c != '.').collect();
    let exp: i64 = e.parse().expect("exponent");
    let padded = format!("{digits}00000000000000000");
    let n17: u64 = padded[..17].parse().expect("17 digits");
    let r = ((n17 + 50) / 100).to_string();
    let sign = if x < 0.0 { "-" } else { "" };
    format!("{sign}{}e{}", &r[..15], exp + 1 + r.len() as i64 - 15)
}

fn ref_decimal(s: &str) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    let t = s.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".into()
    } else {
        t.to_string()
    }
}

fn ref_str(s: &str) -> String {
    format!("{}:{s}", s.chars().count())
}

fn micros(ts: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f")
        .expect("datetime literal")
        .and_utc()
        .timestamp_micros()
}

fn days(dt: &str) -> i64 {
    let d = chrono::NaiveDate::parse_from_str(dt, "%Y-%m-%d").expect("date literal");
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    (d - epoch).num_days()
}

fn ref_ts(ts: &str, p: TimePrecision) -> i64 {
    let us = micros(ts);
    match p {
        TimePrecision::Micros => us,
        TimePrecision::Seconds => us.div_euclid(1_000_000) * 1_000_000,
    }
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "N".to_string())
}

fn ref_text(r: &R, p: TimePrecision) -> String {
    [
        ref_str(r.k),
        ref_float(r.p),
        opt(r.i, |v| v.to_string()),
        opt(r.f, ref_float),
        opt(r.d, ref_decimal),
        opt(r.s, ref_str),
        opt(r.l, ref_str),
        opt(r.b, |v| if v { "1".into() } else { "0".into() }),
        opt(r.dt, |v| days(v).to_string()),
        opt(r.ts, |v| ref_ts(v, p).to_string()),
        opt(r.u, |v| v.to_lowercase()),
        opt(r.j, ref_str),
    ]
    .join("|")
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn ref_hash(s: &str) -> i64 {
    let d = Md5::digest(s.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// Expected `(id, canonical text hex, row hash, row md5)` per row.
fn ref_rows(rows: &[R], p: TimePrecision) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            let t = ref_text(r, p);
            vec![
                Some(r.id.to_string()),
                Some(hex::encode(t.as_bytes())),
                Some(ref_hash(&t).to_string()),
                Some(md5_hex(&t)),
            ]
        })
        .collect()
}

/// How each partition kind is exercised: the column and the interval.
#[derive(Clone, Copy)]
struct Part {
    kind: PartitionKind,
    column: &'static str,
    int_interval: i64,
    float_interval: f64,
}

const PARTS: [Part; 6] = [
    Part {
        kind: PartitionKind::Int,
        column: "i",
        int_interval: 1000,
        float_interval: 0.0,
    },
    Part {
        kind: PartitionKind::Float,
        column: "p",
        int_interval: 0,
        float_interval: 2.5,
    },
    Part {
        kind: PartitionKind::Datetime,
        column: "ts",
        int_interval: 86400,
        float_interval: 0.0,
    },
    Part {
        kind: PartitionKind::Date,
        column: "dt",
        int_interval: 7,
        float_interval: 0.0,
    },
    Part {
        kind: PartitionKind::Uuid,
        column: "u",
        int_interval: 1,
        float_interval: 0.0,
    },
    Part {
        kind: PartitionKind::Str,
        column: "k",
        int_interval: 2,
        float_interval: 0.0,
    },
];

fn ref_block(r: &R, part: Part) -> Option<String> {
    let iv = part.int_interval;
    match part.kind {
        PartitionKind::Int => r.i.map(|v| v.div_euclid(iv).to_string()),
        PartitionKind::Float => Some(((r.p / part.float_interval).floor() as i64).to_string()),
        PartitionKind::Datetime => {
            r.ts.map(|v| micros(v).div_euclid(1_000_000).div_euclid(iv).to_string())
        }
        PartitionKind::Date => r.dt.map(|v| days(v).div_euclid(iv).to_string()),
        PartitionKind::Uuid => Some(md5_hex(&opt(r.u, |v| v.to_lowercase()))[..iv as usize].into()),
        PartitionKind::Str => Some(md5_hex(&ref_str(r.k))[..iv as usize].into()),
    }
}

/// Expected `(block, count, sum, md5 by id, md5 by k)` per block, sorted.
fn ref_blocks(rows: &[R], p: TimePrecision, part: Part) -> Vec<Row> {
    let mut groups: BTreeMap<Option<String>, Vec<&R>> = BTreeMap::new();
    for r in rows {
        groups.entry(ref_block(r, part)).or_default().push(r);
    }
    let mut out: Vec<Row> = groups
        .into_iter()
        .map(|(blk, rs)| {
            let texts: Vec<(i64, &str, String)> = rs
                .iter()
                .map(|r| (r.id, r.k, md5_hex(&ref_text(r, p))))
                .collect();
            let sum: i128 = rs.iter().map(|r| ref_hash(&ref_text(r, p)) as i128).sum();
            let mut by_id = texts.clone();
            by_id.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
            let mut by_k = texts.clone();
            by_k.sort_by(|a, b| (a.1.as_bytes(), &a.2).cmp(&(b.1.as_bytes(), &b.2)));
            let cat = |v: &[(i64, &str, String)]| {
                md5_hex(&v.iter().map(|t| t.2.as_str()).collect::<String>())
            };
            vec![
                blk,
                Some(rs.len().to_string()),
                Some(sum.to_string()),
                Some(cat(&by_id)),
                Some(cat(&by_k)),
            ]
        })
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// Tables and literals per database.

fn q_std(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn q_ch(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn lit_opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "NULL".to_string())
}

/// Which engine a table lives in.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Db {
    Pg,
    Maria,
    Ch18,
    Chdb,
}

impl Db {
    fn dialect(self) -> &'static dyn Dialect {
        match self {
            Db::Pg => &Postgres,
            Db::Maria => &Mysql,
            Db::Ch18 | Db::Chdb => &Clickhouse,
        }
    }
}

fn create_sql(db: Db, table: &str) -> String {
    match db {
        Db::Pg => format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, k TEXT NOT NULL, p DOUBLE PRECISION NOT NULL, \
             i BIGINT, f DOUBLE PRECISION, d NUMERIC(18,4), s TEXT, l TEXT, b BOOLEAN, dt DATE, \
             ts TIMESTAMP(6), u UUID, j JSON)"
        ),
        Db::Maria => format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, k VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL, \
             p DOUBLE NOT NULL, i BIGINT, f DOUBLE, d DECIMAL(18,4), s TEXT CHARACTER SET utf8mb4, \
             l TEXT CHARACTER SET latin1, b BOOLEAN, dt DATE, ts DATETIME(6), u CHAR(36), j JSON) \
             DEFAULT CHARSET = utf8mb4"
        ),
        Db::Ch18 | Db::Chdb => format!(
            "CREATE TABLE {table} (id Int64, k String, p Float64, i Nullable(Int64), \
             f Nullable(Float64), d Nullable(Decimal(18, 4)), s Nullable(String), \
             l Nullable(String), b Nullable({}), dt Nullable(Date), ts Nullable(DateTime('UTC')), \
             u Nullable(UUID), j Nullable(String)) ENGINE = MergeTree ORDER BY id",
            if db == Db::Chdb { "Bool" } else { "UInt8" }
        ),
    }
}

fn insert_sql(db: Db, table: &str, rows: &[R]) -> String {
    let ch = matches!(db, Db::Ch18 | Db::Chdb);
    let q = |s: &str| if ch { q_ch(s) } else { q_std(s) };
    let float = |x: f64| match db {
        Db::Pg => format!("CAST('{x:e}' AS DOUBLE PRECISION)"),
        _ if x.is_nan() => "nan".to_string(),
        _ => format!("{x:e}"),
    };
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            let ts = r.ts.map(|t| if ch { &t[..19] } else { t });
            let fields = [
                r.id.to_string(),
                q(r.k),
                float(r.p),
                lit_opt(r.i, |v| v.to_string()),
                lit_opt(r.f, float),
                lit_opt(r.d, |v| if db == Db::Pg { q(v) } else { v.to_string() }),
                lit_opt(r.s, q),
                lit_opt(r.l, q),
                lit_opt(r.b, |v| match (db, v) {
                    (Db::Pg, true) => "TRUE".into(),
                    (Db::Pg, false) => "FALSE".into(),
                    (_, v) => u8::from(v).to_string(),
                }),
                lit_opt(r.dt, q),
                lit_opt(ts, q),
                lit_opt(r.u, q),
                lit_opt(r.j, q),
            ];
            format!("({})", fields.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} (id, k, p, i, f, d, s, l, b, dt, ts, u, j) VALUES {}",
        values.join(", ")
    )
}

fn hash_cols(d: &dyn Dialect, p: TimePrecision) -> Vec<HashCol> {
    let c = |name: &str, dtype| HashCol {
        expr: Expr::Identifier(d.ident(name)),
        dtype,
        precision: p,
    };
    vec![
        c("k", Dtype::Str),
        c("p", Dtype::Float),
        c("i", Dtype::Int),
        c("f", Dtype::Float),
        c(
            "d",
            Dtype::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        c("s", Dtype::Str),
        c("l", Dtype::Str),
        c("b", Dtype::Bool),
        c("dt", Dtype::Date),
        c("ts", Dtype::Datetime),
        c("u", Dtype::Uuid),
        c("j", Dtype::Json),
    ]
}

fn text(k: DialectKind, e: &dyn std::fmt::Display) -> String {
    match k {
        DialectKind::Postgres => format!("CAST({e} AS TEXT)"),
        DialectKind::Mysql => format!("CAST({e} AS CHAR)"),
        DialectKind::Clickhouse => format!("toString({e})"),
    }
}

fn hex_text(k: DialectKind, e: &dyn std::fmt::Display) -> String {
    match k {
        DialectKind::Postgres => format!("encode(convert_to({e}, 'UTF8'), 'hex')"),
        DialectKind::Mysql => format!("LOWER(HEX({e}))"),
        DialectKind::Clickhouse => format!("lower(hex({e}))"),
    }
}

fn where_clause(ch_only: bool) -> String {
    if ch_only {
        format!(" WHERE id < {PRE_1970}")
    } else {
        String::new()
    }
}

fn rows_query(db: Db, table: &str, p: TimePrecision, ch_only: bool) -> String {
    let d = db.dialect();
    let k = d.kind();
    let cols = hash_cols(d, p);
    format!(
        "SELECT {} AS id_text, {}, {}, {} FROM {table}{} ORDER BY id",
        text(k, &"id"),
        hex_text(k, &canonical_text(d, &cols)),
        text(k, &row_hash(d, &cols)),
        row_md5(d, &cols),
        where_clause(ch_only)
    )
}

/// The block query, and the interval parameter's ClickHouse name and value text.
fn blocks_query(db: Db, table: &str, p: TimePrecision, ch_only: bool, part: Part) -> String {
    let d = db.dialect();
    let k = d.kind();
    let cols = hash_cols(d, p);
    let is_float = part.kind == PartitionKind::Float;
    let interval = if db == Db::Ch18 {
        // 18.16 has no query parameters: the runtime inlines a literal there.
        if is_float {
            Expr::value(Value::Number(format!("{:?}", part.float_interval), false))
        } else {
            Expr::value(Value::Number(part.int_interval.to_string(), false))
        }
    } else {
        param(
            d,
            1,
            "interval",
            if is_float { Dtype::Float } else { Dtype::Int },
        )
    };
    let key = |name: &str, dtype| {
        order_key(
            d,
            &HashCol {
                expr: Expr::Identifier(d.ident(name)),
                dtype,
                precision: p,
            },
        )
    };
    let blk = block_id(
        d,
        Expr::Identifier(d.ident(part.column)),
        part.kind,
        interval,
    );
    format!(
        "SELECT {} AS blk, {}, {}, {}, {} FROM {table}{} GROUP BY blk",
        text(k, &blk),
        text(k, &block_count(d)),
        block_sum(d, row_hash(d, &cols)),
        block_md5_concat(d, row_md5(d, &cols), &[key("id", Dtype::Int)]),
        block_md5_concat(d, row_md5(d, &cols), &[key("k", Dtype::Str)]),
        where_clause(ch_only)
    )
}

/// Counts the placeholders of a MariaDB statement: `?` is bound once per occurrence.
fn placeholders(sql: &str) -> usize {
    struct Count(usize);
    impl VisitorMut for Count {
        type Break = ();
        fn pre_visit_value(&mut self, v: &mut Value) -> std::ops::ControlFlow<()> {
            if matches!(v, Value::Placeholder(_)) {
                self.0 += 1;
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut stmts = sqlparser::parser::Parser::new(&sqlparser::dialect::MySqlDialect {})
        .with_recursion_limit(2000)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .unwrap_or_else(|e| panic!("the MariaDB block query does not parse back: {e}"));
    let mut c = Count(0);
    let _ = stmts.visit(&mut c);
    c.0
}

/// Asserts equal result sets, naming the first differing row.
fn same_rows(got: &[Row], expected: &[Row], what: &str) {
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g, e, "first differing row: {what}");
    }
    assert_eq!(got.len(), expected.len(), "row count: {what}");
}

fn sorted(mut v: Vec<Row>) -> Vec<Row> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn canonical_hashes_agree_across_postgres_mariadb_clickhouse_and_reference() {
    let all = rows();
    let ch_rows: Vec<R> = all.iter().copied().filter(|r| r.id < PRE_1970).collect();
    let name = support::unique("hash_golden");

    // PostgreSQL: a scratch schema.
    let pg = support::pg().await;
    let schema = name.clone();
    let pg_table = format!("{schema}.t");
    pg.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    // MariaDB: a scratch table in `test`.
    let mut my = support::mysql().await;
    let my_table = name.clone();
    // ClickHouse 18.16.
    let ch = support::clickhouse().await;
    let ch_version = ch.version().await;
    let ch_table = format!("default.{name}");

    let result = std::panic::AssertUnwindSafe(async {
        pg.batch_execute(&create_sql(Db::Pg, &pg_table))
            .await
            .expect("PG create");
        pg.batch_execute(&insert_sql(Db::Pg, &pg_table, &all))
            .await
            .expect("PG insert");
        support::mysql_exec(&mut my, &create_sql(Db::Maria, &my_table)).await;
        support::mysql_exec(
            &mut my,
            &insert_sql(Db::Maria, &my_table, &maria_rows(&all)),
        )
        .await;
        ch.exec(&create_sql(Db::Ch18, &ch_table)).await;
        ch.exec(&insert_sql(Db::Ch18, &ch_table, &ch_rows)).await;

        // Rows: every row at both precisions in PostgreSQL and MariaDB.
        for (p, ch_only) in [
            (TimePrecision::Micros, false),
            (TimePrecision::Seconds, false),
            (TimePrecision::Seconds, true),
        ] {
            let set: Vec<R> = if ch_only {
                ch_rows.clone()
            } else {
                all.clone()
            };
            let expected = ref_rows(&set, p);
            let got_pg =
                support::pg_rows(&pg, &rows_query(Db::Pg, &pg_table, p, ch_only), &[]).await;
            same_rows(
                &got_pg,
                &expected,
                &format!("PostgreSQL rows at {p:?} (ch_only={ch_only})"),
            );
            let got_my = support::mysql_rows(
                &mut my,
                &rows_query(Db::Maria, &my_table, p, ch_only),
                mysql_async::Params::Empty,
            )
            .await;
            same_rows(
                &got_my,
                &ref_rows(&maria_rows(&set), p),
                &format!("MariaDB rows at {p:?} (ch_only={ch_only})"),
            );
            if ch_only {
                let got_ch = ch.rows(&rows_query(Db::Ch18, &ch_table, p, false)).await;
                same_rows(
                    &got_ch,
                    &expected,
                    &format!("ClickHouse {ch_version} rows at {p:?}"),
                );
            }
        }

        // Blocks, per partition kind.
        let mut chdb_statements = vec![
            ChdbStatement {
                sql: create_sql(Db::Chdb, "t"),
                params: vec![],
            },
            ChdbStatement {
                sql: insert_sql(Db::Chdb, "t", &ch_rows),
                params: vec![],
            },
            ChdbStatement {
                sql: rows_query(Db::Chdb, "t", TimePrecision::Seconds, false),
                params: vec![],
            },
        ];
        let mut chdb_expected = vec![ref_rows(&ch_rows, TimePrecision::Seconds)];
        for part in PARTS {
            let is_float = part.kind == PartitionKind::Float;
            for (p, ch_only) in [
                (TimePrecision::Micros, false),
                (TimePrecision::Seconds, false),
                (TimePrecision::Seconds, true),
            ] {
                let set: Vec<R> = if ch_only {
                    ch_rows.clone()
                } else {
                    all.clone()
                };
                let expected = ref_blocks(&set, p, part);
                let what = format!("{} blocks at {p:?} (ch_only={ch_only})", part.kind.name());

                let sql = blocks_query(Db::Pg, &pg_table, p, ch_only, part);
                let (iv_i64, iv_f64, iv_i32) = (
                    part.int_interval,
                    part.float_interval,
                    part.int_interval as i32,
                );
                let pg_param: &(dyn tokio_postgres::types::ToSql + Sync) = match part.kind {
                    PartitionKind::Float => &iv_f64,
                    PartitionKind::Uuid | PartitionKind::Str => &iv_i32,
                    _ => &iv_i64,
                };
                let got = sorted(support::pg_rows(&pg, &sql, &[pg_param]).await);
                same_rows(&got, &expected, &format!("PostgreSQL {what}\n{sql}"));

                let sql = blocks_query(Db::Maria, &my_table, p, ch_only, part);
                let value = if is_float {
                    mysql_async::Value::Double(part.float_interval)
                } else {
                    mysql_async::Value::Int(part.int_interval)
                };
                let params = mysql_async::Params::Positional(vec![value; placeholders(&sql)]);
                let got = sorted(support::mysql_rows(&mut my, &sql, params).await);
                same_rows(
                    &got,
                    &ref_blocks(&maria_rows(&set), p, part),
                    &format!("MariaDB {what}\n{sql}"),
                );

                if ch_only {
                    let sql = blocks_query(Db::Ch18, &ch_table, p, false, part);
                    let got = sorted(ch.rows(&sql).await);
                    same_rows(
                        &got,
                        &expected,
                        &format!("ClickHouse {ch_version} {what}\n{sql}"),
                    );
                    let value = if is_float {
                        format!("{:?}", part.float_interval)
                    } else {
                        part.int_interval.to_string()
                    };
                    chdb_statements.push(ChdbStatement {
                        sql: blocks_query(Db::Chdb, "t", p, false, part),
                        params: vec![("interval".into(), value)],
                    });
                    chdb_expected.push(expected);
                }
            }
        }

        // Current ClickHouse (chdb): the same table, rows and blocks.
        let outputs = support::chdb(&chdb_statements);
        assert_eq!(outputs.len(), chdb_statements.len());
        for (i, expected) in chdb_expected.into_iter().enumerate() {
            let got = outputs[i + 2].clone();
            let got = if i == 0 { got } else { sorted(got) };
            same_rows(
                &got,
                &expected,
                &format!("chdb (current ClickHouse)\n{}", chdb_statements[i + 2].sql),
            );
        }
    });
    let outcome = futures_catch(result).await;
    let pg_drop = format!("DROP SCHEMA {schema} CASCADE");
    clean_up_then_resume(outcome, &pg, &pg_drop, &mut my, &my_table, &ch, &ch_table).await;
}

/// Drops a test's tables whatever happened (`pg_drop`: the PostgreSQL statement), then
/// raises again the panic `outcome` caught, if any.
async fn clean_up_then_resume(
    outcome: Result<(), Box<dyn std::any::Any + Send>>,
    pg: &tokio_postgres::Client,
    pg_drop: &str,
    my: &mut mysql_async::Conn,
    my_table: &str,
    ch: &support::ClickHouse,
    ch_table: &str,
) {
    let _ = pg.batch_execute(pg_drop).await;
    support::mysql_exec(my, &format!("DROP TABLE IF EXISTS {my_table}")).await;
    ch.exec(&format!("DROP TABLE IF EXISTS {ch_table}")).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs a future, catching a panic so that cleanup still happens.
async fn futures_catch<F: std::future::Future<Output = ()>>(
    f: std::panic::AssertUnwindSafe<F>,
) -> Result<(), Box<dyn std::any::Any + Send>> {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct CatchUnwind<F>(Pin<Box<F>>);
    impl<F: std::future::Future<Output = ()>> std::future::Future for CatchUnwind<F> {
        type Output = Result<(), Box<dyn std::any::Any + Send>>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let fut = self.0.as_mut();
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
                Err(e) => Poll::Ready(Err(e)),
            }
        }
    }
    CatchUnwind(Box::pin(f.0)).await
}

/// The verified facts this encoding relies on, re-checked on the real servers.
#[tokio::test(flavor = "multi_thread")]
async fn verified_facts_still_hold() {
    const ABC: &str = "-8070080442485551184";
    let pg = support::pg().await;
    let got = support::pg_rows(
        &pg,
        "SELECT CAST(('x' || substr(md5('abc'), 1, 16))::bit(64)::bigint AS TEXT), \
         CAST(length('é') AS TEXT), (1e20::float8)::text, concat('a', NULL, 'b')",
        &[],
    )
    .await;
    assert_eq!(
        got,
        vec![vec![
            Some(ABC.into()),
            Some("1".into()),
            Some("1e+20".into()),
            Some("ab".into())
        ]]
    );

    let mut my = support::mysql().await;
    let got = support::mysql_rows(
        &mut my,
        "SELECT CAST(CAST(CONV(SUBSTR(MD5('abc'), 1, 16), 16, 10) AS SIGNED) AS CHAR), \
         CAST(CHAR_LENGTH('é') AS CHAR), CAST(1e20 AS CHAR), CAST(('a' = 'A') AS CHAR), \
         CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', '1969-12-31 23:59:59.5') AS CHAR)",
        mysql_async::Params::Empty,
    )
    .await;
    assert_eq!(
        got,
        vec![vec![
            Some(ABC.into()),
            Some("1".into()),
            Some("1e20".into()),
            Some("1".into()),
            Some("-500000".into())
        ]]
    );

    let ch = support::clickhouse().await;
    let got = ch
        .rows(
            "SELECT toString(reinterpretAsInt64(reverse(unhex(substring(hex(MD5('abc')), 1, 16))))), \
             toString(length('é')), toString(lengthUTF8('é')), toString(1e20), \
             toString(sum(toInt64(x))), toString(sum(toDecimal128(toInt64(x), 0))), toString(CAST(1.5 AS Decimal(18, 2))) \
             FROM (SELECT arrayJoin([9223372036854775807, 9223372036854775807]) AS x)",
        )
        .await;
    assert_eq!(
        got,
        vec![vec![
            Some(ABC.into()),
            Some("2".into()),
            Some("1".into()),
            Some("100000000000000000000".into()),
            Some("-2".into()),
            Some("18446744073709551614".into()),
            Some("1.50".into()),
        ]],
        "ClickHouse {} no longer behaves as documented in notes/cross-dialect-hashing.md",
        ch.version().await
    );
    let out = support::chdb(&[ChdbStatement {
        sql: "SELECT toString(CAST(1.5 AS Decimal(18, 2))), toString(1e20)".into(),
        params: vec![],
    }]);
    assert_eq!(
        out[0],
        vec![vec![
            Some("1.5".into()),
            Some("100000000000000000000".into())
        ]]
    );
}

/// A block sum whose decimal digits ClickHouse 18.16's `toString(Decimal128)` garbles
/// (a NUL byte for the `0` of `-10472…`) reads back right from the generated expression,
/// on the server here and on a current release.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_block_sums_keep_every_digit() {
    let d = &Clickhouse;
    let sum = block_sum(d, Expr::Identifier(d.ident("h")));
    // 113 × (−2^63 + 1) − 5009427628534067063 = −1047250467793123733254.
    let sql = format!(
        "SELECT {sum} FROM (SELECT toInt64(-9223372036854775807) AS h FROM system.numbers LIMIT 113 \
         UNION ALL SELECT toInt64(-5009427628534067063) AS h)"
    );
    let expected = vec![vec![Some("-1047250467793123733254".to_string())]];
    assert_on_both_clickhouses(&sql, &expected).await;
}

/// The wide decimal columns of [`wide_decimals_hash_alike_everywhere`]: name, precision,
/// scale.
const WIDE_DECIMALS: [(&str, u8, u8); 5] = [
    ("d38_10", 38, 10),
    ("d38_0", 38, 0),
    ("d38_19", 38, 19),
    ("d20_0", 20, 0),
    ("d38_38", 38, 38),
];

/// The rows of [`wide_decimals_hash_alike_everywhere`]: id, the index in
/// [`WIDE_DECIMALS`] of the one non-NULL column, its value (each value also negated). The
/// first is one ClickHouse 18.16's `toString` garbles (`9\0\0\0…`).
fn wide_decimal_rows() -> Vec<(i64, usize, String)> {
    let values: [(usize, &[&str]); 5] = [
        (
            0,
            &[
                "9999999999999999999999999999.9999999999",
                "0",
                "0.5",
                "1.25",
                "0.0000000001",
                "999999999999999999",
                "999999999999999999.9999999999",
                "1000000000000000000",
                "1000000000000000000.0000000001",
                "1999999999999999999.5",
                "12345678901234567890.5",
                "18446744073709551616",
                "100000000000000000000",
                "1000000000000000000000000000.0000000001",
                "1047250467793123733254",
            ],
        ),
        (
            1,
            &[
                "99999999999999999999999999999999999999",
                "0",
                "1",
                "999999999999999999",
                "1000000000000000000",
                "999999999999999999999999999999999999",
                "1000000000000000000000000000000000000",
                "1000000000000000001000000000000000001",
                "10000000000000000000000000000000000000",
                "12345678901234567890123456789012345678",
            ],
        ),
        (
            2,
            &[
                "9999999999999999999.9999999999999999999",
                "1000000000000000000.5",
                "999999999999999999.9999999999999999999",
                "0.0000000000000000001",
            ],
        ),
        (
            3,
            &[
                "99999999999999999999",
                "10000000000000000000",
                "1000000000000000000",
                "999999999999999999",
            ],
        ),
        (
            4,
            &[
                "0.99999999999999999999999999999999999999",
                "0.00000000000000000000000000000000000001",
                "0.5",
                "0",
            ],
        ),
    ];
    let mut rows = Vec::new();
    for (col, vs) in values {
        for v in vs {
            rows.push((col, v.to_string()));
            if *v != "0" {
                rows.push((col, format!("-{v}")));
            }
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(i, (col, v))| (i as i64 + 1, col, v))
        .collect()
}

/// Decimals of 38 digits (integer parts of up to 38 digits, and down to `Decimal(38, 38)`)
/// have the same canonical text and row md5 in PostgreSQL, MariaDB, ClickHouse 18.16 and
/// a current ClickHouse, and the reference's. ClickHouse 18.16's `toString` of a
/// `Decimal128` table column with a large integer part writes wrong bytes, and over many
/// rows can crash the server: its rows are first queried one at a time, so that an
/// expression that still formats such a value fails here on one row before the whole
/// table is read.
#[tokio::test(flavor = "multi_thread")]
async fn wide_decimals_hash_alike_everywhere() {
    let rows = wide_decimal_rows();
    let name = support::unique("wide_decimals");
    let values = |quote: bool| -> String {
        let mut out: Vec<String> = rows
            .iter()
            .map(|(id, col, v)| {
                let fields: Vec<String> = (0..WIDE_DECIMALS.len())
                    .map(|c| match (c == *col, quote) {
                        (false, _) => "NULL".to_string(),
                        (true, true) => q_std(v),
                        (true, false) => v.clone(),
                    })
                    .collect();
                format!("({id}, {})", fields.join(", "))
            })
            .collect();
        let nulls = vec!["NULL"; WIDE_DECIMALS.len()].join(", ");
        out.push(format!("({}, {nulls})", rows.len() + 1));
        out.join(", ")
    };
    let expected: Vec<Row> = rows
        .iter()
        .map(|(id, col, v)| (*id, Some((*col, v.as_str()))))
        .chain(std::iter::once((rows.len() as i64 + 1, None)))
        .map(|(id, value)| {
            let texts: Vec<String> = (0..WIDE_DECIMALS.len())
                .map(|c| match value {
                    Some((col, v)) if col == c => ref_decimal(v),
                    _ => "N".to_string(),
                })
                .collect();
            let mut row = vec![Some(id.to_string())];
            row.extend(texts.iter().map(|t| Some(t.clone())));
            row.push(Some(md5_hex(&texts.join("|"))));
            row
        })
        .collect();
    let cols = |d: &dyn Dialect| -> Vec<HashCol> {
        WIDE_DECIMALS
            .iter()
            .map(|(c, precision, scale)| HashCol {
                expr: Expr::Identifier(d.ident(c)),
                dtype: Dtype::Decimal {
                    precision: *precision,
                    scale: *scale,
                },
                precision: TimePrecision::Seconds,
            })
            .collect()
    };
    let query = |db: Db, table: &str, id: Option<i64>| -> String {
        let d = db.dialect();
        let cols = cols(d);
        let texts: Vec<String> = cols
            .iter()
            .map(|c| canonical_value(d, c).to_string())
            .collect();
        format!(
            "SELECT {} AS id_text, {}, {} FROM {table}{} ORDER BY id",
            text(d.kind(), &"id"),
            texts.join(", "),
            row_md5(d, &cols),
            id.map(|id| format!(" WHERE id = {id}")).unwrap_or_default()
        )
    };
    let column_list = |ty: &dyn Fn(u8, u8) -> String| -> String {
        WIDE_DECIMALS
            .iter()
            .map(|(c, p, s)| format!("{c} {}", ty(*p, *s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ch_create = |t: &str| {
        format!(
            "CREATE TABLE {t} (id Int64, {}) ENGINE = MergeTree ORDER BY id",
            column_list(&|p, s| format!("Nullable(Decimal({p}, {s}))"))
        )
    };

    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let ch = support::clickhouse().await;
    let ch_version = ch.version().await;
    let (pg_table, my_table, ch_table) = (
        format!("public.{name}"),
        name.clone(),
        format!("default.{name}"),
    );
    let result = std::panic::AssertUnwindSafe(async {
        pg.batch_execute(&format!(
            "CREATE TABLE {pg_table} (id BIGINT, {}); INSERT INTO {pg_table} VALUES {}",
            column_list(&|p, s| format!("NUMERIC({p},{s})")),
            values(true)
        ))
        .await
        .expect("PG table");
        let got = support::pg_rows(&pg, &query(Db::Pg, &pg_table, None), &[]).await;
        same_rows(&got, &expected, "PostgreSQL wide decimals");

        support::mysql_exec(
            &mut my,
            &format!(
                "CREATE TABLE {my_table} (id BIGINT, {})",
                column_list(&|p, s| format!("DECIMAL({p},{s})"))
            ),
        )
        .await;
        support::mysql_exec(
            &mut my,
            &format!("INSERT INTO {my_table} VALUES {}", values(false)),
        )
        .await;
        let got = support::mysql_rows(
            &mut my,
            &query(Db::Maria, &my_table, None),
            mysql_async::Params::Empty,
        )
        .await;
        same_rows(&got, &expected, "MariaDB wide decimals");

        ch.exec(&ch_create(&ch_table)).await;
        ch.exec(&format!("INSERT INTO {ch_table} VALUES {}", values(false)))
            .await;
        for row in &expected {
            let id: i64 = row[0].as_deref().and_then(|s| s.parse().ok()).expect("id");
            let sql = query(Db::Ch18, &ch_table, Some(id));
            let got = ch.rows(&sql).await;
            same_rows(
                &got,
                std::slice::from_ref(row),
                &format!("ClickHouse {ch_version} wide decimals, row {id} alone\n{sql}"),
            );
        }
        let got = ch.rows(&query(Db::Ch18, &ch_table, None)).await;
        same_rows(
            &got,
            &expected,
            &format!("ClickHouse {ch_version} wide decimals, whole table"),
        );

        let out = support::chdb(&[
            ChdbStatement {
                sql: ch_create("t"),
                params: vec![],
            },
            ChdbStatement {
                sql: format!("INSERT INTO t VALUES {}", values(false)),
                params: vec![],
            },
            ChdbStatement {
                sql: query(Db::Chdb, "t", None),
                params: vec![],
            },
        ]);
        same_rows(&out[2], &expected, "chdb wide decimals");
    });
    let outcome = futures_catch(result).await;
    let pg_drop = format!("DROP TABLE IF EXISTS {pg_table}");
    clean_up_then_resume(outcome, &pg, &pg_drop, &mut my, &my_table, &ch, &ch_table).await;
}

/// `float` partition blocks of a decimal column and of subnormal, zero and ordinary doubles
/// are the same in PostgreSQL, MariaDB, ClickHouse 18.16 and a current ClickHouse, and
/// match the IEEE reference `⌊x / interval⌋`: ClickHouse divides a `Decimal` by a `Float64`
/// (it has no such operation without the conversion) and PostgreSQL a subnormal (it raises
/// "value out of range: underflow" where the quotient rounds to zero).
#[tokio::test(flavor = "multi_thread")]
async fn float_blocks_of_decimals_and_subnormals_agree_everywhere() {
    let decimals = [
        "0.30",
        "-0.30",
        "0.70",
        "1.00",
        "-1.00",
        "2.90",
        "142.86",
        "-0.01",
        "0.00",
        "0.10",
        "0.20",
        "99999999.99",
        "-99999999.99",
        "-4.29",
    ];
    let floats = [
        5e-324,
        -5e-324,
        -1e-320,
        1e-310,
        -1e-310,
        0.0,
        2.5,
        -2.5,
        0.3,
        -0.3,
        1e17,
        -7.0,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
    ];
    let intervals = [0.1, 10.0, 1e300];
    let name = support::unique("float_blocks");
    let values = |db: Db| -> String {
        decimals
            .iter()
            .zip(floats)
            .enumerate()
            .map(|(i, (d, f))| match db {
                Db::Pg => format!("({i}, {d}, CAST('{f:e}' AS DOUBLE PRECISION))"),
                Db::Maria => format!("({i}, {d}, {f:e})"),
                // 18.16 reads the text `5e-324` as 0: the double's bytes instead.
                Db::Ch18 | Db::Chdb => {
                    let bytes: String =
                        f.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
                    format!("({i}, {d}, reinterpretAsFloat64(unhex('{bytes}')))")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let query = |db: Db, table: &str| -> String {
        let d = db.dialect();
        let k = d.kind();
        let cols: Vec<String> = intervals
            .iter()
            .flat_map(|iv| {
                ["d", "f"].map(|c| {
                    let iv = Expr::value(Value::Number(format!("{iv:e}"), false));
                    text(
                        k,
                        &block_id(d, Expr::Identifier(d.ident(c)), PartitionKind::Float, iv),
                    )
                })
            })
            .collect();
        format!(
            "SELECT {}, {} FROM {table}",
            text(k, &"id"),
            cols.join(", ")
        )
    };
    let expected: Vec<Row> = decimals
        .iter()
        .zip(floats)
        .enumerate()
        .map(|(i, (d, f))| {
            let d: f64 = d.parse().unwrap();
            let mut row = vec![Some(i.to_string())];
            for iv in intervals {
                for x in [d, f] {
                    row.push(Some(((x / iv).floor() as i64).to_string()));
                }
            }
            row
        })
        .collect();
    let expected = sorted(expected);

    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let ch = support::clickhouse().await;
    let (pg_table, my_table, ch_table) = (
        format!("public.{name}"),
        name.clone(),
        format!("default.{name}"),
    );
    let ch_create = |t: &str| {
        format!("CREATE TABLE {t} (id Int64, d Decimal(10, 2), f Float64) ENGINE = Memory")
    };
    let result = std::panic::AssertUnwindSafe(async {
        pg.batch_execute(&format!(
            "CREATE TABLE {pg_table} (id BIGINT, d NUMERIC(10,2), f DOUBLE PRECISION); \
             INSERT INTO {pg_table} VALUES {}",
            values(Db::Pg)
        ))
        .await
        .expect("PG table");
        let got = sorted(support::pg_rows(&pg, &query(Db::Pg, &pg_table), &[]).await);
        same_rows(&got, &expected, "PostgreSQL float blocks");

        support::mysql_exec(
            &mut my,
            &format!("CREATE TABLE {my_table} (id BIGINT, d DECIMAL(10,2), f DOUBLE)"),
        )
        .await;
        support::mysql_exec(
            &mut my,
            &format!("INSERT INTO {my_table} VALUES {}", values(Db::Maria)),
        )
        .await;
        let got = sorted(
            support::mysql_rows(
                &mut my,
                &query(Db::Maria, &my_table),
                mysql_async::Params::Empty,
            )
            .await,
        );
        same_rows(&got, &expected, "MariaDB float blocks");

        ch.exec(&ch_create(&ch_table)).await;
        ch.exec(&format!(
            "INSERT INTO {ch_table} VALUES {}",
            values(Db::Ch18)
        ))
        .await;
        let got = sorted(ch.rows(&query(Db::Ch18, &ch_table)).await);
        same_rows(&got, &expected, "ClickHouse 18.16 float blocks");

        let out = support::chdb(&[
            ChdbStatement {
                sql: ch_create("t"),
                params: vec![],
            },
            ChdbStatement {
                sql: format!("INSERT INTO t VALUES {}", values(Db::Chdb)),
                params: vec![],
            },
            ChdbStatement {
                sql: query(Db::Chdb, "t"),
                params: vec![],
            },
        ]);
        same_rows(&sorted(out[2].clone()), &expected, "chdb float blocks");
    });
    let outcome = futures_catch(result).await;
    let pg_drop = format!("DROP TABLE IF EXISTS {pg_table}");
    clean_up_then_resume(outcome, &pg, &pg_drop, &mut my, &my_table, &ch, &ch_table).await;
}

/// A NULL in a nullable stored hash column adds nothing to the ClickHouse block sum, as
/// PostgreSQL's and MySQL's `SUM` skip it: a block of NULL hashes sums to 0, never NULL.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_block_sums_skip_null_hashes() {
    let d = &Clickhouse;
    let sum = block_sum(d, Expr::Identifier(d.ident("h")));
    let sql = format!(
        "SELECT {sum} FROM (SELECT CAST(NULL AS Nullable(Int64)) AS h \
         UNION ALL SELECT CAST(NULL AS Nullable(Int64)) AS h)"
    );
    let expected = vec![vec![Some("0".to_string())]];
    assert_on_both_clickhouses(&sql, &expected).await;
}

/// Text keys order by their bytes in MariaDB as in PostgreSQL's `COLLATE "C"`, trailing
/// tabs and spaces included (`utf8mb4_bin` pads with spaces, so `'a\t'` sorted before
/// `'a'`), for utf8mb4, utf8mb3 and latin1 columns alike.
#[tokio::test(flavor = "multi_thread")]
async fn text_keys_order_by_bytes_in_mariadb_as_in_postgres() {
    let keys = ["a", "a\t", "a ", "a\u{1}", "é", "b"];
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let hex = |s: &str| s.bytes().map(|x| format!("{x:02x}")).collect::<String>();
    let pg_values = keys
        .iter()
        .map(|s| format!("(convert_from(decode('{}', 'hex'), 'UTF8'))", hex(s)))
        .collect::<Vec<_>>()
        .join(", ");
    let key = |d: &dyn Dialect| d.order_key(Expr::Identifier(d.ident("k")), Dtype::Str);
    let pg_sql = format!(
        "SELECT encode(convert_to(k, 'UTF8'), 'hex') FROM (VALUES {pg_values}) AS t(k) ORDER BY {}",
        key(&Postgres)
    );
    let expected = support::pg_rows(&pg, &pg_sql, &[]).await;
    let mut sorted_bytes: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
    sorted_bytes.sort();
    let reference: Vec<Row> = sorted_bytes
        .iter()
        .map(|b| vec![Some(hex(std::str::from_utf8(b).unwrap()))])
        .collect();
    assert_eq!(expected, reference, "{pg_sql}");
    let table = support::unique("order_keys");
    for charset in ["utf8mb4 COLLATE utf8mb4_bin", "utf8mb3", "latin1"] {
        support::mysql_exec(&mut my, &format!("DROP TABLE IF EXISTS {table}")).await;
        support::mysql_exec(
            &mut my,
            &format!("CREATE TABLE {table} (k VARCHAR(10) CHARACTER SET {charset})"),
        )
        .await;
        let values = keys
            .iter()
            .map(|s| format!("(CONVERT(X'{}' USING utf8mb4))", hex(s)))
            .collect::<Vec<_>>()
            .join(", ");
        support::mysql_exec(&mut my, &format!("INSERT INTO {table} VALUES {values}")).await;
        let sql = format!(
            "SELECT LOWER(HEX(CONVERT(k USING utf8mb4))) FROM {table} ORDER BY {}",
            key(&Mysql)
        );
        let got = support::mysql_rows(&mut my, &sql, mysql_async::Params::Empty).await;
        assert_eq!(got, reference, "{charset}: {sql}");
    }
    support::mysql_exec(&mut my, &format!("DROP TABLE IF EXISTS {table}")).await;
}

/// A `str` key over a column that is not text (the seed format has no uuid dtype, so uuid
/// keys are typed `str`; integer and enum key columns too) orders by the bytes of its
/// text on every dialect, as a text column holding the same values does on the other side:
/// PostgreSQL `uuid`, `integer` and enum columns (which have no collation: `COLLATE "C"`
/// alone was refused), MariaDB `INT` and `ENUM`, ClickHouse `UUID`, `Int64` and `Enum8`
/// (which sort by their own order, not their text's) on 18.16 and a current engine.
#[tokio::test(flavor = "multi_thread")]
async fn str_keys_of_other_column_types_order_by_their_text_on_every_dialect() {
    let uuids = [
        "ffffffff-0000-4000-8000-000000000000",
        "0a000000-0000-4000-8000-00000000000f",
        "a0000000-0000-4000-8000-000000000001",
        "10000000-ffff-4000-8000-000000000000",
        "10000000-0000-4000-8000-ffffffffffff",
    ];
    let ints = ["9", "10", "100", "-5", "2", "0"];
    // Declared in the reverse of their text order.
    let labels = ["c", "b", "a", "ab"];
    let sorted = |vals: &[&str]| -> Vec<Row> {
        let mut v: Vec<&str> = vals.to_vec();
        v.sort();
        v.into_iter().map(|x| vec![Some(x.to_string())]).collect()
    };
    let quoted = |vals: &[&str]| -> String {
        vals.iter()
            .map(|v| format!("('{v}')"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key = |d: &dyn Dialect| d.order_key(Expr::Identifier(d.ident("k")), Dtype::Str);
    let enum_labels = labels
        .iter()
        .map(|l| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(", ");

    // PostgreSQL.
    let pg = support::pg().await;
    let ty = support::unique("order_enum");
    pg.batch_execute(&format!("CREATE TYPE {ty} AS ENUM ({enum_labels})"))
        .await
        .unwrap();
    for (pg_type, vals) in [
        ("uuid", &uuids[..]),
        ("integer", &ints),
        (ty.as_str(), &labels),
    ] {
        let sql = format!(
            "SELECT k::text FROM (SELECT k::{pg_type} AS k FROM (VALUES {}) AS v(k)) AS t ORDER BY {}",
            quoted(vals).replace("')", "'::text)"),
            key(&Postgres)
        );
        assert_eq!(
            support::pg_rows(&pg, &sql, &[]).await,
            sorted(vals),
            "{sql}"
        );
    }
    pg.batch_execute(&format!("DROP TYPE {ty}")).await.unwrap();

    // MariaDB.
    let mut my = support::mysql().await;
    let table = support::unique("order_types");
    for (my_type, vals) in [
        ("CHAR(36)", &uuids[..]),
        ("INT", &ints),
        (&*format!("ENUM({enum_labels})"), &labels),
    ] {
        support::mysql_exec(&mut my, &format!("DROP TABLE IF EXISTS {table}")).await;
        support::mysql_exec(&mut my, &format!("CREATE TABLE {table} (k {my_type})")).await;
        support::mysql_exec(
            &mut my,
            &format!("INSERT INTO {table} VALUES {}", quoted(vals)),
        )
        .await;
        let sql = format!(
            "SELECT CONVERT(k USING utf8mb4) FROM {table} ORDER BY {}",
            key(&Mysql)
        );
        let got = support::mysql_rows(&mut my, &sql, mysql_async::Params::Empty).await;
        assert_eq!(got, sorted(vals), "{sql}");
    }
    support::mysql_exec(&mut my, &format!("DROP TABLE IF EXISTS {table}")).await;

    // ClickHouse 18.16 and a current engine.
    let ch_enum = labels
        .iter()
        .enumerate()
        .map(|(i, l)| format!("'{l}' = {}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    for (ch_type, vals) in [
        ("UUID", &uuids[..]),
        ("Int64", &ints),
        (&*format!("Enum8({ch_enum})"), &labels),
    ] {
        let values = vals
            .iter()
            .map(|v| format!("CAST('{v}' AS {ch_type})"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT toString(k) FROM (SELECT arrayJoin([{values}]) AS k) ORDER BY {}",
            key(&Clickhouse)
        );
        assert_on_both_clickhouses(&sql, &sorted(vals)).await;
    }
}

/// `sql` (no parameters) gives `expected` on ClickHouse 18.16 and on a current engine.
async fn assert_on_both_clickhouses(sql: &str, expected: &[Vec<Option<String>>]) {
    let ch = support::clickhouse().await;
    assert_eq!(ch.rows(sql).await, expected, "{sql}");
    let out = support::chdb(&[ChdbStatement {
        sql: sql.to_string(),
        params: vec![],
    }]);
    assert_eq!(out[0], expected, "{sql}");
}

/// A ClickHouse `Float64` or integer column read as a wide decimal field hashes as the
/// decimal it holds: `Decimal` arithmetic refuses a float, so the column is made a
/// `Decimal128` of the field's scale first.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_float_and_int_columns_hash_as_wide_decimals() {
    let d = &Clickhouse;
    let col = HashCol {
        expr: Expr::Identifier(d.ident("v")),
        dtype: Dtype::Decimal {
            precision: 38,
            scale: 10,
        },
        precision: TimePrecision::Seconds,
    };
    let text = canonical_value(d, &col);
    for (values, want) in [
        (
            "[toFloat64(1.5), toFloat64(-2.25), toFloat64(12345678.125)]",
            ["1.5", "-2.25", "12345678.125"],
        ),
        (
            "[toInt64(7), toInt64(-3), toInt64(9223372036854775807)]",
            ["7", "-3", "9223372036854775807"],
        ),
    ] {
        let sql = format!("SELECT {text} FROM (SELECT arrayJoin({values}) AS v)");
        let expected: Vec<Vec<Option<String>>> =
            want.iter().map(|w| vec![Some(w.to_string())]).collect();
        assert_on_both_clickhouses(&sql, &expected).await;
    }
}
