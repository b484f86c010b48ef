//! Values at the edges of what a database takes: a text longer than MariaDB's
//! `max_allowed_packet`, numbers wider than a `decimal` field, JSON documents whose text a
//! `jsonb` column would re-serialise; MariaDB row hashes past 2^63; a constant key column
//! that keeps two sources apart in one sink table.

use crate::support::{self, edge_config, run_report, unique, write_config};

/// A text of `max_allowed_packet` + 1 MiB bytes, loaded PostgreSQL → MariaDB (created
/// table, then merged into the existing one after a change), then MariaDB → PostgreSQL.
#[tokio::test]
async fn a_value_over_max_allowed_packet_is_loaded_into_and_read_from_mariadb() {
    let (src, mid, back) = (unique("big_src"), unique("big_mid"), unique("big_back"));
    let mut my = support::mysql().await;
    let packet: usize = support::mysql_rows(
        &mut my,
        "SELECT @@max_allowed_packet",
        mysql_async::Params::Empty,
    )
    .await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let len = packet + (1 << 20);
    let pg = support::pg().await;
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id int PRIMARY KEY, v text);
         INSERT INTO {src} SELECT g, repeat('x', 100) FROM generate_series(1, 5) g;
         INSERT INTO {src} VALUES (6, repeat('y', {len}));"
    ))
    .await
    .unwrap();
    let fields =
        "      fields:\n        - {column: id, dtype: int}\n        - {column: v, dtype: str}\n";
    let sink = "    sink:\n      datastore: SINK_STORE\n      table: SINK_TABLE\n      merge_strategy: {strategy: upsert}\n      unique_key: [id]\n";
    let there = write_config(&edge_config(
        "pg",
        &src,
        "my",
        &mid,
        &format!("{fields}{sink}"),
    ));
    let (r, _) = run_report(&there, &["apply"], 0);
    assert_eq!(support::written(&r), 6, "{r}");
    // The existing table: the row goes through the staging table and the merge.
    pg.batch_execute(&format!("UPDATE {src} SET v = v || 'z' WHERE id = 6"))
        .await
        .unwrap();
    let (r, _) = run_report(&there, &["apply"], 0);
    assert_eq!(support::written(&r), 6, "{r}");
    let got = support::mysql_rows(
        &mut my,
        &format!("SELECT id, length(v), right(v, 2) FROM {mid} ORDER BY id"),
        mysql_async::Params::Empty,
    )
    .await;
    assert_eq!(
        got[5],
        vec![
            Some("6".into()),
            Some((len + 1).to_string()),
            Some("yz".into())
        ]
    );

    let home = write_config(&edge_config(
        "my",
        &mid,
        "pg",
        &back,
        &format!("{fields}{sink}"),
    ));
    let (r, _) = run_report(&home, &["apply"], 0);
    assert_eq!(support::written(&r), 6, "{r}");
    let got = support::pg_rows(
        &pg,
        &format!("SELECT length(v)::text FROM {back} WHERE id = 6"),
        &[],
    )
    .await;
    assert_eq!(got, vec![vec![Some((len + 1).to_string())]]);

    // MariaDB computes no hash of a text longer than its packet limit (CONCAT gives NULL
    // with warning 1301), so a reconciliation sees that row as changed on every run: the
    // run says why.
    let recon = "    reconciliation:\n      - {name: h, partition_column: id, initial_partition_interval: 4}\n";
    let cfg = write_config(&edge_config(
        "pg",
        &src,
        "my",
        &mid,
        &format!("{fields}{sink}{recon}"),
    ));
    let (r, err) = run_report(&cfg, &["plan"], 0);
    assert_eq!(support::written(&r), 1, "{r}");
    assert!(err.contains("max_allowed_packet"), "{err}");
}

