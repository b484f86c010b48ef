//! Keys and partitions of column types the generator reads through a conversion: ClickHouse
//! `Date` keys and partitions on either side (read as day numbers, under another name than
//! the column's, so that the query's range predicates and row hashes still see the date),
//! and `str` fields over PostgreSQL `uuid`, integer and enum key columns (ordered by their
//! text, as the other side orders them). End to end against the real servers.

use crate::support::{self, unique, write_config};
use serde_json::Value as J;

/// Runs `synctool args… --format json`, asserts the exit code, returns the one pipeline.
fn run(cfg: &std::path::Path, args: &[&str], code: i32) -> J {
    support::run_report(cfg, args, code).0
}

use crate::support::written;

/// `plan --exit-code` of each reconciliation finds nothing to do.
fn no_drift(cfg: &std::path::Path, recons: &[&str], what: &str) {
    for r in recons {
        let v = run(cfg, &["plan", "--exit-code", "-r", r], 0);
        assert_eq!(written(&v), 0, "{what}, {r}: {v}");
    }
}

use crate::support::edge_config as config;

/// A `(id, d)` key with `d` a date, reconciled by `id` (the date a key column of every leaf
/// diff) and by `d` (date range predicates, under `hash_md5_hash` ordered by the date key).
const DATE_KEY: &str = r#"      fields: [{column: id, dtype: int}, {column: d, dtype: date}, {column: v, dtype: str}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: STRATEGY, allow_delete: true}
      unique_key: [id, d]
    reconciliation:
      - {name: by_id, strategy: md5sum_hash, partition_column: id, initial_partition_interval: 100, max_block_size: 4}
      - {name: by_day, strategy: hash_md5_hash, partition_column: d, partition_column_type: date, initial_partition_interval: 64, max_block_size: 4}
"#;

/// The ClickHouse sink's live rows as `id|day number|v`, ordered.
async fn ch_rows(ch: &support::ClickHouse, table: &str, strategy: &str) -> Vec<String> {
    let live = match strategy {
        "collapse" => {
            format!("SELECT id, d, v FROM default.{table} GROUP BY id, d, v HAVING sum(sign) > 0")
        }
        "upsert" => format!("SELECT id, d, v FROM default.{table} FINAL"),
        _ => format!("SELECT id, d, v FROM default.{table}"),
    };
    ch.rows(&format!(
        "SELECT concat(toString(id), '|', toString(toInt32(d)), '|', v) AS r FROM ({live}) ORDER BY r"
    ))
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap_or_default())
    .collect()
}

/// A PostgreSQL table's rows as `id|day number|v`, ordered as [`ch_rows`].
async fn pg_rows(pg: &tokio_postgres::Client, table: &str) -> Vec<String> {
    support::pg_rows(
        pg,
        &format!(
            "SELECT r FROM (SELECT id::text || '|' || (d - DATE '1970-01-01')::text || '|' || v AS r FROM {table}) t ORDER BY r COLLATE \"C\""
        ),
        &[],
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap_or_default())
    .collect()
}

