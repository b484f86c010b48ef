//! `synctool apply` and `plan` end to end: the built binary on temporary configs against the
//! real PostgreSQL (127.0.0.1:5432, user postgres, database test) and MariaDB
//! (127.0.0.1:3306, root, database test). A missing server fails the test, naming it.

use crate::support::{synctool, write_config};
use mysql_async::prelude::Queryable;
use serde_json::Value as J;
use std::process::{Command, Output};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

async fn pg() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap_or_else(|e| {
        panic!("PostgreSQL is unreachable on 127.0.0.1:5432 (database `test`): {e}")
    });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn my() -> mysql_async::Conn {
    mysql_async::Conn::from_url("mysql://root@127.0.0.1:3306/test")
        .await
        .unwrap_or_else(|e| {
            panic!("MariaDB is unreachable on 127.0.0.1:3306 (root, database `test`): {e}")
        })
}

/// Runs a command that prints JSON; asserts its exit code and returns the one pipeline,
/// checking it has every key of SPEC §1's shape.
fn json_run(cfg: &std::path::Path, args: &[&str], code: i32) -> J {
    let p = crate::support::run_json(cfg, args, code, "apply test");
    for k in [
        "name",
        "mode",
        "rows_read",
        "rows_written",
        "rows_deleted",
        "blocks",
        "duration_ms",
    ] {
        assert!(p.get(k).is_some(), "missing {k} in {p}");
    }
    p
}

fn n(v: &J, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn blocks(v: &J, k: &str) -> i64 {
    v["blocks"][k]
        .as_i64()
        .unwrap_or_else(|| panic!("blocks.{k} in {v}"))
}

const PG: &str =
    "{name: pg, type: postgres, host: 127.0.0.1, port: 5432, username: postgres, database: test}";
const MY: &str =
    "{name: my, type: mysql, host: 127.0.0.1, port: 3306, username: root, database: test}";
const CH: &str = "{name: ch, type: clickhouse, host: 127.0.0.1, port: 8123, database: default}";

/// Source table: 3000 rows, ids 1..=3000.
async fn make_source(c: &tokio_postgres::Client, t: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz);
         INSERT INTO {t} SELECT g, 'name ' || g, g * 1.25, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 minute'
           FROM generate_series(1, 3000) g;"
    ))
    .await
    .expect("create the source table");
}

fn pipeline_yaml(
    name: &str,
    src: &str,
    sink_store: &str,
    sink: &str,
    merge: &str,
    recon: &str,
) -> String {
    format!(
        r#"
datastores:
  - {PG}
  - {MY}
pipelines:
  - name: {name}
    source:
      datastore: pg
      batch_size: 500
      table: {src}
      fields:
        - {{column: id, dtype: int}}
        - {{column: name, dtype: str}}
        - {{column: amount, dtype: "decimal(12,2)"}}
        - {{column: updated_at, dtype: datetime}}
    sink:
      datastore: {sink_store}
      table: {sink}
      merge_strategy: {merge}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: name, source_column: name}}
        - {{column: amount, source_column: amount}}
        - {{column: updated_at, source_column: updated_at}}
{recon}"#
    )
}

const RECON_BY_ID: &str = r#"    reconciliation:
      - name: by_id
        strategy: md5sum_hash
        partition_column: id
        partition_column_type: int
        initial_partition_interval: 1000
        max_block_size: 100
        interval_reduction_factor: 10
"#;

/// Rows of the source not in the sink, and of the sink not in the source.
async fn pg_diff(c: &tokio_postgres::Client, src: &str, sink: &str) -> i64 {
    let q = format!(
        "SELECT (SELECT count(*) FROM (SELECT id, name, amount, updated_at FROM {src} EXCEPT SELECT id, name, amount, updated_at FROM {sink}) a)
              + (SELECT count(*) FROM (SELECT id, name, amount, updated_at FROM {sink} EXCEPT SELECT id, name, amount, updated_at FROM {src}) b)"
    );
    c.query_one(&q, &[]).await.expect("diff query").get(0)
}

async fn xmins(c: &tokio_postgres::Client, t: &str) -> std::collections::HashMap<i64, String> {
    c.query(&format!("SELECT id, xmin::text FROM {t}"), &[])
        .await
        .expect("xmin query")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn drop_pg(c: &tokio_postgres::Client, tables: &[&str]) {
    for t in tables {
        let _ = c.batch_execute(&format!("DROP TABLE IF EXISTS {t}")).await;
    }
}

async fn drop_my(tables: &[&str]) {
    my().await
        .query_drop(format!("DROP TABLE IF EXISTS {}", tables.join(", ")))
        .await
        .expect("MariaDB: drop tables");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_to_pg_upsert_full_sync_then_reconcile_exactly_the_changed_rows() {
    let c = pg().await;
    let (src, sink) = (unique("eng_src"), unique("eng_sink"));
    make_source(&c, &src).await;
    let cfg = write_config(&pipeline_yaml(
        "accounts",
        &src,
        "pg",
        &sink,
        "{strategy: upsert, allow_delete: true}",
        RECON_BY_ID,
    ));

    // A new sink table: created, then filled by a full sync.
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(
        (n(&r, "rows_read"), n(&r, "rows_written")),
        (3000, 3000),
        "{r}"
    );
    assert_eq!(r["mode"], "full");
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);

    // No drift: plan exits 0, apply writes nothing.
    let r = json_run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (0, 0),
        "{r}"
    );
    assert_eq!(r["mode"], "md5sum_hash");
    assert_eq!(
        blocks(&r, "unchanged"),
        4,
        "level-1 blocks of 1000 ids over 1..=3000: {r}"
    );
    let before = xmins(&c, &sink).await;
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (0, 0),
        "{r}"
    );
    assert_eq!(
        xmins(&c, &sink).await,
        before,
        "a re-run must not touch a row"
    );

    // Drift: 4 updates, 3 inserts, 2 deletes.
    c.batch_execute(&format!(
        "UPDATE {src} SET name = name || ' (changed)' WHERE id IN (10, 11, 1500);
         UPDATE {src} SET amount = amount + 1 WHERE id = 2999;
         INSERT INTO {src} VALUES (3001, 'new 1', 1, now()), (3002, NULL, NULL, NULL), (3003, 'new 3', 3, now());
         DELETE FROM {src} WHERE id IN (700, 701);"
    ))
    .await
    .unwrap();
    let planned = json_run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(
        (n(&planned, "rows_written"), n(&planned, "rows_deleted")),
        (7, 2),
        "{planned}"
    );
    let o = synctool(&cfg, &["apply", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("7 would write (3 added, 4 modified), 2 would delete"),
        "{out}"
    );
    assert_eq!(
        xmins(&c, &sink).await,
        before,
        "plan and --dry-run write nothing"
    );

    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (7, 2),
        "{r}"
    );
    assert_eq!(
        (
            blocks(&r, "modified"),
            blocks(&r, "added"),
            blocks(&r, "deleted")
        ),
        (5, 0, 0),
        "the five 10-id leaf blocks holding the changes are modified, none added or deleted: {r}"
    );
    assert!(
        n(&r, "rows_read") <= 5 * 100,
        "only the changed leaves (at most max_block_size rows each) are read: {r}"
    );
    assert_eq!(
        n(&r, "rows_read"),
        n(&planned, "rows_read"),
        "plan reports the rows apply reads: {planned} {r}"
    );
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);
    let after = xmins(&c, &sink).await;
    let mut touched: Vec<i64> = after
        .iter()
        .filter(|(id, x)| before.get(id) != Some(x))
        .map(|(id, _)| *id)
        .collect();
    touched.sort();
    assert_eq!(touched, vec![10, 11, 1500, 2999, 3001, 3002, 3003]);
    assert!(!after.contains_key(&700) && !after.contains_key(&701));

    let r = json_run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (0, 0),
        "{r}"
    );

    // --full streams everything again; the upsert leaves unchanged rows alone.
    let r = json_run(&cfg, &["apply", "--full"], 0);
    assert_eq!(n(&r, "rows_read"), 3001, "{r}");
    assert_eq!(xmins(&c, &sink).await, after);

    // A range override limits the comparison.
    c.batch_execute(&format!(
        "UPDATE {src} SET name = 'x' WHERE id IN (5, 2500)"
    ))
    .await
    .unwrap();
    let r = json_run(&cfg, &["plan", "--start", "1", "--end", "1000"], 0);
    assert_eq!(n(&r, "rows_written"), 1, "{r}");
    // An empty range is a usage error, not a run that compares nothing and finds no drift.
    let o = synctool(
        &cfg,
        &["plan", "--exit-code", "--start", "1000", "--end", "1"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the range is empty: --end 1 is not after --start 1000"),
        "{err}"
    );
    drop_pg(&c, &[&src, &sink]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_to_mariadb_upsert_with_deletes() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink) = (unique("eng_src"), unique("eng_my"));
    make_source(&c, &src).await;
    let cfg = write_config(&pipeline_yaml(
        "to_mariadb",
        &src,
        "my",
        &sink,
        "{strategy: upsert, allow_delete: true}",
        "",
    ));
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(
        (n(&r, "rows_read"), n(&r, "rows_written")),
        (3000, 3000),
        "{r}"
    );
    let row: Option<(i64, String, String, String)> = m
        .query_first(format!(
            "SELECT id, name, CAST(amount AS CHAR), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s') FROM {sink} WHERE id = 42"
        ))
        .await
        .unwrap();
    assert_eq!(
        row,
        Some((
            42,
            "name 42".into(),
            "52.50".into(),
            "2024-01-01 00:42:00".into()
        ))
    );

    c.batch_execute(&format!(
        "UPDATE {src} SET name = 'renamed' WHERE id = 7; DELETE FROM {src} WHERE id BETWEEN 100 AND 109;"
    ))
    .await
    .unwrap();
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_deleted"), 10, "{r}");
    let count: Option<i64> = m
        .query_first(format!("SELECT count(*) FROM {sink}"))
        .await
        .unwrap();
    assert_eq!(count, Some(2990));
    let name: Option<String> = m
        .query_first(format!("SELECT name FROM {sink} WHERE id = 7"))
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("renamed"));
    m.query_drop(format!("DROP TABLE IF EXISTS {sink}"))
        .await
        .unwrap();
    drop_pg(&c, &[&src]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_insert_and_collapse_repair_changed_rows() {
    let c = pg().await;
    for merge in [
        "{strategy: delete_insert, allow_delete: true}",
        "{strategy: collapse, allow_delete: true}",
    ] {
        let (src, sink) = (unique("eng_src"), unique("eng_sink"));
        make_source(&c, &src).await;
        let cfg = write_config(&pipeline_yaml(
            "scoped",
            &src,
            "pg",
            &sink,
            merge,
            RECON_BY_ID,
        ));
        json_run(&cfg, &["apply"], 0);
        c.batch_execute(&format!(
            "UPDATE {src} SET name = 'changed' WHERE id IN (3, 2000);
             DELETE FROM {src} WHERE id = 1234;
             INSERT INTO {src} VALUES (5000, 'far', 1, now());"
        ))
        .await
        .unwrap();
        let r = json_run(&cfg, &["plan", "--exit-code"], 3);
        assert_eq!(
            (n(&r, "rows_written"), n(&r, "rows_deleted")),
            (3, 1),
            "{merge}: {r}"
        );
        let r = json_run(&cfg, &["apply"], 0);
        assert_eq!(
            (n(&r, "rows_written"), n(&r, "rows_deleted")),
            (3, 1),
            "{merge}: {r}"
        );
        let r = json_run(&cfg, &["plan", "--exit-code"], 0);
        assert_eq!(n(&r, "rows_written"), 0, "{merge}: {r}");
        if merge.contains("collapse") {
            // Live rows (sum of signs per row) equal the source; a changed key holds its
            // original row, a cancelling row and the new row.
            let live = format!(
                "(SELECT id, name, amount, updated_at FROM {sink} GROUP BY id, name, amount, updated_at HAVING sum(sign) > 0) l"
            );
            assert_eq!(pg_diff(&c, &src, &live).await, 0, "{merge}");
            let rows: i64 = c
                .query_one(&format!("SELECT count(*) FROM {sink} WHERE id = 3"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(rows, 3, "{merge}");
        } else {
            assert_eq!(pg_diff(&c, &src, &sink).await, 0, "{merge}");
        }
        drop_pg(&c, &[&src, &sink]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamp_incremental_reads_only_newer_rows() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink) = (unique("eng_src"), unique("eng_my"));
    make_source(&c, &src).await;
    let recon = r#"    reconciliation:
      - name: incremental
        strategy: timestamp
        partition_column: updated_at
        partition_column_type: datetime
        lookback: 10*60
"#;
    let cfg = write_config(&pipeline_yaml(
        "incremental",
        &src,
        "my",
        &sink,
        "{strategy: upsert}",
        recon,
    ));
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(
        (n(&r, "rows_read"), n(&r, "rows_written")),
        (3000, 3000),
        "{r}"
    );
    assert_eq!(r["mode"], "timestamp");
    // Watermark: 2024-01-03 02:00 (id 3000); rows after it minus the 10-minute lookback
    // are ids 2991..=3000, plus the two newer rows.
    c.batch_execute(&format!(
        "UPDATE {src} SET name = 'late edit', updated_at = TIMESTAMPTZ '2024-02-01 00:00:00+00' WHERE id = 5;
         INSERT INTO {src} VALUES (3001, 'newest', 9, TIMESTAMPTZ '2024-02-01 00:00:01+00');"
    ))
    .await
    .unwrap();
    // The window is compared block by block: its ten unchanged rows are neither read in
    // full nor written; the two rows after the watermark are.
    let r = json_run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(n(&r, "rows_written"), 2, "{r}");
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!((n(&r, "rows_read"), n(&r, "rows_written")), (2, 2), "{r}");
    // An unchanged source: nothing to write, no drift.
    let r = json_run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(n(&r, "rows_written"), 0, "{r}");
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 0, "{r}");
    // A change inside the window (now the ten minutes before 2024-02-01 00:00:01) that
    // kept its timestamp is found and written alone.
    c.batch_execute(&format!(
        "UPDATE {src} SET name = 'window edit' WHERE id = 5"
    ))
    .await
    .unwrap();
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 1, "{r}");
    let name: Option<String> = m
        .query_first(format!("SELECT name FROM {sink} WHERE id = 5"))
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("window edit"));
    let name: Option<String> = m
        .query_first(format!("SELECT name FROM {sink} WHERE id = 3001"))
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("newest"));
    let count: Option<i64> = m
        .query_first(format!("SELECT count(*) FROM {sink}"))
        .await
        .unwrap();
    assert_eq!(count, Some(3001));
    m.query_drop(format!("DROP TABLE IF EXISTS {sink}"))
        .await
        .unwrap();
    drop_pg(&c, &[&src]).await;
}

