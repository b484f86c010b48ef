//! Reconciliation end to end at the edges a tester found: a decimal float partition with
//! ClickHouse on either side, MariaDB text keys that differ only by trailing characters
//! under `hash_md5_hash`, and a nullable ClickHouse hash column holding NULL.

use crate::support::{self, synctool, unique, write_config};
use serde_json::Value as J;

/// Runs `synctool args… --format json`, asserts the exit code, returns the one pipeline.
fn run(cfg: &std::path::Path, args: &[&str], code: i32) -> J {
    support::run_report(cfg, args, code).0
}

use crate::support::written;

use crate::support::edge_config as config;

const DECIMAL_PIPELINE: &str = r#"      fields: [{column: id, dtype: int}, {column: p, dtype: "decimal(10,2)"}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [id]
      fields: [{column: id, source_column: id}, {column: p, source_column: p}]
    reconciliation:
      - {name: r, strategy: md5sum_hash, partition_column: p, initial_partition_interval: 10, max_block_size: 5}
"#;

/// A `decimal(10,2)` partition (a float partition) reconciles from PostgreSQL into
/// ClickHouse and back: ClickHouse compares and divides the decimal as a Float64.
#[tokio::test(flavor = "multi_thread")]
async fn a_decimal_partition_reconciles_with_clickhouse_on_either_side() {
    let pg = support::pg().await;
    let ch = support::clickhouse().await;
    let (src, mid, back) = (unique("decp_src"), unique("decp_ch"), unique("decp_back"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, p numeric(10,2));
         INSERT INTO {src} SELECT g, round(g / 7.0 - 2, 2) FROM generate_series(1, 60) g;
         INSERT INTO {src} VALUES (61, NULL), (62, 0.30), (63, -0.30);"
    ))
    .await
    .unwrap();
    // PostgreSQL → ClickHouse.
    let there = write_config(&config("pg", &src, "ch", &mid, DECIMAL_PIPELINE));
    run(&there, &["apply", "--full"], 0);
    let r = run(&there, &["plan", "--exit-code"], 0);
    assert_eq!(written(&r), 0, "{r}");
    pg.batch_execute(&format!(
        "UPDATE {src} SET p = p + 0.01 WHERE id IN (5, 40); DELETE FROM {src} WHERE id = 20"
    ))
    .await
    .unwrap();
    let r = run(&there, &["plan", "--exit-code"], 3);
    assert_eq!(written(&r), 2, "{r}");
    run(&there, &["apply"], 0);
    let r = run(&there, &["plan", "--exit-code"], 0);
    assert_eq!(written(&r), 0, "{r}");
    // ClickHouse (a Decimal(10, 2) column) → PostgreSQL.
    let rest = format!("      final: true\n{DECIMAL_PIPELINE}");
    let backwards = write_config(&config("ch", &mid, "pg", &back, &rest));
    run(&backwards, &["apply"], 0);
    let r = run(&backwards, &["plan", "--exit-code"], 0);
    assert_eq!(written(&r), 0, "{r}");
    let rows = pg
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE b.p IS NOT DISTINCT FROM s.p) \
                 FROM {back} b JOIN {src} s USING (id)"
            ),
            &[],
        )
        .await
        .unwrap();
    let (n, same): (i64, i64) = (rows.get(0), rows.get(1));
    assert_eq!((n, same), (62, 62));
    ch.exec(&format!("DROP TABLE IF EXISTS default.{mid}"))
        .await;
    pg.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {back}"))
        .await
        .unwrap();
}