/// A date key and a date partition on a ClickHouse sink, for every merge strategy: after a
/// full sync, changed, added and deleted source rows are repaired by reconciliation over
/// the id (leaf diffs keyed by the date) and over the date, and `plan` then finds nothing.
/// (Read as `toInt32("d") AS "d"`, the alias stood for the column in the sink's
/// `dateDiff(…, "d")` row hash and `"d" >= {range_start:Date}`, which ClickHouse refused.)
#[tokio::test(flavor = "multi_thread")]
async fn a_date_key_and_a_date_partition_on_a_clickhouse_sink_reconcile() {
    let pg = support::pg().await;
    let ch = support::clickhouse().await;
    let src = unique("dk_src");
    // Dates from 2024 on, and one after 2105 (which 18.16 prints as 1970-01-01).
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint, d date, v text, PRIMARY KEY (id, d));
         INSERT INTO {src} SELECT g % 25, DATE '2024-01-01' + g, 'v' || g FROM generate_series(1, 60) g;
         INSERT INTO {src} VALUES (7, DATE '2120-05-05', 'late');"
    ))
    .await
    .unwrap();
    for strategy in ["upsert", "delete_insert", "collapse"] {
        let sink = unique("dk_ch");
        let cfg =
            write_config(&config("pg", &src, "ch", &sink, DATE_KEY).replace("STRATEGY", strategy));
        let r = run(&cfg, &["apply"], 0);
        assert_eq!(written(&r), 61, "{strategy}: {r}");
        no_drift(&cfg, &["by_id", "by_day"], strategy);

        pg.batch_execute(&format!(
            "UPDATE {src} SET v = v || '!' WHERE id IN (3, 11) OR d = DATE '2120-05-05'"
        ))
        .await
        .unwrap();
        // Id 3 has three rows, id 11 two; and the late row.
        let r = run(&cfg, &["apply", "-r", "by_id"], 0);
        assert_eq!(written(&r), 6, "{strategy}: {r}");
        no_drift(&cfg, &["by_id", "by_day"], strategy);

        pg.batch_execute(&format!(
            "UPDATE {src} SET v = v || '?' WHERE d = DATE '2024-01-21';
             INSERT INTO {src} VALUES (99, DATE '2024-02-10', 'new');
             DELETE FROM {src} WHERE d = DATE '2024-01-31';"
        ))
        .await
        .unwrap();
        let r = run(&cfg, &["apply", "-r", "by_day"], 0);
        assert_eq!(written(&r), 2, "{strategy}: {r}");
        assert_eq!(r["rows_deleted"], 1, "{strategy}: {r}");
        no_drift(&cfg, &["by_id", "by_day"], strategy);
        assert_eq!(
            ch_rows(&ch, &sink, strategy).await,
            pg_rows(&pg, &src).await,
            "{strategy}"
        );
        ch.exec(&format!("DROP TABLE IF EXISTS default.{sink}"))
            .await;
        // The next strategy starts from the original rows.
        pg.batch_execute(&format!(
            "DELETE FROM {src};
             INSERT INTO {src} SELECT g % 25, DATE '2024-01-01' + g, 'v' || g FROM generate_series(1, 60) g;
             INSERT INTO {src} VALUES (7, DATE '2120-05-05', 'late');"
        ))
        .await
        .unwrap();
    }
    pg.batch_execute(&format!("DROP TABLE {src}"))
        .await
        .unwrap();
}

/// A ClickHouse source with a date key and a date partition: `md5sum_hash` over the id
/// (source leaf diffs keyed by the date) and over the date (range predicates on the date in
/// the extract), and `timestamp` over the date, run after run, copy what the sink lacks
/// and then find nothing. (The source read the date as `toInt32("d") AS "d"`, which stood
/// for the column in the same query's `"d" >= {range_start:Date}`, the row hash, and the
/// timestamp run's `"d" > {watermark:Date}`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_date_key_and_a_date_partition_on_a_clickhouse_source_reconcile() {
    let pg = support::pg().await;
    let ch = support::clickhouse().await;
    let (src, sink) = (unique("dks_ch"), unique("dks_pg"));
    ch.exec(&format!(
        "CREATE TABLE default.{src} (id Int64, d Date, v String) ENGINE = MergeTree ORDER BY (id, d)"
    ))
    .await;
    ch.exec(&format!(
        "INSERT INTO default.{src} SELECT number % 25, toDate('2024-01-01') + number, concat('v', toString(number)) FROM system.numbers LIMIT 60"
    ))
    .await;
    // 2120-05-05 by its day number: 18.16 parses the text of a date after 2105 as
    // 0000-00-00.
    ch.exec(&format!(
        "INSERT INTO default.{src} VALUES (7, toDate(toUInt16(54911)), 'late')"
    ))
    .await;
    let rest = r#"      fields: [{column: id, dtype: int}, {column: d, dtype: date}, {column: v, dtype: str}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [id, d]
    reconciliation:
      - {name: by_id, strategy: md5sum_hash, partition_column: id, initial_partition_interval: 100, max_block_size: 4}
      - {name: by_day, strategy: md5sum_hash, partition_column: d, partition_column_type: date, initial_partition_interval: 64, max_block_size: 4}
      - {name: inc, strategy: timestamp, partition_column: d, partition_column_type: date}
