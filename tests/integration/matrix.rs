//! The runtime on every source × sink pair: the built binary on generated configs, against
//! the real PostgreSQL (127.0.0.1:5432), MariaDB (127.0.0.1:3306) and ClickHouse (HTTP
//! 127.0.0.1:8123). Each run creates a source table with one column per dtype, syncs it,
//! checks that `plan --exit-code` sees no drift, changes the source, repairs it with the
//! block-hash reconciliation and compares the sink's live rows with the source, value by
//! value. A missing server fails the test, naming it.

use crate::support::{self, ClickHouse, Row};
use crate::support::{assert_same, ch_wait_mutations, drop_table, exec, n, sink_read, str_lit};
use crate::support::{dbs, live_rows_from, run_json as run, tsv_value, Db, Dbs, Read, ALL};
use crate::support::{synctool, write_config};
use std::path::Path;
use std::process::Command;

const DATASTORES: &str = r#"datastores:
  - {name: pg, type: postgres, host: 127.0.0.1, port: 5432, username: postgres, database: test}
  - {name: my, type: mysql, host: 127.0.0.1, port: 3306, username: root, database: test}
  - {name: ch, type: clickhouse, host: 127.0.0.1, port: 8123, database: default}
"#;

/// The value columns after the int key `id`, with their dtypes.
const COLS: [(&str, &str); 7] = [
    ("f", "float"),
    ("d", "\"decimal(12,4)\""),
    ("s", "str"),
    ("b", "bool"),
    ("dt", "date"),
    ("ts", "datetime"),
    ("u", "uuid"),
];

/// One generated source row: `id` and the value columns, `None` for NULL. Datetimes are
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC.
#[derive(Debug, Clone)]
struct Gen {
    id: i64,
    f: Option<f64>,
    d: Option<String>,
    s: Option<String>,
    b: Option<bool>,
    dt: Option<String>,
    ts: Option<String>,
    u: Option<String>,
}

fn gen_row(id: i64, whole_seconds: bool) -> Gen {
    let strings = [
        "plain",
        "naïve café — 日本語 ✓ 🚀",
        "it's \"quoted\"",
        "pipe|separated|N",
        "N",
        "",
        "back\\slash",
        "tab\there\nnewline",
        "semi;colon,comma",
    ];
    let micros = if whole_seconds {
        0
    } else {
        (id * 7919) % 1_000_000
    };
    let secs = 1_700_000_000 + id * 86_399 + (id % 13) * 17;
    let ts = chrono::DateTime::from_timestamp(secs, (micros * 1000) as u32)
        .expect("timestamp")
        .naive_utc();
    let ts_text = if whole_seconds {
        ts.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    };
    let dec = id * 1_234_567 - 50_000_000;
    let null_all = id % 11 == 0;
    let nul = |k: i64| null_all || (id + k) % 17 == 0;
    Gen {
        id,
        f: (!nul(1)).then(|| {
            if id % 2 == 0 {
                id as f64 / 3.0
            } else {
                -(id as f64) * 12_345.678_9
            }
        }),
        d: (!nul(2)).then(|| {
            let sign = if dec < 0 { "-" } else { "" };
            format!("{sign}{}.{:04}", dec.abs() / 10_000, dec.abs() % 10_000)
        }),
        s: (!nul(3)).then(|| format!("{} #{id}", strings[id as usize % strings.len()])),
        b: (!nul(4)).then_some(id % 3 == 0),
        dt: (!nul(5)).then(|| {
            // ClickHouse `Date`'s last day, which 18.16 prints as 1970-01-01.
            if id == 2 {
                return "2149-06-06".to_string();
            }
            chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
                .expect("date")
                .checked_add_days(chrono::Days::new((id * 37) as u64))
                .expect("date")
                .format("%Y-%m-%d")
                .to_string()
        }),
        ts: (!nul(6)).then_some(ts_text),
        u: (!nul(7)).then(|| {
            let x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let y = (id as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                x >> 32,
                (x >> 16) & 0xffff,
                x & 0xfff,
                (y >> 52) & 0xfff,
                y & 0xffff_ffff_ffff
            )
        }),
    }
}

/// The row as a `(…)` VALUES tuple for `db`.
fn values_lit(db: Db, g: &Gen) -> String {
    fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> String) -> String {
        v.as_ref().map(f).unwrap_or_else(|| "NULL".to_string())
    }
    let parts = [
        g.id.to_string(),
        opt(&g.f, |f| format!("{f:?}")),
        opt(&g.d, |d| match db {
            Db::Ch => format!("'{d}'"),
            _ => d.clone(),
        }),
        opt(&g.s, |s| str_lit(db, s)),
        opt(&g.b, |b| match db {
            Db::Pg => b.to_string(),
            _ => (*b as u8).to_string(),
        }),
        opt(&g.dt, |d| match db {
            // As a day number: 18.16 reads the text of a date after 2105 as 0000-00-00.
            Db::Ch => {
                let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date");
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
                format!("toDate({})", (date - epoch).num_days())
            }
            _ => format!("'{d}'"),
        }),
        opt(&g.ts, |t| match db {
            Db::Pg => format!("'{t}+00'"),
            _ => format!("'{t}'"),
        }),
        opt(&g.u, |u| format!("'{u}'")),
    ];
    format!("({})", parts.join(", "))
}

/// Creates `table` on `db` with one column per dtype and fills it with `rows`.
async fn create_source(dbs: &mut Dbs, db: Db, table: &str, rows: &[Gen]) {
    let ddl = match db {
        Db::Pg => format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, f double precision, d numeric(12,4), \
             s text, b boolean, dt date, ts timestamptz, u uuid)"
        ),
        Db::My => format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, f double, d decimal(12,4), \
             s longtext, b boolean, dt date, ts datetime(6), u char(36)) \
             CHARACTER SET utf8mb4"
        ),
        Db::Ch => format!(
            "CREATE TABLE {table} (id Int64, f Nullable(Float64), d Nullable(Decimal(12,4)), \
             s Nullable(String), b Nullable(UInt8), dt Nullable(Date), \
             ts Nullable(DateTime('UTC')), u Nullable(UUID)) ENGINE = MergeTree ORDER BY id"
        ),
    };
    exec(dbs, db, &ddl).await;
    insert(dbs, db, table, rows).await;
}

async fn insert(dbs: &mut Dbs, db: Db, table: &str, rows: &[Gen]) {
    for chunk in rows.chunks(500) {
        let vals: Vec<String> = chunk.iter().map(|g| values_lit(db, g)).collect();
        exec(
            dbs,
            db,
            &format!(
                "INSERT INTO {table} (id, f, d, s, b, dt, ts, u) VALUES {}",
                vals.join(", ")
            ),
        )
        .await;
    }
}

/// Drift on the source: 4 updates (one setting every value to NULL, one filling a NULL
/// row), 2 inserts (one all NULL), 2 deletes.
async fn change_source(dbs: &mut Dbs, db: Db, table: &str, whole_seconds: bool) {
    let changed = str_lit(db, "changed ✓ | 'x'");
    match db {
        Db::Pg | Db::My => {
            exec(
                dbs,
                db,
                &format!("UPDATE {table} SET s = {changed}, f = 0.5 WHERE id IN (5, 50)"),
            )
            .await;
            exec(
                dbs,
                db,
                &format!(
                    "UPDATE {table} SET f = NULL, d = NULL, s = NULL, b = NULL, dt = NULL, \
                     ts = NULL, u = NULL WHERE id = 60"
                ),
            )
            .await;
            exec(
                dbs,
                db,
                &format!("UPDATE {table} SET s = 'now set' WHERE id = 77"),
            )
            .await;
            exec(
                dbs,
                db,
                &format!("DELETE FROM {table} WHERE id IN (100, 150)"),
            )
            .await;
        }
        Db::Ch => {
            for st in [
                format!("ALTER TABLE {table} UPDATE s = {changed}, f = 0.5 WHERE id IN (5, 50)"),
                format!(
                    "ALTER TABLE {table} UPDATE f = NULL, d = NULL, s = NULL, b = NULL, \
                     dt = NULL, ts = NULL, u = NULL WHERE id = 60"
                ),
                format!("ALTER TABLE {table} UPDATE s = 'now set' WHERE id = 77"),
                format!("ALTER TABLE {table} DELETE WHERE id IN (100, 150)"),
            ] {
                exec(dbs, db, &st).await;
                ch_wait_mutations(&dbs.ch, table).await;
            }
        }
    }
    let mut new = gen_row(201, whole_seconds);
    new.s = Some("inserted 'row' | ✓".into());
    let all_null = Gen {
        id: 202,
        f: None,
        d: None,
        s: None,
        b: None,
        dt: None,
        ts: None,
        u: None,
    };
    insert(dbs, db, table, &[new, all_null]).await;
}

/// Every row of `table`, ordered by id, each value normalised to one text form per dtype.
async fn read_rows(dbs: &mut Dbs, db: Db, table: &str, how: Read) -> Vec<Row> {
    let cols = "id, f, d, s, b, dt, ts, u";
    let from = live_rows_from(db, table, cols, how);
    let rows = match db {
        Db::Pg => {
            support::pg_rows(
                &dbs.pg,
                &format!(
                    "SELECT id::text, f::text, d::text, s, b::text, dt::text, \
                     to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), u::text \
                     FROM {from} ORDER BY id"
                ),
                &[],
            )
            .await
        }
        Db::My => {
            support::mysql_rows(
                &mut dbs.my,
                &format!(
                    "SELECT CAST(id AS CHAR), f, CAST(d AS CHAR), s, CAST(b AS CHAR), \
                     DATE_FORMAT(dt, '%Y-%m-%d'), DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), \
                     CAST(u AS CHAR) FROM {from} ORDER BY id"
                ),
                mysql_async::Params::Empty,
            )
            .await
        }
        Db::Ch => {
            let body = dbs
                .ch
                .exec(&format!(
                    "SELECT toString(id), toString(f), toString(d), s, toString(b), \
                     toInt32(dt), toString(ts, 'UTC'), toString(u) FROM {from} ORDER BY id \
                     FORMAT TabSeparated"
                ))
                .await;
            // Dates as day numbers: 18.16 prints those after 2105 as 1970-01-01.
            let day = |n: String| {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
                let days = chrono::Duration::days(n.parse().expect("day number"));
                (epoch + days).format("%Y-%m-%d").to_string()
            };
            body.lines()
                .map(|l| {
                    let mut r: Row = l.split('\t').map(tsv_value).collect();
                    r[5] = r[5].take().map(day);
                    r
                })
                .collect()
        }
    };
    let mut rows: Vec<Row> = rows.into_iter().map(normalise).collect();
    rows.sort_by_key(|r| {
        r[0].as_deref()
            .map(|id| id.parse::<i64>().expect("integer id"))
    });
    rows
}

fn normalise(row: Row) -> Row {
    assert_eq!(row.len(), 8, "{row:?}");
    row.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(|v| match i {
                1 => {
                    let f: f64 = v.parse().unwrap_or_else(|e| panic!("float {v:?}: {e}"));
                    format!("{f:.14e}")
                }
                2 => {
                    let t = if v.contains('.') {
                        v.trim_end_matches('0').trim_end_matches('.').to_string()
                    } else {
                        v.clone()
                    };
                    if t == "-0" {
                        "0".into()
                    } else {
                        t
                    }
                }
                4 => match v.as_str() {
                    "t" | "true" | "1" => "1".into(),
                    "f" | "false" | "0" => "0".into(),
                    o => panic!("bool {o:?}"),
                },
                6 => {
                    let (sec, frac) = v.split_once('.').unwrap_or((&v, ""));
                    format!("{sec}.{frac:0<6}")
                }
                7 => v.to_ascii_lowercase(),
                _ => v,
            })
        })
        .collect()
}

