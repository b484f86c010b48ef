//! Timestamp (incremental) reconciliation at its edges: a watermark at the last value a
//! side's type holds (MySQL's 9999-12-31 23:59:59.999999, ClickHouse's last `DateTime`), a
//! watermark in the future, rows that differ in the lookback window although their
//! timestamp did not move, and the index a created sink table gets on the watermark column.

use crate::support::{self, unique, write_config, PG};

use crate::support::run_report as run;

use crate::support::written;

/// A pipeline `p` from `src_store`.`src` to `sink_store`.`sink` over `(id, v, ts)`, `ts`
/// typed `ts_type`, with the reconciliations `recon` (YAML list items).
fn config(
    src_store: &str,
    src: &str,
    sink_store: &str,
    sink: &str,
    ts_type: &str,
    recon: &str,
) -> String {
    let rest = format!(
        r#"      fields: [{{column: id, dtype: int}}, {{column: v, dtype: str}}, {{column: ts, dtype: {ts_type}}}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {{strategy: upsert}}
      unique_key: [id]
    reconciliation:
{recon}"#
    );
    support::edge_config(src_store, src, sink_store, sink, &rest)
}

const INC: &str =
    "      - {name: inc, strategy: timestamp, partition_column: ts, lookback: 3600}\n";
const BY_TS: &str =
    "      - {name: by_ts, strategy: md5sum_hash, partition_column: ts, max_block_size: 2}\n";

/// A MariaDB source row at MySQL's last second (`9999-12-31 23:59:59.999999`, stored as
/// 23:59:59 in a `datetime`) is the watermark of the PostgreSQL sink: the runs after the
/// first go on (the window's end was bound as 10000-01-01, which MySQL cannot hold, and
/// every run failed), and a block-hash reconciliation over `ts` compares that row too.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_at_mysqls_last_second_keeps_a_timestamp_pipeline_running() {
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let (src, sink) = (unique("mx_src"), unique("mx_sink"));
    support::mysql_exec(
        &mut my,
        &format!("CREATE TABLE {src} (id int PRIMARY KEY, v varchar(50), ts datetime)"),
    )
    .await;
    support::mysql_exec(
        &mut my,
        &format!(
            "INSERT INTO {src} VALUES (1, 'a', '2024-01-01 00:00:00'), (9, 'max', '9999-12-31 23:59:59.999999')"
        ),
    )
    .await;
    let cfg = write_config(&config(
        "my",
        &src,
        "pg",
        &sink,
        "datetime",
        &format!("{INC}{BY_TS}"),
    ));
    let (r, _) = run(&cfg, &["apply"], 0);
    assert_eq!(written(&r), 2, "{r}");
    for _ in 0..2 {
        let (r, _) = run(&cfg, &["plan", "--exit-code"], 0);
        assert_eq!(written(&r), 0, "{r}");
        let (r, _) = run(&cfg, &["apply"], 0);
        assert_eq!(written(&r), 0, "{r}");
    }
    // The row at the last second is compared by the window (its own second) and by the
    // block-hash reconciliation, which leaves no row uncompared.
    support::mysql_exec(
        &mut my,
        &format!("UPDATE {src} SET v = 'never' WHERE id = 9"),
    )
    .await;
    let (r, _) = run(&cfg, &["plan", "--exit-code", "-r", "by_ts"], 3);
    assert_eq!(written(&r), 1, "{r}");
    let (r, err) = run(&cfg, &["apply", "-r", "by_ts"], 0);
    assert_eq!(written(&r), 1, "{r}");
    assert!(!err.contains("are not compared"), "{err}");
    let (r, _) = run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(written(&r), 0, "{r}");
    let got = support::pg_rows(
        &pg,
        &format!("SELECT v, ts::text FROM {sink} WHERE id = 9"),
        &[],
    )
    .await;
    assert_eq!(
        got,
        vec![vec![
            Some("never".to_string()),
            Some("9999-12-31 23:59:59+00".to_string())
        ]]
    );
    support::mysql_exec(&mut my, &format!("DROP TABLE {src}")).await;
    pg.batch_execute(&format!("DROP TABLE {sink}"))
        .await
        .unwrap();
}