"#;
    let cfg = write_config(&config("ch", &src, "pg", &sink, rest));
    let r = run(&cfg, &["apply"], 0);
    assert_eq!(written(&r), 61, "{r}");
    no_drift(&cfg, &["by_id", "by_day", "inc"], "after the full sync");

    // Drift in the sink: the source's rows are written back.
    pg.batch_execute(&format!(
        "UPDATE {sink} SET v = 'drift' WHERE id IN (3, 11);
         DELETE FROM {sink} WHERE d = DATE '2120-05-05';"
    ))
    .await
    .unwrap();
    // Id 3 has three rows, id 11 two; and the late row.
    let r = run(&cfg, &["apply", "-r", "by_id"], 0);
    assert_eq!(written(&r), 6, "{r}");
    no_drift(&cfg, &["by_id", "by_day"], "by_id repaired");
    pg.batch_execute(&format!(
        "UPDATE {sink} SET v = 'drift' WHERE d BETWEEN DATE '2024-01-10' AND DATE '2024-01-12';
         INSERT INTO {sink} (id, d, v) VALUES (500, DATE '2024-01-20', 'sink only');"
    ))
    .await
    .unwrap();
    let r = run(&cfg, &["apply", "-r", "by_day"], 0);
    assert_eq!(written(&r), 3, "{r}");
    assert_eq!(r["rows_deleted"], 1, "{r}");
    no_drift(&cfg, &["by_id", "by_day"], "by_day repaired");

    // Newer days in the source, taken by the timestamp run, then nothing on the next ones.
    ch.exec(&format!(
        "INSERT INTO default.{src} VALUES (1, toDate(toUInt16(55152)), 'newer'), (2, toDate(toUInt16(55153)), 'newer')"
    ))
    .await;
    let r = run(&cfg, &["apply", "-r", "inc"], 0);
    assert_eq!(written(&r), 2, "{r}");
    for _ in 0..2 {
        let r = run(&cfg, &["apply", "-r", "inc"], 0);
        assert_eq!(written(&r), 0, "{r}");
    }
    no_drift(
        &cfg,
        &["by_id", "by_day", "inc"],
        "after the timestamp runs",
    );

    let want: Vec<String> = ch
        .rows(&format!(
            "SELECT concat(toString(id), '|', toString(toInt32(d)), '|', v) AS r FROM default.{src} ORDER BY r"
        ))
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(pg_rows(&pg, &sink).await, want);
    ch.exec(&format!("DROP TABLE IF EXISTS default.{src}"))
        .await;
    pg.batch_execute(&format!("DROP TABLE {sink}"))
        .await
        .unwrap();
}

/// The key column type of [`str_fields_over_non_text_keys_reconcile`], its PostgreSQL DDL
/// and the key value of row `g` (1..=30) as SQL.
struct KeyType {
    name: &'static str,
    ddl: &'static str,
    value: &'static str,
}

const KEY_TYPES: [KeyType; 3] = [
    KeyType {
        name: "uuid",
        ddl: "uuid",
        value: "md5('k' || g)::uuid",
    },
    // Text order (`10` before `9`) is not numeric order.
    KeyType {
        name: "integer",
        ddl: "integer",
        value: "g * 37 % 101",
    },
    // Declared in the reverse of the labels' text order.
    KeyType {
        name: "enum",
        ddl: "ENUM_TYPE",
        value: "('k' || lpad(g::text, 2, '0'))::ENUM_TYPE",
    },
];

