//! `source.row_estimate` on the real databases: the generated statement, bound and run by
//! the runtime's connectors, gives each database's own row count of a 10,000-row table —
//! PostgreSQL `pg_class.reltuples` after ANALYZE, MariaDB's `table_rows`, ClickHouse's rows
//! of active parts on 18.16 and on a current engine (chdb) — for a table named with its
//! schema and without; and the values the runtime shows no total for where there is no
//! usable estimate (a never-analyzed PostgreSQL table, a MariaDB view, a ClickHouse
//! `Memory` table, a missing table).

use super::connectors::settings;
use super::support::{self, ChdbStatement};
use std::collections::HashMap;
use synctool::driver::frontend;
use synctool::expr::Value;
use synctool::runtime::{Conn, Stmt};
use synctool::sql::{self, DialectKind, SqlStep};
use synctool::types::Dtype;

const ROWS: i64 = 10_000;

/// The `source.row_estimate` step of a pipeline reading `table` (in `schema` when given)
/// from a `d` datastore.
fn estimate_step(d: DialectKind, schema: Option<&str>, table: &str) -> SqlStep {
    let dbschema = schema
        .map(|s| format!(", dbschema: {s}"))
        .unwrap_or_default();
    let yaml = format!(
        r#"
datastores:
  - {{name: src, type: {}, host: 127.0.0.1, database: test}}
  - {{name: dst, type: postgres, host: 127.0.0.1, database: test}}
pipelines:
  - name: estimate
    source:
      datastore: src
      table: {{table: {table}{dbschema}}}
      fields:
        - {{column: id, dtype: int}}
    sink:
      datastore: dst
      table: estimate_sink
      merge_strategy: {{strategy: upsert}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
"#,
        d.name()
    );
    let fe = frontend("estimate.yaml", &yaml, &HashMap::new(), &[])
        .unwrap_or_else(|e| panic!("{}", e.render()));
    let p = &fe.checked.program.pipelines[0];
    sql::generate(p)
        .unwrap()
        .into_iter()
        .find(|s| s.id == "source.row_estimate")
        .expect("a source without filters or joins has source.row_estimate")
}

/// Runs the step through the runtime's connector, binding `schema` and `table` as the
/// engine does; `None` when the catalog has no row for the table, else its one value.
async fn run(c: &mut Conn, step: &SqlStep, schema: Option<&str>, table: &str) -> Option<Value> {
    let names: Vec<String> = step.params.iter().map(|p| p.name.clone()).collect();
    let types: Vec<Dtype> = step.params.iter().map(|p| p.dtype).collect();
    let vals: Vec<Value> = names
        .iter()
        .map(|n| match n.as_str() {
            "schema" => Value::Str(schema.expect("a schema parameter").to_string()),
            "table" => Value::Str(table.to_string()),
            other => panic!("unexpected parameter {other}"),
        })
        .collect();
    let sql = step.sql().remove(0);
    let st = Stmt {
        step: &step.id,
        sql: &sql,
        param_names: &names,
        param_types: &types,
        columns: &[],
        key: &[],
    };
    let rows = c
        .query(st, &vals, &[Dtype::Int])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert!(rows.len() <= 1, "{sql}: {rows:?}");
    rows.into_iter().next().map(|mut r| r.remove(0))
}

/// The estimate of `table` asked both ways, by name alone (found as the extract finds it)
/// and with its schema, with the steps of [`steps`]; both must agree.
async fn both_ways(
    c: &mut Conn,
    (bare, qualified): &(SqlStep, SqlStep),
    schema: &str,
    table: &str,
) -> Option<Value> {
    let by_name = run(c, bare, None, table).await;
    let with_schema = run(c, qualified, Some(schema), table).await;
    assert_eq!(by_name, with_schema, "{schema}.{table}");
    by_name
}

/// The step without and with a schema (the table's name is bound, not part of the SQL);
/// generated before any table is made, so that a test without them leaves none behind.
fn steps(d: DialectKind, schema: &str) -> (SqlStep, SqlStep) {
    (
        estimate_step(d, None, "t"),
        estimate_step(d, Some(schema), "t"),
    )
}

async fn connect(d: DialectKind) -> Conn {
    let s = settings(d);
    Conn::connect(&s, &[]).await.unwrap_or_else(|e| {
        panic!(
            "{} at {}: {e}; {}",
            d.name(),
            s.address(),
            support::START_HINT
        )
    })
}

#[tokio::test]
async fn postgres_estimate_is_reltuples() {
    let d = DialectKind::Postgres;
    let steps = steps(d, "public");
    let pg = support::pg().await;
    let (big, fresh) = (support::unique("est_big"), support::unique("est_fresh"));
    pg.batch_execute(&format!(
        "CREATE TABLE {big} (id bigint PRIMARY KEY);
         INSERT INTO {big} SELECT g FROM generate_series(1, {ROWS}) g;
         ANALYZE {big};
         CREATE TABLE {fresh} (id bigint PRIMARY KEY);"
    ))
    .await
    .unwrap();
    let mut c = connect(d).await;
    let analyzed = both_ways(&mut c, &steps, "public", &big).await;
    let never = both_ways(&mut c, &steps, "public", &fresh).await;
    let missing = both_ways(&mut c, &steps, "public", "est_no_such_table").await;
    pg.batch_execute(&format!("DROP TABLE {big}; DROP TABLE {fresh}"))
        .await
        .unwrap();
    // ANALYZE samples every row of a table this small: the count itself.
    assert_eq!(analyzed, Some(Value::Int(ROWS)));
    // Never vacuumed nor analyzed: -1 since PostgreSQL 14, which shows no total.
    assert_eq!(never, Some(Value::Int(-1)));
    assert_eq!(missing, None);
}

#[tokio::test]
async fn mariadb_estimate_is_table_rows() {
    let d = DialectKind::Mysql;
    let steps = steps(d, "test");
    let mut my = support::mysql().await;
    let (big, view) = (support::unique("est_big"), support::unique("est_view"));
    for st in [
        format!("CREATE TABLE {big} (id bigint PRIMARY KEY) ENGINE = InnoDB"),
        format!("INSERT INTO {big} SELECT seq FROM seq_1_to_{ROWS}"),
        format!("ANALYZE TABLE {big}"),
        format!("CREATE VIEW {view} AS SELECT id FROM {big}"),
    ] {
        support::mysql_exec(&mut my, &st).await;
    }
    let mut c = connect(d).await;
    let table = both_ways(&mut c, &steps, "test", &big).await;
    let of_view = both_ways(&mut c, &steps, "test", &view).await;
    let missing = both_ways(&mut c, &steps, "test", "est_no_such_table").await;
    support::mysql_exec(&mut my, &format!("DROP VIEW {view}")).await;
    support::mysql_exec(&mut my, &format!("DROP TABLE {big}")).await;
    // InnoDB's count is sampled: near the table's, not necessarily equal.
    match table {
        Some(Value::Int(n)) => assert!(
            (ROWS / 2..=ROWS * 2).contains(&n),
            "table_rows {n} for {ROWS} rows"
        ),
        other => panic!("table_rows: {other:?}"),
    }
    assert_eq!(of_view, Some(Value::Null));
    assert_eq!(missing, None);
}

#[tokio::test]
async fn clickhouse_estimate_is_the_rows_of_active_parts_on_18_16_and_a_current_engine() {
    let d = DialectKind::Clickhouse;
    let steps = steps(d, "default");
    let ch = support::clickhouse().await;
    let (parts, memory) = (support::unique("est_parts"), support::unique("est_memory"));
    // Two inserts, two parts (18.16 spells MergeTree's settings the old way).
    for st in [
        format!("CREATE TABLE {parts} (id Int64) ENGINE = MergeTree ORDER BY id"),
        format!("INSERT INTO {parts} SELECT number FROM system.numbers LIMIT 6000"),
        format!("INSERT INTO {parts} SELECT number FROM system.numbers LIMIT 4000"),
        format!("CREATE TABLE {memory} (id Int64) ENGINE = Memory"),
        format!("INSERT INTO {memory} SELECT number FROM system.numbers LIMIT 10"),
    ] {
        ch.exec(&st).await;
    }
    let mut c = connect(d).await;
    let merge_tree = both_ways(&mut c, &steps, "default", &parts).await;
    let in_memory = both_ways(&mut c, &steps, "default", &memory).await;
    let missing = both_ways(&mut c, &steps, "default", "est_no_such_table").await;
    ch.exec(&format!("DROP TABLE {parts}")).await;
    ch.exec(&format!("DROP TABLE {memory}")).await;
    assert_eq!(merge_tree, Some(Value::Int(ROWS)), "{}", ch.version().await);
    // An engine without parts, or no table: a sum of nothing, 0, which shows no total.
    assert_eq!(in_memory, Some(Value::Int(0)));
    assert_eq!(missing, Some(Value::Int(0)));

    // The current engine binds the `{name:Type}` parameters itself.
    let db = support::unique("est_db");
    let mut statements: Vec<ChdbStatement> = [
        format!("CREATE DATABASE {db}"),
        format!("CREATE TABLE {db}.parts (id Int64) ENGINE = MergeTree ORDER BY id"),
        format!("INSERT INTO {db}.parts SELECT number FROM numbers(6000)"),
        format!("INSERT INTO {db}.parts SELECT number FROM numbers(4000)"),
        format!("CREATE TABLE {db}.memory (id Int64) ENGINE = Memory"),
        format!("INSERT INTO {db}.memory SELECT number FROM numbers(10)"),
    ]
    .into_iter()
    .map(|sql| ChdbStatement {
        sql,
        params: vec![],
    })
    .collect();
    let setup = statements.len();
    for table in ["parts", "memory", "est_no_such_table"] {
        statements.push(ChdbStatement {
            sql: steps.1.sql().remove(0),
            params: vec![
                ("schema".to_string(), db.clone()),
                ("table".to_string(), table.to_string()),
            ],
        });
    }
    let out = support::chdb(&statements);
    let got: Vec<Option<String>> = out[setup..]
        .iter()
        .map(|rows| rows.first().and_then(|r| r[0].clone()))
        .collect();
    assert_eq!(
        got,
        [
            Some("10000".to_string()),
            Some("0".into()),
            Some("0".into())
        ]
    );
}