/// A decimal wider than 15 digits cannot be a float partition where ClickHouse
/// reconciles: `validate` refuses it, naming the reason.
#[test]
fn a_wide_decimal_float_partition_with_clickhouse_is_refused() {
    let yaml =
        config("pg", "t", "ch", "t", DECIMAL_PIPELINE).replace("decimal(10,2)", "decimal(18,2)");
    let o = synctool(&write_config(&yaml), &["validate"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "a decimal(18,2) partition column cannot be reconciled as float with ClickHouse"
        ),
        "{err}"
    );
    let ok =
        config("pg", "t", "my", "t", DECIMAL_PIPELINE).replace("decimal(10,2)", "decimal(18,2)");
    let o = synctool(&write_config(&ok), &["validate"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `hash_md5_hash` from MariaDB orders keys by their bytes, as PostgreSQL does: keys `a`
/// and `a<tab>` (which `utf8mb4_bin`, padding with spaces, put the other way round) give
/// the same block hash on both sides, so the block of a synced table is unchanged (it
/// compared as modified on every run, with nothing to write).
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_keys_differing_by_a_trailing_tab_converge_under_hash_md5_hash() {
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let (src, sink) = (unique("pad_src"), unique("pad_sink"));
    support::mysql_exec(
        &mut my,
        &format!(
            "CREATE TABLE {src} (k varchar(10) PRIMARY KEY, g int) CHARSET utf8mb4 COLLATE utf8mb4_bin"
        ),
    )
    .await;
    support::mysql_exec(
        &mut my,
        &format!("INSERT INTO {src} VALUES ('a', 1), (CONCAT('a', CHAR(9)), 1), ('b', 1)"),
    )
    .await;
    let rest = r#"      fields: [{column: k, dtype: str}, {column: g, dtype: int}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [k]
      fields: [{column: k, source_column: k}, {column: g, source_column: g}]
    reconciliation:
      - {name: r, strategy: hash_md5_hash, partition_column: g, partition_column_type: int, initial_partition_interval: 100, max_block_size: 100}
"#;
    let cfg = write_config(&config("my", &src, "pg", &sink, rest));
    run(&cfg, &["apply", "--full"], 0);
    for _ in 0..2 {
        let r = run(&cfg, &["plan", "--exit-code"], 0);
        assert_eq!(written(&r), 0, "{r}");
        assert_eq!(r["blocks"]["modified"], 0, "the block compares alike: {r}");
    }
    let n: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {sink}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    support::mysql_exec(&mut my, &format!("DROP TABLE {src}")).await;
    pg.batch_execute(&format!("DROP TABLE {sink}"))
        .await
        .unwrap();
}

/// A ClickHouse sink whose hash column is `Nullable(Int64)` and holds NULL (a row written
/// by hand) reconciles: the NULL hash is a changed row, rewritten, and the next run finds
/// nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_null_in_a_nullable_clickhouse_hash_column_is_a_changed_row() {
    let pg = support::pg().await;
    let ch = support::clickhouse().await;
    let (src, sink) = (unique("nh_src"), unique("nh_sink"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, v text);
         INSERT INTO {src} SELECT g, 'v' || g FROM generate_series(1, 20) g;"
    ))
    .await
    .unwrap();
    let rest = r#"      fields: [{column: id, dtype: int}, {column: v, dtype: str}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [id]
      meta_columns: {hash_column: h}
      fields: [{column: id, source_column: id}, {column: v, source_column: "upper(v)"}]
    reconciliation:
      - {name: r, strategy: md5sum_hash, partition_column: id, initial_partition_interval: 100, max_block_size: 4}
"#;
    let cfg = write_config(&config("pg", &src, "ch", &sink, rest));
    run(&cfg, &["apply", "--full"], 0);
    ch.exec(&format!(
        "ALTER TABLE default.{sink} MODIFY COLUMN h Nullable(Int64)"
    ))
    .await;
    // Rows 7 and 13 rewritten by hand without a hash: each a block of its own at the leaf.
    let cols = ch.exec(&format!("SELECT name FROM system.columns WHERE database = 'default' AND table = '{sink}' FORMAT TabSeparated")).await;
    let names: Vec<&str> = cols.lines().collect();
    let values = |id: i64| -> String {
        names
            .iter()
            .map(|c| match *c {
                "id" => id.to_string(),
                "v" => "'by hand'".to_string(),
                "h" => "NULL".to_string(),
                other => format!("(SELECT max({other}) FROM default.{sink}) + 1"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for id in [7, 13] {
        ch.exec(&format!(
            "INSERT INTO default.{sink} VALUES ({})",
            values(id)
        ))
        .await;
    }
    let r = run(&cfg, &["apply"], 0);
    assert_eq!(written(&r), 2, "{r}");
    let r = run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(written(&r), 0, "{r}");
    ch.exec(&format!("DROP TABLE IF EXISTS default.{sink}"))
        .await;
    pg.batch_execute(&format!("DROP TABLE {src}"))
        .await
        .unwrap();
}

/// A range the source emptied is deleted from a ClickHouse sink by one `ALTER TABLE …
/// DELETE WHERE` on the partition range, which ClickHouse runs as keeping the rows where
/// the condition is false: a row whose partition value is NULL (the condition NULL) was
/// deleted too, although the source still holds it. The run reported fewer deletes than it
/// made, and the next `plan` found the NULL-partition rows missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_range_delete_keeps_the_rows_with_a_null_partition() {
    let pg = support::pg().await;
    let ch = support::clickhouse().await;
    let (src, sink) = (unique("nrd_src"), unique("nrd_sink"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, p bigint);
         INSERT INTO {src} SELECT g, CASE WHEN g > 100 THEN NULL ELSE g END
           FROM generate_series(1, 105) g;"
    ))
    .await
    .unwrap();
    let rest = r#"      fields: [{column: id, dtype: int}, {column: p, dtype: int}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: delete_insert, allow_delete: true}
      unique_key: [id]
    reconciliation:
      - {name: r, strategy: md5sum_hash, partition_column: p, initial_partition_interval: 64, max_block_size: 5}
"#;
    let cfg = write_config(&config("pg", &src, "ch", &sink, rest));
    run(&cfg, &["apply", "--full"], 0);
    pg.batch_execute(&format!("DELETE FROM {src} WHERE p < 64"))
        .await
        .unwrap();
    let r = run(&cfg, &["apply", "-r", "r"], 0);
    assert_eq!(r["rows_deleted"], 63, "{r}");
    let rows = ch
        .rows(&format!(
            "SELECT count(), countIf(p IS NULL) FROM default.{sink}"
        ))
        .await;
    assert_eq!(
        rows,
        vec![vec![Some("42".to_string()), Some("5".to_string())]],
        "37 rows with a partition value and the 5 without are left"
    );
    let r = run(&cfg, &["plan", "--exit-code", "-r", "r"], 0);
    assert_eq!(written(&r), 0, "{r}");
    ch.exec(&format!("DROP TABLE IF EXISTS default.{sink}"))
        .await;
    pg.batch_execute(&format!("DROP TABLE {src}"))
        .await
        .unwrap();
}

/// `md5sum_hash` over an int partition whose values span more than `i64::MAX` (from
/// `i64::MIN` to `i64::MAX - 1`): the read-ahead that picks the finest level to query
/// computed the range's width in 64 bits, which overflowed: a panic in a debug build (a
/// release build wraps to a negative width, which makes the read-ahead pick the finest
/// interval, one block per distinct value).
#[tokio::test(flavor = "multi_thread")]
async fn an_int_partition_spanning_the_whole_int64_range_reconciles() {
    let pg = support::pg().await;
    let (src, sink) = (unique("wide_src"), unique("wide_sink"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, p bigint, v text);
         INSERT INTO {src} SELECT g, g, 'v' || g FROM generate_series(1, 30) g;
         INSERT INTO {src} VALUES (31, -9223372036854775808, 'min'),
           (32, 9223372036854775806, 'max - 1'), (33, -9223372036854775807, 'min + 1');"
    ))
    .await
    .unwrap();
    let rest = r#"      fields: [{column: id, dtype: int}, {column: p, dtype: int}, {column: v, dtype: str}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [id]
    reconciliation:
      - {name: r, strategy: md5sum_hash, partition_column: p, initial_partition_interval: 128, max_block_size: 4, interval_reduction_factor: 2}
"#;
    let cfg = write_config(&config("pg", &src, "pg", &sink, rest));
    run(&cfg, &["apply", "--full"], 0);
    let r = run(&cfg, &["plan", "--exit-code", "-r", "r"], 0);
    assert_eq!(written(&r), 0, "{r}");
    pg.batch_execute(&format!(
        "UPDATE {src} SET v = 'changed' WHERE id IN (5, 31, 32); DELETE FROM {src} WHERE id = 33"
    ))
    .await
    .unwrap();
    let r = run(&cfg, &["apply", "-r", "r"], 0);
    assert_eq!(
        (written(&r), r["rows_deleted"].as_i64()),
        (3, Some(1)),
        "{r}"
    );
    let r = run(&cfg, &["plan", "--exit-code", "-r", "r"], 0);
    assert_eq!(written(&r), 0, "{r}");
    let same: i64 = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM {src} s JOIN {sink} k USING (id) \
                 WHERE s.p = k.p AND s.v = k.v"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(same, 32);
    pg.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {sink}"))
        .await
        .unwrap();
}

/// `md5sum_hash` over a wide range reads ahead twice: blocks of 100,000 for levels 1-4, then,
/// for the two changed parents of 100,000 (one range), blocks of 10 for levels 5-8. What a
/// compared parent no longer needs is forgotten after each level; the blocks split further
/// must still roll up whole, down to the first rows of each range (ids 1-9, 100001-100009)
/// and the last, or changes there would go unseen.
#[tokio::test(flavor = "multi_thread")]
async fn pruned_read_ahead_still_finds_changes_at_every_level() {
    let pg = support::pg().await;
    let (src, dst) = (unique("rm_prune_src"), unique("rm_prune_dst"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, v text);
         INSERT INTO {src} SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
         INSERT INTO {src} SELECT g, md5(g::text) FROM generate_series(100001, 105000) g;
         INSERT INTO {src} VALUES (1000000000, 'far');"
    ))
    .await
    .unwrap();
    let rest = r#"      fields: [{column: id, dtype: int}, {column: v, dtype: str}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [id]
    reconciliation:
      - {name: r, strategy: md5sum_hash, partition_column: id, initial_partition_interval: 100000000, max_block_size: 10}
"#;
    let cfg = write_config(&config("pg", &src, "pg", &dst, rest));
    run(&cfg, &["apply", "--full"], 0);
    let r = run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(written(&r), 0, "{r}");
    pg.batch_execute(&format!(
        "UPDATE {src} SET v = v || 'x'
           WHERE id IN (1, 5, 999, 1000, 2345, 5000, 100001, 100005, 104999, 1000000000);
         DELETE FROM {src} WHERE id IN (9, 4995, 100009);
         INSERT INTO {src} VALUES (3000000, 'new'), (5001, 'next'), (105001, 'next');"
    ))
    .await
    .unwrap();
    let r = run(&cfg, &["plan", "--exit-code"], 3);
    assert_eq!(
        (written(&r), r["rows_deleted"].as_i64()),
        (13, Some(3)),
        "{r}"
    );
    run(&cfg, &["apply"], 0);
    let r = run(&cfg, &["plan", "--exit-code"], 0);
    assert_eq!(written(&r), 0, "{r}");
    let diff = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM ((TABLE {src} EXCEPT TABLE {dst}) \
                 UNION ALL (TABLE {dst} EXCEPT TABLE {src})) d"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(diff.get::<_, i64>(0), 0);
    pg.batch_execute(&format!("DROP TABLE {src}; DROP TABLE {dst}"))
        .await
        .unwrap();
}

/// `--show-keys N` lists the first N keys that the row-by-row comparison of changed blocks
/// found added (`+`), modified (`~`) or deleted (`-`), in key order, for `plan` and `apply`
/// alike, as text lines and as JSON `keys` (absent without the option); rows never compared
/// row by row (a full sync's writes) are said to be unlisted; a full sync's plan lists the keys
/// it would delete.
#[tokio::test(flavor = "multi_thread")]
async fn show_keys_lists_the_changed_keys_in_key_order() {
    let pg = support::pg().await;
    let (src, dst) = (unique("keys_src"), unique("keys_dst"));
    pg.batch_execute(&format!(
        "CREATE TABLE {src} (region text, id bigint, v text, PRIMARY KEY (region, id));
         INSERT INTO {src} SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, 'v' || g
         FROM generate_series(1, 200) g;"
    ))
    .await
    .unwrap();
    let rest = r#"      fields: [{column: region, dtype: str}, {column: id, dtype: int}, {column: v, dtype: str}]
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      merge_strategy: {strategy: upsert, allow_delete: true}
      unique_key: [region, id]
    reconciliation:
      - {name: r, strategy: md5sum_hash, partition_column: id, initial_partition_interval: 100, max_block_size: 10}
"#;
    let cfg = write_config(&config("pg", &src, "my", &dst, rest));
    let r = run(&cfg, &["apply", "--show-keys", "5"], 0);
    // The first run into a new table is a full sync: nothing was compared row by row.
    assert_eq!(r["keys"], serde_json::json!([]), "{r}");
    pg.batch_execute(&format!(
        "UPDATE {src} SET v = 'é|new' WHERE id IN (150, 7);
         DELETE FROM {src} WHERE id = 42;
         INSERT INTO {src} VALUES ('ap', 42, 'moved'), ('ap', 1000, NULL);"
    ))
    .await
    .unwrap();
    let key = |change: &str, region: &str, id: i64| serde_json::json!({"change": change, "key": {"region": region, "id": id}});
    let all = serde_json::json!([
        key("modified", "us", 7),
        key("added", "ap", 42),
        key("deleted", "eu", 42),
        key("modified", "eu", 150),
        key("added", "ap", 1000),
    ]);
    let r = run(&cfg, &["plan", "--show-keys", "10"], 0);
    assert_eq!(r["keys"], all, "{r}");
    let r = run(&cfg, &["plan"], 0);
    assert!(r.get("keys").is_none(), "{r}");
    // Text: the first two, and how many more the comparison found.
    let o = synctool(&cfg, &["plan", "--show-keys", "2"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "  keys: 2 of 5 changed row(s) found row by row\n    ~ region=\"us\", id=7\n    + region=\"ap\", id=42\n"
        ),
        "{text}"
    );
    // `apply` lists what it wrote and deleted, then nothing is left to list.
    let r = run(&cfg, &["apply", "--show-keys", "10"], 0);
    assert_eq!(r["keys"], all, "{r}");
    let r = run(&cfg, &["plan", "--exit-code", "--show-keys", "10"], 0);
    assert_eq!(r["keys"], serde_json::json!([]), "{r}");
    // A full sync compares no row: its writes are not listed, and it says so. Its plan
    // lists the keys it would delete (in key order), from the key comparison it counts them
    // with.
    let o = synctool(&cfg, &["plan", "--full", "--show-keys", "10"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("  no keys to list: the 201 row(s) were not compared row by row"),
        "{text}"
    );
    pg.batch_execute(&format!("DELETE FROM {src} WHERE id IN (3, 44)"))
        .await
        .unwrap();
    let r = run(&cfg, &["plan", "--full", "--show-keys", "10"], 0);
    assert_eq!(
        r["keys"],
        serde_json::json!([key("deleted", "eu", 44), key("deleted", "us", 3)]),
        "{r}"
    );
    let o = synctool(&cfg, &["plan", "--full", "--show-keys", "1"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("  keys: 1 of 2 changed row(s) found row by row; 199 more row(s) not compared row by row\n    - region=\"eu\", id=44\n"),
        "{text}"
    );
    let mut m = support::mysql().await;
    support::mysql_exec(&mut m, &format!("DROP TABLE {dst}")).await;
    pg.batch_execute(&format!("DROP TABLE {src}"))
        .await
        .unwrap();
}