/// A timestamp run that stops part way (here at a row the sink refuses; a kill is the
/// same) leaves a sink whose newest row has every older one before it: the source is read
/// in the partition column's order, so the next run's watermark misses no row. Rows with
/// a NULL timestamp, which no watermark reaches, are compared (or, without row hashes,
/// merged) on every run.
#[tokio::test(flavor = "multi_thread")]
async fn a_timestamp_run_stopped_part_way_resumes_without_losing_rows() {
    let c = pg().await;
    for (tag, name_field) in [("hashed", "name"), ("templated", "TMPL({{ name }})")] {
        let (src, sink) = (unique("tsk_src"), unique("tsk_sink"));
        make_source(&c, &src).await;
        // Timestamps fall as ids rise: key order and time order are opposite.
        c.batch_execute(&format!(
            "UPDATE {src} SET updated_at = TIMESTAMPTZ '2024-01-01 00:00:00+00' + (3001 - id) * INTERVAL '1 minute';
             UPDATE {src} SET updated_at = NULL WHERE id IN (10, 20);
             CREATE TABLE {sink} (id bigint PRIMARY KEY, name varchar(12), amount numeric(12,2), updated_at timestamptz);
             UPDATE {src} SET name = 'far too long a name' WHERE id = 1500;"
        ))
        .await
        .unwrap();
        let recon = "    reconciliation:\n      - {name: inc, strategy: timestamp, partition_column: updated_at, lookback: 0}\n";
        let yaml = pipeline_yaml("tsk", &src, "pg", &sink, "{strategy: upsert}", recon).replace(
            "source_column: name}",
            &format!("source_column: \"{name_field}\"}}"),
        );
        let cfg = write_config(&yaml);
        let o = synctool(&cfg, &["apply"]);
        assert_eq!(o.status.code(), Some(1), "{tag}: {o:?}");
        let written: i64 = c
            .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            written > 0 && written < 3000,
            "{tag}: {written} rows before the stop"
        );
        c.batch_execute(&format!("UPDATE {src} SET name = 'fixed' WHERE id = 1500"))
            .await
            .unwrap();
        json_run(&cfg, &["apply"], 0);
        assert_eq!(
            pg_diff(&c, &src, &sink).await,
            0,
            "{tag}: every row after the rerun"
        );
        // A new row and a changed row, both without a timestamp.
        c.batch_execute(&format!(
            "INSERT INTO {src} VALUES (3001, 'no time', 1, NULL);
             UPDATE {src} SET name = 'null edit' WHERE id = 10;"
        ))
        .await
        .unwrap();
        if tag == "hashed" {
            let r = json_run(&cfg, &["plan", "--exit-code"], 3);
            assert_eq!(n(&r, "rows_written"), 2, "{tag}: {r}");
        }
        json_run(&cfg, &["apply"], 0);
        assert_eq!(
            pg_diff(&c, &src, &sink).await,
            0,
            "{tag}: NULL-timestamp rows"
        );
        if tag == "hashed" {
            let r = json_run(&cfg, &["plan", "--exit-code"], 0);
            assert_eq!(n(&r, "rows_written"), 0, "{tag}: {r}");
        }
        drop_pg(&c, &[&src, &sink]).await;
    }
}