/// PostgreSQL → MariaDB with a source row at `9999-12-31 23:59:59.999999` (and a `date`
/// watermark at 9999-12-31): the MariaDB sink's window ends at its type's last value, so
/// later runs go on and compare the row; a block-hash run with `--end` at that value does
/// too.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_row_at_mysqls_last_value_keeps_a_mariadb_sink_reconciling() {
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let (src, sink, dsrc, dsink) = (
        unique("mxp_src"),
        unique("mxp_sink"),
        unique("mxd_src"),
        unique("mxd_sink"),
    );
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id int PRIMARY KEY, v text, ts timestamptz);
         INSERT INTO {src} VALUES (1, 'a', '2024-01-01 00:00:00+00'), (9, 'max', '9999-12-31 23:59:59.999999+00');
         CREATE TABLE {dsrc} (id int PRIMARY KEY, v text, ts date);
         INSERT INTO {dsrc} VALUES (1, 'a', '2024-01-01'), (9, 'max', '9999-12-31');"
    ))
    .await
    .unwrap();
    let cfg = write_config(&config(
        "pg",
        &src,
        "my",
        &sink,
        "datetime",
        &format!("{INC}{BY_TS}"),
    ));
    let dated = write_config(&config("pg", &dsrc, "my", &dsink, "date", INC));
    for cfg in [&cfg, &dated] {
        let (r, _) = run(cfg, &["apply"], 0);
        assert_eq!(written(&r), 2, "{r}");
        let (r, _) = run(cfg, &["plan", "--exit-code"], 0);
        assert_eq!(written(&r), 0, "{r}");
    }
    pg.batch_execute(&format!(
        "UPDATE {src} SET v = 'never' WHERE id = 9; UPDATE {dsrc} SET v = 'never' WHERE id = 9"
    ))
    .await
    .unwrap();
    for cfg in [&cfg, &dated] {
        let (r, _) = run(cfg, &["plan", "--exit-code"], 3);
        assert_eq!(written(&r), 1, "{r}");
        let (r, _) = run(cfg, &["apply"], 0);
        assert_eq!(written(&r), 1, "{r}");
        let (r, _) = run(cfg, &["plan", "--exit-code"], 0);
        assert_eq!(written(&r), 0, "{r}");
    }
    pg.batch_execute(&format!("UPDATE {src} SET v = 'again' WHERE id = 9"))
        .await
        .unwrap();
    let end = [
        "--end",
        "datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)",
    ];
    let (r, err) = run(&cfg, &[&["apply", "-r", "by_ts"][..], &end[..]].concat(), 0);
    assert_eq!(written(&r), 1, "{r}");
    assert!(!err.contains("are not compared"), "{err}");
    let got = support::mysql_rows(
        &mut my,
        &format!("SELECT v, CAST(ts AS char) FROM {sink} WHERE id = 9"),
        mysql_async::Params::Empty,
    )
    .await;
    assert_eq!(
        got,
        vec![vec![
            Some("again".to_string()),
            Some("9999-12-31 23:59:59.999999".to_string())
        ]]
    );
    support::mysql_exec(&mut my, &format!("DROP TABLE {sink}, {dsink}")).await;
    pg.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {dsrc}"))
        .await
        .unwrap();
}

/// A ClickHouse sink whose watermark is `Date`'s last value (2149-06-06): the window
/// stops before it (its end, 2149-06-07, does not fit the type), and the rows there are
/// merged again (a warning says so) instead of every run failing. A block-hash run with
/// `--end` past `DateTime`'s last value stops at its limit with a warning.
///
/// (ClickHouse 18.16 prints a `DateTime` after 2105 wrapped to 1970, so a `DateTime`
/// watermark there is not read as stored; a current ClickHouse ends a window at its last
/// second as it does at `Date`'s last day.)
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_watermark_at_its_types_last_value_keeps_the_pipeline_running() {
    let pg = support::pg().await;
    let ch = support::clickhouse().await;
    let (src, sink, dsrc, dsink) = (
        unique("chmx_src"),
        unique("chmx_sink"),
        unique("chmd_src"),
        unique("chmd_sink"),
    );
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id int PRIMARY KEY, v text, ts timestamptz);
         INSERT INTO {src} VALUES (1, 'a', '2024-01-01 00:00:00+00'), (9, 'max', '2106-02-07 06:28:15+00');
         CREATE TABLE {dsrc} (id int PRIMARY KEY, v text, ts date);
         INSERT INTO {dsrc} VALUES (1, 'a', '2024-01-01'), (9, 'max', '2149-06-06');"
    ))
    .await
    .unwrap();
    let dated = write_config(&config("pg", &dsrc, "ch", &dsink, "date", INC));
    let (r, _) = run(&dated, &["apply"], 0);
    assert_eq!(written(&r), 2, "{r}");
    for cmd in ["plan", "apply"] {
        let (r, err) = run(&dated, &[cmd], 0);
        assert_eq!(written(&r), 1, "the last day's row, merged again: {r}");
        assert!(
            err.contains("rows whose partition value is 2149-06-06 or later lie past the last date or time the databases can bound the lookback window with"),
            "{err}"
        );
    }
    let cfg = write_config(&config("pg", &src, "ch", &sink, "datetime", BY_TS));
    let (r, _) = run(&cfg, &["apply"], 0);
    assert_eq!(written(&r), 2, "{r}");
    let (_, err) = run(&cfg, &["plan", "--end", "datetime.datetime(2200, 1, 1)"], 0);
    assert!(
        err.contains("rows whose partition value is 2106-02-07 06:28:15 or later lie past"),
        "{err}"
    );
    ch.exec(&format!("DROP TABLE IF EXISTS default.{sink}"))
        .await;
    ch.exec(&format!("DROP TABLE IF EXISTS default.{dsink}"))
        .await;
    pg.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {dsrc}"))
        .await
        .unwrap();
}

