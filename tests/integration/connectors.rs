//! The database connectors against the real servers: session setup, a round trip of every
//! dtype (bound parameters in, typed values out), bulk loads, streaming with backpressure
//! and awkward parameter values. A missing server fails the test with a message naming it.

use chrono::{NaiveDate, NaiveDateTime};
use std::time::Duration;
use synctool::config::{Secret, TlsMode};
use synctool::expr::value::Decimal;
use synctool::expr::Value;
use synctool::runtime::connect::clickhouse::ChConn;
use synctool::runtime::{Conn, ConnSettings, Pool, Row, RuntimeError, Stmt};
use synctool::sql::DialectKind;
use synctool::types::Dtype;
use tokio::sync::mpsc;

const PG: DialectKind = DialectKind::Postgres;
const MY: DialectKind = DialectKind::Mysql;
const CH: DialectKind = DialectKind::Clickhouse;

pub(crate) fn settings(d: DialectKind) -> ConnSettings {
    let (port, user, db) = match d {
        DialectKind::Postgres => (5432, "postgres", "test"),
        DialectKind::Mysql => (3306, "root", "test"),
        DialectKind::Clickhouse => (8123, "default", "default"),
    };
    ConnSettings {
        name: format!("{}_test", d.name()),
        dialect: d,
        host: "127.0.0.1".into(),
        port,
        username: Some(user.into()),
        password: None,
        database: Some(db.into()),
        tls: TlsMode::Disable,
        root_cert: None,
        client_cert: None,
        pool_size: 2,
    }
}

fn session(d: DialectKind) -> Vec<String> {
    match d {
        DialectKind::Postgres => vec![
            "SET TIME ZONE 'UTC'".into(),
            "SET application_name = 'synctool_conn_test'".into(),
        ],
        DialectKind::Mysql => vec![
            "SET time_zone = '+00:00'".into(),
            "SET NAMES utf8mb4".into(),
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'".into(),
        ],
        DialectKind::Clickhouse => vec!["SET max_threads = 3".into()],
    }
}

/// A connection with the session setup; panics naming the service when it is unreachable.
async fn connect(d: DialectKind) -> Conn {
    let s = settings(d);
    match Conn::connect(&s, &session(d)).await {
        Ok(c) => c,
        Err(e) => panic!(
            "{} at {} is required by this test and is not usable: {e}. Start the services with scripts/services.sh",
            d.name(),
            s.address()
        ),
    }
}

fn st<'a>(sql: &'a str, names: &'a [String], types: &'a [Dtype]) -> Stmt<'a> {
    Stmt {
        step: "test",
        sql,
        param_names: names,
        param_types: types,
        columns: &[],
        key: &[],
    }
}

