//! `plan` of a full sync with `allow_delete` counts the sink rows `apply` would delete,
//! exactly and without writing, on every sink dialect; and PostgreSQL `citext` columns are
//! read as text, with the keys that collide in a `citext` sink key named.

use crate::support::{self, synctool, unique, write_config};
use serde_json::Value as J;

use crate::support::{CH, MY, PG};

use crate::support::run_report as run;

fn n(v: &J, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// A sink dialect under test, with its merge strategy.
#[derive(Clone, Copy)]
struct Sink {
    store: &'static str,
    collapse: bool,
}

impl Sink {
    /// Every row of the sink table as text (a ClickHouse upsert's as merged, `FINAL`; a
    /// collapse table's rows as they are, signs included), and the names of the tables
    /// beside it (staging tables would be listed).
    async fn contents(&self, t: &str) -> (Vec<support::Row>, Vec<support::Row>) {
        let cols = if self.collapse {
            "g, id, v, sign"
        } else {
            "g, id, v"
        };
        match self.store {
            "pg" => {
                let c = support::pg().await;
                let text = if self.collapse {
                    "g, id::text, v, sign::text"
                } else {
                    "g, id::text, v"
                };
                let rows =
                    support::pg_rows(&c, &format!("SELECT {text} FROM {t} ORDER BY {cols}"), &[])
                        .await;
                let tables = support::pg_rows(
                    &c,
                    "SELECT relname::text FROM pg_class WHERE relname LIKE $1 ORDER BY 1",
                    &[&format!("%{t}%")],
                )
                .await;
                (rows, tables)
            }
            "my" => {
                let mut m = support::mysql().await;
                let rows = support::mysql_rows(
                    &mut m,
                    &format!("SELECT {cols} FROM {t} ORDER BY {cols}"),
                    mysql_async::Params::Empty,
                )
                .await;
                let tables = support::mysql_rows(
                    &mut m,
                    &format!("SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%{t}%' ORDER BY 1"),
                    mysql_async::Params::Empty,
                )
                .await;
                (rows, tables)
            }
            _ => {
                let ch = support::clickhouse().await;
                let fin = if self.collapse { "" } else { " FINAL" };
                let rows = ch
                    .rows(&format!(
                        "SELECT {cols} FROM default.{t}{fin} ORDER BY {cols}"
                    ))
                    .await;
                let tables = ch
                    .rows(&format!(
                        "SELECT name FROM system.tables WHERE database = 'default' AND name LIKE '%{t}%' ORDER BY name"
                    ))
                    .await;
                (rows, tables)
            }
        }
    }

    /// Adds rows the pipeline does not own (`g = 'other'`, outside the sink filters).
    async fn add_foreign_rows(&self, t: &str) {
        let (cols, vals) = if self.collapse {
            (
                "g, id, v, sign",
                "('other', 1, 'x', 1), ('other', 2, 'y', 1)",
            )
        } else {
            ("g, id, v", "('other', 1, 'x'), ('other', 2, 'y')")
        };
        let sql = format!("INSERT INTO {t} ({cols}) VALUES {vals}");
        match self.store {
            "pg" => support::pg().await.batch_execute(&sql).await.unwrap(),
            "my" => support::mysql_exec(&mut support::mysql().await, &sql).await,
            _ => {
                support::clickhouse()
                    .await
                    .exec(&sql.replace("INTO ", "INTO default."))
                    .await;
            }
        }
    }

    async fn drop(&self, t: &str) {
        let sql = format!("DROP TABLE IF EXISTS {t}");
        match self.store {
            "pg" => support::pg().await.batch_execute(&sql).await.unwrap(),
            "my" => support::mysql_exec(&mut support::mysql().await, &sql).await,
            _ => {
                support::clickhouse()
                    .await
                    .exec(&sql.replace("EXISTS ", "EXISTS default."))
                    .await;
            }
        }
    }
}

/// `plan --exit-code` and `apply --dry-run` report the deletes `apply` then makes, and
/// write nothing: the sink's rows and tables are the same after them.
async fn plan_then_apply(sink: Sink, cfg: &std::path::Path, t: &str, deletes: i64) -> (J, String) {
    let before = sink.contents(t).await;
    let (plan, _) = run(cfg, &["plan", "--exit-code"], 3);
    assert_eq!(
        n(&plan, "rows_deleted"),
        deletes,
        "{}: plan {plan}",
        sink.store
    );
    let (dry, _) = run(cfg, &["apply", "--dry-run"], 0);
    assert_eq!(
        n(&dry, "rows_deleted"),
        deletes,
        "{}: --dry-run {dry}",
        sink.store
    );
    assert_eq!(
        sink.contents(t).await,
        before,
        "{}: plan wrote to the sink",
        sink.store
    );
    let (applied, err) = run(cfg, &["apply"], 0);
    assert_eq!(
        n(&applied, "rows_deleted"),
        deletes,
        "{}: apply {applied}",
        sink.store
    );
    for k in ["rows_read", "rows_written"] {
        assert_eq!(
            n(&applied, k),
            n(&plan, k),
            "{}: {k}: plan {plan}, apply {applied}",
            sink.store
        );
    }
    (applied, err)
}

/// Runs `sql` on the source datastore `store` (`pg` or `my`).
async fn source_exec(store: &str, sql: &str) {
    match store {
        "pg" => support::pg().await.batch_execute(sql).await.unwrap(),
        _ => support::mysql_exec(&mut support::mysql().await, sql).await,
    }
}

/// Keys gone from the source (some), added (some), and kept, over several batches, with
/// text keys whose byte order is not a collation's (`B` < `a` < `b` < `é`), into each sink
/// dialect with sink filters (from PostgreSQL, and from MariaDB into PostgreSQL); then the
/// source emptied: `plan` counts every owned sink row as a delete (exit 3), `apply` deletes
/// exactly those and warns, the foreign rows stay.
#[tokio::test(flavor = "multi_thread")]
async fn plan_counts_the_rows_a_full_sync_would_delete_as_apply_deletes_them() {
    for (from, sink) in [
        (
            "pg",
            Sink {
                store: "pg",
                collapse: false,
            },
        ),
        (
            "pg",
            Sink {
                store: "my",
                collapse: false,
            },
        ),
        (
            "pg",
            Sink {
                store: "ch",
                collapse: false,
            },
        ),
        (
            "pg",
            Sink {
                store: "ch",
                collapse: true,
            },
        ),
        (
            "my",
            Sink {
                store: "pg",
                collapse: false,
            },
        ),
    ] {
        let (src, t) = (unique("pd_src"), unique("pd_sink"));
        let rows: Vec<String> = ["a", "B", "b", "é", "Z"]
            .iter()
            .flat_map(|g| (1..=12).map(move |i| format!("('{g}', {i}, '{g}{i}')")))
            .collect();
        let text = if from == "my" {
            "varchar(20) COLLATE utf8mb4_bin"
        } else {
            "text"
        };
        source_exec(
            from,
            &format!(
                "CREATE TABLE {src} (g {text}, id bigint, v text, PRIMARY KEY (g, id));
                 INSERT INTO {src} VALUES {};",
                rows.join(", ")
            ),
        )
        .await;
        let merge = if sink.collapse {
            "{strategy: collapse, sign_column: sign, allow_delete: true}"
        } else {
            "{strategy: upsert, allow_delete: true}"
        };
        let cfg = write_config(&format!(
            r#"
datastores:
  - {PG}
  - {MY}
  - {CH}
pipelines:
  - name: w
    source:
      datastore: {from}
      batch_size: 7
      table: {src}
      fields: [{{column: g, dtype: str}}, {{column: id, dtype: int}}, {{column: v, dtype: str}}]
    sink:
      datastore: {store}
      table: {t}
      unique_key: [g, id]
      merge_strategy: {merge}
      filters: [{{column: g, operator: '!=', value: other}}]
"#,
            store = sink.store
        ));
        let (r, _) = run(&cfg, &["apply"], 0);
        assert_eq!(n(&r, "rows_written"), 60, "{r}");
        sink.add_foreign_rows(&t).await;
        // Nothing gone yet: nothing to delete.
        let (plan, _) = run(&cfg, &["plan"], 0);
        assert_eq!(n(&plan, "rows_deleted"), 0, "{}: {plan}", sink.store);

        // 11 keys gone (every id 5 and 10, and ('Z', 12)), 3 added.
        source_exec(
            from,
            &format!(
                "DELETE FROM {src} WHERE id IN (5, 10) OR (g = 'Z' AND id = 12);
                 INSERT INTO {src} VALUES ('A', 1, 'new'), ('b', 13, 'new'), ('ü', 1, 'new');"
            ),
        )
        .await;
        plan_then_apply(sink, &cfg, &t, 11).await;
        let (rows, _) = sink.contents(&t).await;
        let live = |rows: &[support::Row]| {
            let mut keys: Vec<(String, String)> = rows
                .iter()
                .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
                .collect();
            if sink.collapse {
                // Rows and their cancelling rows: the live keys are those with a sum above 0.
                let mut sums = std::collections::BTreeMap::<(String, String), i64>::new();
                for r in rows {
                    *sums
                        .entry((r[0].clone().unwrap(), r[1].clone().unwrap()))
                        .or_default() += r[3].as_deref().unwrap().parse::<i64>().unwrap();
                }
                keys = sums
                    .into_iter()
                    .filter(|(_, s)| *s > 0)
                    .map(|(k, _)| k)
                    .collect();
            }
            keys.sort();
            keys.dedup();
            keys
        };
        assert_eq!(live(&rows).len(), 52 + 2, "{}: {rows:?}", sink.store);
        let (plan, _) = run(&cfg, &["plan"], 0);
        assert_eq!(
            n(&plan, "rows_deleted"),
            0,
            "{}: after apply {plan}",
            sink.store
        );

        // The source emptied: every owned row would go, and goes, with a warning.
        source_exec(from, &format!("TRUNCATE TABLE {src}")).await;
        let (applied, err) = plan_then_apply(sink, &cfg, &t, 52).await;
        assert_eq!(n(&applied, "rows_read"), 0, "{applied}");
        assert!(
            err.contains("the source returned no row, so allow_delete removed every sink row within sink.filters (52)"),
            "{}: {err}",
            sink.store
        );
        let (rows, _) = sink.contents(&t).await;
        assert_eq!(
            live(&rows),
            vec![
                ("other".to_string(), "1".to_string()),
                ("other".to_string(), "2".to_string())
            ],
            "{}: only the rows outside the filters stay",
            sink.store
        );
        // Nothing left to delete: no drift.
        let (plan, _) = run(&cfg, &["plan", "--exit-code"], 0);
        assert_eq!(n(&plan, "rows_deleted"), 0, "{plan}");
        sink.drop(&t).await;
        source_exec(from, &format!("DROP TABLE {src}")).await;
    }
}

/// `citext` columns of a PostgreSQL source are read as text, key or not, and a `citext` key
/// of an existing sink is reconciled and planned; keys that differ only in case, one row
/// in such a sink, fail their batch naming them, and the key column is warned about.
#[tokio::test(flavor = "multi_thread")]
async fn citext_columns_are_read_as_text_and_colliding_keys_are_named() {
    let c = support::pg().await;
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS citext")
        .await
        .unwrap();
    let (src, sink, new_sink) = (unique("ct_src"), unique("ct_sink"), unique("ct_new"));
    c.batch_execute(&format!(
        "CREATE TABLE {src} (c citext PRIMARY KEY, note citext, v bigint);
         INSERT INTO {src} SELECT 'Key' || i, 'Note ' || i, i FROM generate_series(1, 40) i;
         CREATE TABLE {sink} (c citext PRIMARY KEY, note citext, v bigint);"
    ))
    .await
    .unwrap();
    let yaml = |table: &str, src_table: &str| {
        format!(
            r#"
datastores:
  - {PG}
pipelines:
  - name: ct
    source:
      datastore: pg
      batch_size: 16
      table: {src_table}
      fields: [{{column: c, dtype: str}}, {{column: note, dtype: str}}, {{column: v, dtype: int}}]
    sink:
      datastore: pg
      table: {table}
      unique_key: [c]
      merge_strategy: {{strategy: upsert, allow_delete: true}}
    reconciliation:
      - {{name: r, strategy: md5sum_hash, partition_column: c, partition_column_type: str, max_block_size: 8}}
"#
        )
    };
    // Into a new table, and into the existing citext one, whose key is warned about.
    let (r, _) = run(
        &write_config(&yaml(&new_sink, &src)),
        &["apply", "--full"],
        0,
    );
    assert_eq!(n(&r, "rows_written"), 40, "{r}");
    let cfg = write_config(&yaml(&sink, &src));
    let (r, err) = run(&cfg, &["apply", "--full"], 0);
    assert_eq!(n(&r, "rows_written"), 40, "{r}");
    assert!(err.contains("sink key column `c` is citext"), "{err}");
    let note: String = c
        .query_one(
            &format!("SELECT note::text FROM {sink} WHERE c = 'key7'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "Note 7");
    // Reconciled: the sink's citext key is read by the leaf diff.
    c.batch_execute(&format!(
        "UPDATE {src} SET note = 'changed' WHERE c = 'Key3'; DELETE FROM {src} WHERE c = 'Key4';"
    ))
    .await
    .unwrap();
    let (r, _) = run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (1, 1),
        "{r}"
    );
    let (r, _) = run(&cfg, &["apply"], 0);
    assert_eq!(
        (n(&r, "rows_written"), n(&r, "rows_deleted")),
        (1, 1),
        "{r}"
    );
    run(&cfg, &["plan", "--exit-code"], 0);
    // A full sync's plan reads the citext keys of both sides too.
    c.batch_execute(&format!("DELETE FROM {src} WHERE c = 'Key5'"))
        .await
        .unwrap();
    let (r, _) = run(&cfg, &["plan", "--full"], 0);
    assert_eq!(n(&r, "rows_deleted"), 1, "{r}");

    // Keys that differ only in case are one sink row: the batch fails naming them.
    let (tsrc, tsink) = (unique("ct_tsrc"), unique("ct_tsink"));
    c.batch_execute(&format!(
        "CREATE TABLE {tsrc} (c text PRIMARY KEY, note text, v bigint);
         INSERT INTO {tsrc} VALUES ('a', 'x', 1), ('k', 'x', 2), ('K', 'y', 3);
         CREATE TABLE {tsink} (c citext PRIMARY KEY, note text, v bigint);"
    ))
    .await
    .unwrap();
    let o = synctool(&write_config(&yaml(&tsink, &tsrc)), &["apply", "--full"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(r#"the keys (c="K") and (c="k") of one batch are distinct in the source but one row in the sink table"#)
            && err.contains("21000"),
        "{err}"
    );
    let count: i64 = c
        .query_one(&format!("SELECT count(*) FROM {tsink}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "nothing of the batch is written");
    for t in [&src, &sink, &new_sink, &tsrc, &tsink] {
        c.batch_execute(&format!("DROP TABLE IF EXISTS {t}"))
            .await
            .unwrap();
    }
}