/// The pipeline `mx` (batches of 64 rows): `src_table` on `src` into `sink_table` on `sink` with `merge`, and
/// the reconciliations `recon` (YAML list items, indented by 6).
fn config(
    src: Db,
    src_table: &str,
    sink: Db,
    sink_table: &str,
    merge: &str,
    recon: &str,
) -> String {
    let mut source_fields = String::from("        - {column: id, dtype: int}\n");
    let mut sink_fields = String::from("        - {column: id, source_column: id}\n");
    for (c, t) in COLS {
        source_fields.push_str(&format!("        - {{column: {c}, dtype: {t}}}\n"));
        sink_fields.push_str(&format!("        - {{column: {c}, source_column: {c}}}\n"));
    }
    format!(
        "{DATASTORES}pipelines:
  - name: mx
    source:
      datastore: {src}
      batch_size: 64
      table: {src_table}
      fields:
{source_fields}    sink:
      datastore: {sink}
      table: {sink_table}
      merge_strategy: {{strategy: {merge}, allow_delete: true}}
      unique_key: [id]
      fields:
{sink_fields}    reconciliation:
{recon}",
        src = src.store(),
        sink = sink.store(),
    )
}

const BY_ID: &str = "      - name: by_id
        strategy: md5sum_hash
        partition_column: id
        partition_column_type: int
        initial_partition_interval: 100
        max_block_size: 20
        interval_reduction_factor: 10
      - name: md5_by_id
        strategy: hash_md5_hash
        partition_column: id
        partition_column_type: int
        source_order_column: id
        initial_partition_interval: 64
        max_block_size: 16
        interval_reduction_factor: 4
";

/// The whole cycle on one pair and merge strategy (see the module comment).
async fn cycle(dbs: &mut Dbs, src: Db, sink: Db, merge: &str) {
    let what = format!("{src:?} -> {sink:?} ({merge})");
    let whole_seconds = src == Db::Ch || sink == Db::Ch;
    let src_table = support::unique(&format!("mx_src_{}", src.store()));
    let sink_table = support::unique(&format!("mx_sink_{}", sink.store()));
    let rows: Vec<Gen> = (1..=200).map(|i| gen_row(i, whole_seconds)).collect();
    create_source(dbs, src, &src_table, &rows).await;
    let cfg = write_config(&config(src, &src_table, sink, &sink_table, merge, BY_ID));
    let read = sink_read(sink, merge);

    let r = run(&cfg, &["apply"], 0, &what);
    assert_eq!(r["mode"], "full", "{what}: {r}");
    assert_eq!(
        (n(&r, "rows_read"), n(&r, "rows_written")),
        (200, 200),
        "{what}: {r}"
    );
    let source = read_rows(dbs, src, &src_table, Read::Plain).await;
    assert_eq!(source.len(), 200, "{what}");
    let got = read_rows(dbs, sink, &sink_table, read).await;
    assert_same(&format!("{what}: after the full sync"), &got, &source);
    let r = run(&cfg, &["plan", "--exit-code"], 0, &what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (0, 0),
        "{what}: no drift after a sync: {r}"
    );
    let r = run(&cfg, &["plan", "--exit-code", "-r", "md5_by_id"], 0, &what);
    assert_eq!(r["mode"], "hash_md5_hash", "{what}: {r}");
    let r = run(&cfg, &["apply"], 0, &what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (0, 0),
        "{what}: a second apply on an unchanged source: {r}"
    );

    change_source(dbs, src, &src_table, whole_seconds).await;
    let r = run(&cfg, &["plan", "--exit-code"], 3, &what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (6, 2),
        "{what}: 4 updated and 2 inserted rows, 2 deleted: {r}"
    );
    let r = run(&cfg, &["plan", "--exit-code", "-r", "md5_by_id"], 3, &what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (6, 2),
        "{what}: hash_md5_hash sees the same drift: {r}"
    );
    let r = run(&cfg, &["apply", "-r", "by_id"], 0, &what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (6, 2),
        "{what}: {r}"
    );
    let r = run(&cfg, &["plan", "--exit-code"], 0, &what);
    assert_eq!(n(&r, "rows_written"), 0, "{what}: {r}");
    run(&cfg, &["plan", "--exit-code", "-r", "md5_by_id"], 0, &what);
    let source = read_rows(dbs, src, &src_table, Read::Plain).await;
    assert_eq!(source.len(), 200, "{what}");
    let got = read_rows(dbs, sink, &sink_table, read).await;
    assert_same(&format!("{what}: after the repair"), &got, &source);

    // A full copy over an up-to-date sink leaves the same live rows, and on PostgreSQL and
    // MariaDB the same stored rows (a collapse sink gets no cancelling and re-inserted
    // rows for unchanged ones).
    let before = stored_rows(dbs, sink, &sink_table).await;
    let r = run(&cfg, &["apply", "--full"], 0, &what);
    assert_eq!(n(&r, "rows_read"), 200, "{what}: {r}");
    assert_eq!(
        stored_rows(dbs, sink, &sink_table).await,
        before,
        "{what}: stored rows after apply --full"
    );
    let got = read_rows(dbs, sink, &sink_table, read).await;
    assert_same(&format!("{what}: after apply --full"), &got, &source);
    run(&cfg, &["plan", "--exit-code"], 0, &what);
    run(&cfg, &["plan", "--exit-code", "-r", "md5_by_id"], 0, &what);
    drop_table(dbs, src, &src_table).await;
    drop_table(dbs, sink, &sink_table).await;
}

/// `id` and `column` of every row of `table` (ClickHouse: as merged, `FINAL`), as text,
/// ordered by id.
async fn id_and_text(dbs: &mut Dbs, db: Db, table: &str, column: &str) -> Vec<Row> {
    match db {
        Db::Pg => {
            support::pg_rows(
                &dbs.pg,
                &format!("SELECT id::text, {column}::text FROM {table} ORDER BY id"),
                &[],
            )
            .await
        }
        Db::My => {
            support::mysql_rows(
                &mut dbs.my,
                &format!(
                    "SELECT CAST(id AS CHAR), CAST({column} AS CHAR) FROM {table} ORDER BY id"
                ),
                mysql_async::Params::Empty,
            )
            .await
        }
        Db::Ch => dbs
            .ch
            .exec(&format!(
                "SELECT toString(id), toString({column}) FROM {table} FINAL ORDER BY id FORMAT TabSeparated"
            ))
            .await
            .lines()
            .map(|l| l.split('\t').map(tsv_value).collect())
            .collect(),
    }
}

/// The rows `table` stores on PostgreSQL and MariaDB, cancelled ones included (`None` on
/// ClickHouse, whose background merges change the count at any time).
async fn stored_rows(dbs: &mut Dbs, db: Db, table: &str) -> Option<i64> {
    let sql = format!("SELECT count(*) FROM {table}");
    match db {
        Db::Pg => Some(dbs.pg.query_one(&sql, &[]).await.expect("count").get(0)),
        Db::My => {
            use mysql_async::prelude::Queryable;
            dbs.my.query_first::<i64, _>(sql).await.expect("count")
        }
        Db::Ch => None,
    }
}