/// A sink watermark in the future (a placeholder `2099-12-31`) freezes a timestamp
/// pipeline: rows updated now are older than it. `plan` and `apply` say so, naming the
/// watermark and the fix; a watermark of now does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_future_watermark_is_warned_about() {
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let (src, sink) = (unique("fut_src"), unique("fut_sink"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id int PRIMARY KEY, v text, ts timestamptz);
         INSERT INTO {src} VALUES (1, 'a', now());"
    ))
    .await
    .unwrap();
    let recon = "      - {name: inc, strategy: timestamp, partition_column: ts}\n      - {name: by_id, partition_column: id}\n";
    let cfg = write_config(&config("pg", &src, "my", &sink, "datetime", recon));
    let future = "later than now";
    let (_, err) = run(&cfg, &["apply"], 0);
    assert!(!err.contains(future), "{err}");
    let (_, err) = run(&cfg, &["plan", "--exit-code"], 0);
    assert!(!err.contains(future), "{err}");
    pg.batch_execute(&format!(
        "INSERT INTO {src} VALUES (2, 'placeholder', '2099-12-31 00:00:00+00')"
    ))
    .await
    .unwrap();
    run(&cfg, &["apply"], 0);
    pg.batch_execute(&format!(
        "UPDATE {src} SET v = 'b', ts = now() WHERE id = 1"
    ))
    .await
    .unwrap();
    for cmd in ["plan", "apply"] {
        let (r, err) = run(&cfg, &[cmd], 0);
        assert_eq!(written(&r), 0, "{r}");
        assert!(
            err.contains(
                "the sink's watermark, its newest `ts`, is 2099-12-31 00:00:00, later than now"
            ),
            "{err}"
        );
        assert!(
            err.contains("run a block-hash reconciliation (`-r by_id`) or `apply --full`"),
            "{err}"
        );
    }
    let (r, _) = run(&cfg, &["apply", "-r", "by_id"], 0);
    assert_eq!(written(&r), 1, "{r}");
    support::mysql_exec(&mut my, &format!("DROP TABLE {sink}")).await;
    pg.batch_execute(&format!("DROP TABLE {src}"))
        .await
        .unwrap();
}