/// `apply` (upsert) from a new 3000-row source into an existing PostgreSQL table made with
/// `columns`; `recon` follows the sink fields. Returns the run, the config, the client, and
/// the source and sink table names.
async fn apply_into_existing(
    pipeline: &str,
    columns: &str,
    recon: &str,
) -> (
    Output,
    std::path::PathBuf,
    tokio_postgres::Client,
    String,
    String,
) {
    let c = pg().await;
    let (src, sink) = (unique("eng_src"), unique("eng_sink"));
    make_source(&c, &src).await;
    c.batch_execute(&format!("CREATE TABLE {sink} ({columns})"))
        .await
        .unwrap();
    let cfg = write_config(&pipeline_yaml(
        pipeline,
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        recon,
    ));
    (synctool(&cfg, &["apply"]), cfg, c, src, sink)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_table_that_does_not_fit_fails_before_writing() {
    let (o, _, c, src, sink) = apply_into_existing(
        "mismatch",
        "id bigint PRIMARY KEY, name bigint, amount numeric(12,2), updated_at timestamptz",
        "",
    )
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("column `name` is bigint") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(
        err.contains("error: pipeline `mismatch`: the existing sink table"),
        "the pipeline is named once: {err}"
    );
    let rows: i64 = c
        .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    drop_pg(&c, &[&src, &sink]).await;
}

/// A sink column that rounds the source's values (the source's amounts have two decimals,
/// its timestamps whole minutes) is warned about. Reconciliation that recomputes row hashes
/// from the sink columns then sees drift after every sync, as the warning says; with the
/// row hash stored in a sink column it does not.
/// Columns the pipeline does not write are fine when the database fills them (a default,
/// an identity, a generated column); a NOT NULL column it cannot fill is refused.
#[tokio::test(flavor = "multi_thread")]
async fn unwritten_sink_columns_with_defaults_are_accepted() {
    let (o, _, c, src, sink) = apply_into_existing(
        "defaults",
        "id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz,
         created_at timestamptz NOT NULL DEFAULT now(), seq bigint GENERATED ALWAYS AS IDENTITY,
         doubled numeric GENERATED ALWAYS AS (amount * 2) STORED",
        "",
    )
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let filled: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {sink} WHERE created_at IS NOT NULL AND doubled = amount * 2"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(filled, 3000);
    drop_pg(&c, &[&src, &sink]).await;
    let (o, _, c, src, sink) = apply_into_existing(
        "no_default",
        "id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz,
         owner text NOT NULL",
        "",
    )
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("column `owner` (text) is NOT NULL but the pipeline does not write it"),
        "{err}"
    );
    drop_pg(&c, &[&src, &sink]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_column_that_keeps_less_precision_is_warned_about() {
    let lossy = "id bigint PRIMARY KEY, name text, amount numeric(12,1), updated_at timestamp(0) with time zone";
    let (o, cfg, c, src, sink) = apply_into_existing("lossy", lossy, RECON_BY_ID).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("sink column `amount` is numeric(12,1), which keeps 1 digit after the point (the field has 2): the database changes those values on write, so reconciliation sees those rows as changed on every run; widen the column, or keep the row hash in a sink column"),
        "{err}"
    );
    assert!(
        err.contains(
            "sink column `updated_at` is timestamp(0) with time zone, which keeps whole seconds"
        ),
        "{err}"
    );
    assert!(!err.contains("`name`"), "{err}");
    let o = synctool(&cfg, &["plan", "--exit-code"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "the rounded amounts are drift: {o:?}"
    );
    drop_pg(&c, &[&src, &sink]).await;

    // Without a reconciliation, the warning names none.
    let (o, _, c, src, sink) = apply_into_existing("lossy_plain", lossy, "").await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("(the field has 2): the database changes those values on write, so the sink holds them changed")
            && !err.contains("reconciliation"),
        "{err}"
    );
    drop_pg(&c, &[&src, &sink]).await;

    let stored = format!("      meta_columns: {{hash_column: h}}\n{RECON_BY_ID}");
    let (o, cfg, c, src, sink) =
        apply_into_existing("lossy_stored", &format!("{lossy}, h bigint"), &stored).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("which keeps 1 digit after the point (the field has 2): the database changes those values on write, and reconciliation, which compares the row hash stored in `h`, does not count that as drift"),
        "{err}"
    );
    let o = synctool(&cfg, &["plan", "--exit-code"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("no drift"), "{out}");
    let rounded: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {sink} WHERE amount * 100 % 10 <> 0"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rounded, 0, "the sink keeps one decimal");
    drop_pg(&c, &[&src, &sink]).await;
}

#[test]
fn an_unreachable_datastore_fails_with_exit_1_naming_it_without_the_password() {
    let cfg = from_store(
        "{name: src, type: postgres, host: 127.0.0.1, port: 1, username: postgres, password: pw-s3cret-9z, database: test}",
    );
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`src`") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("pw-s3cret-9z"), "{err}");
    // With JSON logs every stderr line is a JSON object, the error's too.
    let o = synctool(&cfg, &["apply", "--log-format", "json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<J> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("127.0.0.1:1"))),
        "{err}"
    );
    assert!(!err.contains("pw-s3cret-9z"), "{err}");
    // plan gives no verdict on drift when a pipeline could not be compared.
    let o = synctool(&cfg, &["plan", "--exit-code"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(!out.contains("no drift"), "{out}");
    assert!(out.contains("no verdict"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pipeline_does_not_stop_the_others_unless_fail_fast() {
    let c = pg().await;
    let (src, sink) = (unique("ff_src"), unique("ff_sink"));
    make_source(&c, &src).await;
    // The first pipeline reads a table that does not exist; the second is sound.
    let good = pipeline_yaml("good", &src, "pg", &sink, "{strategy: upsert}", "");
    let bad = good
        .split_once("pipelines:\n")
        .map(|(_, p)| {
            p.replace("name: good", "name: bad")
                .replace(&src, "no_such_table_ff")
                .replace(&sink, &format!("{sink}_bad"))
        })
        .expect("pipelines");
    let cfg = write_config(&good.replace("pipelines:\n", &format!("pipelines:\n{bad}")));

    let o = synctool(&cfg, &["apply", "--fail-fast", "--format", "json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pipeline `bad`") && err.contains("no_such_table_ff"),
        "{err}"
    );
    assert!(err.contains("not run (--fail-fast): good"), "{err}");
    let v: J = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(v["pipelines"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(v["errors"][0]["name"], "bad", "{v}");
    assert_eq!(v["not_run"], serde_json::json!(["good"]), "{v}");
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&sink])
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "--fail-fast ran the pipeline after the failed one");

    let o = synctool(&cfg, &["apply", "--format", "json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed pipeline fails the run: {err}"
    );
    let v: J = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(v["pipelines"][0]["name"], "good", "{v}");
    assert_eq!(v["pipelines"][0]["rows_written"], 3000, "{v}");
    let e = v["errors"][0]["error"].as_str().unwrap_or_default();
    assert!(
        e.starts_with("pipeline `bad`") && e.contains("no_such_table_ff"),
        "{v}"
    );
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);
    // The failed pipeline's sink table is created with its first write, which never came.
    let exists: bool = c
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{sink}_bad")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !exists,
        "a run whose source query failed created its sink table"
    );

    let o = synctool(&cfg, &["plan", "--exit-code"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "a failure outranks drift: {out}");
    assert!(
        out.contains("pipeline good (full)") && out.contains("failed: bad"),
        "{out}"
    );
    drop_pg(&c, &[&src, &sink, &format!("{sink}_bad")]).await;
}

/// A source without rows still leaves its new sink table, on every run mode: the full sync
/// creates it after its extract ended, the reconciliation before it compares.
/// A run that creates a MariaDB sink table and loads it refreshes the table's statistics
/// (`sink.analyze`): InnoDB otherwise keeps those it took of the empty table for minutes,
/// and the next run's collapse merges, planned on them, took 3x as long (1M rows: 170 s
/// instead of 50 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_mariadb_sink_table_gets_fresh_statistics() {
    let c = pg().await;
    let src = unique("stats_src");
    make_source(&c, &src).await;
    let sink = unique("stats_sink");
    let cfg = write_config(&pipeline_yaml(
        "stats",
        &src,
        "my",
        &sink,
        "{strategy: collapse, allow_delete: true}",
        "",
    ));
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 3000, "{r}");
    let rows: Option<i64> = my()
        .await
        .query_first(format!(
            "SELECT n_rows FROM mysql.innodb_table_stats WHERE database_name = 'test' AND table_name = '{sink}'"
        ))
        .await
        .expect("MariaDB: table statistics");
    assert_eq!(
        rows,
        Some(3000),
        "the sink table's statistics after the load"
    );
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_source_creates_its_sink_table() {
    let c = pg().await;
    let src = unique("empty_src");
    make_source(&c, &src).await;
    c.batch_execute(&format!("DELETE FROM {src}"))
        .await
        .unwrap();
    for (recon, store) in [("", "pg"), (RECON_BY_ID, "pg"), ("", "my")] {
        let sink = unique("empty_sink");
        let cfg = write_config(&pipeline_yaml(
            "empty",
            &src,
            store,
            &sink,
            "{strategy: upsert}",
            recon,
        ));
        let r = json_run(&cfg, &["apply"], 0);
        assert_eq!(n(&r, "rows_written"), 0, "{r}");
        if store == "pg" {
            let exists: bool = c
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&sink])
                .await
                .unwrap()
                .get(0);
            assert!(exists, "{store} {recon}: no sink table");
            json_run(&cfg, &["plan", "--exit-code"], 0);
            drop_pg(&c, &[&sink]).await;
        } else {
            let count: Option<i64> = my()
                .await
                .query_first(format!("SELECT count(*) FROM {sink}"))
                .await
                .unwrap_or_else(|e| panic!("{store}: no sink table: {e}"));
            assert_eq!(count, Some(0), "{store}");
            drop_my(&[&sink]).await;
        }
    }
    drop_pg(&c, &[&src]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_sync_with_a_hash_column_rewrites_untracked_columns() {
    let c = pg().await;
    let (src, sink) = (unique("hc_src"), unique("hc_sink"));
    make_source(&c, &src).await;
    // `name` is not tracked: the row hash stored in `h` leaves it out, so only a full sync
    // carries its changes; the upsert must not skip a row because its hash is unchanged.
    let cfg = write_config(
        &pipeline_yaml("hc", &src, "pg", &sink, "{strategy: upsert}", RECON_BY_ID)
            .replace(
                "{column: name, source_column: name}",
                "{column: name, source_column: name, track: false}",
            )
            .replace(
                "      unique_key: [id]\n",
                "      unique_key: [id]\n      meta_columns: {hash_column: h}\n",
            ),
    );
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!("UPDATE {src} SET name = 'renamed' WHERE id <= 10"))
        .await
        .unwrap();
    let v = json_run(&cfg, &["apply"], 0);
    assert_eq!(
        n(&v, "rows_written"),
        0,
        "an untracked column is not drift: {v}"
    );
    json_run(&cfg, &["apply", "--full"], 0);
    assert_eq!(
        pg_diff(&c, &src, &sink).await,
        0,
        "--full copies every column"
    );
    drop_pg(&c, &[&src, &sink]).await;
}

/// A sink field the runtime computes (a template) is covered by the stored row hash
/// through its definition: changing the template is drift on every row, which `apply`
/// rewrites; the source values alone would hash the same.
#[tokio::test]
async fn a_changed_template_with_a_hash_column_rewrites_every_row() {
    let c = pg().await;
    let (src, sink) = (unique("tpl_src"), unique("tpl_sink"));
    make_source(&c, &src).await;
    let yaml = |suffix: &str| {
        pipeline_yaml("tpl", &src, "pg", &sink, "{strategy: upsert}", RECON_BY_ID)
            .replace(
                "{column: name, source_column: name}",
                &format!("{{column: name, source_column: \"TMPL({{{{ name }}}}-{suffix})\"}}"),
            )
            .replace(
                "      unique_key: [id]\n",
                "      unique_key: [id]\n      meta_columns: {hash_column: h}\n",
            )
    };
    let cfg = write_config(&yaml("x"));
    json_run(&cfg, &["apply"], 0);
    json_run(&cfg, &["plan", "--exit-code"], 0);
    let cfg = write_config(&yaml("y"));
    let v = json_run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(n(&v, "rows_written"), 3000, "{v}");
    let v = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&v, "rows_written"), 3000, "{v}");
    let stale: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {sink} WHERE name NOT LIKE '%-y'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stale, 0);
    json_run(&cfg, &["plan", "--exit-code"], 0);
    drop_pg(&c, &[&src, &sink]).await;
}

/// Whether PostgreSQL table `t` exists.
async fn pg_exists(c: &tokio_postgres::Client, t: &str) -> bool {
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
        .await
        .map(|r| r.get(0))
        .expect("look the table up")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_sink_table_gets_only_the_reconciled_range() {
    let c = pg().await;
    let (src, sink) = (unique("rg_src"), unique("rg_sink"));
    make_source(&c, &src).await;
    let recon = format!("{RECON_BY_ID}        start: \"1001\"\n        end: \"2001\"\n");
    let cfg = write_config(&pipeline_yaml(
        "rg",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        &recon,
    ));
    // The plan counts the range only, as apply will write it, and creates nothing.
    let v = json_run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(n(&v, "rows_written"), 1000, "{v}");
    assert!(!pg_exists(&c, &sink).await, "plan created {sink}");
    // A source that cannot be read leaves no sink table behind.
    let broken = write_config(&pipeline_yaml(
        "rg",
        &format!("{src}_missing"),
        "pg",
        &sink,
        "{strategy: upsert}",
        &recon,
    ));
    let o = synctool(&broken, &["apply"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!pg_exists(&c, &sink).await, "a failed apply left {sink}");
    let v = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&v, "rows_written"), 1000, "{v}");
    let (lo, hi, count): (i64, i64, i64) = c
        .query_one(
            &format!("SELECT min(id), max(id), count(*) FROM {sink}"),
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!((lo, hi, count), (1001, 2000, 1000));
    let v = json_run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(n(&v, "rows_written"), 0, "{v}");
    drop_pg(&c, &[&src, &sink]).await;
}

/// MariaDB's plan for a generated statement: (table, access type) per row of EXPLAIN.
async fn mariadb_explain(conn: &mut mysql_async::Conn, sql: &str) -> Vec<(String, String)> {
    let rows: Vec<mysql_async::Row> = conn
        .query(format!("EXPLAIN {sql}"))
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    rows.into_iter()
        .map(|r| {
            let get = |name: &str| -> String {
                r.get_opt::<Option<String>, _>(name)
                    .and_then(Result::ok)
                    .flatten()
                    .unwrap_or_default()
            };
            (get("table"), get("type"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_deletes_by_staged_key_go_through_the_primary_key() {
    let sink = unique("dk_sink");
    let cfg = write_config(&pipeline_yaml(
        "dk",
        "unused_src",
        "my",
        &sink,
        "{strategy: delete_insert, allow_delete: true}",
        RECON_BY_ID,
    ));
    let o = synctool(&cfg, &["compile", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let plan: J = serde_json::from_slice(&o.stdout).expect("compile JSON");
    let step = |id: &str| -> String {
        let s = plan["pipelines"][0]["steps"]
            .as_array()
            .and_then(|ss| ss.iter().find(|s| s["id"] == id))
            .unwrap_or_else(|| panic!("no step {id}"));
        match &s["sql"] {
            J::Array(a) => a[0].as_str().unwrap().to_string(),
            v => v.as_str().unwrap().to_string(),
        }
    };
    let mut conn = my().await;
    conn.query_drop(format!(
        "CREATE TABLE {sink} (id BIGINT PRIMARY KEY, name LONGTEXT, amount DECIMAL(12,2), updated_at DATETIME(6));
         INSERT INTO {sink} SELECT seq, 'n', 1, NULL FROM seq_1_to_20000;
         ANALYZE TABLE {sink};"
    ))
    .await
    .expect("MariaDB: sink table");
    for create in [step("sink.stage"), step("sink.stage_keys")] {
        conn.query_drop(create).await.expect("staging table");
    }
    // A single-table `DELETE … WHERE id IN (SELECT …)` is a dependent subquery over every
    // sink row on MariaDB: a full scan (and lock) of the table per deleting statement.
    for id in ["sink.delete_keys", "sink.merge"] {
        let sql = step(id);
        let plan = mariadb_explain(&mut conn, &sql).await;
        let is_sink = |t: &str| t == "_synctool_s" || t == sink;
        assert!(plan.iter().any(|(t, _)| is_sink(t)), "{id}: {plan:?}");
        assert!(
            !plan.iter().any(|(t, ty)| is_sink(t) && ty == "ALL"),
            "{id} scans the whole sink: {plan:?}\n{sql}"
        );
    }
    drop_my(&[&sink]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_source_keys_are_warned_about_naming_the_key() {
    let c = pg().await;
    let (src, sink) = (unique("dup_src"), unique("dup_sink"));
    make_source(&c, &src).await;
    c.batch_execute(&format!(
        "ALTER TABLE {src} DROP CONSTRAINT {src}_pkey;
         INSERT INTO {src} SELECT 5, 'another five ' || g, 5.5, NULL FROM generate_series(1, 4) g;"
    ))
    .await
    .unwrap();
    let cfg = write_config(&pipeline_yaml(
        "dup",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("4 source row(s) of a batch repeat the key of an earlier row (first: (id=5))"),
        "{err}"
    );
    // One key held by five rows is one key.
    let o = synctool(&cfg, &["plan"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the source has 1 key(s) held by more than one row (first: (id=5))"),
        "{err}"
    );
    drop_pg(&c, &[&src, &sink]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blocks_the_sink_lacks_are_streamed_whole() {
    let c = pg().await;
    let (src, sink) = (unique("gap_src"), unique("gap_sink"));
    make_source(&c, &src).await;
    let cfg = write_config(&pipeline_yaml(
        "gap",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    json_run(&cfg, &["apply"], 0);
    // As an interrupted first load leaves it: the sink holds the first third.
    c.batch_execute(&format!("DELETE FROM {sink} WHERE id >= 1000"))
        .await
        .unwrap();
    let v = json_run(&cfg, &["plan"], 0);
    assert_eq!(n(&v, "rows_written"), 2001, "{v}");
    let v = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&v, "rows_written"), 2001, "{v}");
    // Blocks of 1000 ids from 0: [1000, 2000) and [2000, 3000) are streamed as they are,
    // not split into 100-row leaves (which made 21 added blocks); [3000, 4000) holds one row.
    assert_eq!(blocks(&v, "added"), 3, "{v}");
    assert_eq!(blocks(&v, "unchanged"), 1, "{v}");
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);
    let v = json_run(&cfg, &["plan"], 0);
    assert_eq!(n(&v, "rows_written"), 0, "{v}");
    drop_pg(&c, &[&src, &sink]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mariadb_user_without_temporary_tables_is_told_the_privilege() {
    let c = pg().await;
    let (src, sink) = (unique("priv_src"), unique("priv_sink"));
    let user = format!("st_{}", std::process::id());
    make_source(&c, &src).await;
    let mut conn = my().await;
    conn.query_drop(format!(
        "CREATE TABLE {sink} (id BIGINT PRIMARY KEY, name LONGTEXT, amount DECIMAL(12,2), updated_at DATETIME(6));
         DROP USER IF EXISTS '{user}'@'%';
         CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-priv-7q';
         GRANT SELECT, INSERT, UPDATE, DELETE ON test.* TO '{user}'@'%';"
    ))
    .await
    .expect("MariaDB: sink table and user");
    let cfg = write_config(
        &pipeline_yaml("priv", &src, "my", &sink, "{strategy: upsert}", "").replace(
            "username: root,",
            &format!("username: {user}, password: pw-priv-7q,"),
        ),
    );
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sink.stage") && err.contains("needs CREATE TEMPORARY TABLES"),
        "{err}"
    );
    assert!(!err.contains("pw-priv-7q"), "{err}");
    conn.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .expect("drop user");
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_key_with_trailing_spaces_into_mysql_is_warned_about() {
    let c = pg().await;
    let src = unique("pad_src");
    c.batch_execute(&format!(
        "CREATE TABLE {src} (code text PRIMARY KEY, n int);
         INSERT INTO {src} VALUES ('a', 1), ('k', 2), ('k ', 3);"
    ))
    .await
    .unwrap();
    // Both strategies keep one of the two rows (the last read): a delete_insert's staged
    // INSERT would otherwise hit the primary key twice.
    for merge in ["upsert", "delete_insert"] {
        let sink = unique("pad_sink");
        let cfg = write_config(&format!(
            r#"
datastores:
  - {PG}
  - {MY}
pipelines:
  - name: pad
    source:
      datastore: pg
      table: {src}
      fields: [{{column: code, dtype: str}}, {{column: n, dtype: int}}]
    sink:
      datastore: my
      table: {sink}
      merge_strategy: {{strategy: {merge}}}
      unique_key: [code]
"#
        ));
        let o = synctool(&cfg, &["apply"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{merge}: {err}");
        assert!(
        err.contains("the key (code=\"k \") ends with a space; MySQL compares text keys ignoring trailing spaces"),
        "{merge}: {err}"
    );
        let count: Option<i64> = my()
            .await
            .query_first(format!("SELECT count(*) FROM {sink}"))
            .await
            .unwrap();
        assert_eq!(count, Some(2), "{merge}");
        drop_my(&[&sink]).await;
    }
    drop_pg(&c, &[&src]).await;
}

#[test]
fn usage_errors_exit_2() {
    let cfg = write_config(&pipeline_yaml(
        "u",
        "t",
        "pg",
        "t2",
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    let o = synctool(&cfg, &["plan", "-r", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no reconciliation `nope`"));
    let o = synctool(&cfg, &["apply", "--start", "1 +"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--start"));
    // A range the run would not honour is refused rather than ignored.
    let o = synctool(&cfg, &["apply", "--full", "--start", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("the run is a full sync"), "{err}");
    // A date typed as on a calendar is arithmetic: the error says how to write one.
    let by_time = "    reconciliation:\n      - {name: by_time, partition_column: updated_at, partition_column_type: datetime}\n";
    let cfg = write_config(&pipeline_yaml(
        "u",
        "t",
        "pg",
        "t2",
        "{strategy: upsert}",
        by_time,
    ));
    let o = synctool(&cfg, &["plan", "--start", "2021-01-01"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`datetime.date(2021, 1, 1)`"), "{err}");
    let by_name = "    reconciliation:\n      - {name: by_name, partition_column: name, partition_column_type: str}\n";
    let cfg = write_config(&pipeline_yaml(
        "u",
        "t",
        "pg",
        "t2",
        "{strategy: upsert}",
        by_name,
    ));
    let o = synctool(&cfg, &["plan", "--start", "0", "--end", "5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--start/--end narrow a block-hash reconciliation over an int, float, date or datetime partition; reconciliation `by_name` buckets its Str partition column by hash"),
        "{err}"
    );
}

/// Runs synctool, killing it (and failing the test) if it has not exited within `secs`.
fn synctool_within(cfg: &std::path::Path, args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(cfg)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run synctool");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait for synctool").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("synctool {args:?} did not exit within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("synctool output")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_fails_mid_stream_stops_the_run_with_whole_batches_written() {
    let c = pg().await;
    let (src, sink) = (unique("eng_src"), unique("eng_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz);
         INSERT INTO {src} SELECT g, CASE WHEN g = 25000 THEN 'refused' ELSE 'name ' || g END, g, now()
           FROM generate_series(1, 30000) g;
         CREATE TABLE {sink} (id bigint PRIMARY KEY, name text CHECK (name <> 'refused'), amount numeric(12,2), updated_at timestamptz);"
    ))
    .await
    .unwrap();
    let cfg = write_config(&pipeline_yaml(
        "fails",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        "",
    ));
    // The reader is far ahead of the failing writer: it must stop too, not wait forever.
    let o = synctool_within(&cfg, &["apply"], 120);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("sink.merge") && err.contains("check"), "{err}");
    let rows: i64 = c
        .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows % 500, 0, "only whole batches are written: {rows}");
    assert!(rows < 25000, "{rows}");
    drop_pg(&c, &[&src, &sink]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_across_batches_into_a_new_table_fall_back_to_merging() {
    let c = pg().await;
    let mut m = my().await;
    let src = unique("eng_dup");
    // Every id three times, so that batches of 500 rows split some ids between two batches.
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint, name text, amount numeric(12,2), updated_at timestamptz);
         INSERT INTO {src} SELECT g % 1000 + 1, 'name ' || (g % 1000 + 1), 1, TIMESTAMPTZ '2024-01-01 00:00:00+00'
           FROM generate_series(0, 2999) g;"
    ))
    .await
    .unwrap();
    for (store, sink) in [("pg", unique("eng_dup_pg")), ("my", unique("eng_dup_my"))] {
        let cfg = write_config(&pipeline_yaml(
            "dups",
            &src,
            store,
            &sink,
            "{strategy: upsert}",
            "",
        ));
        let r = json_run(&cfg, &["apply"], 0);
        assert_eq!(n(&r, "rows_read"), 3000, "{store}: {r}");
        let (count, distinct): (i64, i64) = if store == "pg" {
            let row = c
                .query_one(
                    &format!("SELECT count(*), count(DISTINCT id) FROM {sink}"),
                    &[],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        } else {
            m.query_first(format!("SELECT count(*), count(DISTINCT id) FROM {sink}"))
                .await
                .unwrap()
                .unwrap()
        };
        assert_eq!((count, distinct), (1000, 1000), "{store}");
        if store == "pg" {
            drop_pg(&c, &[&sink]).await;
        } else {
            m.query_drop(format!("DROP TABLE IF EXISTS {sink}"))
                .await
                .unwrap();
        }
    }
    drop_pg(&c, &[&src]).await;
}

/// `synctool apply` started in the background, for tests that act while it runs.
fn spawn_apply(cfg: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(cfg)
        .arg("apply")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run synctool")
}

/// Polls `waiting` until it is true (within 30 s), failing with the run's output when the
/// run ends first.
async fn until_waiting<F, Fut>(run: &mut std::process::Child, what: &str, mut waiting: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !waiting().await {
        if run.try_wait().expect("poll synctool").is_some() {
            let mut err = String::new();
            if let Some(mut e) = run.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("apply ended before {what}:\n{err}");
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = run.kill();
            panic!("apply never {what} within 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL source synced into a new table on `sink_store` (upsert, reconciled by id),
/// then rows 10 and 20 changed in the source. Returns the client, the source and sink table
/// names and the config.
async fn synced_then_changed(
    sink_store: &str,
) -> (tokio_postgres::Client, String, String, std::path::PathBuf) {
    let c = pg().await;
    let (src, sink) = (unique("dl_src"), unique("dl_sink"));
    make_source(&c, &src).await;
    let cfg = write_config(&pipeline_yaml(
        "deadlock",
        &src,
        sink_store,
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!(
        "UPDATE {src} SET name = 'changed ' || id WHERE id IN (10, 20)"
    ))
    .await
    .unwrap();
    (c, src, sink, cfg)
}

/// The run must have met the deadlock, rolled back and written again, and the sink must
/// match the source (the other writer's edit of row 10 overwritten by the source's).
fn assert_ran_again(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("conflicted with another one and was rolled back; running it again"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 written"), "{out}");
}

/// The apply's transaction upserts rows 10 and 20 (in that order) while another writer
/// holds row 20 and then asks for row 10: a deadlock. PostgreSQL aborts the apply's
/// transaction (its backend checks for deadlocks after 1 s, the other's after 10 s); the
/// apply rolls back, runs the transaction again once the other writer committed, and
/// succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_deadlocked_sink_transaction_is_run_again_on_postgres() {
    let (c, src, sink, cfg) = synced_then_changed("pg").await;
    let mut other = pg().await;
    let tx = other.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL deadlock_timeout = '10s'; SELECT 1 FROM {sink} WHERE id = 20 FOR UPDATE"
    ))
    .await
    .unwrap();
    let mut run = spawn_apply(&cfg);
    let waits = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%{sink}%'"
    );
    until_waiting(&mut run, "waited for row 20", || async {
        let n: i64 = c.query_one(&waits, &[]).await.unwrap().get(0);
        n > 0
    })
    .await;
    tx.batch_execute(&format!(
        "UPDATE {sink} SET name = 'other writer' WHERE id = 10"
    ))
    .await
    .expect("the apply's transaction, not this one, is the deadlock's victim");
    tx.commit().await.unwrap();
    let o = run.wait_with_output().expect("synctool output");
    assert_ran_again(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("40P01"));
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);
    drop_pg(&c, &[&src, &sink]).await;
}

/// `q`'s one number, on a connection of its own.
async fn watch_query(q: &str) -> Option<i64> {
    let mut c = my().await;
    let n = c.query_first(q).await.unwrap();
    c.disconnect().await.unwrap();
    n
}

/// The same deadlock on MariaDB, which finds it at once and aborts the transaction that
/// changed less: the other writer first inserts 5000 rows elsewhere to be the heavier one.
#[tokio::test(flavor = "multi_thread")]
async fn a_deadlocked_sink_transaction_is_run_again_on_mariadb() {
    let (c, src, sink, cfg) = synced_then_changed("my").await;
    let scratch = unique("dl_scratch");
    let mut watch = my().await;
    let mut other = my().await;
    other
        .query_drop(format!(
            "CREATE TABLE {scratch} (id bigint PRIMARY KEY) ENGINE=InnoDB"
        ))
        .await
        .unwrap();
    other.query_drop("START TRANSACTION").await.unwrap();
    other
        .query_drop(format!(
            "INSERT INTO {scratch} SELECT seq FROM seq_1_to_5000"
        ))
        .await
        .unwrap();
    let _: Vec<i64> = other
        .query(format!("SELECT id FROM {sink} WHERE id = 20 FOR UPDATE"))
        .await
        .unwrap();
    let mut run = spawn_apply(&cfg);
    // MariaDB's `innodb_trx` does not reliably show this wait: watch for the merge instead,
    // and give it a moment to lock row 10 and reach row 20.
    let merging = format!(
        "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'INSERT INTO `{sink}`%'"
    );
    until_waiting(&mut run, "merged", || async {
        let n: Option<i64> = watch_query(&merging).await;
        n.unwrap_or(0) > 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    other
        .query_drop(format!(
            "UPDATE {sink} SET name = 'other writer' WHERE id = 10"
        ))
        .await
        .expect("the apply's transaction, the lighter one, is the deadlock's victim");
    other.query_drop("COMMIT").await.unwrap();
    let o = run.wait_with_output().expect("synctool output");
    assert_ran_again(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("1213"));
    let name: Option<String> = watch
        .query_first(format!("SELECT name FROM {sink} WHERE id = 10"))
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("changed 10"));
    let o = synctool(&cfg, &["plan", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    drop_my(&[&sink, &scratch]).await;
    drop_pg(&c, &[&src]).await;
}

/// Rows whose partition column is NULL fall in no range block: they are compared as a
/// block of their own, and repaired row by row like any changed leaf.
#[tokio::test(flavor = "multi_thread")]
async fn rows_with_a_null_partition_value_are_reconciled_as_a_block_of_their_own() {
    let c = pg().await;
    for store in ["pg", "my"] {
        let (src, sink) = (unique("np_src"), unique("np_sink"));
        make_source(&c, &src).await;
        c.batch_execute(&format!("UPDATE {src} SET updated_at = NULL WHERE id <= 3"))
            .await
            .unwrap();
        let by_time = "    reconciliation:\n      - {name: by_time, partition_column: updated_at, partition_column_type: datetime, initial_partition_interval: 86400}\n";
        let cfg = write_config(&pipeline_yaml(
            "nullpart",
            &src,
            store,
            &sink,
            "{strategy: upsert, allow_delete: true}",
            by_time,
        ));
        json_run(&cfg, &["apply"], 0);
        let r = json_run(&cfg, &["plan", "--exit-code"], 0);
        assert!(blocks(&r, "unchanged") > 0, "{store}: {r}");
        // Changes among the NULL-partition rows only: an update, an insert, a delete.
        c.batch_execute(&format!(
            "UPDATE {src} SET name = 'changed' WHERE id = 2;
             INSERT INTO {src} VALUES (3001, 'new', 1, NULL);
             DELETE FROM {src} WHERE id = 3;"
        ))
        .await
        .unwrap();
        let planned = json_run(&cfg, &["plan", "--exit-code"], 3);
        assert_eq!(
            (n(&planned, "rows_written"), n(&planned, "rows_deleted")),
            (2, 1),
            "{store}: {planned}"
        );
        assert_eq!(blocks(&planned, "modified"), 1, "{store}: {planned}");
        let r = json_run(&cfg, &["apply"], 0);
        assert_eq!(
            (
                n(&r, "rows_written"),
                n(&r, "rows_deleted"),
                n(&r, "rows_read")
            ),
            (2, 1, 3),
            "{store}: only the NULL-partition rows are read: {r}"
        );
        json_run(&cfg, &["plan", "--exit-code"], 0);
        if store == "pg" {
            assert_eq!(pg_diff(&c, &src, &sink).await, 0);
            // A bounded run leaves them out, as it leaves out every row beyond its range.
            c.batch_execute(&format!("UPDATE {src} SET name = 'again' WHERE id = 1"))
                .await
                .unwrap();
            let r = json_run(
                &cfg,
                &[
                    "plan",
                    "--exit-code",
                    "--start",
                    "datetime.datetime(2020, 1, 1)",
                ],
                0,
            );
            assert_eq!(n(&r, "rows_written"), 0, "{r}");
            json_run(&cfg, &["plan", "--exit-code"], 3);
            drop_pg(&c, &[&src, &sink]).await;
        } else {
            drop_my(&[&sink]).await;
            drop_pg(&c, &[&src]).await;
        }
    }
}

/// A decimal with more digits after the point than its field's `decimal(p,s)` is refused on
/// every sink alike, naming the row: PostgreSQL and MariaDB would round it silently (and
/// reconciliation would then see the row as changed on every run), ClickHouse refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn a_decimal_beyond_its_fields_scale_is_refused_naming_the_row() {
    let c = pg().await;
    let src = unique("dec_src");
    make_source(&c, &src).await;
    c.batch_execute(&format!(
        "ALTER TABLE {src} ALTER amount TYPE numeric(12,4); UPDATE {src} SET amount = 1.1255 WHERE id = 7"
    ))
    .await
    .unwrap();
    for store in ["pg", "my"] {
        let sink = unique("dec_sink");
        let cfg = write_config(&pipeline_yaml(
            "dec",
            &src,
            store,
            &sink,
            "{strategy: upsert}",
            "",
        ));
        let o = synctool(&cfg, &["apply"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{store}: {err}");
        assert!(
            err.contains("row with key (id=7) column `amount`: 1.1255 has 4 digits after the point; the field's decimal(12,2) keeps 2"),
            "{store}: {err}"
        );
        if store == "pg" {
            let n: i64 = c
                .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "the batch holding the row is not written");
            drop_pg(&c, &[&sink]).await;
        } else {
            drop_my(&[&sink]).await;
        }
    }
    drop_pg(&c, &[&src]).await;
}

/// Blocks end before an exclusive bound, and no 64-bit bound lies past the largest key:
/// a row with that key cannot be compared, and the run says so rather than passing it as
/// in sync.
#[tokio::test(flavor = "multi_thread")]
async fn the_largest_64_bit_key_is_named_as_not_compared() {
    let c = pg().await;
    let (src, sink) = (unique("max_src"), unique("max_sink"));
    make_source(&c, &src).await;
    c.batch_execute(&format!(
        "INSERT INTO {src} VALUES (9223372036854775807, 'max', 1, now())"
    ))
    .await
    .unwrap();
    let cfg = write_config(&pipeline_yaml(
        "maxkey",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    json_run(&cfg, &["apply"], 0);
    let o = synctool(&cfg, &["plan"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("rows whose partition value is 9223372036854775807 (the largest 64-bit value) lie past every block and are not compared"),
        "{err}"
    );
    assert_eq!(
        err.matches("the largest 64-bit value").count(),
        1,
        "said once: {err}"
    );
    drop_pg(&c, &[&src, &sink]).await;
}

/// An existing PostgreSQL sink table with an enum column (and `integer` key): the staging
/// table takes the sink's column types, so the merge needs no cast from text, and the row
/// hash reads the enum's label. A value the enum lacks stops the run with PostgreSQL's
/// error naming the column, and nothing of that write is kept.
#[tokio::test(flavor = "multi_thread")]
async fn an_enum_column_of_an_existing_postgres_table_is_synced_and_reconciled() {
    let c = pg().await;
    let (src, sink, mood) = (unique("enum_src"), unique("enum_sink"), unique("mood"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz);
         INSERT INTO {src} SELECT g, (ARRAY['happy', 'sad', 'so-so'])[1 + g % 3], g * 1.25,
           TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 minute' FROM generate_series(1, 3000) g;
         CREATE TYPE {mood} AS ENUM ('happy', 'sad', 'so-so');
         CREATE TABLE {sink} (id integer PRIMARY KEY, name {mood}, amount numeric(12,2), updated_at timestamptz);"
    ))
    .await
    .unwrap();
    let cfg = write_config(&pipeline_yaml(
        "enums",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 3000, "{r}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    let differing: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {src} s FULL JOIN {sink} k USING (id)
                 WHERE s.name IS DISTINCT FROM k.name::text OR s.amount IS DISTINCT FROM k.amount
                    OR s.updated_at IS DISTINCT FROM k.updated_at"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differing, 0);
    c.batch_execute(&format!("UPDATE {src} SET name = 'sad' WHERE id = 3"))
        .await
        .unwrap();
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 1, "{r}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    c.batch_execute(&format!("UPDATE {src} SET name = 'angry' WHERE id = 4"))
        .await
        .unwrap();
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // Refused before the batch is written, naming the row's key.
    assert!(
        err.contains(&format!("row with key (id=4) column `name`: 'angry' is not one of the values of the sink column's type enum {mood} (happy, sad, so-so)")),
        "{err}"
    );
    let kept: String = c
        .query_one(&format!("SELECT name::text FROM {sink} WHERE id = 4"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, "sad", "the refused write left the row as it was");
    drop_pg(&c, &[&src, &sink]).await;
    c.batch_execute(&format!("DROP TYPE {mood}")).await.unwrap();
}

/// Without a lookback, a timestamp run still compares the watermark's own second, so a row
/// committed later with the same timestamp as the newest sink row is not missed.
#[tokio::test(flavor = "multi_thread")]
async fn a_timestamp_run_without_lookback_finds_rows_tied_with_the_watermark() {
    let c = pg().await;
    let (src, sink) = (unique("tie_src"), unique("tie_sink"));
    make_source(&c, &src).await;
    let recon = "    reconciliation:\n      - {name: inc, strategy: timestamp, partition_column: updated_at, partition_column_type: datetime}\n";
    let cfg = write_config(&pipeline_yaml(
        "ties",
        &src,
        "my",
        &sink,
        "{strategy: upsert}",
        recon,
    ));
    json_run(&cfg, &["apply"], 0);
    json_run(&cfg, &["plan", "--exit-code"], 0);
    // The newest row's timestamp, again.
    c.batch_execute(&format!(
        "INSERT INTO {src} SELECT 3001, 'tied', 1, updated_at FROM {src} WHERE id = 3000;
         UPDATE {src} SET name = 'edited at the watermark' WHERE id = 3000;"
    ))
    .await
    .unwrap();
    let r = json_run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(n(&r, "rows_written"), 2, "{r}");
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 2, "{r}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 0, "{r}");
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src]).await;
}

/// A transformed sink without a stored hash has no window to compare: its run streams the
/// rows from the watermark on, the watermark's own included, so that a row tied with the
/// newest sink row is merged instead of missed.
#[tokio::test(flavor = "multi_thread")]
async fn a_transformed_timestamp_run_takes_rows_tied_with_the_watermark() {
    let c = pg().await;
    let (src, sink) = (unique("tiex_src"), unique("tiex_sink"));
    make_source(&c, &src).await;
    let recon = "    reconciliation:\n      - {name: inc, strategy: timestamp, partition_column: updated_at, partition_column_type: datetime}\n";
    let cfg = write_config(
        &pipeline_yaml("tiex", &src, "pg", &sink, "{strategy: upsert}", recon).replace(
            "{column: name, source_column: name}",
            "{column: name, source_column: \"TMPL({{ name }}!)\"}",
        ),
    );
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!(
        "INSERT INTO {src} SELECT 3001, 'tied', 1, updated_at FROM {src} WHERE id = 3000"
    ))
    .await
    .unwrap();
    json_run(&cfg, &["apply"], 0);
    let got: Vec<String> = c
        .query(&format!("SELECT name FROM {sink} WHERE id = 3001"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, vec!["tied!".to_string()]);
    drop_pg(&c, &[&src, &sink]).await;
}

/// A sink watermark column that rounds (PostgreSQL `timestamp(0)` keeps 04.75 as 05) would
/// put the watermark past a source row it never held (04.90): the run starts a second
/// earlier.
#[tokio::test(flavor = "multi_thread")]
async fn a_rounding_sink_watermark_column_misses_no_row() {
    let c = pg().await;
    let (src, sink) = (unique("rnd_src"), unique("rnd_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz);
         INSERT INTO {src} VALUES (1, 'a', 1, '2026-01-01 00:00:04.75+00');
         CREATE TABLE {sink} (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamp(0) with time zone);"
    ))
    .await
    .unwrap();
    let recon = "    reconciliation:\n      - {name: inc, strategy: timestamp, partition_column: updated_at, partition_column_type: datetime}\n";
    let cfg = write_config(&pipeline_yaml(
        "rnd",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        recon,
    ));
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!(
        "INSERT INTO {src} VALUES (2, 'b', 2, '2026-01-01 00:00:04.90+00')"
    ))
    .await
    .unwrap();
    json_run(&cfg, &["apply"], 0);
    let n_rows: i64 = c
        .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n_rows, 2, "the row behind the rounded watermark is copied");
    drop_pg(&c, &[&src, &sink]).await;
}

/// A lookback reaching before 1970 starts a ClickHouse side's window at 1970, the first
/// value its DateTime holds, instead of failing every run after the first.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookback_before_1970_into_clickhouse_starts_at_1970() {
    let c = pg().await;
    let (src, sink) = (unique("lb70_src"), unique("lb70_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text, updated_at timestamptz);
         INSERT INTO {src} SELECT g, 'n' || g, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 minute'
           FROM generate_series(1, 3000) g;"
    ))
    .await
    .unwrap();
    // Fields every side hashes alike, so that the window is compared block by block on
    // the ClickHouse side too.
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
  - {CH}
pipelines:
  - name: lb70
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: name, dtype: str}}, {{column: updated_at, dtype: datetime}}]
    sink:
      datastore: ch
      table: {sink}
      merge_strategy: {{strategy: upsert}}
      unique_key: [id]
    reconciliation:
      - {{name: inc, strategy: timestamp, partition_column: updated_at, partition_column_type: datetime, lookback: 60*365*24*3600}}
"#
    ));
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!("UPDATE {src} SET name = 'changed' WHERE id = 7"))
        .await
        .unwrap();
    let v = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&v, "rows_written"), 1, "{v}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    let ch = crate::support::clickhouse().await;
    ch.exec(&format!("DROP TABLE default.{sink}")).await;
    drop_pg(&c, &[&src]).await;
}

/// Existing PostgreSQL sink columns whose equality is not text's: `citext` (a case-only
/// change is still a change to sync) and `json` (which has no `=` at all). The upsert's
/// change check compares them as text.
#[tokio::test(flavor = "multi_thread")]
async fn citext_and_json_sink_columns_take_every_change() {
    let c = pg().await;
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS citext")
        .await
        .unwrap();
    let (o, cfg, c, src, sink) = apply_into_existing(
        "citext",
        "id bigint PRIMARY KEY, name citext, amount numeric(12,2), updated_at timestamptz",
        RECON_BY_ID,
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    c.batch_execute(&format!("UPDATE {src} SET name = upper(name) WHERE id = 5"))
        .await
        .unwrap();
    json_run(&cfg, &["plan", "--exit-code"], 3);
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 1, "{r}");
    let name: String = c
        .query_one(&format!("SELECT name::text FROM {sink} WHERE id = 5"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "NAME 5");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    drop_pg(&c, &[&src, &sink]).await;

    // A `json` column (not `jsonb`): the documents are written, and a re-run writes nothing.
    let (src, sink) = (unique("json_src"), unique("json_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, doc jsonb);
         INSERT INTO {src} VALUES (1, '{{\"a\": 1}}'), (2, '[1, 2]'), (3, NULL);
         CREATE TABLE {sink} (id bigint PRIMARY KEY, doc json);"
    ))
    .await
    .unwrap();
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
pipelines:
  - name: docs
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: doc, dtype: json}}]
    sink:
      datastore: pg
      table: {sink}
      merge_strategy: {{strategy: upsert}}
      unique_key: [id]
      fields: [{{column: id, source_column: id}}, {{column: doc, source_column: doc}}]
"#
    ));
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 3, "{r}");
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(
        n(&r, "rows_written"),
        3,
        "a full sync stages every row: {r}"
    );
    let doc: String = c
        .query_one(&format!("SELECT doc::text FROM {sink} WHERE id = 1"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(doc, r#"{"a": 1}"#);
    drop_pg(&c, &[&src, &sink]).await;
}

/// An existing MariaDB sink table whose text key ignores case and accents would make the
/// distinct PostgreSQL keys `a` and `A` one row (mixing one row's key with another's
/// values): refused before anything is written. From a MariaDB source, whose keys are as
/// distinct as its own collation makes them, it is a warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_case_insensitive_mariadb_key_is_refused_for_a_case_sensitive_source() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink, my_src) = (unique("ci_src"), unique("ci_sink"), unique("ci_mysrc"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (k text PRIMARY KEY, v bigint);
         INSERT INTO {src} VALUES ('a', 1), ('A', 2), ('é', 3), ('e', 4);"
    ))
    .await
    .unwrap();
    m.query_drop(format!(
        "CREATE TABLE {sink} (k varchar(50) PRIMARY KEY, v bigint) COLLATE utf8mb4_general_ci;
         CREATE TABLE {my_src} (k varchar(50) PRIMARY KEY, v bigint) COLLATE utf8mb4_general_ci;
         INSERT INTO {my_src} VALUES ('a', 1), ('é', 3);"
    ))
    .await
    .unwrap();
    let yaml = |from: &str, table: &str| {
        format!(
            r#"
datastores:
  - {PG}
  - {MY}
pipelines:
  - name: ci
    source:
      datastore: {from}
      table: {table}
      fields:
        - {{column: k, dtype: str}}
        - {{column: v, dtype: int}}
    sink:
      datastore: my
      table: {sink}
      unique_key: [k]
"#
        )
    };
    let cfg = write_config(&yaml("pg", &src));
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("key column `k` has the collation utf8mb4_general_ci, under which keys that differ only in case or accents (`a`, `A`, `á`) are one row"),
        "{err}"
    );
    let count: Option<i64> = m
        .query_first(format!("SELECT count(*) FROM {sink}"))
        .await
        .unwrap();
    assert_eq!(count, Some(0), "nothing is written");

    let cfg = write_config(&yaml("my", &my_src));
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("sink key column `k` has the collation utf8mb4_general_ci"),
        "{err}"
    );
    drop_my(&[&sink, &my_src]).await;
    drop_pg(&c, &[&src]).await;
}

/// Float partition values beyond the 64-bit range the blocks are counted in would lie in no
/// block, their rows never compared: the reconciliation stops naming the value instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_float_partition_beyond_64_bits_stops_the_reconciliation() {
    let c = pg().await;
    let (src, sink) = (unique("fbig_src"), unique("fbig_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, f double precision);
         INSERT INTO {src} VALUES (1, 1.5), (2, -7.25), (3, 1e17);"
    ))
    .await
    .unwrap();
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
pipelines:
  - name: fbig
    source:
      datastore: pg
      table: {src}
      fields:
        - {{column: id, dtype: int}}
        - {{column: f, dtype: float}}
    sink:
      datastore: pg
      table: {sink}
      unique_key: [id]
    reconciliation:
      - {{name: by_f, partition_column: f, partition_column_type: float, initial_partition_interval: 10}}
"#
    ));
    // The first run creates the table and copies every row.
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 3, "{r}");
    for cmd in ["plan", "apply"] {
        let o = synctool(&cfg, &[cmd]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("reconciliation `by_f`: the source's partition value 100000000000000000.0 lies beyond the range blocks are counted in"),
            "{cmd}: {err}"
        );
    }
    drop_pg(&c, &[&src, &sink]).await;
}

/// A date MySQL cannot store (a year before 0, as PostgreSQL's `4713-01-01 BC`) stops the
/// run naming the row's key and the column, before its batch is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_date_mysql_cannot_store_is_refused_naming_the_row() {
    let c = pg().await;
    let (src, sink) = (unique("bc_src"), unique("bc_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, d date);
         INSERT INTO {src} VALUES (1, '2024-01-02'), (2, '4713-01-01 BC');"
    ))
    .await
    .unwrap();
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
  - {MY}
pipelines:
  - name: bc
    source:
      datastore: pg
      table: {src}
      fields:
        - {{column: id, dtype: int}}
        - {{column: d, dtype: date}}
    sink:
      datastore: my
      table: {sink}
      unique_key: [id]
"#
    ));
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("row with key (id=2) column `d`:") && err.contains("(years 0 to 9999)"),
        "{err}"
    );
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src]).await;
}

/// An upsert into an existing PostgreSQL or MariaDB table needs a primary key or unique
/// index on exactly the `unique_key`: without one, PostgreSQL's `ON CONFLICT` fails and
/// MariaDB's `ON DUPLICATE KEY` inserts every row again on every run. Refused before
/// anything is written; a unique index (not only a primary key) is enough.
#[tokio::test(flavor = "multi_thread")]
async fn an_upsert_into_a_table_without_a_unique_index_on_the_key_is_refused() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink) = (unique("nokey_src"), unique("nokey_sink"));
    make_source(&c, &src).await;
    c.batch_execute(&format!(
        "CREATE TABLE {sink} (id bigint, name text, amount numeric(12,2), updated_at timestamptz)"
    ))
    .await
    .unwrap();
    m.query_drop(format!(
        "CREATE TABLE {sink} (id bigint, name varchar(50), amount decimal(12,2), updated_at datetime(6), UNIQUE KEY (name))"
    ))
    .await
    .unwrap();
    for (store, has) in [
        ("pg", "no unique index"),
        ("my", "unique indexes on (name) only"),
    ] {
        let cfg = write_config(&pipeline_yaml(
            "nokey",
            &src,
            store,
            &sink,
            "{strategy: upsert}",
            "",
        ));
        let o = synctool(&cfg, &["apply"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{store}: {err}");
        assert!(
            err.contains(&format!("merge strategy upsert needs a primary key or unique index on exactly the unique_key (id), and the table has {has}")),
            "{store}: {err}"
        );
    }
    let count: Option<i64> = m
        .query_first(format!("SELECT count(*) FROM {sink}"))
        .await
        .unwrap();
    assert_eq!(count, Some(0), "nothing is written");
    // A unique index on the key is enough.
    c.batch_execute(&format!("CREATE UNIQUE INDEX ON {sink} (id)"))
        .await
        .unwrap();
    // (MariaDB: without the index on `name`, which does not hold the key and so would let
    // a row overwrite another key's row.)
    m.query_drop(format!(
        "ALTER TABLE {sink} DROP INDEX name, ADD UNIQUE KEY (id)"
    ))
    .await
    .unwrap();
    for store in ["pg", "my"] {
        let cfg = write_config(&pipeline_yaml(
            "nokey",
            &src,
            store,
            &sink,
            "{strategy: upsert}",
            "",
        ));
        for _ in 0..2 {
            let r = json_run(&cfg, &["apply"], 0);
            assert_eq!(n(&r, "rows_written"), 3000, "{store}: {r}");
        }
    }
    let count: Option<i64> = m
        .query_first(format!("SELECT count(*) FROM {sink}"))
        .await
        .unwrap();
    assert_eq!(count, Some(3000), "a re-run adds no row");
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src, &sink]).await;
}

/// A ClickHouse source whose engine merges rows in the background (ReplacingMergeTree) is
/// refused unless the source says how to read it; `final: true` reads the merged rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_replacing_clickhouse_source_needs_final() {
    let ch = crate::support::clickhouse().await;
    let c = pg().await;
    let (src, sink) = (unique("chf_src"), unique("chf_sink"));
    ch.exec(&format!(
        "CREATE TABLE default.{src} (id Int64, name String, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY id"
    ))
    .await;
    // Two inserts, two parts: key 1 has an old and a new version until they merge.
    ch.exec(&format!(
        "INSERT INTO default.{src} VALUES (1, 'old', 1), (2, 'two', 1)"
    ))
    .await;
    ch.exec(&format!("INSERT INTO default.{src} VALUES (1, 'new', 2)"))
        .await;
    let yaml = |final_: &str| {
        format!(
            r#"
datastores:
  - {PG}
  - {CH}
pipelines:
  - name: chf
    source:
      datastore: ch
      table: {src}
{final_}      fields: [{{column: id, dtype: int}}, {{column: name, dtype: str}}]
    sink:
      datastore: pg
      table: {sink}
      unique_key: [id]
"#
        )
    };
    let cfg = write_config(&yaml(""));
    for cmd in ["plan", "apply"] {
        let o = synctool(&cfg, &[cmd]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!("source table `{src}` is a ReplacingMergeTree"))
                && err.contains("set `final: true`"),
            "{cmd}: {err}"
        );
    }
    assert!(!pg_exists(&c, &sink).await, "nothing was written");
    let cfg = write_config(&yaml("      final: true\n"));
    json_run(&cfg, &["apply"], 0);
    let rows: Vec<(i64, String)> = c
        .query(&format!("SELECT id, name FROM {sink} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(1, "new".to_string()), (2, "two".to_string())]);
    ch.exec(&format!("DROP TABLE default.{src}")).await;
    drop_pg(&c, &[&sink]).await;
}

/// A write that waits for a lock another session holds says so after a while, and goes on
/// waiting: the run finishes once the lock is released.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_waiting_for_a_lock_says_so_and_finishes_after_it() {
    let c = pg().await;
    let (src, sink) = (unique("lock_src"), unique("lock_sink"));
    make_source(&c, &src).await;
    let cfg = write_config(&pipeline_yaml(
        "locked",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!("UPDATE {src} SET name = 'changed' WHERE id = 7"))
        .await
        .unwrap();
    // Another session holds the sink row the run updates.
    let holder = pg().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM {sink} WHERE id = 7 FOR UPDATE"
        ))
        .await
        .unwrap();
    let mut child = spawn_apply(&cfg);
    // The warning comes on its own line; read stderr until it does.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a warning while the lock is held");
    assert!(
        line.contains("has been running for 10 s")
            && line.contains("another session may hold a lock"),
        "{line}"
    );
    assert!(child.try_wait().unwrap().is_none(), "the run waits");
    holder.batch_execute("COMMIT").await.unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let r = json_run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(n(&r, "rows_written"), 0, "{r}");
    drop_pg(&c, &[&src, &sink]).await;
}

/// A delete_insert sink without a unique key can hold a key twice (a hand insert, another
/// writer): the block compares as changed, and the key is rewritten, which leaves one copy
/// with the source's values, even where one copy already matched.
#[tokio::test]
async fn keys_the_sink_holds_twice_are_rewritten_once() {
    let c = pg().await;
    let ch = crate::support::clickhouse().await;
    let (src, pg_sink, ch_sink) = (unique("dup_src"), unique("dup_pg"), unique("dup_ch"));
    make_source(&c, &src).await;
    let merge = "{strategy: delete_insert, allow_delete: true}";
    let pg_cfg = write_config(&pipeline_yaml(
        "dup",
        &src,
        "pg",
        &pg_sink,
        merge,
        RECON_BY_ID,
    ));
    let ch_cfg = write_config(&pipeline_yaml_ch(
        "dup",
        &src,
        "ch",
        &ch_sink,
        merge,
        RECON_BY_ID,
    ));
    // The PostgreSQL sink exists without a key (synctool would create one).
    c.batch_execute(&format!("CREATE TABLE {pg_sink} AS SELECT * FROM {src}"))
        .await
        .unwrap();
    json_run(&pg_cfg, &["apply"], 0);
    json_run(&ch_cfg, &["apply"], 0);
    // Key 5 twice with its own values, key 6 with a stale copy beside the right one.
    c.batch_execute(&format!(
        "INSERT INTO {pg_sink} SELECT * FROM {pg_sink} WHERE id = 5;
         INSERT INTO {pg_sink} (id, name, amount, updated_at) SELECT id, 'stale', amount, updated_at FROM {pg_sink} WHERE id = 6;"
    ))
    .await
    .unwrap();
    ch.exec(&format!(
        "INSERT INTO default.{ch_sink} (id, name, amount, updated_at)
         SELECT id, if(id = 6, 'stale', name), amount, updated_at FROM default.{ch_sink} WHERE id IN (5, 6)"
    ))
    .await;
    for cfg in [&pg_cfg, &ch_cfg] {
        let v = json_run(cfg, &["plan", "--exit-code"], 3);
        assert_eq!(n(&v, "rows_written"), 2, "{v}");
        let v = json_run(cfg, &["apply"], 0);
        assert_eq!(n(&v, "rows_written"), 2, "{v}");
        json_run(cfg, &["plan", "--exit-code"], 0);
    }
    assert_eq!(pg_diff(&c, &src, &pg_sink).await, 0);
    let copies: i64 = c
        .query_one(
            &format!("SELECT count(*) - count(DISTINCT id) FROM {pg_sink}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(copies, 0);
    let ch_rows = ch
        .exec(&format!(
            "SELECT count(), uniqExact(id), countIf(name = 'stale') FROM default.{ch_sink}"
        ))
        .await;
    assert_eq!(ch_rows.trim(), "3000\t3000\t0");
    ch.exec(&format!("DROP TABLE default.{ch_sink}")).await;
    drop_pg(&c, &[&src, &pg_sink]).await;
}

/// Touching changed leaves are diffed and written together, up to a batch: an UPDATE of
/// every row is repaired in a handful of rounds, not one per leaf.
#[tokio::test]
async fn touching_changed_leaves_are_repaired_a_batch_at_a_time() {
    let c = pg().await;
    let (src, sink) = (unique("lm_src"), unique("lm_sink"));
    make_source(&c, &src).await;
    // 3000 rows in leaves of at most 100, batches of 500.
    let cfg = write_config(&pipeline_yaml(
        "lm",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!("UPDATE {src} SET name = name || '!'"))
        .await
        .unwrap();
    let o = crate::support::synctool(&cfg, &["apply", "-vv"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let diffs = err.matches("leaf diffed").count();
    assert!((6..=8).contains(&diffs), "{diffs} leaf diffs:\n{err}");
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);
    drop_pg(&c, &[&src, &sink]).await;
}

/// A row whose partition value moved to an earlier block is written there first, and
/// `apply` then finds nothing of it left to delete in its old block: `plan` counts what
/// `apply` does.
#[tokio::test]
async fn plan_counts_a_row_moved_to_an_earlier_block_as_apply_does() {
    let c = pg().await;
    let (src, sink) = (unique("mv_src"), unique("mv_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, p bigint, v text);
         INSERT INTO {src} SELECT g, g, 'v' || g FROM generate_series(1, 100) g;"
    ))
    .await
    .unwrap();
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
pipelines:
  - name: mv
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: p, dtype: int}}, {{column: v, dtype: str}}]
    sink:
      datastore: pg
      table: {sink}
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      unique_key: [id]
    reconciliation:
      - {{name: r, partition_column: p, initial_partition_interval: 10, max_block_size: 5}}
"#
    ));
    json_run(&cfg, &["apply"], 0);
    c.batch_execute(&format!("UPDATE {src} SET p = 5 WHERE id = 95"))
        .await
        .unwrap();
    let plan = json_run(&cfg, &["plan", "--exit-code"], 3);
    let apply = json_run(&cfg, &["apply"], 0);
    for k in ["rows_written", "rows_deleted"] {
        assert_eq!(n(&plan, k), n(&apply, k), "{k}: plan {plan} apply {apply}");
    }
    assert_eq!(n(&apply, "rows_deleted"), 0, "{apply}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    drop_pg(&c, &[&src, &sink]).await;
}

/// A ClickHouse sink column in another time zone than UTC (`DateTime('Asia/Tokyo')`, 9 h
/// ahead) holds the same instants: the timestamp run's watermark is read as the instant it
/// is, so a source row newer than the sink's newest is copied (read as Tokyo text taken for
/// UTC, the watermark was 9 h late and the row was never copied).
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_sink_in_another_time_zone_gets_rows_after_its_watermark() {
    let c = pg().await;
    let ch = crate::support::clickhouse().await;
    let (src, sink) = (unique("tz_src"), unique("tz_ch"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, v text, updated_at timestamptz);
         INSERT INTO {src} VALUES (1, 'a', '2026-01-01 00:00:01+00'), (2, 'b', '2026-01-01 00:00:02+00'),
           (3, 'c', '2026-01-01 00:00:03+00');"
    ))
    .await
    .unwrap();
    ch.exec(&format!(
        "CREATE TABLE default.{sink} (id Int64, v Nullable(String), updated_at Nullable(DateTime('Asia/Tokyo'))) ENGINE = ReplacingMergeTree ORDER BY id"
    ))
    .await;
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
  - {CH}
pipelines:
  - name: tz
    source:
      datastore: pg
      table: {src}
      fields:
        - {{column: id, dtype: int}}
        - {{column: v, dtype: str}}
        - {{column: updated_at, dtype: datetime}}
    sink:
      datastore: ch
      table: {sink}
      merge_strategy: {{strategy: upsert}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: v, source_column: v}}
        - {{column: updated_at, source_column: updated_at}}
    reconciliation:
      - name: inc
        strategy: timestamp
        partition_column: updated_at
        partition_column_type: datetime