async fn exec(c: &mut Conn, sql: &str) -> u64 {
    c.execute(st(sql, &[], &[]), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn query(c: &mut Conn, sql: &str, out: &[Dtype]) -> Vec<Row> {
    c.query(st(sql, &[], &[]), &[], out)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn scratch(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("synctool_conn_{tag}_{}_{nanos}", std::process::id())
}

fn dec(s: &str) -> Decimal {
    Decimal::parse(s).unwrap()
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const AWKWARD: &str =
    "it's \"quoted\" \\back\\slash\\ \t tab \n newline | pipe ; semi {x:String} $1 ? é✓😀 \u{1}";

/// Column dtypes of the round-trip table, in order.
fn types() -> Vec<Dtype> {
    vec![
        Dtype::Int,
        Dtype::Int,
        Dtype::Float,
        Dtype::Decimal {
            precision: 18,
            scale: 4,
        },
        Dtype::Str,
        Dtype::Bool,
        Dtype::Date,
        Dtype::Datetime,
        Dtype::Uuid,
        Dtype::Json,
    ]
}

const COLS: &str = "id, i, f, d, s, b, dt, ts, u, j";

fn names() -> Vec<String> {
    COLS.split(", ").map(str::to_string).collect()
}

/// Rows covering every dtype, NULLs, extremes and awkward text. `ch` keeps datetimes at
/// whole seconds from 1970 (ClickHouse DateTime).
fn rows(ch: bool) -> Vec<Row> {
    let ts1 = if ch {
        "2024-02-29 12:34:56"
    } else {
        "2024-02-29 12:34:56.123456"
    };
    let ts3 = if ch {
        "1999-12-31 23:59:59"
    } else {
        "1969-07-20 20:17:40.000001"
    };
    vec![
        vec![
            Value::Int(1),
            Value::Int(-42),
            Value::Float(0.1),
            Value::Decimal(dec("-12.3400")),
            Value::Str(AWKWARD.into()),
            Value::Bool(true),
            Value::Date(date("2024-02-29")),
            Value::Datetime(dt(ts1)),
            Value::Uuid("6f1e0000-aaaa-4bbb-8ccc-0123456789ab".into()),
            Value::json(serde_json::json!({"k": [1, "é"], "n": null})),
        ],
        vec![
            Value::Int(2),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
        vec![
            Value::Int(3),
            Value::Int(i64::MIN),
            Value::Float(-1e20),
            Value::Decimal(dec("99999999999999.9999")),
            Value::Str(String::new()),
            Value::Bool(false),
            Value::Date(date("1970-01-01")),
            Value::Datetime(dt(ts3)),
            // Upper-case on the way in, lower-case on the way out.
            Value::Str("ABCDEF00-1111-2222-3333-444455556666".into()),
            Value::json(serde_json::json!("just text")),
        ],
    ]
}

fn expected(ch: bool) -> Vec<Row> {
    let mut r = rows(ch);
    r[2][8] = Value::Uuid("abcdef00-1111-2222-3333-444455556666".into());
    r
}

fn assert_rows(d: DialectKind, got: &[Row], want: &[Row]) {
    assert_eq!(got.len(), want.len(), "{}: row count", d.name());
    for (g, w) in got.iter().zip(want) {
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert_eq!(a, b, "{}: row {:?} column {i}", d.name(), w[0]);
        }
        // Decimals come back exactly at the column's scale (trailing zeros kept).
        if let Value::Decimal(x) = &g[3] {
            assert_eq!(x.scale(), 4, "{}: decimal scale", d.name());
        }
    }
}

fn ddl(d: DialectKind, t: &str) -> String {
    match d {
        DialectKind::Postgres => format!(
            "CREATE TABLE {t} (id BIGINT PRIMARY KEY, i BIGINT, f DOUBLE PRECISION, d NUMERIC(18,4), s TEXT, b BOOLEAN, dt DATE, ts TIMESTAMP(6) WITH TIME ZONE, u UUID, j JSONB)"
        ),
        DialectKind::Mysql => format!(
            "CREATE TABLE {t} (id BIGINT PRIMARY KEY, i BIGINT, f DOUBLE, d DECIMAL(18,4), s LONGTEXT, b BOOLEAN, dt DATE, ts DATETIME(6), u CHAR(36), j JSON) CHARACTER SET utf8mb4"
        ),
        DialectKind::Clickhouse => format!(
            "CREATE TABLE {t} (id Int64, i Nullable(Int64), f Nullable(Float64), d Nullable(Decimal(18,4)), s Nullable(String), b Nullable(UInt8), dt Nullable(Date), ts Nullable(DateTime('UTC')), u Nullable(UUID), j Nullable(String)) ENGINE = MergeTree ORDER BY id"
        ),
    }
}

fn insert_sql(d: DialectKind, t: &str) -> String {
    let ph: Vec<String> = match d {
        DialectKind::Postgres => (1..=10).map(|i| format!("${i}")).collect(),
        DialectKind::Mysql => (1..=10).map(|_| "?".to_string()).collect(),
        DialectKind::Clickhouse => vec![
            "{id:Int64}".into(),
            "{i:Nullable(Int64)}".into(),
            "{f:Nullable(Float64)}".into(),
            "{d:Nullable(Decimal(18,4))}".into(),
            "{s:Nullable(String)}".into(),
            "{b:Nullable(UInt8)}".into(),
            "{dt:Nullable(Date)}".into(),
            "{ts:Nullable(DateTime)}".into(),
            "{u:Nullable(UUID)}".into(),
            "{j:Nullable(String)}".into(),
        ],
    };
    match d {
        // 18.16 rejects a Decimal expression for a Nullable(Decimal) column in VALUES
        // ("Type mismatch in IN or VALUES section"); INSERT … SELECT takes it.
        DialectKind::Clickhouse => format!("INSERT INTO {t} ({COLS}) SELECT {}", ph.join(", ")),
        _ => format!("INSERT INTO {t} ({COLS}) VALUES ({})", ph.join(", ")),
    }
}

async fn round_trip_params(d: DialectKind) {
    let mut c = connect(d).await;
    let t = scratch("rt");
    exec(&mut c, &ddl(d, &t)).await;
    let (names, types) = (names(), types());
    let sql = insert_sql(d, &t);
    let result = async {
        for r in rows(d == CH) {
            c.execute(st(&sql, &names, &types), &r).await?;
        }
        c.query(
            st(&format!("SELECT {COLS} FROM {t} ORDER BY id"), &[], &[]),
            &[],
            &types,
        )
        .await
    }
    .await;
    exec(&mut c, &format!("DROP TABLE {t}")).await;
    assert_rows(d, &result.unwrap(), &expected(d == CH));
}

async fn bulk_load(d: DialectKind) {
    load_every_dtype(d, false).await
}

/// MySQL's fallback load (multi-row INSERT) with the same rows as [`bulk_load`].
#[tokio::test]
async fn mysql_insert_fallback_every_dtype() {
    load_every_dtype(MY, true).await
}

/// Loads the dtype rows with the dialect's bulk load (PostgreSQL COPY, MySQL LOAD DATA
/// LOCAL INFILE, ClickHouse RowBinary), or with `insert` MySQL's multi-row INSERT, and
/// reads them back.
async fn load_every_dtype(d: DialectKind, insert: bool) {
    let mut c = connect(d).await;
    let t = scratch("load");
    exec(&mut c, &ddl(d, &t)).await;
    let types = types();
    let data = rows(d == CH);
    let sql = match d {
        DialectKind::Postgres => format!("COPY {t} ({COLS}) FROM STDIN (FORMAT binary)"),
        DialectKind::Mysql if insert => {
            let one = format!("({})", vec!["?"; types.len()].join(", "));
            format!(
                "INSERT INTO {t} ({COLS}) VALUES {}",
                vec![one; data.len()].join(", ")
            )
        }
        // This session keeps backslash escapes in literals ('\\' is one backslash); the
        // generator's sessions run with NO_BACKSLASH_ESCAPES and print '\'.
        DialectKind::Mysql => format!(
            "LOAD DATA LOCAL INFILE 'synctool' INTO TABLE {t} CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' ESCAPED BY '\\\\' LINES TERMINATED BY ';' ({COLS})"
        ),
        DialectKind::Clickhouse => format!("INSERT INTO {t} ({COLS}) FORMAT RowBinary"),
    };
    let mut nullable = vec![true; types.len()];
    nullable[0] = false;
    let result = async {
        let n = if insert {
            c.insert_rows(st(&sql, &[], &[]), &types, &data).await?
        } else {
            c.load(st(&sql, &[], &[]), &types, &nullable, &[], &data)
                .await?
        };
        let back = c
            .query(
                st(&format!("SELECT {COLS} FROM {t} ORDER BY id"), &[], &[]),
                &[],
                &types,
            )
            .await?;
        Ok::<_, RuntimeError>((n, back))
    }
    .await;
    exec(&mut c, &format!("DROP TABLE {t}")).await;
    let (n, back) = result.unwrap();
    assert_eq!(n, 3, "{}: rows loaded", d.name());
    assert_rows(d, &back, &expected(d == CH));
}

/// A value that cannot be encoded in the middle of a LOAD DATA stream (after several
/// chunks reached the server) stops the load with that value's error; rolling back leaves
/// nothing and the connection stays usable. A row of the wrong length fails before anything
/// is sent.
#[tokio::test]
async fn mysql_load_data_stops_at_a_bad_row_and_rolls_back() {
    let mut c = connect(MY).await;
    let t = scratch("badrow");
    exec(
        &mut c,
        &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, s TEXT, f DOUBLE)"),
    )
    .await;
    let types = [Dtype::Int, Dtype::Str, Dtype::Float];
    let mut data: Vec<Row> = (0..100_000)
        .map(|i| {
            vec![
                Value::Int(i),
                Value::Str(format!("row; {i}")),
                Value::Float(0.5),
            ]
        })
        .collect();
    data[60_000][2] = Value::Float(f64::NAN);
    let sql = format!(
        "LOAD DATA LOCAL INFILE 'synctool' INTO TABLE {t} CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' ESCAPED BY '\\\\' LINES TERMINATED BY ';' (id, s, f)"
    );
    let nullable = [false, true, true];
    let count =
        async |c: &mut Conn| query(c, &format!("SELECT count(*) FROM {t}"), &[Dtype::Int]).await;
    c.begin().await.unwrap();
    let err = c
        .load(st(&sql, &[], &[]), &types, &nullable, &[], &data)
        .await
        .expect_err("NaN cannot be stored");
    assert!(
        !matches!(err, RuntimeError::LoadRefused { .. }),
        "an encoding error is not a refusal: {err}"
    );
    assert!(
        err.to_string().contains("cannot store the float NaN"),
        "{err}"
    );
    c.rollback()
        .await
        .expect("the connection survives the stopped load");
    assert_eq!(count(&mut c).await, vec![vec![Value::Int(0)]]);

    data[60_000] = vec![Value::Int(60_000)];
    let err = c
        .load(st(&sql, &[], &[]), &types, &nullable, &[], &data)
        .await
        .expect_err("a row of one value for three columns");
    assert!(
        err.to_string().contains("a row has 1 values for 3 columns"),
        "{err}"
    );
    assert_eq!(count(&mut c).await, vec![vec![Value::Int(0)]]);
    exec(&mut c, &format!("DROP TABLE {t}")).await;
}

/// ClickHouse streamed inserts: batches appended to one open insert, handed over to a new
/// insert at the row limit, ended before any other statement (which then sees every row),
/// and a server refusal reported with the server's message.
#[tokio::test]
async fn clickhouse_streamed_inserts() {
    let mut c = connect(CH).await;
    let t = scratch("stream");
    exec(
        &mut c,
        &format!("CREATE TABLE {t} (id Int64, s String) ENGINE = MergeTree ORDER BY id"),
    )
    .await;
    match &mut c {
        Conn::Clickhouse(ch) => ch.set_stream_max_rows(2500),
        _ => unreachable!("a ClickHouse connection"),
    }
    let types = [Dtype::Int, Dtype::Str];
    let sql = format!("INSERT INTO {t} (id, s) FORMAT RowBinary");
    for b in 0..5i64 {
        let batch: Vec<Row> = (0..1000)
            .map(|i| vec![Value::Int(b * 1000 + i), Value::Str(format!("r{i}"))])
            .collect();
        let n = c
            .stream_load(st(&sql, &[], &[]), &types, &[], &[], &batch)
            .await
            .unwrap();
        assert_eq!(n, 1000);
    }
    // The query ends the open insert first, so it sees all five batches.
    let back = query(
        &mut c,
        &format!("SELECT count(), sum(id), uniqExact(id) FROM {t}"),
        &[Dtype::Int, Dtype::Int, Dtype::Int],
    )
    .await;
    assert_eq!(
        back,
        vec![vec![
            Value::Int(5000),
            Value::Int(4999 * 5000 / 2),
            Value::Int(5000)
        ]]
    );

    // Int64 values into an Int32 column without its layout: the server misreads the body
    // and refuses it; the error comes at a later call or when the inserts end.
    let u = scratch("stream_bad");
    exec(
        &mut c,
        &format!("CREATE TABLE {u} (id Int32, s String) ENGINE = MergeTree ORDER BY id"),
    )
    .await;
    let bad = format!("INSERT INTO {u} (id, s) FORMAT RowBinary");
    let rows: Vec<Row> = (0..1000)
        .map(|i| vec![Value::Int(i), Value::Str("x".repeat(300))])
        .collect();
    let mut err = None;
    for _ in 0..3 {
        if let Err(e) = c
            .stream_load(st(&bad, &[], &[]), &types, &[], &[], &rows)
            .await
        {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        None => c
            .end_streams()
            .await
            .expect_err("the server refuses the body"),
    };
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    c.end_streams().await.expect("nothing is left open");
    assert!(c.is_reusable());
    exec(&mut c, &format!("DROP TABLE {t}")).await;
    exec(&mut c, &format!("DROP TABLE {u}")).await;
}

/// Streams 200 000 generated rows in batches of 500 through a channel of 2 slots, checks
/// the count and sums, and that the producer is still blocked (not done reading) while the
/// consumer holds the first batch.
async fn streaming(d: DialectKind) {
    let c = connect(d).await;
    let sql = match d {
        DialectKind::Postgres => "SELECT g, g::text FROM generate_series(1, 200000) AS g",
        DialectKind::Mysql => "SELECT seq, CAST(seq AS CHAR) FROM seq_1_to_200000",
        DialectKind::Clickhouse => {
            "SELECT number + 1, toString(number + 1) FROM system.numbers LIMIT 200000"
        }
    };
    let (tx, mut rx) = mpsc::channel(2);
    let producer = tokio::spawn(async move {
        let mut c = c;
        c.stream(st(sql, &[], &[]), &[], &[Dtype::Int, Dtype::Str], 500, tx)
            .await
    });
    let first = rx.recv().await.expect("a first batch").expect("no error");
    assert_eq!(first.len(), 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !producer.is_finished(),
        "{}: the producer finished while the consumer held the first batch: the result was buffered, not streamed",
        d.name()
    );
    let (mut count, mut sum, mut batches) = (first.len() as u64, 0i64, 1);
    let mut add = |b: &[Row]| {
        for r in b {
            let (Value::Int(i), Value::Str(s)) = (&r[0], &r[1]) else {
                panic!("bad row {r:?}")
            };
            assert_eq!(i.to_string(), *s);
            sum += i;
        }
    };
    add(&first);
    while let Some(b) = rx.recv().await {
        let b = b.expect("no error");
        assert!(b.len() <= 500);
        count += b.len() as u64;
        batches += 1;
        add(&b);
    }
    let sent = producer.await.unwrap().expect("stream ok");
    assert_eq!(sent, 200_000, "{}", d.name());
    assert_eq!(count, 200_000, "{}", d.name());
    assert_eq!(batches, 400, "{}", d.name());
    assert_eq!(sum, 200_000 * 200_001 / 2, "{}", d.name());
}

/// The consumer going away ends the stream with an error, and the connection still works.
async fn abandoned_stream(d: DialectKind) {
    let mut c = connect(d).await;
    let sql = match d {
        DialectKind::Postgres => "SELECT g FROM generate_series(1, 100000) AS g",
        DialectKind::Mysql => "SELECT seq FROM seq_1_to_100000",
        DialectKind::Clickhouse => "SELECT number FROM system.numbers LIMIT 100000",
    };
    let (tx, mut rx) = mpsc::channel(1);
    let consumer = tokio::spawn(async move {
        let _ = rx.recv().await;
    });
    let r = c
        .stream(st(sql, &[], &[]), &[], &[Dtype::Int], 100, tx)
        .await;
    consumer.await.unwrap();
    assert!(
        matches!(r, Err(RuntimeError::ConsumerGone { .. })),
        "{}: {r:?}",
        d.name()
    );
    let again = query(&mut c, "SELECT 1", &[Dtype::Int]).await;
    assert_eq!(again, vec![vec![Value::Int(1)]]);
}

/// Awkward values bound as parameters come back unchanged, and filter rows.
async fn awkward_params(d: DialectKind) {
    let mut c = connect(d).await;
    let (sql, names, types) = match d {
        DialectKind::Postgres => (
            "SELECT $1::text, $2::numeric(18,4), $3::timestamptz, $4::uuid, $5::bigint, $6::date, $7::text",
            vec![],
            vec![Dtype::Str, Dtype::Decimal { precision: 18, scale: 4 }, Dtype::Datetime, Dtype::Uuid, Dtype::Int, Dtype::Date, Dtype::Str],
        ),
        DialectKind::Mysql => (
            "SELECT ?, CAST(? AS DECIMAL(18,4)), CAST(? AS DATETIME(6)), ?, ?, CAST(? AS DATE), ?",
            vec![],
            vec![Dtype::Str, Dtype::Decimal { precision: 18, scale: 4 }, Dtype::Datetime, Dtype::Uuid, Dtype::Int, Dtype::Date, Dtype::Str],
        ),
        DialectKind::Clickhouse => (
            "SELECT {s:String}, {d:Decimal(18,4)}, {t:DateTime}, {u:UUID}, {n:Int64}, {dt:Date}, {z:Nullable(String)}, '{s:String}' AS literal_kept",
            ["s", "d", "t", "u", "n", "dt", "z"].map(String::from).to_vec(),
            vec![Dtype::Str, Dtype::Decimal { precision: 18, scale: 4 }, Dtype::Datetime, Dtype::Uuid, Dtype::Int, Dtype::Date, Dtype::Str],
        ),
    };
    let ts = if d == CH {
        "2021-03-04 05:06:07"
    } else {
        "2021-03-04 05:06:07.080900"
    };
    let params = vec![
        Value::Str(AWKWARD.into()),
        Value::Decimal(dec("-0.0500")),
        Value::Datetime(dt(ts)),
        Value::Uuid("00112233-4455-6677-8899-aabbccddeeff".into()),
        Value::Int(-9_007_199_254_740_993),
        Value::Date(date("2000-02-29")),
        Value::Null,
    ];
    let mut out = types.clone();
    if d == CH {
        out.push(Dtype::Str);
    }
    let got = c
        .query(st(sql, &names, &types), &params, &out)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", d.name()));
    let mut want = params.clone();
    if d == CH {
        want.push(Value::Str("{s:String}".into()));
    }
    assert_eq!(got, vec![want], "{}", d.name());
    let Value::Decimal(x) = &got[0][1] else {
        panic!()
    };
    assert_eq!((x.mantissa(), x.scale()), (-500, 4), "{}", d.name());
}

async fn session_applied(d: DialectKind) {
    let mut c = connect(d).await;
    let (sql, want) = match d {
        DialectKind::Postgres => ("SELECT current_setting('TimeZone') || ' ' || current_setting('application_name')", "UTC synctool_conn_test"),
        DialectKind::Mysql => ("SELECT CONCAT(@@session.time_zone, ' ', @@character_set_client, ' ', @@session.sql_mode)", "+00:00 utf8mb4 STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION"),
        DialectKind::Clickhouse => ("SELECT value FROM system.settings WHERE name = 'max_threads'", "3"),
    };
    let got = query(&mut c, sql, &[Dtype::Str]).await;
    assert_eq!(got, vec![vec![Value::Str(want.into())]], "{}", d.name());
    assert!(!c.server_version().is_empty());
    // A failing setup statement is a statement error of step `session`.
    let bad = Conn::connect(&settings(d), &["SET no_such_setting_xyz = 1".into()]).await;
    match bad {
        Err(RuntimeError::Statement { step, .. }) => assert_eq!(step, "session"),
        other => panic!("{}: expected a session error, got {other:?}", d.name()),
    }
}

async fn transactions(d: DialectKind) {
    let mut c = connect(d).await;
    let t = scratch("tx");
    exec(&mut c, &ddl(d, &t)).await;
    let ins = format!("INSERT INTO {t} (id) VALUES (7)");
    c.begin().await.unwrap();
    // ClickHouse has no transactions: begin/commit/rollback are no-ops there.
    assert_eq!(c.is_reusable(), d == CH, "in a transaction");
    exec(&mut c, &ins).await;
    c.rollback().await.unwrap();
    let n = query(&mut c, &format!("SELECT count(*) FROM {t}"), &[Dtype::Int]).await;
    let n = if d == CH {
        assert_eq!(n, vec![vec![Value::Int(1)]], "no rollback on ClickHouse");
        exec(&mut c, &format!("TRUNCATE TABLE {t}")).await;
        vec![vec![Value::Int(0)]]
    } else {
        n
    };
    c.begin().await.unwrap();
    exec(&mut c, &ins).await;
    c.commit().await.unwrap();
    let m = query(&mut c, &format!("SELECT count(*) FROM {t}"), &[Dtype::Int]).await;
    exec(&mut c, &format!("DROP TABLE {t}")).await;
    assert_eq!(n, vec![vec![Value::Int(0)]], "rolled back");
    assert_eq!(m, vec![vec![Value::Int(1)]], "committed");
    assert!(c.is_reusable());
}

async fn bad_password_is_hidden(d: DialectKind) {
    let mut s = settings(d);
    s.password = Some(Secret::new("s3cret-Pa55word"));
    s.username = Some("synctool_no_such_user".into());
    let err = Conn::connect(&s, &[]).await.expect_err("login must fail");
    let text = format!("{err} {err:?}");
    assert!(matches!(err, RuntimeError::Connect { .. }), "{text}");
    assert!(!text.contains("s3cret-Pa55word"), "{text}");
    assert!(text.contains(&s.address()), "{text}");
}

async fn unreachable_is_connect_error(d: DialectKind) {
    let mut s = settings(d);
    s.port = 1;
    let err = Conn::connect(&s, &[])
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, RuntimeError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

macro_rules! per_dialect {
    ($name:ident, $f:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn postgres() {
                $f(PG).await
            }
            #[tokio::test]
            async fn mysql() {
                $f(MY).await
            }
            #[tokio::test]
            async fn clickhouse() {
                $f(CH).await
            }
        }
    };
}

per_dialect!(session_setup, session_applied);
per_dialect!(round_trip_every_dtype, round_trip_params);
per_dialect!(bulk_load_every_dtype, bulk_load);
per_dialect!(stream_200k_rows_with_backpressure, streaming);
per_dialect!(stream_consumer_gone, abandoned_stream);
per_dialect!(awkward_parameters, awkward_params);
per_dialect!(transaction_control, transactions);
per_dialect!(password_never_in_errors, bad_password_is_hidden);
per_dialect!(unreachable_server, unreachable_is_connect_error);

#[tokio::test]
async fn clickhouse_picks_binding_by_version() {
    let c = ChConn::connect(&settings(CH), &[]).await.unwrap_or_else(|e| {
        panic!("clickhouse at 127.0.0.1:8123 is not usable: {e}. Start the services with scripts/services.sh")
    });
    let v = synctool::runtime::connect::clickhouse::parse_version(c.server_version()).unwrap();
    assert_eq!(
        c.native_params(),
        v >= synctool::runtime::connect::clickhouse::NATIVE_PARAMS_SINCE
    );
}

#[tokio::test]
async fn mysql_placeholder_limit_is_an_error() {
    let mut c = connect(MY).await;
    let types = vec![Dtype::Int; 2];
    let rows = vec![vec![Value::Int(1), Value::Int(2)]; 40_000];
    let err = c
        .insert_rows(
            st("INSERT INTO x (a, b) VALUES (?, ?)", &[], &[]),
            &types,
            &rows,
        )
        .await
        .expect_err("80 000 placeholders");
    assert!(err.to_string().contains("65535"), "{err}");
}

#[tokio::test]
async fn pool_reuses_and_bounds_connections() {
    let pool = Pool::new(settings(PG), session(PG));
    let pid_sql = "SELECT pg_backend_pid()";
    let first = {
        let mut a = pool.get().await.unwrap_or_else(|e| {
            panic!("postgres at 127.0.0.1:5432 is not usable: {e}. Start the services with scripts/services.sh")
        });
        query(&mut a, pid_sql, &[Dtype::Int]).await
    };
    let mut a = pool.get().await.unwrap();
    assert_eq!(
        query(&mut a, pid_sql, &[Dtype::Int]).await,
        first,
        "idle connection reused"
    );
    let _b = pool.get().await.unwrap();
    // Both connections are out (pool_size 2): a third waits.
    let third = tokio::time::timeout(Duration::from_millis(200), pool.get()).await;
    assert!(
        third.is_err(),
        "the pool handed out more than pool_size connections"
    );
}