/// A MariaDB side's row hashes (`md5sum_hash`) read without warnings: about half of them
/// are past 2^63 as unsigned numbers, and `CAST(… AS SIGNED)` of such a number wraps it with
/// a note, which MariaDB counts as a warning of the read, so that every reconciliation with
/// a MariaDB side warned about `max_allowed_packet`, which none of these values comes near.
#[tokio::test]
async fn mariadb_row_hashes_read_without_warnings() {
    let (src, sink) = (unique("hashnote_src"), unique("hashnote_my"));
    let pg = support::pg().await;
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id int PRIMARY KEY, v text);
         INSERT INTO {src} SELECT g, md5(g::text) FROM generate_series(1, 64) g;"
    ))
    .await
    .unwrap();
    let rest = "      fields:\n        - {column: id, dtype: int}\n        - {column: v, dtype: str}\n    sink:\n      datastore: SINK_STORE\n      table: SINK_TABLE\n      merge_strategy: {strategy: upsert}\n      unique_key: [id]\n    reconciliation:\n      - {name: h, partition_column: id, initial_partition_interval: 16}\n";
    let cfg = write_config(&edge_config("pg", &src, "my", &sink, rest));
    let (r, _) = run_report(&cfg, &["apply", "--full"], 0);
    assert_eq!(support::written(&r), 64, "{r}");
    let (r, err) = run_report(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(support::written(&r), 0, "{r}");
    assert!(!err.contains("warnings"), "{err}");
    // And the other way, MariaDB as the source.
    let back = unique("hashnote_back");
    let cfg = write_config(&edge_config("my", &sink, "pg", &back, rest));
    run_report(&cfg, &["apply", "--full"], 0);
    let (r, err) = run_report(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(support::written(&r), 0, "{r}");
    assert!(!err.contains("warnings"), "{err}");
}

/// Numbers wider than the 38 digits a `decimal` field keeps are read as `str`: the
/// server's own text, every digit, from PostgreSQL `numeric` and MariaDB `decimal(65,30)`;
/// a second run finds no drift.
#[tokio::test]
async fn numbers_wider_than_a_decimal_are_read_as_their_text() {
    let (pgs, mys) = (unique("wide_pg"), unique("wide_my"));
    let (pgk, myk) = (unique("wide_pg_k"), unique("wide_my_k"));
    let pg = support::pg().await;
    pg.batch_execute(&format!(
        "CREATE TABLE {pgs} (id int PRIMARY KEY, d numeric);
         INSERT INTO {pgs} VALUES (1, 0), (2, -0.5), (3, 1e40), (4, 0.0001), (5, 123456789.000000001),
           (6, 'NaN'), (7, 100000000), (8, 0.00000), (9, -12.3400), (10, 9999.9999), (11, 10000),
           (12, NULL), (13, -0.00012), (14, 12345678901234567890123456789012345.123456789012345678901234567890);"
    ))
    .await
    .unwrap();
    let mut my = support::mysql().await;
    support::mysql_exec(
        &mut my,
        &format!(
            "CREATE TABLE {mys} (id int PRIMARY KEY, d decimal(65,30));
             INSERT INTO {mys} VALUES (1, 0), (2, -0.5), (3, 12345678901234567890123456789012345.123456789012345678901234567890), (4, NULL)"
        ),
    )
    .await;
    let rest = "      fields:\n        - {column: id, dtype: int}\n        - {column: d, dtype: str}\n    sink:\n      datastore: SINK_STORE\n      table: SINK_TABLE\n      merge_strategy: {strategy: upsert}\n      unique_key: [id]\n    reconciliation:\n      - {name: h, partition_column: id, initial_partition_interval: 4}\n";
    for (store, src, sink) in [("pg", &pgs, &pgk), ("my", &mys, &myk)] {
        let cfg = write_config(&edge_config(store, src, "pg", sink, rest));
        run_report(&cfg, &["apply", "--full"], 0);
        let (r, _) = run_report(&cfg, &["plan", "--exit-code"], 0);
        assert_eq!(support::written(&r), 0, "{r}");
        let got = support::pg_rows(&pg, &format!("SELECT d FROM {sink} ORDER BY id"), &[]).await;
        let want = match store {
            "pg" => {
                support::pg_rows(&pg, &format!("SELECT d::text FROM {src} ORDER BY id"), &[]).await
            }
            _ => {
                support::mysql_rows(
                    &mut my,
                    &format!("SELECT CAST(d AS CHAR) FROM {src} ORDER BY id"),
                    mysql_async::Params::Empty,
                )
                .await
            }
        };
        assert_eq!(got, want, "{store}");
    }
}

/// A PostgreSQL `json` source keeps its documents' text (spaces, key order, duplicate keys):
/// the sink table synctool creates has `json` columns (not `jsonb`, which re-serialises), so
/// a reconciliation after the copy finds no drift. A collapse table keeps `jsonb`, whose
/// equality its grouping of versions needs.
#[tokio::test]
async fn a_json_source_copied_into_a_created_postgres_table_keeps_its_text() {
    let (src, up, col) = (unique("json_src"), unique("json_up"), unique("json_col"));
    let pg = support::pg().await;
    pg.batch_execute(&format!(
        r#"CREATE TABLE {src} (id int PRIMARY KEY, doc json);
           INSERT INTO {src} VALUES (1, '{{"b":1,  "a": [1,2]}}'), (2, '{{"a":1,"a":2}}'), (3, NULL), (4, '1.50');"#
    ))
    .await
    .unwrap();
    let fields =
        "      fields:\n        - {column: id, dtype: int}\n        - {column: doc, dtype: json}\n";
    let recon = "    reconciliation:\n      - {name: h, partition_column: id, initial_partition_interval: 4}\n";
    let sink = |strategy: &str| {
        format!("    sink:\n      datastore: SINK_STORE\n      table: SINK_TABLE\n      merge_strategy: {{strategy: {strategy}}}\n      unique_key: [id]\n")
    };
    let cfg = write_config(&edge_config(
        "pg",
        &src,
        "pg",
        &up,
        &format!("{fields}{}{recon}", sink("upsert")),
    ));
    run_report(&cfg, &["apply", "--full"], 0);
    let (r, _) = run_report(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(support::written(&r), 0, "{r}");
    let same = support::pg_rows(
        &pg,
        &format!("SELECT count(*)::text FROM {src} s JOIN {up} k USING (id) WHERE s.doc::text IS NOT DISTINCT FROM k.doc::text"),
        &[],
    )
    .await;
    assert_eq!(same, vec![vec![Some("4".to_string())]]);
    let cfg = write_config(&edge_config(
        "pg",
        &src,
        "pg",
        &col,
        &format!("{fields}{}", sink("collapse")),
    ));
    run_report(&cfg, &["apply", "--full"], 0);
    let mut types = support::pg_rows(
        &pg,
        "SELECT table_name::text, data_type::text FROM information_schema.columns WHERE table_name IN ($1, $2) AND column_name = 'doc'",
        &[&up, &col],
    )
    .await;
    types.sort_by_key(|r| r[0] != Some(up.clone()));
    assert_eq!(
        types,
        vec![
            vec![Some(up.clone()), Some("json".into())],
            vec![Some(col.clone()), Some("jsonb".into())]
        ]
    );
}

/// Two sources into one sink table on every dialect, their rows told apart by a constant
/// key column (`lambda: "a"`, pushed down into each source query) under sink `filters`:
/// each pipeline writes, repairs and deletes only its own rows, by full sync and by
/// reconciliation.
#[tokio::test]
async fn a_constant_key_column_keeps_two_sources_apart_in_one_table() {
    let (a, b) = (unique("constkey_a"), unique("constkey_b"));
    let pg = support::pg().await;
    pg.batch_execute(&format!(
        "CREATE TABLE {a} (id int PRIMARY KEY, v text);
         CREATE TABLE {b} (id int PRIMARY KEY, v text);
         INSERT INTO {a} SELECT g, 'a' || g FROM generate_series(1, 50) g;
         INSERT INTO {b} SELECT g, 'b' || g FROM generate_series(1, 40) g;"
    ))
    .await
    .unwrap();
    let sinks = [
        ("pg", unique("constkey_pg")),
        ("my", unique("constkey_my")),
        ("ch", unique("constkey_ch")),
    ];
    let mut yaml = format!(
        "datastores:\n  - {}\n  - {}\n  - {}\npipelines:\n",
        support::PG,
        support::MY,
        support::CH
    );
    for (store, t) in &sinks {
        for (r, src) in [("a", &a), ("b", &b)] {
            yaml.push_str(&format!(
                r#"  - name: {r}_{store}
    source: {{datastore: pg, table: {src}, fields: [{{column: id, dtype: int}}, {{column: v, dtype: str}}]}}
    sink:
      datastore: {store}
      table: {t}
      unique_key: [region, id]
      filters: [{{column: region, operator: "=", value: {r}}}]
      merge_strategy: {{strategy: upsert, allow_delete: true}}
      fields:
        - {{column: region, dtype: str, source_column: 'lambda: "{r}"'}}
        - {{column: id, source_column: id}}
        - {{column: v, source_column: v}}
    reconciliation: [{{name: by_id, partition_column: id, initial_partition_interval: 10, max_block_size: 3}}]
"#
            ));
        }
    }
    let cfg = write_config(&yaml);
    let run = |args: &[&str], code: i32| {
        let o = support::synctool(&cfg, args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["apply"], 0);
    pg.batch_execute(&format!(
        "DELETE FROM {a} WHERE id > 45; UPDATE {a} SET v = 'changed' WHERE id = 3; DELETE FROM {b} WHERE id < 5;"
    ))
    .await
    .unwrap();
    run(&["apply"], 0);
    run(&["plan", "--exit-code"], 0);
    pg.batch_execute(&format!("DELETE FROM {a} WHERE id BETWEEN 20 AND 30"))
        .await
        .unwrap();
    run(&["apply", "--full"], 0);
    run(&["plan", "--exit-code"], 0);
    let want = "a 34 changed|b 36 b9";
    let q = |t: &str| {
        format!("SELECT concat(region, ' ', count(*), ' ', max(v)) FROM {t} GROUP BY region ORDER BY region")
    };
    let got = support::pg_rows(&pg, &q(&sinks[0].1), &[]).await;
    let text = |rows: Vec<Vec<Option<String>>>| {
        rows.into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|")
    };
    assert_eq!(text(got), want, "postgres");
    let mut my = support::mysql().await;
    let got = support::mysql_rows(&mut my, &q(&sinks[1].1), mysql_async::Params::Empty).await;
    assert_eq!(text(got), want, "mariadb");
    let ch = support::clickhouse().await;
    let got = ch
        .rows(&format!(
            "SELECT concat(region, ' ', toString(count()), ' ', max(v)) FROM default.{} FINAL GROUP BY region ORDER BY region",
            sinks[2].1
        ))
        .await;
    assert_eq!(text(got), want, "clickhouse");
}