/// `str` fields over key columns that are not text in PostgreSQL (a `uuid`, an `integer`,
/// an enum; the seed format has no uuid dtype, so such keys are typed `str`): a full sync,
/// then changes repaired by `hash_md5_hash` over an int partition (whose block hashes
/// concatenate rows in key order on both sides) and over the key itself, then `plan` finds
/// nothing. Into a new PostgreSQL table (text keys), for the enum an existing one keyed by
/// the enum (whose leaf diffs order it too), and for the uuid an existing MariaDB
/// `CHAR(36)` key. (`ORDER BY k COLLATE "C"` failed: collations are not supported by those
/// types.)
#[tokio::test(flavor = "multi_thread")]
async fn str_fields_over_non_text_keys_reconcile() {
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let rest = r#"      fields: [{column: k, dtype: str}, {column: v, dtype: str}, {column: n, dtype: int}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [k]
    reconciliation:
      - {name: by_n, strategy: hash_md5_hash, partition_column: n, partition_column_type: int, initial_partition_interval: 100, max_block_size: 4}
      - {name: by_key, strategy: hash_md5_hash, partition_column: k, partition_column_type: str, initial_partition_interval: 1, max_block_size: 4}
"#;
    for kt in &KEY_TYPES {
        let src = unique(&format!("sk_{}", kt.name));
        let enum_type = format!("{src}_e");
        let labels: Vec<String> = (1..=30).rev().map(|g| format!("'k{g:02}'")).collect();
        pg.batch_execute(&format!(
            "CREATE TYPE {enum_type} AS ENUM ({});",
            labels.join(", ")
        ))
        .await
        .unwrap();
        let ddl = kt.ddl.replace("ENUM_TYPE", &enum_type);
        let value = kt.value.replace("ENUM_TYPE", &enum_type);
        pg.batch_execute(&format!(
            "CREATE TABLE {src} (k {ddl} PRIMARY KEY, v text, n int);
             INSERT INTO {src} SELECT {value}, 'v' || g, g % 7 FROM generate_series(1, 30) g;"
        ))
        .await
        .unwrap();
        let mut sinks = vec![("pg", unique(&format!("sk_{}_pgn", kt.name)))];
        if kt.name == "enum" {
            // An existing sink table keyed by the enum (a `str` field fits it; a uuid or
            // integer column is refused for a `str` field before anything is written).
            let pg_existing = unique("sk_enum_pgx");
            pg.batch_execute(&format!(
                "CREATE TABLE {pg_existing} (k {ddl} PRIMARY KEY, v text, n bigint)"
            ))
            .await
            .unwrap();
            sinks.push(("pg", pg_existing));
        }
        if kt.name == "uuid" {
            let my_existing = unique("sk_uuid_my");
            support::mysql_exec(
                &mut my,
                &format!("CREATE TABLE {my_existing} (k CHAR(36) PRIMARY KEY, v LONGTEXT, n BIGINT) CHARSET utf8mb4 COLLATE utf8mb4_bin"),
            )
            .await;
            sinks.push(("my", my_existing));
        }
        for (store, sink) in &sinks {
            let what = format!("{} into {store} {sink}", kt.name);
            let cfg = write_config(&config("pg", &src, store, sink, rest));
            let r = run(&cfg, &["apply"], 0);
            assert_eq!(written(&r), 30, "{what}: {r}");
            no_drift(&cfg, &["by_n", "by_key"], &what);
            for name in ["by_n", "by_key"] {
                let v = run(&cfg, &["plan", "-r", name], 0);
                assert_eq!(v["blocks"]["modified"], 0, "{what}, {name}: {v}");
            }

            pg.batch_execute(&format!("UPDATE {src} SET v = v || '!' WHERE n = 3"))
                .await
                .unwrap();
            let r = run(&cfg, &["apply", "-r", "by_n"], 0);
            assert_eq!(written(&r), 4, "{what}: {r}");
            no_drift(&cfg, &["by_n", "by_key"], &what);
            pg.batch_execute(&format!("UPDATE {src} SET v = v || '?' WHERE n = 5"))
                .await
                .unwrap();
            let r = run(&cfg, &["apply", "-r", "by_key"], 0);
            assert_eq!(written(&r), 4, "{what}: {r}");
            no_drift(&cfg, &["by_n", "by_key"], &what);

            let want = support::pg_rows(
                &pg,
                &format!("SELECT r FROM (SELECT k::text || '|' || v AS r FROM {src}) t ORDER BY r COLLATE \"C\""),
                &[],
            )
            .await;
            let got = match *store {
                "pg" => {
                    support::pg_rows(
                        &pg,
                        &format!("SELECT r FROM (SELECT k::text || '|' || v AS r FROM {sink}) t ORDER BY r COLLATE \"C\""),
                        &[],
                    )
                    .await
                }
                _ => {
                    support::mysql_rows(
                        &mut my,
                        &format!("SELECT CONCAT(k, '|', v) AS r FROM {sink} ORDER BY CAST(r AS BINARY)"),
                        mysql_async::Params::Empty,
                    )
                    .await
                }
            };
            assert_eq!(got, want, "{what}");
        }
        for (store, sink) in &sinks {
            match *store {
                "pg" => pg
                    .batch_execute(&format!("DROP TABLE IF EXISTS {sink}"))
                    .await
                    .unwrap(),
                _ => support::mysql_exec(&mut my, &format!("DROP TABLE IF EXISTS {sink}")).await,
            }
        }
        pg.batch_execute(&format!("DROP TABLE {src}; DROP TYPE {enum_type}"))
            .await
            .unwrap();
    }
}