"#
    ));
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 3, "{r}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    c.batch_execute(&format!(
        "INSERT INTO {src} VALUES (4, 'd', '2026-01-01 00:00:04+00')"
    ))
    .await
    .unwrap();
    let r = json_run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(n(&r, "rows_written"), 1, "{r}");
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!((n(&r, "rows_read"), n(&r, "rows_written")), (1, 1), "{r}");
    json_run(&cfg, &["plan", "--exit-code"], 0);
    let rows = ch
        .exec(&format!(
            "SELECT id, toUnixTimestamp(updated_at) FROM default.{sink} FINAL ORDER BY id"
        ))
        .await;
    assert_eq!(
        rows,
        "1\t1767225601\n2\t1767225602\n3\t1767225603\n4\t1767225604\n"
    );
    ch.exec(&format!("DROP TABLE default.{sink}")).await;
    drop_pg(&c, &[&src]).await;
}

/// A ClickHouse source column in another time zone than UTC (`DateTime('Asia/Tokyo')`) is
/// read as the instants it holds: PostgreSQL gets the same instants (not the Tokyo clock
/// taken for UTC, 9 h off), and a hash reconciliation then finds no drift instead of
/// rewriting every row on every run.
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_source_in_another_time_zone_is_copied_as_its_instants() {
    let c = pg().await;
    let ch = crate::support::clickhouse().await;
    let (src, sink) = (unique("tz_chsrc"), unique("tz_pg"));
    ch.exec(&format!(
        "CREATE TABLE default.{src} (id Int64, v String, updated_at DateTime('Asia/Tokyo')) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    // Epoch seconds: 2026-01-01 00:00:01 UTC and on (09:00:01 in Tokyo).
    ch.exec(&format!(
        "INSERT INTO default.{src} SELECT number + 1, concat('v', toString(number)), toDateTime(1767225601 + number * 3600, 'Asia/Tokyo') FROM system.numbers LIMIT 30"
    ))
    .await;
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
  - {CH}
pipelines:
  - name: tzsrc
    source:
      datastore: ch
      table: {src}
      fields:
        - {{column: id, dtype: int}}
        - {{column: v, dtype: str}}
        - {{column: updated_at, dtype: datetime}}
    sink:
      datastore: pg
      table: {sink}
      merge_strategy: {{strategy: upsert}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: v, source_column: v}}
        - {{column: updated_at, source_column: updated_at}}
    reconciliation:
      - name: by_id
        strategy: md5sum_hash
        partition_column: id
        partition_column_type: int
        initial_partition_interval: 10
      - name: by_time
        strategy: md5sum_hash
        partition_column: updated_at
        partition_column_type: datetime
        initial_partition_interval: 6*3600
"#
    ));
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 30, "{r}");
    let wrong: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM {sink}
                  WHERE updated_at <> TIMESTAMPTZ '2026-01-01 00:00:01+00' + (id - 1) * INTERVAL '1 hour'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "every instant as ClickHouse holds it");
    for recon in [
        &["--reconciliation", "by_id"][..],
        &["--reconciliation", "by_time"],
    ] {
        let mut args = vec!["plan", "--exit-code"];
        args.extend_from_slice(recon);
        let r = json_run(&cfg, &args, 0);
        assert_eq!(n(&r, "rows_written"), 0, "{recon:?}: {r}");
    }
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 0, "{r}");
    ch.exec(&format!("DROP TABLE default.{src}")).await;
    drop_pg(&c, &[&sink]).await;
}