/// A changed template with a stored hash changes every row's hash, but a timestamp run
/// compares only its lookback window: it rewrites the window's rows and warns that the rows
/// before it may differ the same way, naming the fix (an update that moves the timestamp
/// does not warn). The block-hash reconciliation it names repairs the rest.
#[tokio::test(flavor = "multi_thread")]
async fn rows_that_differ_without_a_newer_timestamp_are_warned_about() {
    let pg = support::pg().await;
    let (src, sink) = (unique("unm_src"), unique("unm_sink"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id int PRIMARY KEY, v text, ts timestamptz);
         INSERT INTO {src} SELECT g, 'v' || g, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 minute'
           FROM generate_series(1, 100) g;"
    ))
    .await
    .unwrap();
    let yaml = |template: &str| {
        format!(
            r#"
datastores:
  - {PG}
pipelines:
  - name: p
    source:
      datastore: pg
      table: {src}
      fields: [{{column: id, dtype: int}}, {{column: v, dtype: str}}, {{column: ts, dtype: datetime}}]
    sink:
      datastore: pg
      table: {sink}
      merge_strategy: {{strategy: upsert}}
      unique_key: [id]
      meta_columns: {{hash_column: h}}
      fields:
        - {{column: id, source_column: id}}
        - {{column: t, dtype: str, source_column: "TMPL({template}-{{{{ v }}}})"}}
        - {{column: ts, source_column: ts}}
    reconciliation:
      - {{name: inc, strategy: timestamp, partition_column: ts, lookback: 600}}
      - {{name: by_id, partition_column: id}}
"#
        )
    };
    let v1 = write_config(&yaml("v1"));
    run(&v1, &["apply"], 0);
    let warning = "differ from the sink although their `ts` is not later than the sink's";
    // An update that moves its timestamp forward, within the window: no warning.
    pg.batch_execute(&format!(
        "UPDATE {src} SET v = 'x', ts = ts + INTERVAL '30 seconds' WHERE id = 95"
    ))
    .await
    .unwrap();
    let (r, err) = run(&v1, &["apply"], 0);
    assert_eq!(written(&r), 1, "{r}");
    assert!(!err.contains(warning), "{err}");
    let v2 = write_config(&yaml("v2"));
    for cmd in ["plan", "apply"] {
        let (r, err) = run(&v2, &[cmd], 0);
        assert_eq!(written(&r), 11, "{r}");
        assert!(err.contains(warning), "{err}");
        assert!(
            err.contains("run a block-hash reconciliation (`-r by_id`) or `apply --full`"),
            "{err}"
        );
    }
    let (r, _) = run(&v2, &["apply", "-r", "by_id"], 0);
    assert_eq!(written(&r), 89, "{r}");
    // An update that leaves the timestamp as it was, within the window.
    pg.batch_execute(&format!("UPDATE {src} SET v = 'y' WHERE id = 99"))
        .await
        .unwrap();
    let (r, err) = run(&v2, &["plan", "--exit-code"], 3);
    assert_eq!(written(&r), 1, "{r}");
    assert!(
        err.contains(warning) && err.contains("(first: (id=99))"),
        "{err}"
    );
    pg.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {sink}"))
        .await
        .unwrap();
}

/// A sink table synctool creates for a pipeline with a timestamp reconciliation gets an
/// index on the watermark column, on PostgreSQL and MariaDB, through which `max(ts)` and
/// the window are read.
#[tokio::test(flavor = "multi_thread")]
async fn a_created_sink_table_gets_an_index_on_the_watermark_column() {
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let (src, pgsink, mysink) = (unique("wmi_src"), unique("wmi_pg"), unique("wmi_my"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id int PRIMARY KEY, v text, ts timestamptz);
         INSERT INTO {src} VALUES (1, 'a', '2024-01-01 00:00:00+00');"
    ))
    .await
    .unwrap();
    for (store, sink) in [("pg", &pgsink), ("my", &mysink)] {
        let cfg = write_config(&config("pg", &src, store, sink, "datetime", INC));
        run(&cfg, &["apply"], 0);
    }
    let pg_index = support::pg_rows(
        &pg,
        &format!(
            "SELECT indexdef FROM pg_indexes WHERE tablename = '{pgsink}' AND indexname LIKE '%synctool_wm_ts'"
        ),
        &[],
    )
    .await;
    assert_eq!(pg_index.len(), 1, "{pg_index:?}");
    assert!(
        pg_index[0][0]
            .as_deref()
            .is_some_and(|d| d.ends_with("USING btree (ts)")),
        "{pg_index:?}"
    );
    let plan = support::pg_rows(&pg, &format!("EXPLAIN SELECT max(ts) FROM {pgsink}"), &[]).await;
    assert!(format!("{plan:?}").contains("Index Only Scan"), "{plan:?}");
    let my_index = support::mysql_rows(
        &mut my,
        "SELECT index_name FROM information_schema.statistics WHERE table_schema = 'test' AND table_name = ? AND column_name = 'ts' AND seq_in_index = 1",
        mysql_async::Params::Positional(vec![mysql_async::Value::from(mysink.as_str())]),
    )
    .await;
    assert_eq!(my_index.len(), 1, "{my_index:?}");
    support::mysql_exec(&mut my, &format!("DROP TABLE {mysink}")).await;
    pg.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {pgsink}"))
        .await
        .unwrap();
}