async fn every_source_into(sink: Db, merge: &str) {
    let mut dbs = dbs().await;
    for src in ALL {
        cycle(&mut dbs, src, sink, merge).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_into_postgres_from_every_source() {
    every_source_into(Db::Pg, "upsert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_into_mariadb_from_every_source() {
    every_source_into(Db::My, "upsert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_into_clickhouse_from_every_source() {
    every_source_into(Db::Ch, "upsert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_insert_into_postgres_from_every_source() {
    every_source_into(Db::Pg, "delete_insert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_insert_into_mariadb_from_every_source() {
    every_source_into(Db::My, "delete_insert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_insert_into_clickhouse_from_every_source() {
    every_source_into(Db::Ch, "delete_insert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn collapse_into_postgres_from_every_source() {
    every_source_into(Db::Pg, "collapse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn collapse_into_mariadb_from_every_source() {
    every_source_into(Db::My, "collapse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn collapse_into_clickhouse_from_every_source() {
    every_source_into(Db::Ch, "collapse").await;
}

/// A PostgreSQL source of `rows` rows: `id`, `s`, `f`, `ts` (one hour apart from
/// 2023-12-01), no NULL key.
async fn pg_plain_source(pg: &tokio_postgres::Client, table: &str, rows: i64) {
    pg.batch_execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, s text, f double precision, ts timestamptz);
         INSERT INTO {table} SELECT g, 'row ' || g || ' ✓', g / 7.0,
           TIMESTAMPTZ '2023-12-01 00:00:00+00' + g * INTERVAL '1 hour' + (g % 1000) * INTERVAL '1 microsecond'
           FROM generate_series(1, {rows}) g;"
    ))
    .await
    .unwrap_or_else(|e| panic!("PostgreSQL: create {table}: {e:?}"));
}

fn plain_config(src_table: &str, sink: Db, sink_table: &str, batch: usize, recon: &str) -> String {
    format!(
        "{DATASTORES}pipelines:
  - name: plain
    source:
      datastore: pg
      batch_size: {batch}
      table: {src_table}
      fields:
        - {{column: id, dtype: int}}
        - {{column: s, dtype: str}}
        - {{column: f, dtype: float}}
        - {{column: ts, dtype: datetime}}
    sink:
      datastore: {sink}
      table: {sink_table}
      batch_size: {batch}
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: s, source_column: s}}
        - {{column: f, source_column: f}}
        - {{column: ts, source_column: ts}}
    reconciliation:
{recon}",
        sink = sink.store()
    )
}

/// `(id, s, f, ts)` of every row, ordered by id, in one text form for both dialects.
async fn plain_rows(dbs: &mut Dbs, db: Db, table: &str) -> Vec<Row> {
    plain_rows_of(dbs, db, table, " FINAL").await
}

/// [`plain_rows`], read from ClickHouse with `modifier` after the table (a `MergeTree`
/// table takes no `FINAL`).
async fn plain_rows_of(dbs: &mut Dbs, db: Db, table: &str, modifier: &str) -> Vec<Row> {
    let rows = match db {
        Db::Pg => {
            support::pg_rows(
                &dbs.pg,
                &format!(
                    "SELECT id::text, s, f::text, \
                     to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
                     FROM {table} ORDER BY {table}.id"
                ),
                &[],
            )
            .await
        }
        Db::My => {
            support::mysql_rows(
                &mut dbs.my,
                &format!(
                    "SELECT CAST(id AS CHAR), s, f, DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f') \
                     FROM {table} ORDER BY {table}.id"
                ),
                mysql_async::Params::Empty,
            )
            .await
        }
        Db::Ch => {
            let body = dbs
                .ch
                .exec(&format!(
                    "SELECT toString(id), s, toString(f), toString(ts, 'UTC') FROM {table}{modifier} \
                     ORDER BY id FORMAT TabSeparated"
                ))
                .await;
            body.lines()
                .map(|l| l.split('\t').map(tsv_value).collect())
                .collect()
        }
    };
    rows.into_iter()
        .map(|mut r| {
            let f: f64 = r[2].as_deref().expect("f").parse().expect("float");
            r[2] = Some(format!("{f:.14e}"));
            r
        })
        .collect()
}

/// Asserts that `from` (a table, or a live-rows subquery, read with `modifier`) of `sink`
/// holds exactly the PostgreSQL `src` table's plain rows, `rows` of them (ClickHouse
/// datetimes at whole seconds); reports the first differing row.
async fn assert_plain_copy(
    dbs: &mut Dbs,
    src: &str,
    sink: Db,
    (from, modifier): (&str, &str),
    rows: usize,
    what: &str,
) {
    let mut source = plain_rows(dbs, Db::Pg, src).await;
    if sink == Db::Ch {
        // ClickHouse DateTime keeps whole seconds.
        for r in &mut source {
            r[3] = r[3].as_ref().map(|t| t[..19].to_string());
        }
    }
    let got = plain_rows_of(dbs, sink, from, modifier).await;
    assert_eq!(source.len(), rows, "{what}: source rows");
    assert_eq!(got.len(), rows, "{what}: sink rows");
    let first_diff = source.iter().zip(&got).position(|(a, b)| a != b);
    assert_eq!(
        first_diff.map(|i| (&source[i], &got[i])),
        None,
        "{what}: the first differing row"
    );
}

/// Makes the PostgreSQL table `src`'s rows distinct (a key repeated by equal rows once).
async fn distinct_rows(dbs: &Dbs, src: &str) {
    dbs.pg
        .batch_execute(&format!(
            "CREATE TABLE {src}_d AS SELECT DISTINCT * FROM {src}; DROP TABLE {src}; ALTER TABLE {src}_d RENAME TO {src}"
        ))
        .await
        .expect("one row per key in the source");
}

async fn count_rows(dbs: &mut Dbs, db: Db, table: &str) -> Option<i64> {
    let sql = format!("SELECT count(*) FROM {table}");
    match db {
        Db::Pg => dbs.pg.query_one(&sql, &[]).await.ok().map(|r| r.get(0)),
        Db::My => {
            use mysql_async::prelude::Queryable;
            dbs.my.query_first::<i64, _>(sql).await.ok().flatten()
        }
        Db::Ch => dbs
            .ch
            .try_exec(&format!("SELECT count() FROM {table} FINAL"))
            .await
            .ok()
            .and_then(|b| b.trim().parse().ok()),
    }
}

/// SPEC §6: an `apply` killed in the middle of a full sync, then run again, converges to
/// the source with no row lost or duplicated.
async fn kill_and_rerun(sink: Db) {
    const ROWS: i64 = 200_000;
    let mut dbs = dbs().await;
    let what = format!("kill and rerun into {sink:?}");
    let src_table = support::unique("mx_kill_src");
    let sink_table = support::unique(&format!("mx_kill_{}", sink.store()));
    pg_plain_source(&dbs.pg, &src_table, ROWS).await;
    let recon = "      - name: by_id
        strategy: md5sum_hash
        partition_column: id
        partition_column_type: int
        initial_partition_interval: 50000
        max_block_size: 2000
        interval_reduction_factor: 10
";
    let cfg = write_config(&plain_config(&src_table, sink, &sink_table, 200, recon));
    let mut child = Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(&cfg)
        .arg("apply")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run synctool");
    let started = std::time::Instant::now();
    loop {
        // ClickHouse gets the whole sync as one streamed insert, whose rows show at its end:
        // kill while that insert runs.
        let writing = match sink {
            Db::Ch => dbs
                .ch
                .try_exec(&format!(
                    "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO \"{sink_table}\"%'"
                ))
                .await
                .is_ok_and(|n| n.trim() != "0"),
            _ => count_rows(&mut dbs, sink, &sink_table).await.unwrap_or(0) > 0,
        };
        if writing {
            break;
        }
        assert!(
            child.try_wait().expect("poll synctool").is_none(),
            "{what}: apply ended before any row was seen in the sink"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{what}: no row reached the sink within 120 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL synctool");
    let status = child.wait().expect("wait for synctool");
    assert!(!status.success(), "{what}: apply was killed: {status:?}");
    let partial = count_rows(&mut dbs, sink, &sink_table)
        .await
        .expect("count the sink");
    // On ClickHouse the insert cut short may have kept nothing.
    assert!(
        (partial > 0 || sink == Db::Ch) && partial < ROWS,
        "{what}: the kill must land in the middle of the sync ({partial} of {ROWS} rows written)"
    );

    let r = run(&cfg, &["apply"], 0, &what);
    assert_eq!(r["mode"], "md5sum_hash", "{what}: {r}");
    // A COMMIT sent just before the kill may still land after the count above.
    let w = n(&r, "rows_written");
    assert!(
        w > 0 && w <= ROWS - partial,
        "{what}: the rerun writes the rows the killed run did not ({partial} were there): {r}"
    );
    run(&cfg, &["plan", "--exit-code"], 0, &what);
    let modifier = if sink == Db::Ch { " FINAL" } else { "" };
    assert_plain_copy(
        &mut dbs,
        &src_table,
        sink,
        (&sink_table, modifier),
        ROWS as usize,
        &what,
    )
    .await;
    drop_table(&mut dbs, Db::Pg, &src_table).await;
    drop_table(&mut dbs, sink, &sink_table).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_apply_into_postgres_converges_on_rerun() {
    kill_and_rerun(Db::Pg).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_apply_into_mariadb_converges_on_rerun() {
    kill_and_rerun(Db::My).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_apply_into_clickhouse_converges_on_rerun() {
    kill_and_rerun(Db::Ch).await;
}

/// A datetime partition with `start`/`end`: only drift inside the window is seen and
/// repaired; drift outside stays until a reconciliation covering it runs.
async fn datetime_window(sink: Db) {
    let mut dbs = dbs().await;
    let what = &format!("datetime window, PostgreSQL -> {sink:?}");
    let src_table = support::unique("mx_win_src");
    let sink_table = support::unique(&format!("mx_win_{}", sink.store()));
    // ts = 2023-12-01 + id hours: January 2024 is ids 744..=1487.
    pg_plain_source(&dbs.pg, &src_table, 2000).await;
    let recon = format!(
        "      - name: january
        strategy: md5sum_hash
        partition_column: ts
        partition_column_type: datetime
        start: \"datetime.datetime(2024, 1, 1)\"
        end: \"datetime.datetime(2024, 2, 1)\"
        initial_partition_interval: 7*24*60*60
        max_block_size: 50
        interval_reduction_factor: 7
{BY_ID}"
    );
    let cfg = write_config(&plain_config(&src_table, sink, &sink_table, 300, &recon));
    // The initial load copies every row; a plain `apply` would copy January only.
    let r = run(&cfg, &["apply", "--full"], 0, what);
    assert_eq!(n(&r, "rows_written"), 2000, "{what}: {r}");
    let r = run(&cfg, &["plan", "--exit-code"], 0, what);
    assert_eq!(r["mode"], "md5sum_hash", "{what}: {r}");
    dbs.pg
        .batch_execute(&format!(
            "UPDATE {src_table} SET s = 'inside' WHERE id IN (800, 1400);
             UPDATE {src_table} SET s = 'outside' WHERE id IN (100, 1900);
             DELETE FROM {src_table} WHERE id = 1000;
             INSERT INTO {src_table} VALUES (5000, 'new inside', 1.5, TIMESTAMPTZ '2024-01-15 12:34:56.789012+00'),
               (5001, 'new outside', 2.5, TIMESTAMPTZ '2024-03-01 00:00:00+00');"
        ))
        .await
        .expect("change the source");
    let r = run(&cfg, &["plan", "--exit-code"], 3, what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (3, 1),
        "{what}: two updates, an insert and a delete inside January: {r}"
    );
    let r = run(&cfg, &["apply", "-r", "january"], 0, what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (3, 1),
        "{what}: {r}"
    );
    run(&cfg, &["plan", "--exit-code", "-r", "january"], 0, what);
    let r = run(&cfg, &["plan", "--exit-code", "-r", "by_id"], 3, what);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (3, 0),
        "{what}: the changes outside January are still there: {r}"
    );
    run(&cfg, &["apply", "-r", "by_id"], 0, what);
    run(&cfg, &["plan", "--exit-code", "-r", "by_id"], 0, what);
    let mut source = plain_rows(&mut dbs, Db::Pg, &src_table).await;
    if sink == Db::Ch {
        // ClickHouse DateTime keeps whole seconds.
        for r in &mut source {
            r[3] = r[3].as_ref().map(|t| t[..19].to_string());
        }
    }
    let got = plain_rows(&mut dbs, sink, &sink_table).await;
    assert_eq!(got, source, "{what}");
    drop_table(&mut dbs, Db::Pg, &src_table).await;
    drop_table(&mut dbs, sink, &sink_table).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn datetime_window_into_mariadb_repairs_only_inside_the_window() {
    datetime_window(Db::My).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn datetime_window_into_clickhouse_repairs_only_inside_the_window() {
    datetime_window(Db::Ch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn datetime_window_into_postgres_repairs_only_inside_the_window() {
    datetime_window(Db::Pg).await;
}

/// hash_md5_hash on uuid and str partitions (blocks by md5 prefix of the key's canonical
/// text), into every sink.
#[tokio::test(flavor = "multi_thread")]
async fn uuid_and_str_partitions_with_hash_md5_hash_into_every_sink() {
    let mut dbs = dbs().await;
    for (kind, sql_type, key) in [
        ("uuid", "uuid", "md5('k' || g)::uuid"),
        ("str", "text", "'ключ ' || g || ' ✓|N'"),
    ] {
        for sink in ALL {
            let what = format!("{kind} partition, PostgreSQL -> {sink:?}");
            let src_table = support::unique("mx_uuid_src");
            let sink_table = support::unique(&format!("mx_uuid_{}", sink.store()));
            dbs.pg
                .batch_execute(&format!(
                    "CREATE TABLE {src_table} (u {sql_type} PRIMARY KEY, n bigint, s text);
                 INSERT INTO {src_table} SELECT {key}, g, 'v ' || g
                   FROM generate_series(1, 300) g;"
                ))
                .await
                .expect("create the source");
            let cfg = write_config(&format!(
                "{DATASTORES}pipelines:
  - name: by_uuid
    source:
      datastore: pg
      batch_size: 100
      table: {src_table}
      fields:
        - {{column: u, dtype: {kind}}}
        - {{column: n, dtype: int}}
        - {{column: s, dtype: str}}
    sink:
      datastore: {store}
      table: {sink_table}
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      unique_key: [u]
      fields:
        - {{column: u, source_column: u}}
        - {{column: n, source_column: n}}
        - {{column: s, source_column: s}}
    reconciliation:
      - name: by_uuid
        strategy: hash_md5_hash
        partition_column: u
        partition_column_type: {kind}
        source_order_column: u
        initial_partition_interval: 1
        max_block_size: 20
",
                store = sink.store()
            ));
            let r = run(&cfg, &["apply"], 0, &what);
            assert_eq!(n(&r, "rows_written"), 300, "{what}: {r}");
            let r = run(&cfg, &["plan", "--exit-code"], 0, &what);
            assert_eq!(r["mode"], "hash_md5_hash", "{what}: {r}");
            dbs.pg
                .batch_execute(&format!(
                    "UPDATE {src_table} SET s = 'changed ✓' WHERE n IN (7, 77, 177);
                 DELETE FROM {src_table} WHERE n IN (50, 250);
                 INSERT INTO {src_table} SELECT {key}, g, CASE WHEN g = 301 THEN NULL ELSE 'x' END
                   FROM generate_series(301, 302) g;"
                ))
                .await
                .expect("change the source");
            let r = run(&cfg, &["plan", "--exit-code"], 3, &what);
            assert_eq!(
                (n(&r, "rows_written"), n(&r, "rows_deleted")),
                (5, 2),
                "{what}: {r}"
            );
            let r = run(&cfg, &["apply"], 0, &what);
            assert_eq!(
                (n(&r, "rows_written"), n(&r, "rows_deleted")),
                (5, 2),
                "{what}: {r}"
            );
            run(&cfg, &["plan", "--exit-code"], 0, &what);
            let q = |from: &str| format!("SELECT u, n, s FROM {from} ORDER BY n");
            let source = support::pg_rows(
                &dbs.pg,
                &format!("SELECT u::text, n::text, s FROM {src_table} ORDER BY {src_table}.n"),
                &[],
            )
            .await;
            let got = match sink {
                Db::Pg => {
                    support::pg_rows(
                        &dbs.pg,
                        &format!(
                            "SELECT u::text, n::text, s FROM {sink_table} ORDER BY {sink_table}.n"
                        ),
                        &[],
                    )
                    .await
                }
                Db::My => {
                    support::mysql_rows(&mut dbs.my, &q(&sink_table), mysql_async::Params::Empty)
                        .await
                }
                Db::Ch => {
                    let body = dbs
                        .ch
                        .exec(&format!(
                        "SELECT toString(u), toString(n), s FROM {sink_table} FINAL ORDER BY n \
                         FORMAT TabSeparated"
                    ))
                        .await;
                    body.lines()
                        .map(|l| l.split('\t').map(tsv_value).collect())
                        .collect()
                }
            };
            assert_eq!(got, source, "{what}");
            drop_table(&mut dbs, Db::Pg, &src_table).await;
            drop_table(&mut dbs, sink, &sink_table).await;
        }
    }
}

/// An existing sink table with narrower types than synctool creates (a 32-bit id, a
/// `varchar(10)` or non-Nullable ClickHouse `String`): rows that fit are written (on
/// ClickHouse, RowBinary laid out by the table's own types) and `plan` sees no drift; a row
/// the sink column would refuse stops the run naming the row's key and the column, and
/// leaves the sink as it was.
async fn narrow_existing_sink(sink: Db) {
    let mut dbs = dbs().await;
    let what = format!("narrow existing sink table on {sink:?}");
    let src_table = support::unique("mx_narrow_src");
    let sink_table = support::unique(&format!("mx_narrow_{}", sink.store()));
    // s = 'row <id> ✓': at most 10 characters (12 bytes) for ids up to 3000.
    pg_plain_source(&dbs.pg, &src_table, 3000).await;
    let ddl = match sink {
        Db::Pg => format!(
            "CREATE TABLE {sink_table} (id integer PRIMARY KEY, s varchar(10), f double precision, ts timestamptz)"
        ),
        Db::My => format!(
            "CREATE TABLE {sink_table} (id int unsigned PRIMARY KEY, s varchar(10), f double, ts datetime(6)) DEFAULT CHARSET = utf8mb4"
        ),
        Db::Ch => format!(
            "CREATE TABLE {sink_table} (id UInt32, s String, f Float64, ts DateTime('UTC')) ENGINE = ReplacingMergeTree ORDER BY id"
        ),
    };
    exec(&mut dbs, sink, &ddl).await;
    let cfg = write_config(&plain_config(&src_table, sink, &sink_table, 500, BY_ID));
    let r = run(&cfg, &["apply", "--full"], 0, &what);
    assert_eq!(n(&r, "rows_written"), 3000, "{what}: {r}");
    run(&cfg, &["plan", "--exit-code"], 0, &what);
    let mut source = plain_rows(&mut dbs, Db::Pg, &src_table).await;
    if sink == Db::Ch {
        // ClickHouse DateTime keeps whole seconds.
        for r in &mut source {
            r[3] = r[3].as_ref().map(|t| t[..19].to_string());
        }
    }
    assert_eq!(
        plain_rows(&mut dbs, sink, &sink_table).await,
        source,
        "{what}"
    );

    // Rows the sink table cannot hold: the run stops at the first, naming it.
    let refused = match sink {
        Db::Ch => "NULL",
        _ => "'this text is too long'",
    };
    // The first by reconciliation (only the changed leaf is written), the second by a full
    // sync (a key out of the reconciliation's range would make it scan 50M blocks).
    let broken = [
        (
            format!("UPDATE {src_table} SET s = {refused} WHERE id = 2222"),
            "apply",
            "id=2222",
            "column `s`",
        ),
        (
            format!("UPDATE {src_table} SET s = 'row 2222 ✓' WHERE id = 2222; INSERT INTO {src_table} VALUES (5000000000, 'big', 1, now())"),
            "--full",
            "id=5000000000",
            "column `id`",
        ),
    ];
    for (change, mode, key, column) in broken {
        dbs.pg
            .batch_execute(&change)
            .await
            .expect("change the source");
        let o = synctool(
            &cfg,
            &["apply", mode][..if mode == "apply" { 1 } else { 2 }],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {change}: {err}");
        assert!(
            err.contains(key) && err.contains(column),
            "{what}: {change}: {err}"
        );
        assert_eq!(
            plain_rows(&mut dbs, sink, &sink_table).await,
            source,
            "{what}: {change}: the sink is left as it was"
        );
    }
    dbs.pg
        .batch_execute(&format!("DELETE FROM {src_table} WHERE id = 5000000000"))
        .await
        .expect("restore the source");
    let r = run(&cfg, &["apply"], 0, &what);
    assert_eq!(n(&r, "rows_written"), 0, "{what}: {r}");
    run(&cfg, &["plan", "--exit-code"], 0, &what);
    drop_table(&mut dbs, Db::Pg, &src_table).await;
    drop_table(&mut dbs, sink, &sink_table).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn narrow_existing_sink_table_on_postgres() {
    narrow_existing_sink(Db::Pg).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn narrow_existing_sink_table_on_mariadb() {
    narrow_existing_sink(Db::My).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn narrow_existing_sink_table_on_clickhouse() {
    narrow_existing_sink(Db::Ch).await;
}

/// Enum sink columns (MariaDB `enum(…)`, ClickHouse `Enum8`): labels are written as labels
/// (ClickHouse RowBinary as their numbers), `plan` sees no drift, and a label the enum
/// lacks stops the run naming the row's key.
async fn enum_sink(sink: Db) {
    let mut dbs = dbs().await;
    let what = format!("enum sink column on {sink:?}");
    let src_table = support::unique("mx_enum_src");
    let sink_table = support::unique(&format!("mx_enum_{}", sink.store()));
    dbs.pg
        .batch_execute(&format!(
            "CREATE TABLE {src_table} (id bigint PRIMARY KEY, kind text NOT NULL);
             INSERT INTO {src_table} SELECT g, CASE WHEN g % 3 = 0 THEN 'it''s' ELSE 'plain' END
               FROM generate_series(1, 500) g;"
        ))
        .await
        .expect("create the source");
    let ddl = match sink {
        Db::My => format!(
            "CREATE TABLE {sink_table} (id bigint PRIMARY KEY, kind enum('plain','it''s') NOT NULL)"
        ),
        _ => format!(
            "CREATE TABLE {sink_table} (id Int64, kind Enum8('plain' = 1, 'it\\'s' = -3)) ENGINE = ReplacingMergeTree ORDER BY id"
        ),
    };
    exec(&mut dbs, sink, &ddl).await;
    let cfg = write_config(&format!(
        "{DATASTORES}pipelines:
  - name: enums
    source:
      datastore: pg
      batch_size: 100
      table: {src_table}
      fields:
        - {{column: id, dtype: int}}
        - {{column: kind, dtype: str}}
    sink:
      datastore: {sink}
      table: {sink_table}
      merge_strategy: upsert
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: kind, source_column: kind}}
    reconciliation:
{BY_ID}",
        sink = sink.store()
    ));
    let r = run(&cfg, &["apply", "--full"], 0, &what);
    assert_eq!(n(&r, "rows_written"), 500, "{what}: {r}");
    run(&cfg, &["plan", "--exit-code"], 0, &what);
    let count_sql = match sink {
        Db::My => format!("SELECT count(*) FROM {sink_table} WHERE kind = 'it''s'"),
        _ => format!("SELECT count() FROM {sink_table} FINAL WHERE kind = 'it\\'s'"),
    };
    let quoted = match sink {
        Db::My => {
            use mysql_async::prelude::Queryable;
            dbs.my
                .query_first::<i64, _>(count_sql)
                .await
                .expect("count")
                .expect("a row")
        }
        _ => dbs.ch.exec(&count_sql).await.trim().parse().expect("count"),
    };
    assert_eq!(quoted, 166, "{what}");

    dbs.pg
        .batch_execute(&format!(
            "UPDATE {src_table} SET kind = 'other' WHERE id = 77"
        ))
        .await
        .expect("change the source");
    let err = failing_apply(&cfg, &what);
    assert!(
        err.contains("id=77")
            && err.contains("column `kind`")
            && err.contains("'other' is not one of"),
        "{what}: {err}"
    );
    drop_table(&mut dbs, Db::Pg, &src_table).await;
    drop_table(&mut dbs, sink, &sink_table).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enum_sink_column_on_mariadb() {
    enum_sink(Db::My).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enum_sink_column_on_clickhouse() {
    enum_sink(Db::Ch).await;
}

/// A full sync into ClickHouse streams its batches into one open insert; when the source
/// pauses (here a MariaDB view that sleeps 8 s at row 151), the writer ends the insert, so
/// the rows read so far show in the sink while the run still waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_pausing_source_does_not_hold_clickhouse_rows_back() {
    let mut dbs = dbs().await;
    let src = support::unique("mx_pause_src");
    let sink_table = support::unique("mx_pause_ch");
    // MariaDB reads the rows in key order from the primary key and evaluates SLEEP as it
    // sends row 151; rows of ~300 bytes fill its network buffer, so the rows before the
    // pause are sent before it. (PostgreSQL sorts first and would sleep before sending.)
    for sql in [
        format!("CREATE TABLE {src}_t (id bigint PRIMARY KEY, s text)"),
        format!("INSERT INTO {src}_t SELECT seq, REPEAT('x', 300) FROM seq_1_to_200"),
        format!("CREATE VIEW {src} AS SELECT id, IF(id = 151, CONCAT(s, SLEEP(8)), s) AS s FROM {src}_t"),
    ] {
        exec(&mut dbs, Db::My, &sql).await;
    }
    let cfg = write_config(&format!(
        "{DATASTORES}pipelines:
  - name: pause
    source:
      datastore: my
      batch_size: 10
      table: {src}
      fields:
        - {{column: id, dtype: int}}
        - {{column: s, dtype: str}}
    sink:
      datastore: ch
      table: {sink_table}
      merge_strategy: upsert
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: s, source_column: s}}
"
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(&cfg)
        .args(["apply", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run synctool");
    let started = std::time::Instant::now();
    let mut seen_while_running = 0;
    while started.elapsed() < std::time::Duration::from_secs(7) {
        if let Some(n) = count_rows(&mut dbs, Db::Ch, &sink_table).await {
            if n > 0 && child.try_wait().expect("poll synctool").is_none() {
                seen_while_running = n;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let o = child.wait_with_output().expect("synctool output");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        (10..200).contains(&seen_while_running),
        "rows visible during the pause: {seen_while_running}"
    );
    assert_eq!(count_rows(&mut dbs, Db::Ch, &sink_table).await, Some(200));
    exec(&mut dbs, Db::My, &format!("DROP VIEW {src}")).await;
    drop_table(&mut dbs, Db::My, &format!("{src}_t")).await;
    drop_table(&mut dbs, Db::Ch, &sink_table).await;
}

/// JSON documents cross into every sink as the source's text, byte for byte: numbers beyond
/// what a float holds (`123456789012345678901234567890`, `1.10`) keep their digits, and the
/// row hashes of both sides (which read each side's stored text) agree after the sync.
#[tokio::test(flavor = "multi_thread")]
async fn json_documents_cross_into_every_sink_as_their_text() {
    let mut dbs = dbs().await;
    let src = support::unique("json_src");
    dbs.pg
        .batch_execute(&format!(
            r#"CREATE TABLE {src} (id bigint PRIMARY KEY, j jsonb);
               INSERT INTO {src} VALUES
                 (1, '{{"big": 123456789012345678901234567890, "p": 1.10, "s": 0.1000000000000000055511151231257827}}'),
                 (2, '[1, "two", {{"x": null}}, 1e400]'),
                 (3, '"just text ✓"'),
                 (4, NULL),
                 (5, '-0.000000000000000000000000000001');"#
        ))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL: create {src}: {e:?}"));
    let source = support::pg_rows(
        &dbs.pg,
        &format!("SELECT id::text, j::text FROM {src} ORDER BY id"),
        &[],
    )
    .await;
    for sink in ALL {
        let sink_table = support::unique("json_sink");
        let cfg = write_config(&one_column_config(
            (Db::Pg, &src),
            ("j", "json"),
            (sink, &sink_table),
            "{strategy: upsert}",
            true,
        ));
        let what = format!("json into {sink:?}");
        run(&cfg, &["apply"], 0, &what);
        let copied = id_and_text(&mut dbs, sink, &sink_table, "j").await;
        assert_eq!(copied, source, "{what}");
        run(&cfg, &["plan", "--exit-code"], 0, &what);
        drop_table(&mut dbs, sink, &sink_table).await;
    }
    drop_table(&mut dbs, Db::Pg, &src).await;
}

// ---------------------------------------------------------------------------------------
// Floats: single-precision sources, NaN and infinity.

/// The config of pipeline `one`: the int key `id` and one column `column` of `dtype` from
/// `src_table` on `src` into `sink_table` on `sink`, merged by `merge`, reconciled by
/// [`BY_ID`] when `reconciled`.
fn one_column_config(
    (src, src_table): (Db, &str),
    (column, dtype): (&str, &str),
    (sink, sink_table): (Db, &str),
    merge: &str,
    reconciled: bool,
) -> String {
    let recon = if reconciled {
        format!("    reconciliation:\n{BY_ID}")
    } else {
        String::new()
    };
    format!(
        "{DATASTORES}pipelines:
  - name: one
    source:
      datastore: {src}
      batch_size: 2000
      table: {src_table}
      fields:
        - {{column: id, dtype: int}}
        - {{column: {column}, dtype: {dtype}}}
    sink:
      datastore: {sink}
      table: {sink_table}
      batch_size: 2000
      merge_strategy: {merge}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: {column}, source_column: {column}}}
{recon}",
        src = src.store(),
        sink = sink.store(),
    )
}

/// `synctool apply`, which must fail (exit 1); its stderr. `what` names the case.
fn failing_apply(cfg: &Path, what: &str) -> String {
    let o = synctool(cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    err
}

/// [`one_column_config`] for the float column `r`, upserted with deletes and reconciled.
fn float_config(src: Db, src_table: &str, sink: Db, sink_table: &str) -> String {
    one_column_config(
        (src, src_table),
        ("r", "float"),
        (sink, sink_table),
        "{strategy: upsert, allow_delete: true}",
        true,
    )
}

/// Single-precision values: ones whose shortest text as a float is not their value
/// (`50137512` prints as `5.013751e7`), and 20,000 pseudo-random ones in ±1e8.
fn float4_values() -> Vec<f32> {
    let mut v = vec![
        50_137_512.0f32,
        -2_457_458.25f64 as f32,
        -104_138_336.0,
        0.1,
        0.0,
        0.001,
    ];
    let mut x: u64 = 0x5eed;
    while v.len() < 20_006 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        v.push((unit * 2e8 - 1e8) as f32);
    }
    v
}

/// `(id, r)` of every row of `table` on `db`, `r` read as a double exactly.
async fn float_rows(dbs: &mut Dbs, db: Db, table: &str) -> Vec<(i64, Option<f64>)> {
    let rows = match db {
        // PostgreSQL ≥ 12 and ClickHouse print a double's shortest round-trip text.
        Db::Pg => {
            support::pg_rows(
                &dbs.pg,
                &format!("SELECT id::text, r::float8::text FROM {table} ORDER BY id"),
                &[],
            )
            .await
        }
        Db::Ch => {
            dbs.ch
                .rows(&format!(
                    "SELECT toString(id), toString(toFloat64(r)) FROM {table} FINAL ORDER BY id"
                ))
                .await
        }
        // MariaDB: binary protocol, a DOUBLE as its 8 bytes.
        Db::My => {
            use mysql_async::prelude::Queryable;
            let got: Vec<(i64, Option<f64>)> = dbs
                .my
                .exec(
                    format!("SELECT id, CAST(r AS DOUBLE) FROM {table} ORDER BY id"),
                    (),
                )
                .await
                .unwrap_or_else(|e| panic!("MariaDB: read {table}: {e}"));
            return got;
        }
    };
    let mut out: Vec<(i64, Option<f64>)> = rows
        .into_iter()
        .map(|r| {
            let id = r[0].as_deref().expect("id").parse().expect("id");
            let f = r[1].as_deref().map(|t| match t {
                "NaN" | "nan" => f64::NAN,
                t => t.parse().unwrap_or_else(|e| panic!("{t}: {e}")),
            });
            (id, f)
        })
        .collect();
    out.sort_by_key(|r| r.0);
    out
}

/// Asserts the same `(id, value)` rows, values compared bit for bit (NaN included),
/// naming the first few that differ.
fn same_floats(what: &str, got: &[(i64, Option<f64>)], expected: &[(i64, Option<f64>)]) {
    let wrong: Vec<_> = got
        .iter()
        .zip(expected)
        .filter(|(g, e)| g.0 != e.0 || g.1.map(f64::to_bits) != e.1.map(f64::to_bits))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: (got, expected) differ: {wrong:?}"
    );
    assert_eq!(got.len(), expected.len(), "{what}: row count");
}

/// A single-precision source column (`real`, `FLOAT`, `Float32`) into a double sink
/// column the run creates: the sink holds the exact values, and reconciliation sees no
/// drift.
async fn float4_source_into(src: Db, sinks: &[Db]) {
    let mut dbs = dbs().await;
    let values = float4_values();
    let src_table = support::unique(&format!("mx_f4_{}", src.store()));
    let ddl = match src {
        Db::Pg => format!("CREATE TABLE {src_table} (id bigint PRIMARY KEY, r real)"),
        Db::My => format!("CREATE TABLE {src_table} (id bigint PRIMARY KEY, r float)"),
        Db::Ch => format!(
            "CREATE TABLE {src_table} (id Int64, r Nullable(Float32)) ENGINE = ReplacingMergeTree ORDER BY id"
        ),
    };
    exec(&mut dbs, src, &ddl).await;
    // Each literal is the value's exact double, so every database stores the same f32;
    // on ClickHouse, whose 18.16 `VALUES` parser reads `8.7149568e7` into a Float32 as
    // 87149576, the f32's shortest plain text.
    for (c, chunk) in values.chunks(2000).enumerate() {
        let tuples: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let id = c * 2000 + i + 1;
                match src {
                    Db::Ch => format!("({id}, {f})"),
                    _ => format!("({id}, {:e})", f64::from(*f)),
                }
            })
            .collect();
        exec(
            &mut dbs,
            src,
            &format!(
                "INSERT INTO {src_table} (id, r) VALUES {}",
                tuples.join(", ")
            ),
        )
        .await;
    }
    let expected: Vec<(i64, Option<f64>)> = values
        .iter()
        .enumerate()
        .map(|(i, f)| (i as i64 + 1, Some(f64::from(*f))))
        .collect();
    same_floats(
        &format!("{src:?} source holds the values"),
        &float_rows(&mut dbs, src, &src_table).await,
        &expected,
    );
    for &sink in sinks {
        let what = format!("{src:?} single precision -> {sink:?}");
        let sink_table = support::unique(&format!("mx_f4_{}_{}", src.store(), sink.store()));
        let mut yaml = float_config(src, &src_table, sink, &sink_table);
        if src == Db::Ch {
            // The source is a ReplacingMergeTree: read as merged.
            yaml = yaml.replace(
                &format!("      table: {src_table}\n"),
                &format!("      table: {src_table}\n      final: true\n"),
            );
        }
        let cfg = write_config(&yaml);
        let r = run(&cfg, &["apply", "--full"], 0, &what);
        assert_eq!(n(&r, "rows_written"), values.len() as i64, "{what}: {r}");
        same_floats(
            &what,
            &float_rows(&mut dbs, sink, &sink_table).await,
            &expected,
        );
        run(&cfg, &["plan", "--exit-code"], 0, &what);
        drop_table(&mut dbs, sink, &sink_table).await;
    }
    drop_table(&mut dbs, src, &src_table).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_real_source_copies_exactly_and_stays_in_sync() {
    float4_source_into(Db::Pg, &ALL).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_float_source_copies_exactly_and_stays_in_sync() {
    float4_source_into(Db::My, &[Db::Pg]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_float32_source_copies_exactly_and_stays_in_sync() {
    float4_source_into(Db::Ch, &[Db::Pg]).await;
}

/// NaN and ±infinity in a PostgreSQL double column: copied into PostgreSQL and
/// ClickHouse, which then reconcile without drift; refused by a MariaDB sink (which
/// cannot store them) before any row of the batch is written, naming the row.
#[tokio::test(flavor = "multi_thread")]
async fn nan_and_infinity_sync_and_reconcile_or_are_refused_by_mariadb() {
    let mut dbs = dbs().await;
    let src_table = support::unique("mx_nan");
    exec(
        &mut dbs,
        Db::Pg,
        &format!(
            "CREATE TABLE {src_table} (id bigint PRIMARY KEY, r double precision);
             INSERT INTO {src_table} SELECT g, g / 3.0 FROM generate_series(1, 300) g;
             UPDATE {src_table} SET r = 'NaN' WHERE id = 7;
             UPDATE {src_table} SET r = 'Infinity' WHERE id = 150;
             UPDATE {src_table} SET r = '-Infinity' WHERE id = 299;
             UPDATE {src_table} SET r = NULL WHERE id = 300;"
        ),
    )
    .await;
    let source = float_rows(&mut dbs, Db::Pg, &src_table).await;

    for sink in [Db::Pg, Db::Ch] {
        let what = format!("NaN and infinity into {sink:?}");
        let sink_table = support::unique(&format!("mx_nan_{}", sink.store()));
        let cfg = write_config(&float_config(Db::Pg, &src_table, sink, &sink_table));
        run(&cfg, &["apply", "--full"], 0, &what);
        same_floats(
            &what,
            &float_rows(&mut dbs, sink, &sink_table).await,
            &source,
        );
        run(&cfg, &["plan", "--exit-code"], 0, &what);
        // A changed special value is drift, repaired by reconciliation.
        exec(
            &mut dbs,
            Db::Pg,
            &format!("UPDATE {src_table} SET r = 'Infinity' WHERE id = 7"),
        )
        .await;
        run(&cfg, &["plan", "--exit-code"], 3, &what);
        run(&cfg, &["apply"], 0, &what);
        run(&cfg, &["plan", "--exit-code"], 0, &what);
        exec(
            &mut dbs,
            Db::Pg,
            &format!("UPDATE {src_table} SET r = 'NaN' WHERE id = 7"),
        )
        .await;
        drop_table(&mut dbs, sink, &sink_table).await;
    }

    let what = "NaN into MariaDB";
    let sink_table = support::unique("mx_nan_my");
    let cfg = write_config(&float_config(Db::Pg, &src_table, Db::My, &sink_table));
    let o = synctool(&cfg, &["apply", "--full"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.contains("row with key (id=7) column `r`") && err.contains("NaN or infinity"),
        "{what}: {err}"
    );
    assert_eq!(
        count_rows(&mut dbs, Db::My, &sink_table).await,
        Some(0),
        "{what}: the batch holding the row is not written"
    );
    drop_table(&mut dbs, Db::My, &sink_table).await;
    drop_table(&mut dbs, Db::Pg, &src_table).await;
}

/// A date ClickHouse's `Date` cannot hold (it starts in 1970) stops the run before its
/// batch is written, naming the row's key and the column, like every other value a sink
/// column refuses.
#[tokio::test(flavor = "multi_thread")]
async fn a_date_before_1970_into_clickhouse_is_refused_naming_the_row() {
    let mut dbs = dbs().await;
    let (src, sink_table) = (
        support::unique("chdate_src"),
        support::unique("chdate_sink"),
    );
    exec(
        &mut dbs,
        Db::Pg,
        &format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, dt date);
             INSERT INTO {src} VALUES (1, '2020-01-01'), (2, '1900-01-01'), (3, '2021-01-01');"
        ),
    )
    .await;
    let cfg = write_config(&one_column_config(
        (Db::Pg, &src),
        ("dt", "date"),
        (Db::Ch, &sink_table),
        "{strategy: upsert}",
        false,
    ));
    let err = failing_apply(&cfg, "");
    assert!(
        err.contains("row with key (id=2) column `dt`: 1900-01-01 is outside ClickHouse Date's range (1970–2149)"),
        "{err}"
    );
    assert_eq!(count_rows(&mut dbs, Db::Ch, &sink_table).await, Some(0));
    drop_table(&mut dbs, Db::Ch, &sink_table).await;
    drop_table(&mut dbs, Db::Pg, &src).await;
}

/// A source value that does not read as its field's dtype stops the run naming the result
/// column by position and name, and the row by its key.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_value_that_does_not_decode_names_its_column_and_row() {
    let mut dbs = dbs().await;
    for src in ALL {
        let table = support::unique("undecodable");
        let ddl = match src {
            Db::Ch => format!(
                "CREATE TABLE {table} (id Int64, flag String) ENGINE = MergeTree ORDER BY id"
            ),
            _ => format!("CREATE TABLE {table} (id bigint PRIMARY KEY, flag text)"),
        };
        exec(&mut dbs, src, &ddl).await;
        exec(
            &mut dbs,
            src,
            &format!("INSERT INTO {table} VALUES (1, 'true'), (7, 'maybe'), (9, 'false')"),
        )
        .await;
        let sink_table = support::unique("undecodable_sink");
        let cfg = write_config(&one_column_config(
            (src, &table),
            ("flag", "bool"),
            (Db::Pg, &sink_table),
            "{strategy: upsert}",
            false,
        ));
        let err = failing_apply(&cfg, &format!("{src:?}"));
        assert!(
            err.contains("step source.extract: result column 2 (`flag`) of the row id=7: text")
                && err.contains("is not a boolean"),
            "{src:?}: {err}"
        );
        drop_table(&mut dbs, src, &table).await;
        drop_table(&mut dbs, Db::Pg, &sink_table).await;
    }
    // PostgreSQL's infinite dates have no value in any sink.
    let table = support::unique("undecodable_inf");
    exec(
        &mut dbs,
        Db::Pg,
        &format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, dt date);
             INSERT INTO {table} VALUES (1, '2024-01-01'), (3, 'infinity');"
        ),
    )
    .await;
    let sink_table = support::unique("undecodable_inf_sink");
    let cfg = write_config(&one_column_config(
        (Db::Pg, &table),
        ("dt", "date"),
        (Db::My, &sink_table),
        "{strategy: upsert}",
        false,
    ));
    let err = failing_apply(&cfg, "");
    assert!(
        err.contains("result column 2 (`dt`) of the row id=3: infinite date"),
        "{err}"
    );
    drop_table(&mut dbs, Db::Pg, &table).await;
    drop_table(&mut dbs, Db::My, &sink_table).await;
}

/// A full sync with `allow_delete` into ClickHouse reports the rows it removed (ClickHouse
/// itself reports no count for a delete mutation or a cancelling insert).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_sync_into_clickhouse_reports_the_rows_it_deleted() {
    let mut dbs = dbs().await;
    for merge in [
        "{strategy: upsert, allow_delete: true}",
        "{strategy: collapse, allow_delete: true}",
    ] {
        let (src, sink_table) = (support::unique("chdel_src"), support::unique("chdel_sink"));
        exec(
            &mut dbs,
            Db::Pg,
            &format!(
                "CREATE TABLE {src} (id bigint PRIMARY KEY, s text);
                 INSERT INTO {src} SELECT g, 'row ' || g FROM generate_series(1, 10) g;"
            ),
        )
        .await;
        let cfg = write_config(&one_column_config(
            (Db::Pg, &src),
            ("s", "str"),
            (Db::Ch, &sink_table),
            merge,
            false,
        ));
        run(&cfg, &["apply", "--full"], 0, merge);
        exec(
            &mut dbs,
            Db::Pg,
            &format!("DELETE FROM {src} WHERE id <= 3"),
        )
        .await;
        let r = run(&cfg, &["apply", "--full"], 0, merge);
        assert_eq!(n(&r, "rows_deleted"), 3, "{merge}: {r}");
        let r = run(&cfg, &["apply", "--full"], 0, merge);
        assert_eq!(n(&r, "rows_deleted"), 0, "{merge}: {r}");
        drop_table(&mut dbs, Db::Ch, &sink_table).await;
        drop_table(&mut dbs, Db::Pg, &src).await;
    }
}

/// An existing ClickHouse table whose engine does not fit the merge strategy (a plain
/// MergeTree under upsert keeps every version of every row) is refused before any row is
/// written.
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_table_whose_engine_does_not_fit_the_strategy_is_refused() {
    let dbs = dbs().await;
    let what = "plain MergeTree under upsert";
    let src_table = support::unique("mx_eng_src");
    let sink_table = support::unique("mx_eng_ch");
    pg_plain_source(&dbs.pg, &src_table, 100).await;
    dbs.ch
        .exec(&format!(
            "CREATE TABLE {sink_table} (id Int64, s String, f Float64, ts DateTime) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    let cfg = write_config(&plain_config(&src_table, Db::Ch, &sink_table, 64, BY_ID));
    let err = failing_apply(&cfg, what);
    assert!(
        err.contains(
            "its engine is MergeTree ORDER BY (id), and merge strategy upsert with unique_key (id) needs ReplacingMergeTree ORDER BY (id)"
        ) && err.contains("every run would add another copy of each row"),
        "{what}: {err}"
    );
    let count = dbs
        .ch
        .exec(&format!("SELECT count() FROM {sink_table}"))
        .await;
    assert_eq!(count.trim(), "0", "{what}: nothing is written");
    dbs.ch.exec(&format!("DROP TABLE {sink_table}")).await;
    dbs.pg
        .batch_execute(&format!("DROP TABLE {src_table}"))
        .await
        .expect("drop the source");
}

/// `plain_config` into the ClickHouse table `sink_table` with `merge` as its merge_strategy
/// mapping and `key` as its unique_key.
fn ch_engine_config(src_table: &str, sink_table: &str, merge: &str, key: &str) -> String {
    plain_config(src_table, Db::Ch, sink_table, 64, BY_ID)
        .replace(
            "merge_strategy: {strategy: upsert, allow_delete: true}",
            &format!("merge_strategy: {{{merge}}}"),
        )
        .replace("unique_key: [id]", &format!("unique_key: [{key}]"))
}

/// Every row of the ClickHouse table, sorted.
async fn ch_all_rows(ch: &ClickHouse, table: &str) -> Vec<Row> {
    let mut rows = ch.rows(&format!("SELECT * FROM {table}")).await;
    rows.sort();
    rows
}

/// A sink table created by a first run with `(first, first_key)` and a changed config
/// `(second, second_key)` (after `by_hand` on the table, if any) that the table's engine
/// does not fit: `apply` and `plan` refuse it with a message holding each of `expected`,
/// the table keeps its rows although the source changed, and the first config still runs.
async fn changed_config_is_refused(
    what: &str,
    (first, first_key): (&str, &str),
    by_hand: Option<&str>,
    (second, second_key): (&str, &str),
    expected: &[&str],
) {
    let mut dbs = dbs().await;
    let src_table = support::unique("mx_chg_src");
    let sink_table = support::unique("mx_chg_ch");
    pg_plain_source(&dbs.pg, &src_table, 100).await;
    let cfg = write_config(&ch_engine_config(&src_table, &sink_table, first, first_key));
    run(&cfg, &["apply", "--full"], 0, what);
    if let Some(sql) = by_hand {
        dbs.ch.exec(&sql.replace("{table}", &sink_table)).await;
    }
    dbs.pg
        .batch_execute(&format!(
            "UPDATE {src_table} SET s = s || ' changed' WHERE id <= 10;
             DELETE FROM {src_table} WHERE id > 95;
             INSERT INTO {src_table} VALUES (101, 'new', 1.5, now())"
        ))
        .await
        .expect("change the source");
    let before = ch_all_rows(&dbs.ch, &sink_table).await;
    assert_eq!(before.len(), 100, "{what}: the first run wrote every row");
    let changed = write_config(&ch_engine_config(
        &src_table,
        &sink_table,
        second,
        second_key,
    ));
    let err = failing_apply(&changed, what);
    let plan = synctool(&changed, &["plan"]);
    let plan_err = String::from_utf8_lossy(&plan.stderr).into_owned();
    assert_eq!(plan.status.code(), Some(1), "{what}: plan: {plan_err}");
    for e in [&err, &plan_err] {
        assert!(
            e.contains(&format!(
                "the existing sink table {sink_table} on datastore `ch` does not fit"
            )),
            "{what}: {e}"
        );
        for x in expected {
            assert!(e.contains(x), "{what}: `{x}` in: {e}");
        }
        assert!(e.contains("nothing was written"), "{what}: {e}");
    }
    assert_eq!(
        ch_all_rows(&dbs.ch, &sink_table).await,
        before,
        "{what}: nothing is written"
    );
    // The unchanged config still fits the table it created.
    run(&cfg, &["apply", "--full"], 0, what);
    let count = dbs
        .ch
        .exec(&format!("SELECT count() FROM {sink_table} FINAL"))
        .await;
    assert_eq!(count.trim(), "96", "{what}: the first config still syncs");
    drop_table(&mut dbs, Db::Ch, &sink_table).await;
    drop_table(&mut dbs, Db::Pg, &src_table).await;
}

/// A CollapsingMergeTree(sign) an earlier collapse run created is refused for
/// delete_insert, upsert or another sign column: their rows would be written with sign 0,
/// which the engine takes as neither state (lost from FINAL reads, and OPTIMIZE … FINAL
/// fails).
#[tokio::test(flavor = "multi_thread")]
async fn a_collapsing_clickhouse_table_is_refused_for_another_strategy_or_sign_column() {
    let collapse = ("strategy: collapse, allow_delete: true", "id");
    changed_config_is_refused(
        "collapse table, delete_insert config",
        collapse,
        None,
        ("strategy: delete_insert, allow_delete: true", "id"),
        &[
            "its engine is CollapsingMergeTree(sign) ORDER BY (id)",
            "merge strategy delete_insert with unique_key (id) needs MergeTree ORDER BY (id)",
            "rows would be written with sign = 0",
            "Recreate the table with that engine",
            "(merge_strategy {strategy: collapse, sign_column: sign}, unique_key [id])",
        ],
    )
    .await;
    changed_config_is_refused(
        "collapse table, upsert config",
        collapse,
        None,
        ("strategy: upsert, allow_delete: true", "id"),
        &[
            "needs ReplacingMergeTree ORDER BY (id)",
            "rows would be written with sign = 0",
        ],
    )
    .await;
    changed_config_is_refused(
        "collapse table, another sign column",
        collapse,
        Some("ALTER TABLE {table} ADD COLUMN s2 Int8"),
        (
            "strategy: collapse, sign_column: s2, allow_delete: true",
            "id",
        ),
        &[
            "needs CollapsingMergeTree(s2) ORDER BY (id)",
            "its sign column is `sign`, not sign_column `s2`",
        ],
    )
    .await;
}

/// A Replacing or Collapsing table ordered by `id` is refused for the unique_key
/// `[id, s]`: rows of distinct keys would be merged away on every run, never converging.
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_table_sorted_by_another_key_is_refused() {
    for (what, merge, engine) in [
        (
            "replacing table",
            "strategy: upsert, allow_delete: true",
            "ReplacingMergeTree ORDER BY (id)",
        ),
        (
            "collapsing table",
            "strategy: collapse, allow_delete: true",
            "CollapsingMergeTree(sign) ORDER BY (id)",
        ),
    ] {
        changed_config_is_refused(
            what,
            (merge, "id"),
            None,
            (merge, "id, s"),
            &[
                &format!("its engine is {engine}"),
                "with unique_key (id, s) needs",
                "its sorting key does not hold every unique_key column (id, s), so rows of distinct keys would be merged into one",
            ],
        )
        .await;
    }
}

/// A ReplacingMergeTree(ts) an upsert with `version_column: ts` created is refused once
/// the config drops the version column or names another: the engine keeps the row with
/// the highest version, not the last one written (or the other way round).
#[tokio::test(flavor = "multi_thread")]
async fn a_replacing_clickhouse_table_is_refused_for_another_version_column() {
    let versioned = (
        "strategy: upsert, version_column: ts, allow_delete: true",
        "id",
    );
    changed_config_is_refused(
        "version column removed",
        versioned,
        None,
        ("strategy: upsert, allow_delete: true", "id"),
        &[
            "its engine is ReplacingMergeTree(ts) ORDER BY (id)",
            "needs ReplacingMergeTree ORDER BY (id)",
            "it keeps the row with the highest `ts`, not the last one written, and the config sets no version_column",
            "(merge_strategy {strategy: upsert, version_column: ts}, unique_key [id])",
        ],
    )
    .await;
    changed_config_is_refused(
        "version column changed",
        versioned,
        None,
        (
            "strategy: upsert, version_column: f, allow_delete: true",
            "id",
        ),
        &[
            "needs ReplacingMergeTree(f) ORDER BY (id)",
            "it keeps the row with the highest `ts`, and version_column is `f`",
        ],
    )
    .await;
}

/// A decimal expression the source computes (`d * d`) with more digits after the point
/// than its field keeps is rounded there, half away from zero as each database rounds a
/// decimal it stores, so the extract, both row hashes and the sink agree: the sync is
/// written, and `plan --exit-code` finds no drift afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_computed_decimal_is_rounded_to_its_field_by_every_source() {
    let mut dbs = dbs().await;
    let values = "(1, 1.5), (2, -1.5), (3, 0.5), (4, 2.05), (5, NULL), (6, 123.4567)";
    let expected: Vec<Row> = [
        ("1", Some("2.3")),
        ("2", Some("2.3")),
        ("3", Some("0.3")),
        ("4", Some("4.2")),
        ("5", None),
        ("6", Some("15241.6")),
    ]
    .iter()
    .map(|(id, x)| vec![Some(id.to_string()), x.map(str::to_string)])
    .collect();
    for (src, sink) in [(Db::Pg, Db::Ch), (Db::My, Db::Pg), (Db::Ch, Db::My)] {
        let what = format!("d * d from {src:?} into {sink:?}");
        let src_table = support::unique("mx_rnd_src");
        let sink_table = support::unique("mx_rnd_sink");
        let ddl = match src {
            Db::Ch => format!(
                "CREATE TABLE {src_table} (id Int64, d Nullable(Decimal(12,4))) ENGINE = MergeTree ORDER BY id"
            ),
            _ => format!("CREATE TABLE {src_table} (id bigint PRIMARY KEY, d decimal(12,4))"),
        };
        exec(&mut dbs, src, &ddl).await;
        exec(
            &mut dbs,
            src,
            &format!("INSERT INTO {src_table} VALUES {values}"),
        )
        .await;
        let cfg = write_config(&format!(
            "{DATASTORES}pipelines:
  - name: rnd
    source:
      datastore: {src}
      table: {src_table}
      fields:
        - {{column: id, dtype: int}}
        - {{column: d, dtype: \"decimal(12,4)\"}}
    sink:
      datastore: {sink}
      table: {sink_table}
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: x, source_column: \"d * d\", dtype: \"decimal(20,1)\"}}
    reconciliation:
{BY_ID}",
            src = src.store(),
            sink = sink.store(),
        ));
        let r = run(&cfg, &["apply"], 0, &what);
        assert_eq!(n(&r, "rows_written"), 6, "{what}: {r}");
        let got = id_and_text(&mut dbs, sink, &sink_table, "x").await;
        assert_eq!(got, expected, "{what}");
        let r = run(&cfg, &["plan", "--exit-code"], 0, &what);
        assert_eq!(n(&r, "rows_written"), 0, "{what}: {r}");
        let r = run(&cfg, &["apply"], 0, &what);
        assert_eq!(
            n(&r, "rows_written"),
            0,
            "{what}: a re-run writes nothing: {r}"
        );
        drop_table(&mut dbs, sink, &sink_table).await;
        drop_table(&mut dbs, src, &src_table).await;
    }
}

/// Block arithmetic over negative keys with an interval of 2^32 or more on ClickHouse 18.16,
/// which binds values as literals: a bare `4294967296` is a UInt64 there and made
/// `intDiv(id, 4294967296)` unsigned, so the negative keys' blocks never matched and a row
/// deleted from the source stayed in the sink. As sink and as source.
#[tokio::test(flavor = "multi_thread")]
async fn negative_keys_in_wide_blocks_reconcile_on_clickhouse() {
    let mut dbs = dbs().await;
    for (src, sink) in [(Db::Pg, Db::Ch), (Db::Ch, Db::Pg)] {
        let what = format!("negative keys from {src:?} into {sink:?}");
        let src_table = support::unique("mx_neg_src");
        let sink_table = support::unique("mx_neg_sink");
        let ddl = match src {
            Db::Ch => format!(
                "CREATE TABLE {src_table} (id Int64, v Int64) ENGINE = MergeTree ORDER BY id"
            ),
            _ => format!("CREATE TABLE {src_table} (id bigint PRIMARY KEY, v bigint)"),
        };
        exec(&mut dbs, src, &ddl).await;
        exec(
            &mut dbs,
            src,
            &format!(
                "INSERT INTO {src_table} VALUES (-4611686018427387904, 1), (-11, 2), (-9, 3), (-7, 4), (-3, 5), (1, 6), (2, 7), (4611686018427387904, 8)"
            ),
        )
        .await;
        let cfg = write_config(&format!(
            "{DATASTORES}pipelines:
  - name: neg
    source:
      datastore: {src}
      table: {src_table}
      fields:
        - {{column: id, dtype: int}}
        - {{column: v, dtype: int}}
    sink:
      datastore: {sink}
      table: {sink_table}
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: v, source_column: v}}
    reconciliation:
      - {{name: wide, partition_column: id, initial_partition_interval: 4294967296, max_block_size: 2}}
",
            src = src.store(),
            sink = sink.store(),
        ));
        let r = run(&cfg, &["apply"], 0, &what);
        assert_eq!(n(&r, "rows_written"), 8, "{what}: {r}");
        let r = run(&cfg, &["plan", "--exit-code"], 0, &what);
        assert_eq!(n(&r, "rows_written"), 0, "{what}: {r}");
        let change = match src {
            Db::Ch => format!("ALTER TABLE {src_table} DELETE WHERE id = -9"),
            _ => format!("DELETE FROM {src_table} WHERE id = -9"),
        };
        exec(&mut dbs, src, &change).await;
        if src == Db::Ch {
            ch_wait_mutations(&dbs.ch, &src_table).await;
        }
        let r = run(&cfg, &["apply"], 0, &what);
        assert_eq!(
            (n(&r, "rows_written"), n(&r, "rows_deleted")),
            (0, 1),
            "{what}: only the deleted row: {r}"
        );
        let r = run(&cfg, &["plan", "--exit-code"], 0, &what);
        assert_eq!(n(&r, "rows_written"), 0, "{what}: {r}");
        assert_eq!(
            count_rows(&mut dbs, sink, &sink_table).await,
            Some(7),
            "{what}"
        );
        drop_table(&mut dbs, sink, &sink_table).await;
        drop_table(&mut dbs, src, &src_table).await;
    }
}

/// A left join on a ClickHouse source gives NULL for the columns of an unmatched row, as
/// on PostgreSQL and MySQL (ClickHouse's default is the type's default value, `''`).
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_left_join_gives_null_for_unmatched_rows() {
    let mut dbs = dbs().await;
    let (facts, dims, sink_table) = (
        support::unique("mx_facts"),
        support::unique("mx_dims"),
        support::unique("mx_joined"),
    );
    dbs.ch
        .exec(&format!(
            "CREATE TABLE {facts} (id Int64, dim Int64) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    dbs.ch
        .exec(&format!(
            "CREATE TABLE {dims} (id Int64, label String, weight Int64) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    dbs.ch
        .exec(&format!("INSERT INTO {facts} VALUES (1, 10), (2, 20)"))
        .await;
    dbs.ch
        .exec(&format!("INSERT INTO {dims} VALUES (10, 'ten', 7)"))
        .await;
    let cfg = write_config(&format!(
        "{DATASTORES}pipelines:
  - name: joined
    source:
      datastore: ch
      table: {{table: {facts}, alias: f}}
      joins:
        - {{table: {dims}, alias: d, type: left, on: \"f.dim = d.id\"}}
      fields:
        - {{column: f.id, dtype: int, alias: id}}
        - {{column: d.label, dtype: str, alias: label}}
        - {{column: d.weight, dtype: int, alias: weight}}
    sink:
      datastore: pg
      table: {sink_table}
      unique_key: [id]
    reconciliation:
      - {{name: by_id, partition_column: id}}
"
    ));
    let what = "ClickHouse left join";
    run(&cfg, &["apply"], 0, what);
    let got = support::pg_rows(
        &dbs.pg,
        &format!("SELECT id::text, label, weight::text FROM {sink_table} ORDER BY id"),
        &[],
    )
    .await;
    let row = |v: [Option<&str>; 3]| v.map(|x| x.map(str::to_string)).to_vec();
    assert_eq!(
        got,
        vec![
            row([Some("1"), Some("ten"), Some("7")]),
            row([Some("2"), None, None])
        ],
        "{what}"
    );
    run(&cfg, &["plan", "--exit-code"], 0, what);
    drop_table(&mut dbs, Db::Pg, &sink_table).await;
    drop_table(&mut dbs, Db::Ch, &facts).await;
    drop_table(&mut dbs, Db::Ch, &dims).await;
}

/// ClickHouse text may hold a NUL character, which PostgreSQL text cannot: the run stops
/// naming the row's key and column (not PostgreSQL's COPY error about a staging table).
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_character_into_postgres_text_is_refused_naming_the_row() {
    let mut dbs = dbs().await;
    let (src_table, sink_table) = (support::unique("mx_nul_src"), support::unique("mx_nul_pg"));
    dbs.ch
        .exec(&format!(
            "CREATE TABLE {src_table} (id Int64, s String) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    dbs.ch
        .exec(&format!(
            "INSERT INTO {src_table} VALUES (1, 'fine'), (2, 'a\\0b')"
        ))
        .await;
    let cfg = write_config(&one_column_config(
        (Db::Ch, &src_table),
        ("s", "str"),
        (Db::Pg, &sink_table),
        "{strategy: upsert}",
        false,
    ));
    let err = failing_apply(&cfg, "");
    assert!(
        err.contains("row with key (id=2) column `s`: text with a NUL character"),
        "{err}"
    );
    drop_table(&mut dbs, Db::Pg, &sink_table).await;
    drop_table(&mut dbs, Db::Ch, &src_table).await;
}

/// A ClickHouse `UInt8` read as `bool` is true for any nonzero value, as the row hash reads
/// it, so the copy shows no drift.
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_uint8_of_two_is_true() {
    let mut dbs = dbs().await;
    let (table, sink_table) = (support::unique("mx_u8"), support::unique("mx_u8_pg"));
    dbs.ch
        .exec(&format!(
            "CREATE TABLE {table} (id Int64, flag UInt8) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    dbs.ch
        .exec(&format!(
            "INSERT INTO {table} VALUES (1, 0), (2, 1), (3, 2)"
        ))
        .await;
    let cfg = write_config(&one_column_config(
        (Db::Ch, &table),
        ("flag", "bool"),
        (Db::Pg, &sink_table),
        "{strategy: upsert}",
        true,
    ));
    run(&cfg, &["apply"], 0, "UInt8 as bool");
    let got = id_and_text(&mut dbs, Db::Pg, &sink_table, "flag").await;
    let row = |id: &str, b: &str| vec![Some(id.to_string()), Some(b.to_string())];
    assert_eq!(
        got,
        vec![row("1", "false"), row("2", "true"), row("3", "true")]
    );
    run(&cfg, &["plan", "--exit-code"], 0, "UInt8 as bool");
    drop_table(&mut dbs, Db::Pg, &sink_table).await;
    drop_table(&mut dbs, Db::Ch, &table).await;
}

/// A row hash over 120 columns: PostgreSQL takes at most 100 arguments per function call,
/// so the canonical text is built in nested `concat` calls; every sink agrees with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_wide_table_reconciles_into_every_sink() {
    let mut dbs = dbs().await;
    let src_table = support::unique("mx_wide");
    let cols: Vec<String> = (1..=120).map(|i| format!("c{i}")).collect();
    let ddl: Vec<String> = cols.iter().map(|c| format!("{c} text")).collect();
    let vals = |id: i64| -> String {
        let v: Vec<String> = cols.iter().map(|c| format!("'{c}-{id}'")).collect();
        format!("({id}, {})", v.join(", "))
    };
    exec(
        &mut dbs,
        Db::Pg,
        &format!(
            "CREATE TABLE {src_table} (id bigint PRIMARY KEY, {}); INSERT INTO {src_table} VALUES {}",
            ddl.join(", "),
            (1..=20).map(vals).collect::<Vec<_>>().join(", ")
        ),
    )
    .await;
    let fields: String = cols
        .iter()
        .map(|c| format!("        - {{column: {c}, dtype: str}}\n"))
        .collect();
    for sink in ALL {
        let what = format!("120 columns into {sink:?}");
        let sink_table = support::unique("mx_wide_sink");
        let cfg = write_config(&format!(
            "{DATASTORES}pipelines:
  - name: wide
    source:
      datastore: pg
      table: {src_table}
      fields:
        - {{column: id, dtype: int}}
{fields}    sink:
      datastore: {sink}
      table: {sink_table}
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      unique_key: [id]
    reconciliation:
{BY_ID}",
            sink = sink.store(),
        ));
        run(&cfg, &["apply"], 0, &what);
        run(&cfg, &["plan", "--exit-code"], 0, &what);
        run(&cfg, &["plan", "--exit-code", "-r", "md5_by_id"], 0, &what);
        exec(
            &mut dbs,
            Db::Pg,
            &format!("UPDATE {src_table} SET c120 = 'changed' WHERE id = 7"),
        )
        .await;
        let r = run(&cfg, &["apply"], 0, &what);
        assert_eq!(n(&r, "rows_written"), 1, "{what}: {r}");
        run(&cfg, &["plan", "--exit-code"], 0, &what);
        exec(
            &mut dbs,
            Db::Pg,
            &format!("UPDATE {src_table} SET c120 = 'c120-7' WHERE id = 7"),
        )
        .await;
        drop_table(&mut dbs, sink, &sink_table).await;
    }
    drop_table(&mut dbs, Db::Pg, &src_table).await;
}

/// ClickHouse 18.16 lists `system.tables` / `system.columns` by opening every table of the
/// database, and fails (`Code: 60`, naming another table) when one is dropped meanwhile:
/// the sink's catalog queries are listed again, so that other tables coming and going do
/// not fail a run.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_catalog_queries_survive_tables_dropped_meanwhile() {
    let mut dbs = dbs().await;
    let (src_table, sink_table) = (
        support::unique("mx_race_src"),
        support::unique("mx_race_ch"),
    );
    pg_plain_source(&dbs.pg, &src_table, 50).await;
    let cfg = write_config(&plain_config(&src_table, Db::Ch, &sink_table, 64, BY_ID));
    run(&cfg, &["apply"], 0, "race");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let ch = support::clickhouse().await;
        let prefix = support::unique("mx_churn");
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = format!("{prefix}_{i}");
                ch.exec(&format!(
                    "CREATE TABLE {t} (id Int64) ENGINE = MergeTree ORDER BY id"
                ))
                .await;
                ch.exec(&format!("DROP TABLE {t}")).await;
                i += 1;
            }
        })
    };
    for _ in 0..25 {
        run(&cfg, &["plan", "--exit-code"], 0, "race");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.await.expect("the churn task");
    drop_table(&mut dbs, Db::Ch, &sink_table).await;
    drop_table(&mut dbs, Db::Pg, &src_table).await;
}

/// A date partition whose last value is the last date the sink's type holds (MySQL's
/// `9999-12-31`, ClickHouse `Date`'s `2149-06-06`) still reconciles, instead of binding a
/// bound the sink cannot hold (which made every block look added, and rows only the sink
/// held were never deleted): a MySQL range ends at its last day, which holds the row, so
/// a change to it is found; a ClickHouse range stops before it, with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_date_partition_up_to_the_sinks_last_date_still_reconciles() {
    let mut dbs = dbs().await;
    for (sink, last) in [(Db::My, "9999-12-31"), (Db::Ch, "2149-06-06")] {
        let what = format!("last date {last} into {sink:?}");
        let (src, sink_table) = (
            support::unique("lastdate"),
            support::unique("lastdate_sink"),
        );
        exec(
            &mut dbs,
            Db::Pg,
            &format!(
                "CREATE TABLE {src} (id bigint PRIMARY KEY, d date);
                 INSERT INTO {src} SELECT g, DATE '2024-01-01' + g FROM generate_series(1, 50) g;
                 INSERT INTO {src} VALUES (51, '{last}');"
            ),
        )
        .await;
        let cfg = one_column_config(
            (Db::Pg, &src),
            ("d", "date"),
            (sink, &sink_table),
            "{strategy: upsert, allow_delete: true}",
            false,
        ) + "    reconciliation:
      - {name: by_d, partition_column: d, partition_column_type: date, initial_partition_interval: 864000}
";
        let cfg = write_config(&cfg);
        run(&cfg, &["apply"], 0, &what);
        let o = synctool(&cfg, &["plan", "--exit-code"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{what}: {err}");
        assert_eq!(
            err.contains("or later lie past the last date"),
            sink == Db::Ch,
            "{what}: {err}"
        );
        if sink == Db::My {
            exec(
                &mut dbs,
                Db::Pg,
                &format!("UPDATE {src} SET id = 52 WHERE id = 51"),
            )
            .await;
            let r = run(&cfg, &["apply"], 0, &what);
            assert_eq!(
                (n(&r, "rows_written"), n(&r, "rows_deleted")),
                (1, 1),
                "{what}: {r}"
            );
        }
        // A row only the sink holds, inside the range, is found and deleted.
        exec(
            &mut dbs,
            sink,
            &format!("INSERT INTO {sink_table} (id, d) VALUES (999, '2024-01-20')"),
        )
        .await;
        if sink == Db::Ch {
            ch_wait_mutations(&dbs.ch, &sink_table).await;
        }
        run(&cfg, &["plan", "--exit-code"], 3, &what);
        let r = run(&cfg, &["apply"], 0, &what);
        assert_eq!(n(&r, "rows_deleted"), 1, "{what}: {r}");
        run(&cfg, &["plan", "--exit-code"], 0, &what);
        drop_table(&mut dbs, sink, &sink_table).await;
        drop_table(&mut dbs, Db::Pg, &src).await;
    }
}

/// A PostgreSQL source of `rows` plain rows, loaded by `apply --full` into a new ClickHouse
/// table of merge strategy `merge` (source batches of `batch`, reconciled by id down to
/// blocks of `max_block` rows): the source, the sink and the config.
async fn ch_plain_sync(
    dbs: &Dbs,
    prefix: &str,
    rows: i64,
    merge: &str,
    batch: usize,
    max_block: u32,
) -> (String, String, std::path::PathBuf) {
    let src = support::unique(&format!("{prefix}_src"));
    let sink = support::unique(&format!("{prefix}_ch"));
    pg_plain_source(&dbs.pg, &src, rows).await;
    let recon = format!("      - {{name: by_id, strategy: md5sum_hash, partition_column: id, initial_partition_interval: 1000000, max_block_size: {max_block}}}\n");
    let cfg = write_config(
        &plain_config(&src, Db::Ch, &sink, batch, &recon)
            .replace("strategy: upsert", &format!("strategy: {merge}")),
    );
    run(&cfg, &["apply", "--full"], 0, "first load");
    (src, sink, cfg)
}

/// How many mutations the ClickHouse table `table` has had.
async fn ch_mutations(dbs: &Dbs, table: &str) -> i64 {
    dbs.ch
        .exec(&format!(
            "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = '{table}' FORMAT TabSeparated"
        ))
        .await
        .trim()
        .parse()
        .expect("a count")
}

/// A stream into an existing ClickHouse `delete_insert` table merges its batches together:
/// one mutation for the whole full sync, not one per batch (each rewrites the table's
/// parts holding the batch's keys, which made a full sync into an existing 1M-row table
/// 6–10 times as slow as into a new one). A key whose rows fall into two batches still
/// keeps one row; the sink ends with the source's rows, and deletes, and `plan` sees no
/// drift. A reconciliation's changed leaves are merged together too: two mutations (keys
/// gone, rows changed) for 30 leaves.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_delete_insert_merges_a_streams_batches_together() {
    let mut dbs = dbs().await;
    let (src, sink, cfg) = ch_plain_sync(&dbs, "mx_defer", 3000, "delete_insert", 333, 100).await;
    assert_eq!(
        ch_mutations(&dbs, &sink).await,
        0,
        "a new table is loaded straight"
    );
    // Values changed, 100 rows gone.
    dbs.pg
        .batch_execute(&format!(
            "UPDATE {src} SET s = s || ' (2)'; DELETE FROM {src} WHERE id % 30 = 0;"
        ))
        .await
        .expect("change the source");
    let r = run(
        &cfg,
        &["apply", "--full"],
        0,
        "full sync into the existing table",
    );
    assert_eq!(n(&r, "rows_read"), 2900, "{r}");
    assert_eq!(n(&r, "rows_deleted"), 100, "{r}");
    // The batches' merge, then the deletes of the keys gone.
    assert_eq!(
        ch_mutations(&dbs, &sink).await,
        2,
        "mutations of one full sync"
    );
    // Every row twice: batches of 333 split some pairs of rows of one key.
    dbs.pg
        .batch_execute(&format!(
            "ALTER TABLE {src} DROP CONSTRAINT {src}_pkey; UPDATE {src} SET f = f + 1; INSERT INTO {src} SELECT * FROM {src};"
        ))
        .await
        .expect("repeat the source's rows");
    let r = run(&cfg, &["apply", "--full"], 0, "full sync of repeated keys");
    assert_eq!(n(&r, "rows_read"), 5800, "{r}");
    distinct_rows(&dbs, &src).await;
    assert_plain_copy(&mut dbs, &src, Db::Ch, (&sink, ""), 2900, "repeated keys").await;
    run(&cfg, &["plan", "--exit-code"], 0, "plan after the sync");
    // A reconciliation's changed leaves (about 30 of 100 rows) are merged together too:
    // one mutation deleting the keys gone, one merging the changed rows.
    dbs.pg
        .batch_execute(&format!(
            "UPDATE {src} SET s = s || ' (3)' WHERE id % 97 = 0; DELETE FROM {src} WHERE id % 89 = 0;"
        ))
        .await
        .expect("change the source");
    let before = ch_mutations(&dbs, &sink).await;
    let r = run(&cfg, &["apply"], 0, "repair");
    assert_eq!(r["mode"], "md5sum_hash", "{r}");
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (29, 32),
        "{r}"
    );
    let after = ch_mutations(&dbs, &sink).await;
    assert_eq!(after - before, 2, "mutations of the repair");
    assert_plain_copy(&mut dbs, &src, Db::Ch, (&sink, ""), 2868, "repair").await;
    run(&cfg, &["plan", "--exit-code"], 0, "plan after the repair");
    drop_table(&mut dbs, Db::Pg, &src).await;
    drop_table(&mut dbs, Db::Ch, &sink).await;
}

/// A stream into an existing ClickHouse collapse table gathers its batches too (a
/// collapse merge reads the sink's live versions of the staged keys): a key whose rows
/// fall into two batches still ends with one live version, the last one read.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_collapse_stream_keeps_one_version_of_a_key_split_between_batches() {
    let mut dbs = dbs().await;
    let (src, sink, cfg) = ch_plain_sync(&dbs, "mx_defer_co", 3000, "collapse", 333, 100).await;
    // Every row twice (batches of 333 split some pairs of rows of one key), values changed.
    dbs.pg
        .batch_execute(&format!(
            "ALTER TABLE {src} DROP CONSTRAINT {src}_pkey; UPDATE {src} SET f = f + 1; INSERT INTO {src} SELECT * FROM {src};"
        ))
        .await
        .expect("repeat the source's rows");
    let r = run(&cfg, &["apply", "--full"], 0, "full sync of repeated keys");
    assert_eq!(n(&r, "rows_read"), 6000, "{r}");
    let not_one = dbs
        .ch
        .exec(&format!(
            "SELECT count() FROM (SELECT id, sum(sign) AS s FROM {sink} GROUP BY id HAVING s != 1) FORMAT TabSeparated"
        ))
        .await;
    assert_eq!(not_one.trim(), "0", "keys without exactly one live version");
    distinct_rows(&dbs, &src).await;
    let live = support::live_rows_from(Db::Ch, &sink, "id, s, f, ts", Read::Collapse);
    assert_plain_copy(&mut dbs, &src, Db::Ch, (&live, ""), 3000, "repeated keys").await;
    run(&cfg, &["plan", "--exit-code"], 0, "plan after the sync");
    drop_table(&mut dbs, Db::Pg, &src).await;
    drop_table(&mut dbs, Db::Ch, &sink).await;
}

/// A reconciliation into a ClickHouse `delete_insert` sink gathers at most 100,000 keys
/// before it merges them (it remembers each one): a repair of 120,000 changed rows merges
/// twice, and ends with the source's rows.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_delete_insert_repair_merges_every_100000_keys() {
    let mut dbs = dbs().await;
    let (src, sink, cfg) =
        ch_plain_sync(&dbs, "mx_gather", 120_000, "delete_insert", 10_000, 2000).await;
    dbs.pg
        .batch_execute(&format!("UPDATE {src} SET s = s || ' (2)'"))
        .await
        .expect("change the source");
    let before = ch_mutations(&dbs, &sink).await;
    let r = run(&cfg, &["apply"], 0, "repair");
    assert_eq!(r["mode"], "md5sum_hash", "{r}");
    assert_eq!(n(&r, "rows_written"), 120_000, "{r}");
    let after = ch_mutations(&dbs, &sink).await;
    assert_eq!(after - before, 2, "merges of the repair");
    assert_plain_copy(&mut dbs, &src, Db::Ch, (&sink, ""), 120_000, "repair").await;
    run(&cfg, &["plan", "--exit-code"], 0, "plan after the repair");
    drop_table(&mut dbs, Db::Pg, &src).await;
    drop_table(&mut dbs, Db::Ch, &sink).await;
}