/// `pipeline_yaml` with a ClickHouse datastore `ch` too.
fn pipeline_yaml_ch(
    name: &str,
    src: &str,
    store: &str,
    sink: &str,
    merge: &str,
    recon: &str,
) -> String {
    pipeline_yaml(name, src, store, sink, merge, recon).replacen(
        "pipelines:",
        &format!("  - {CH}\npipelines:"),
        1,
    )
}

/// The sink's live rows per key (collapse: sum of signs) as (rows, distinct keys).
async fn live_rows(store: &str, sink: &str, collapse: bool) -> (i64, i64) {
    let live = if collapse {
        format!("SELECT id FROM {sink} GROUP BY id HAVING sum(sign) > 0")
    } else {
        format!("SELECT id FROM {sink}")
    };
    let sql = format!("SELECT count(*), count(DISTINCT id) FROM ({live}) AS l");
    match store {
        "pg" => {
            let r = pg().await.query_one(&sql, &[]).await.unwrap();
            (r.get(0), r.get(1))
        }
        "my" => my().await.query_first(sql).await.unwrap().unwrap(),
        _ => {
            let rows = crate::support::clickhouse().await.rows(&sql).await;
            let v = |i: usize| rows[0][i].as_deref().unwrap().parse::<i64>().unwrap();
            (v(0), v(1))
        }
    }
}

async fn drop_sink(store: &str, sink: &str) {
    match store {
        "pg" => drop_pg(&pg().await, &[sink]).await,
        "my" => drop_my(&[sink]).await,
        _ => {
            crate::support::clickhouse()
                .await
                .exec(&format!("DROP TABLE IF EXISTS {sink}"))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loads_into_a_new_clickhouse_table_run_no_delete_mutation() {
    let c = pg().await;
    let ch = crate::support::clickhouse().await;
    let src = unique("nm_src");
    make_source(&c, &src).await;
    let ts = "    reconciliation:\n      - {name: ts, strategy: timestamp, partition_column: updated_at}\n";
    for (strategy, args) in [
        ("delete_insert", &["apply", "--full"][..]),
        ("delete_insert", &["apply", "-r", "ts"][..]),
        ("delete_insert", &["apply", "-r", "by_id"][..]),
        ("collapse", &["apply", "--full"][..]),
    ] {
        let sink = unique("nm_sink");
        let recon = format!(
            "{ts}{}",
            RECON_BY_ID.trim_start_matches("    reconciliation:\n")
        );
        let cfg = write_config(&pipeline_yaml_ch(
            "nm",
            &src,
            "ch",
            &sink,
            &format!("{{strategy: {strategy}}}"),
            &recon,
        ));
        let r = json_run(&cfg, args, 0);
        assert_eq!(n(&r, "rows_written"), 3000, "{strategy} {args:?}: {r}");
        let mutations = ch
            .exec(&format!("SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = '{sink}'"))
            .await;
        assert_eq!(mutations.trim(), "0", "{strategy} {args:?}");
        assert_eq!(
            live_rows("ch", &sink, strategy == "collapse").await,
            (3000, 3000)
        );
        drop_sink("ch", &sink).await;
    }
    drop_pg(&c, &[&src]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_across_batches_into_a_new_unkeyed_table_end_as_one_row() {
    let c = pg().await;
    let src = unique("eng_dupu");
    // Every id three times, so that batches of 500 rows split some ids between two batches.
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint, name text, amount numeric(12,2), updated_at timestamptz);
         INSERT INTO {src} SELECT g % 1000 + 1, 'name ' || (g % 1000 + 1), 1, TIMESTAMPTZ '2024-01-01 00:00:00+00'
           FROM generate_series(0, 2999) g;"
    ))
    .await
    .unwrap();
    for (store, strategy) in [
        ("ch", "delete_insert"),
        ("ch", "collapse"),
        ("pg", "collapse"),
        ("my", "collapse"),
    ] {
        let sink = unique("eng_dupu_s");
        let merge = format!("{{strategy: {strategy}}}");
        let cfg = write_config(&pipeline_yaml_ch("dups", &src, store, &sink, &merge, ""));
        let r = json_run(&cfg, &["apply"], 0);
        assert_eq!(n(&r, "rows_read"), 3000, "{store}: {r}");
        let live = live_rows(store, &sink, strategy == "collapse").await;
        assert_eq!(live, (1000, 1000), "{store} {strategy}");
        drop_sink(store, &sink).await;
    }
    drop_pg(&c, &[&src]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn collapse_merges_read_the_staged_keys_through_the_key_index() {
    let c = pg().await;
    let mut m = my().await;
    let src = unique("ci_src");
    make_source(&c, &src).await;
    for store in ["pg", "my"] {
        let sink = unique("ci_sink");
        let cfg = write_config(&pipeline_yaml(
            "ci",
            &src,
            store,
            &sink,
            "{strategy: collapse}",
            "",
        ));
        json_run(&cfg, &["apply"], 0);
        let o = synctool(&cfg, &["compile", "--format", "json"]);
        let plan: J = serde_json::from_slice(&o.stdout).expect("compile JSON");
        let steps = plan["pipelines"][0]["steps"].as_array().unwrap();
        let step = |id: &str| -> Vec<String> {
            let s = steps
                .iter()
                .find(|s| s["id"] == id)
                .unwrap_or_else(|| panic!("no {id}"));
            match &s["sql"] {
                J::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                v => vec![v.as_str().unwrap().to_string()],
            }
        };
        if store == "pg" {
            c.batch_execute(&format!("ANALYZE {sink}")).await.unwrap();
            for st in step("sink.stage") {
                c.batch_execute(&st).await.unwrap();
            }
            c.batch_execute(&format!(
                "INSERT INTO _synctool_stage_{sink} SELECT id, name, amount, updated_at FROM {src} WHERE id <= 20; ANALYZE _synctool_stage_{sink}"
            ))
            .await
            .unwrap();
            for sql in step("sink.merge") {
                let plan: Vec<String> = c
                    .query(&format!("EXPLAIN {sql}"), &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect();
                let plan = plan.join("\n");
                assert!(
                    plan.contains(&format!("{sink}_synctool_key")),
                    "{plan}\n{sql}"
                );
                assert!(
                    !plan.contains(&format!("Seq Scan on {sink}")),
                    "{plan}\n{sql}"
                );
            }
            c.batch_execute("DISCARD TEMP").await.unwrap();
        } else {
            m.query_drop(format!("ANALYZE TABLE {sink}")).await.unwrap();
            for st in step("sink.stage") {
                m.query_drop(st).await.unwrap();
            }
            m.query_drop(format!(
                "INSERT INTO _synctool_stage_{sink} SELECT seq, 'n', 1, NULL FROM seq_1_to_20"
            ))
            .await
            .unwrap();
            for sql in step("sink.merge") {
                let plan = mariadb_explain(&mut m, &sql).await;
                assert!(plan.iter().any(|(t, _)| t == &sink), "{plan:?}\n{sql}");
                assert!(
                    !plan.iter().any(|(t, ty)| t == &sink && ty == "ALL"),
                    "the merge scans the whole sink: {plan:?}\n{sql}"
                );
            }
        }
        drop_sink(store, &sink).await;
    }
    drop_pg(&c, &[&src]).await;
}

/// A character beyond U+FFFF (an emoji) bound for a MariaDB `utf8mb3` column is refused
/// before the write, naming the row's key and the column (the server's own error names a
/// position in the statement).
#[tokio::test(flavor = "multi_thread")]
async fn an_emoji_into_a_utf8mb3_column_is_refused_naming_the_row() {
    let c = pg().await;
    let (src, sink) = (unique("emo_src"), unique("emo_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, s text);
         INSERT INTO {src} VALUES (1, 'plain é'), (7, 'smile 😀');"
    ))
    .await
    .unwrap();
    let mut m = my().await;
    mysql_async::prelude::Queryable::query_drop(
        &mut m,
        format!("CREATE TABLE {sink} (id bigint PRIMARY KEY, s varchar(50) CHARACTER SET utf8mb3)"),
    )
    .await
    .unwrap();
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
  - {MY}
pipelines:
  - name: emo
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: s, dtype: str}}]
    sink:
      datastore: my
      table: {sink}
      unique_key: [id]
"#
    ));
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("row with key (id=7) column `s`:")
            && err.contains("convert the column to utf8mb4"),
        "{err}"
    );
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blocks_the_source_lacks_are_deleted_by_range() {
    let c = pg().await;
    // (sink, strategy, deleted blocks): a block larger than max_block_size that the
    // source holds no row of is deleted whole: blocks of 1000 ids from 0, [0, 1000) and
    // [1000, 2000), at level 1; the five 100-id blocks of [2000, 2500) under the changed
    // [2000, 3000) are leaves, deleted key by key as before. Collapse and
    // ReplacingMergeTree sinks delete key by key (a range delete would leave cancelled or
    // older rows behind): every 100-id leaf of the first two blocks is a deleted block.
    for (store, strategy, deleted_blocks) in [
        ("pg", "upsert", 7),
        ("my", "delete_insert", 7),
        ("ch", "delete_insert", 7),
        ("ch", "upsert", 25),
        ("pg", "collapse", 25),
    ] {
        let (src, sink) = (unique("rd_src"), unique("rd_sink"));
        make_source(&c, &src).await;
        let merge = format!("{{strategy: {strategy}, allow_delete: true}}");
        let cfg = write_config(&pipeline_yaml_ch(
            "rd",
            &src,
            store,
            &sink,
            &merge,
            RECON_BY_ID,
        ));
        json_run(&cfg, &["apply"], 0);
        c.batch_execute(&format!("DELETE FROM {src} WHERE id < 2500"))
            .await
            .unwrap();
        let what = format!("{store} {strategy}");
        let v = json_run(&cfg, &["plan"], 0);
        assert_eq!(n(&v, "rows_deleted"), 2499, "{what}: {v}");
        assert_eq!(n(&v, "rows_written"), 0, "{what}: {v}");
        let v = json_run(&cfg, &["apply"], 0);
        assert_eq!(n(&v, "rows_deleted"), 2499, "{what}: {v}");
        assert_eq!(n(&v, "rows_written"), 0, "{what}: {v}");
        assert_eq!(blocks(&v, "deleted"), deleted_blocks, "{what}: {v}");
        assert_eq!(
            live_rows(store, &sink, strategy == "collapse").await,
            (501, 501),
            "{what}"
        );
        let v = json_run(&cfg, &["plan", "--exit-code"], 0);
        assert_eq!(n(&v, "rows_deleted"), 0, "{what}: {v}");
        drop_sink(store, &sink).await;
        drop_pg(&c, &[&src]).await;
    }
}

/// `(id, doc::text)` of a PostgreSQL table, by id.
async fn pg_docs(c: &tokio_postgres::Client, t: &str) -> Vec<(i64, Option<String>)> {
    c.query(&format!("SELECT id, doc::text FROM {t} ORDER BY id"), &[])
        .await
        .expect("read the documents")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A JSON document with a number beyond the 64-bit float range (`1e400`, which no `f64`
/// holds) and a JSON `null` are written by a reconciliation as a full sync writes them: as
/// the documents they are, never as NULL. Both directions between MariaDB and PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn json_documents_beyond_f64_and_json_null_are_reconciled_as_a_full_sync_writes_them() {
    let c = pg().await;
    let mut m = my().await;
    let (my_src, pg_sink) = (unique("bigjson_mysrc"), unique("bigjson_pgsink"));
    m.query_drop(format!(
        "CREATE TABLE {my_src} (id bigint PRIMARY KEY, doc json)"
    ))
    .await
    .unwrap();
    m.query_drop(format!(
        r#"INSERT INTO {my_src} VALUES (1, '{{"x": 1e400}}'), (2, 'null'), (3, NULL), (4, '{{"a":1}}')"#
    ))
    .await
    .unwrap();
    c.batch_execute(&format!(
        "CREATE TABLE {pg_sink} (id bigint PRIMARY KEY, doc jsonb)"
    ))
    .await
    .unwrap();
    let yaml = |name: &str, src_store: &str, src: &str, sink_store: &str, sink: &str| {
        format!(
            r#"
datastores:
  - {PG}
  - {MY}
pipelines:
  - name: {name}
    source:
      datastore: {src_store}
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: doc, dtype: json}}]
    sink:
      datastore: {sink_store}
      table: {sink}
      merge_strategy: {{strategy: delete_insert}}
      unique_key: [id]
      fields: [{{column: id, source_column: id}}, {{column: doc, source_column: doc}}]
{RECON_BY_ID}"#
        )
    };
    let cfg = write_config(&yaml("my_to_pg", "my", &my_src, "pg", &pg_sink));
    let big = format!("{{\"x\": 1{}}}", "0".repeat(400));
    let want = vec![
        (1, Some(big.clone())),
        (2, Some("null".to_string())),
        (3, None),
        (4, Some(r#"{"a": 1}"#.to_string())),
    ];
    json_run(&cfg, &["apply", "--full"], 0);
    assert_eq!(pg_docs(&c, &pg_sink).await, want);
    // jsonb re-serialises rows 1 and 4: drift on every reconciliation, rewritten as they are.
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 2, "{r}");
    assert_eq!(pg_docs(&c, &pg_sink).await, want);
    c.batch_execute(&format!("UPDATE {pg_sink} SET doc = '1' WHERE id = 2"))
        .await
        .unwrap();
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 3, "{r}");
    assert_eq!(pg_docs(&c, &pg_sink).await, want);

    // PostgreSQL jsonb (which keeps 1e400 digit for digit) into a MariaDB json column.
    let my_sink = unique("bigjson_mysink");
    let cfg = write_config(&yaml("pg_to_my", "pg", &pg_sink, "my", &my_sink));
    json_run(&cfg, &["apply", "--full"], 0);
    json_run(&cfg, &["plan", "--exit-code"], 0);
    m.query_drop(format!("UPDATE {my_sink} SET doc = '1' WHERE id IN (1, 2)"))
        .await
        .unwrap();
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 2, "{r}");
    let got: Vec<(i64, Option<String>)> = m
        .query(format!("SELECT id, doc FROM {my_sink} ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(got, want);
    json_run(&cfg, &["plan", "--exit-code"], 0);
    drop_pg(&c, &[&pg_sink]).await;
    drop_my(&[&my_src, &my_sink]).await;
}

/// A TCP listener on `port` that accepts connections and never says anything, until the
/// returned guard is dropped.
struct SilentListener {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SilentListener {
    fn on(port: u16) -> SilentListener {
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind a silent listener");
        l.set_nonblocking(true).expect("nonblocking listener");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        SilentListener { stop }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A pipeline reading datastore `src` (given as a flow mapping) into MariaDB.
fn from_store(src: &str) -> std::path::PathBuf {
    write_config(&format!(
        r#"
datastores:
  - {src}
  - {MY}
pipelines:
  - name: p
    source:
      datastore: src
      table: t
      fields: [{{column: id, dtype: int}}]
    sink:
      datastore: my
      table: t
      unique_key: [id]
      fields: [{{column: id, source_column: id}}]
"#
    ))
}

#[test]
fn a_port_that_never_answers_times_out_naming_the_store_host_and_step() {
    for (port, store, step) in [
        (18400u16, "postgres", "connection handshake"),
        (18401, "clickhouse", "SELECT version()"),
    ] {
        let _l = SilentListener::on(port);
        let cfg = from_store(&format!(
            "{{name: src, type: {store}, host: 127.0.0.1, port: {port}, username: u, password: pw-s3cret-9z, database: test}}"
        ));
        let started = std::time::Instant::now();
        let o = synctool_within(&cfg, &["plan"], 60);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{store}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{store}: {err}"
        );
        assert!(
            err.contains(&format!(
                "datastore `src` (127.0.0.1:{port}): cannot connect: timed out after 10 s"
            )),
            "{store}: {err}"
        );
        assert!(err.contains(step), "{store}: {err}");
        assert!(!err.contains("pw-s3cret-9z"), "{err}");
    }
}

#[test]
fn postgres_pointed_at_another_service_says_it_did_not_answer_as_postgresql() {
    // An HTTP server answers the startup message with a 400 and hangs up. It reads what
    // the client sends until the client closes: a socket closed with unread bytes sends a
    // reset, which can reach the client before the answer does.
    let l = std::net::TcpListener::bind(("127.0.0.1", 18403)).expect("bind");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 128];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                let _ = s.shutdown(std::net::Shutdown::Write);
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let cfg = from_store(
        "{name: src, type: postgres, host: 127.0.0.1, port: 18403, username: postgres, database: test}",
    );
    let o = synctool_within(&cfg, &["plan"], 60);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("127.0.0.1:18403") && err.contains("the server did not answer as PostgreSQL"),
        "{err}"
    );
    assert!(!err.contains("timed out"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_batch_size_is_refused_and_a_large_one_reserves_no_memory_up_front() {
    let cfg = write_config(
        &pipeline_yaml("big", "t", "pg", "t2", "{strategy: upsert}", "")
            .replace("batch_size: 500", "batch_size: 4294967295"),
    );
    let o = synctool(&cfg, &["validate"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pipelines[0].source.batch_size")
            && err.contains("`batch_size` must be between 1 and 1000000"),
        "{err}"
    );
    // The largest allowed batch of a small table, under a memory limit far below what
    // reserving a million rows per batch would take several times over.
    let c = pg().await;
    let (src, sink) = (unique("qacli_bs_src"), unique("qacli_bs_sink"));
    make_source(&c, &src).await;
    let cfg = write_config(
        &pipeline_yaml("big", &src, "pg", &sink, "{strategy: upsert}", "")
            .replace("batch_size: 500", "batch_size: 1000000"),
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 4000000; exec {} -c {} apply --full",
            env!("CARGO_BIN_EXE_synctool"),
            cfg.display()
        ))
        .output()
        .expect("run synctool");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);
    drop_pg(&c, &[&src, &sink]).await;
}

/// Runs `synctool ARGS` with stderr on a terminal (under `script`) and stdout in a file;
/// returns what the terminal showed and stdout.
fn on_a_terminal(cfg: &std::path::Path, args: &str) -> (String, String) {
    let out = cfg.with_extension("stdout");
    let o = Command::new("script")
        .args(["-qfec"])
        .arg(format!(
            "{} -c {} {args} > {}",
            env!("CARGO_BIN_EXE_synctool"),
            cfg.display(),
            out.display()
        ))
        .arg("/dev/null")
        .env("TERM", "xterm")
        .output()
        .expect("run script");
    let tty = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{tty}");
    (tty, std::fs::read_to_string(&out).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconciliation_bar_shows_rows_per_second_and_never_zero_blocks() {
    let c = pg().await;
    let (src, sink) = (unique("qacli_bar_src"), unique("qacli_bar_sink"));
    make_source(&c, &src).await;
    let cfg = write_config(&pipeline_yaml(
        "bar",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        RECON_BY_ID,
    ));
    // A first run copies the table whole; the second reconciles.
    let o = synctool(&cfg, &["apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    c.batch_execute(&format!(
        "UPDATE {src} SET name = 'changed' WHERE id % 700 = 0"
    ))
    .await
    .unwrap();
    let (tty, _) = on_a_terminal(&cfg, "apply");
    assert!(tty.contains(" blocks, "), "no block bar: {tty:?}");
    assert!(tty.contains(" rows/s), ETA "), "{tty:?}");
    assert!(!tty.contains("0/0 blocks"), "{tty:?}");
    let (tty, _) = on_a_terminal(&cfg, "plan");
    assert!(!tty.contains("0/0 blocks"), "{tty:?}");
    // With JSON logs every stderr line is a JSON object: no bars.
    let (tty, out) = on_a_terminal(&cfg, "plan --log-format json --format json -v");
    assert!(!tty.contains("blocks"), "{tty:?}");
    for l in tty.split(['\r', '\n']).filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<J>(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {tty:?}"));
    }
    serde_json::from_str::<J>(&out).expect("plan --format json");
    drop_pg(&c, &[&src, &sink]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_sync_bar_shows_the_estimated_total_on_a_terminal_only() {
    let c = pg().await;
    let (src, sink) = (unique("qacli_est_src"), unique("qacli_est_sink"));
    make_source(&c, &src).await;
    c.batch_execute(&format!("ANALYZE {src}")).await.unwrap();
    let cfg = write_config(&pipeline_yaml(
        "est",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        "",
    ));
    // `-vvv` logs each statement sent, with its step.
    let (tty, _) = on_a_terminal(&cfg, "apply --full -vvv");
    let copied = pg_diff(&c, &src, &sink).await;
    // On a pipe nothing is drawn, and the estimate is not even asked for.
    let piped = synctool(&cfg, &["apply", "--full", "-vvv"]);
    // A filtered source has no estimate (the table's count is only an upper bound): its
    // bar counts rows alone.
    let filtered = write_config(
        &pipeline_yaml("est", &src, "pg", &sink, "{strategy: upsert}", "").replace(
            "      fields:\n        - {column: id, dtype: int}",
            "      filters:\n        - {column: id, operator: '>', value: 0}\n      fields:\n        - {column: id, dtype: int}",
        ),
    );
    let (filtered_tty, _) = on_a_terminal(&filtered, "apply --full -vvv");
    drop_pg(&c, &[&src, &sink]).await;

    assert!(tty.contains("source.row_estimate"), "{tty:?}");
    assert!(tty.contains("/~3.0k rows ("), "no estimated total: {tty:?}");
    assert!(tty.contains(" rows/s) ETA "), "{tty:?}");
    assert_eq!(copied, 0);
    let err = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(piped.status.code(), Some(0), "{err}");
    assert!(err.contains("source.extract"), "{err}");
    assert!(!err.contains("source.row_estimate"), "{err}");
    let tty = filtered_tty;
    assert!(
        tty.contains(r#"WHERE "id" > $1"#),
        "the filter was not applied: {tty:?}"
    );
    assert!(tty.contains(" rows ("), "no bar: {tty:?}");
    assert!(
        !tty.contains("/~") && !tty.contains("row_estimate"),
        "{tty:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_stops_apply_with_130_or_143_and_a_rerun_converges() {
    let c = pg().await;
    let (src, sink) = (unique("qacli_sig_src"), unique("qacli_sig_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz);
         INSERT INTO {src} SELECT g, 'name ' || g, g, now() FROM generate_series(1, 200000) g;"
    ))
    .await
    .unwrap();
    let cfg = write_config(
        &pipeline_yaml("sig", &src, "pg", &sink, "{strategy: upsert}", "")
            .replace("batch_size: 500", "batch_size: 100"),
    );
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        // What the sink held before this run: the signal goes once the run has added to
        // it (so that synctool is past its start, with its handlers installed).
        let before: i64 = c
            .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        let child = Command::new(env!("CARGO_BIN_EXE_synctool"))
            .arg("-c")
            .arg(&cfg)
            .args([
                "apply",
                "--full",
                "--format",
                "json",
                "--log-format",
                "json",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run synctool");
        // Signal once the sink has some rows: mid-run.
        let started = std::time::Instant::now();
        loop {
            let n = c
                .query_one(
                    "SELECT count(*) FROM pg_tables WHERE tablename = $1",
                    &[&sink],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if n > 0 {
                let rows: i64 = c
                    .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                if rows > before {
                    break;
                }
            }
            assert!(started.elapsed().as_secs() < 60, "no rows written");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let signalled = std::time::Instant::now();
        let k = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(k.success());
        let o = child.wait_with_output().expect("synctool output");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(signalled.elapsed().as_secs() < 10, "{err}");
        assert_eq!(o.status.code(), Some(code), "{signal}: {err}");
        let last: J = serde_json::from_str(err.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {err}"));
        assert!(
            last["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("interrupted")),
            "{err}"
        );
        let out: J = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
        assert_eq!(out["interrupted"], "sig", "{out}");
        assert!(
            pg_diff(&c, &src, &sink).await > 0,
            "the run was not stopped part way"
        );
    }
    // A rerun goes on from what was committed and converges (in larger batches, to be
    // quick).
    let cfg = write_config(&pipeline_yaml(
        "sig",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        "",
    ));
    let o = synctool(&cfg, &["apply", "--full"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(pg_diff(&c, &src, &sink).await, 0);
    drop_pg(&c, &[&src, &sink]).await;
}

/// The rows of a MariaDB query as (bigint, text) pairs.
async fn my_pairs(sql: &str) -> Vec<(i64, String)> {
    my().await.query(sql).await.expect(sql)
}

/// MariaDB's `ON DUPLICATE KEY UPDATE` fires on a clash with any unique index: a
/// `unique(email)` beside the primary key on the unique_key would let a source row
/// overwrite another key's sink row. Refused before anything is written, as is a unique
/// index on a prefix of the key; an extra unique index that holds the whole key is fine.
#[tokio::test(flavor = "multi_thread")]
async fn a_mariadb_upsert_refuses_a_unique_index_without_the_whole_key() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink) = (unique("uix_src"), unique("uix_sink"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, email text);
         INSERT INTO {src} VALUES (1, 'a@x'), (2, 'b@x');"
    ))
    .await
    .unwrap();
    let cfg = write_config(&format!(
        r#"
datastores:
  - {PG}
  - {MY}
pipelines:
  - name: uix
    source:
      datastore: pg
      table: {src}
      fields:
        - {{column: id, dtype: int}}
        - {{column: email, dtype: str}}
    sink:
      datastore: my
      table: {sink}
      unique_key: [id]
"#
    ));
    for (ddl, shown) in [
        ("UNIQUE KEY em (email)", "`em` on (email)"),
        (
            "UNIQUE KEY idp (id, email(2)), UNIQUE KEY em (email)",
            "`em` on (email)",
        ),
    ] {
        m.query_drop(format!(
            "DROP TABLE IF EXISTS {sink};
             CREATE TABLE {sink} (id bigint PRIMARY KEY, email varchar(50), {ddl});
             INSERT INTO {sink} VALUES (3, 'a@x');"
        ))
        .await
        .unwrap();
        let o = synctool(&cfg, &["apply"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{ddl}: {err}");
        assert!(
            err.contains(&format!("the unique index {shown} does not hold the whole unique_key (id): ON DUPLICATE KEY UPDATE fires on any unique index"))
                && err.contains("datastore `my`") && err.contains(&sink),
            "{ddl}: {err}"
        );
        let rows = my_pairs(&format!("SELECT id, email FROM {sink} ORDER BY id")).await;
        assert_eq!(
            rows,
            vec![(3, "a@x".to_string())],
            "{ddl}: nothing is written"
        );
    }
    // A unique index holding the whole key (and a prefix of another column) is fine.
    m.query_drop(format!(
        "DROP TABLE {sink};
         CREATE TABLE {sink} (id bigint PRIMARY KEY, email varchar(50), UNIQUE KEY idp (id, email(2)));"
    ))
    .await
    .unwrap();
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 2, "{r}");
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src]).await;
}

/// PostgreSQL's `ON CONFLICT (key)` can use neither a deferrable unique constraint nor a
/// partial unique index on the key: the first is refused up front (the merge would fail),
/// and the second is named for what it is, not as a missing index.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_upsert_refuses_a_deferrable_or_partial_unique_key() {
    let c = pg().await;
    let (src, sink) = (unique("dfr_src"), unique("dfr_sink"));
    make_source(&c, &src).await;
    let cfg = write_config(&pipeline_yaml(
        "dfr",
        &src,
        "pg",
        &sink,
        "{strategy: upsert}",
        "",
    ));
    for (ddl, want) in [
        (
            format!("CONSTRAINT {sink}_u UNIQUE (id) DEFERRABLE INITIALLY IMMEDIATE"),
            format!("merge strategy upsert merges with ON CONFLICT (id), which cannot use the deferrable unique constraint `{sink}_u` on (id)"),
        ),
        (
            format!("CONSTRAINT {sink}_u UNIQUE (id) DEFERRABLE INITIALLY DEFERRED"),
            format!("cannot use the deferrable unique constraint `{sink}_u` on (id)"),
        ),
    ] {
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS {sink};
             CREATE TABLE {sink} (id bigint, name text, amount numeric(12,2), updated_at timestamptz, {ddl});"
        ))
        .await
        .unwrap();
        let o = synctool(&cfg, &["apply"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{ddl}: {err}");
        assert!(err.contains(&want) && err.contains("nothing was written"), "{ddl}: {err}");
    }
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {sink};
         CREATE TABLE {sink} (id bigint, name text, amount numeric(12,2), updated_at timestamptz);
         CREATE UNIQUE INDEX {sink}_p ON {sink} (id) WHERE id > 0;"
    ))
    .await
    .unwrap();
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("which cannot use the partial unique index `{sink}_p` on (id) (its WHERE clause leaves rows out of it)")),
        "{err}"
    );
    let count: i64 = c
        .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing is written");
    drop_pg(&c, &[&src, &sink]).await;
}

/// A collapse table holds several rows per key (the old row, its cancelling row, the new
/// one): an existing table with a primary key on the key, or an unsigned sign column that
/// cannot hold -1, is refused before the first write (not on the first change).
#[tokio::test(flavor = "multi_thread")]
async fn a_collapse_into_a_keyed_table_or_an_unsigned_sign_is_refused_before_writing() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink) = (unique("clk_src"), unique("clk_sink"));
    make_source(&c, &src).await;
    let cols = "id bigint, name varchar(50), amount decimal(12,2), updated_at datetime(6)";
    c.batch_execute(&format!(
        "CREATE TABLE {sink} (id bigint PRIMARY KEY, name text, amount numeric(12,2), updated_at timestamptz, sign smallint)"
    ))
    .await
    .unwrap();
    let cases = [
        ("pg", format!("which the unique index `{sink}_pkey` on (id) refuses")),
        ("my", "the unique index `PRIMARY` on (id)".to_string()),
        ("my", "sign column `sign` is tinyint(3) unsigned, which cannot hold the -1 of cancelling rows".to_string()),
    ];
    for (i, (store, want)) in cases.iter().enumerate() {
        if *store == "my" {
            let ddl = if i == 1 {
                format!("CREATE TABLE {sink} ({cols}, sign tinyint, PRIMARY KEY (id))")
            } else {
                format!("CREATE TABLE {sink} ({cols}, sign tinyint unsigned, KEY (id))")
            };
            m.query_drop(format!("DROP TABLE IF EXISTS {sink}; {ddl}"))
                .await
                .unwrap();
        }
        let cfg = write_config(&pipeline_yaml(
            "clk",
            &src,
            store,
            &sink,
            "{strategy: collapse}",
            "",
        ));
        let o = synctool(&cfg, &["apply"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{store} {want}: {err}");
        assert!(
            err.contains(want) && err.contains("nothing was written"),
            "{store} {want}: {err}"
        );
    }
    let count: i64 = c
        .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
        .await
        .unwrap()
        .get(0);
    let my_count: Option<i64> = m
        .query_first(format!("SELECT count(*) FROM {sink}"))
        .await
        .unwrap();
    assert_eq!((count, my_count), (0, Some(0)), "nothing is written");
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src, &sink]).await;
}

/// A MariaDB source whose text key tells case apart (`utf8mb4_bin`) into a MariaDB sink
/// key that ignores it (`_ci`) would make `a` and `A` one sink row: refused before
/// anything is written (`source.collations`), while a `_ci` source stays a warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_case_sensitive_mariadb_source_key_into_a_case_insensitive_sink_key_is_refused() {
    let mut m = my().await;
    let (src, sink) = (unique("bin_src"), unique("bin_sink"));
    m.query_drop(format!(
        "CREATE TABLE {src} (k varchar(50) COLLATE utf8mb4_bin PRIMARY KEY, v bigint);
         INSERT INTO {src} VALUES ('a', 1), ('A', 2);
         CREATE TABLE {sink} (k varchar(50) PRIMARY KEY, v bigint) COLLATE utf8mb4_general_ci;"
    ))
    .await
    .unwrap();
    let cfg = write_config(&format!(
        r#"
datastores:
  - {MY}
pipelines:
  - name: bin
    source:
      datastore: my
      table: {src}
      fields:
        - {{column: k, dtype: str}}
        - {{column: v, dtype: int}}
    sink:
      datastore: my
      table: {sink}
      unique_key: [k]
"#
    ));
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("key column `k` has the collation utf8mb4_general_ci, which ignores case or accents, and the source's key column `k` on datastore `my` has utf8mb4_bin, which tells them apart")
            && err.contains(&sink),
        "{err}"
    );
    let count: Option<i64> = m
        .query_first(format!("SELECT count(*) FROM {sink}"))
        .await
        .unwrap();
    assert_eq!(count, Some(0), "nothing is written");
    // The sink key with the source's collation is fine.
    m.query_drop(format!(
        "ALTER TABLE {sink} MODIFY k varchar(50) COLLATE utf8mb4_bin"
    ))
    .await
    .unwrap();
    let r = json_run(&cfg, &["apply"], 0);
    assert_eq!(n(&r, "rows_written"), 2, "{r}");
    drop_my(&[&src, &sink]).await;
}

/// MariaDB matches column names ignoring case: an existing sink table's `ID` and `Name`
/// are the fields' `id` and `name`.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_sink_columns_match_whatever_the_case_of_their_names() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink) = (unique("case_src"), unique("case_sink"));
    make_source(&c, &src).await;
    m.query_drop(format!(
        "CREATE TABLE {sink} (ID bigint PRIMARY KEY, Name varchar(50) NOT NULL, AMOUNT decimal(12,2), Updated_At datetime(6))"
    ))
    .await
    .unwrap();
    let cfg = write_config(&pipeline_yaml(
        "case",
        &src,
        "my",
        &sink,
        "{strategy: upsert}",
        "",
    ));
    for _ in 0..2 {
        let r = json_run(&cfg, &["apply"], 0);
        assert_eq!(n(&r, "rows_written"), 3000, "{r}");
    }
    let rows = my_pairs(&format!("SELECT ID, Name FROM {sink} WHERE ID = 7")).await;
    assert_eq!(rows, vec![(7, "name 7".to_string())]);
    drop_my(&[&sink]).await;
    drop_pg(&c, &[&src]).await;
}

/// `validate` refuses MySQL sink fields whose names differ only in case, which CREATE
/// TABLE would refuse, naming the second field (exit 2, no connection).
#[test]
fn validate_refuses_mysql_sink_fields_differing_only_in_case() {
    let cfg = write_config(&format!(
        r#"
datastores:
  - {MY}
pipelines:
  - name: dup
    source:
      datastore: my
      table: t
      fields:
        - {{column: id, dtype: int}}
        - {{column: name, dtype: str}}
    sink:
      datastore: my
      table: s
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: ID, source_column: name}}
"#
    ));
    let o = synctool(&cfg, &["validate"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sink fields `id` and `ID` name one column: MySQL column names ignore case")
            && err.contains("pipelines[0].sink.fields[1].column"),
        "{err}"
    );
}

/// A MariaDB sink table on a non-transactional engine (MyISAM) loses the one transaction
/// per batch: the run warns, naming the table and the engine.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_transactional_mariadb_sink_table_is_warned_about() {
    let c = pg().await;
    let mut m = my().await;
    let (src, sink) = (unique("myi_src"), unique("myi_sink"));
    make_source(&c, &src).await;
    m.query_drop(format!(
        "CREATE TABLE {sink} (id bigint PRIMARY KEY, name varchar(50), amount decimal(12,2), updated_at datetime(6)) ENGINE=MyISAM"
    ))
    .await
    .unwrap();
    let cfg = write_config(&pipeline_yaml(
        "myi",
        &src,
        "my",
        &sink,
        "{strategy: upsert}",
        "",
    ));
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("the sink table {sink} on datastore `my` uses the storage engine MyISAM, which is not transactional: a batch is no longer written all or nothing")),
        "{err}"
    );
    // InnoDB says nothing.
    m.query_drop(format!("ALTER TABLE {sink} ENGINE=InnoDB"))
        .await
        .unwrap();
    let o = synctool(&cfg, &["apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("not transactional"), "{err}");
    drop_my(&[&sink]).await;
}

/// Runs `sql` on the sink store (`pg`, `my` or `ch`) and returns the first row's values as
/// integers (each cast by the store's own syntax: write `CAST(x AS INT64)`).
async fn sink_ints(store: &str, sql: &str) -> Vec<i64> {
    let ty = match store {
        "pg" => "BIGINT",
        "my" => "SIGNED",
        _ => "Int64",
    };
    let sql = sql.replace("AS INT64)", &format!("AS {ty})"));
    match store {
        "pg" => {
            let r = pg().await.query_one(&sql, &[]).await.unwrap();
            (0..r.len()).map(|i| r.get::<_, i64>(i)).collect()
        }
        "my" => {
            let row: mysql_async::Row = my().await.query_first(sql).await.unwrap().unwrap();
            (0..row.len())
                .map(|i| row.get::<i64, _>(i).unwrap())
                .collect()
        }
        _ => crate::support::clickhouse().await.rows(&sql).await[0]
            .iter()
            .map(|v| v.as_deref().unwrap().parse().unwrap())
            .collect(),
    }
}

async fn sink_exec(store: &str, sql: &str) {
    match store {
        "pg" => pg().await.batch_execute(sql).await.unwrap(),
        "my" => my().await.query_drop(sql).await.unwrap(),
        _ => {
            crate::support::clickhouse().await.exec(sql).await;
        }
    }
}

/// A collapse sink whose key is not live exactly once (inserted twice: sign sum 2; a
/// stray cancelling row: sum -1; cancelled: sum 0, though the source holds it; and keys
/// the source lacks with sums -1 and 2) is drift for `plan`, and `apply` (then again
/// `apply --full`) leaves every source key live exactly once with the source's values and
/// every other key at sum 0, on each sink dialect. A leaf cancels only the versions in
/// its own range.
#[tokio::test(flavor = "multi_thread")]
async fn collapse_keys_not_live_exactly_once_are_drift_and_repaired() {
    let c = pg().await;
    let src = unique("cx_src");
    make_source(&c, &src).await;
    for store in ["pg", "my", "ch"] {
        let sink = unique("cx_sink");
        let cfg = write_config(&pipeline_yaml_ch(
            "cx",
            &src,
            store,
            &sink,
            "{strategy: collapse, allow_delete: true}",
            RECON_BY_ID,
        ));
        json_run(&cfg, &["apply"], 0);
        if store == "ch" {
            // CollapsingMergeTree merges would fold the doubled rows away behind our back.
            sink_exec(store, &format!("SYSTEM STOP MERGES {sink}")).await;
        }
        let copy = |id: i64, sign: i64| {
            format!("INSERT INTO {sink} (id, name, amount, updated_at, sign) SELECT id, name, amount, updated_at, {sign} FROM {sink} WHERE id = {id} AND sign = 1")
        };
        for args in [&["apply"][..], &["apply", "--full"][..]] {
            // A key inserted twice alone: its live version's values equal the source's.
            sink_exec(store, &copy(10, 1)).await;
            let r = json_run(&cfg, &["plan", "--exit-code"], 3);
            assert_eq!(n(&r, "rows_written"), 1, "{store} {args:?}: {r}");
            for (id, sign) in [(20, -1), (20, -1), (30, -1), (40, 1), (40, -1)] {
                sink_exec(store, &copy(id, sign)).await;
            }
            // Keys the source lacks: 2999 only as a stray cancelling row, 3000 twice.
            // (Source ids end at 3000: delete them there and the sink keeps them.)
            for (id, sign) in [(2999, -1), (2999, -1), (3000, 1)] {
                sink_exec(store, &copy(id, sign)).await;
            }
            c.batch_execute(&format!("DELETE FROM {src} WHERE id >= 2999"))
                .await
                .unwrap();
            let r = json_run(&cfg, &["plan", "--exit-code"], 3);
            assert!(n(&r, "rows_written") >= 3, "{store} {args:?}: {r}");
            json_run(&cfg, args, 0);
            let [versions, keys, min, max, top, named]: [i64; 6] = sink_ints(
                store,
                &format!(
                    "SELECT CAST(count(*) AS INT64), CAST(count(DISTINCT id) AS INT64), CAST(min(s) AS INT64), CAST(max(s) AS INT64), CAST(max(id) AS INT64), CAST(sum(CASE WHEN name = concat('name ', IDTEXT) THEN 1 ELSE 0 END) AS INT64)
                     FROM (SELECT id, name, amount, updated_at, sum(sign) AS s FROM {sink} GROUP BY id, name, amount, updated_at HAVING sum(sign) <> 0) AS v"
                )
                .replace(
                    "IDTEXT",
                    match store {
                        "pg" => "CAST(id AS TEXT)",
                        "my" => "CAST(id AS CHAR)",
                        _ => "toString(id)",
                    },
                ),
            )
            .await
            .try_into()
            .unwrap();
            assert_eq!(
                [versions, keys, min, max, top, named],
                [2998, 2998, 1, 1, 2998, 2998],
                "{store} {args:?}"
            );
            let r = json_run(&cfg, &["plan", "--exit-code"], 0);
            assert_eq!(n(&r, "rows_written"), 0, "{store} {args:?}: {r}");
            // The next round: the source holds 2999 and 3000 again.
            c.batch_execute(&format!(
                "INSERT INTO {src} SELECT g, 'name ' || g, g * 1.25, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 minute' FROM generate_series(2999, 3000) g"
            ))
            .await
            .unwrap();
            json_run(&cfg, &["apply"], 0);
        }
        drop_sink(store, &sink).await;

        // Reconciled by the time: a stray cancelling row of key 5 a day later than its
        // live row. That day's leaf cancels key 5 there only; its live row (in a block that
        // compares equal) stays.
        let sink = unique("cx_sink");
        let by_time = "    reconciliation:\n      - {name: by_time, partition_column: updated_at, partition_column_type: datetime, initial_partition_interval: 86400, max_block_size: 100, interval_reduction_factor: 10}\n";
        let cfg = write_config(&pipeline_yaml_ch(
            "cx",
            &src,
            store,
            &sink,
            "{strategy: collapse, allow_delete: true}",
            by_time,
        ));
        json_run(&cfg, &["apply"], 0);
        if store == "ch" {
            sink_exec(store, &format!("SYSTEM STOP MERGES {sink}")).await;
        }
        let later = match store {
            "pg" => "updated_at + INTERVAL '1 day'",
            "my" => "updated_at + INTERVAL 1 DAY",
            _ => "updated_at + 86400",
        };
        sink_exec(store, &format!("INSERT INTO {sink} (id, name, amount, updated_at, sign) SELECT id, name, amount, {later}, -1 FROM {sink} WHERE id = 5")).await;
        // And one of key 6 in the NULL-partition block, which its own leaf cancels.
        sink_exec(store, &format!("INSERT INTO {sink} (id, name, amount, updated_at, sign) SELECT id, name, amount, NULL, -1 FROM {sink} WHERE id = 6")).await;
        json_run(&cfg, &["plan", "--exit-code"], 3);
        json_run(&cfg, &["apply"], 0);
        for id in [5, 6] {
            let live: [i64; 2] = sink_ints(
                store,
                &format!("SELECT CAST(count(*) AS INT64), CAST(COALESCE(sum(s), 0) AS INT64) FROM (SELECT id, updated_at, sum(sign) AS s FROM {sink} WHERE id = {id} GROUP BY id, updated_at HAVING sum(sign) <> 0) AS v"),
            )
            .await
            .try_into()
            .unwrap();
            assert_eq!(live, [1, 1], "{store}: key {id} is live once");
        }
        json_run(&cfg, &["plan", "--exit-code"], 0);
        drop_sink(store, &sink).await;
    }
    drop_pg(&c, &[&src]).await;
}
