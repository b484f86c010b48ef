//! Every statement `compile` emits for the examples (and the test configs in
//! `tests/integration/configs/`) is accepted by its real database: the example schemas are
//! created in scratch schemas/databases, then each step's statements are
//! prepared (PostgreSQL, MariaDB: names and types are resolved by the server) or executed
//! (DDL, session settings, COPY with an empty binary stream; ClickHouse, which cannot
//! prepare: executed on empty tables with sample parameter values, on the 18.16 server and on
//! a current engine through chdb).

use super::examples::example_files;
use super::support::{self, ChdbStatement};
use sqlparser::ast::{Expr, Visit, Visitor};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use synctool::driver::frontend;
use synctool::ir::{Pipeline, StoreKind};
use synctool::sql::{self, DialectKind, Side, SqlStep};
use synctool::types::Dtype;

/// Columns per (dialect, schema, table) that the examples' sources read.
type Tables = BTreeMap<(DialectKind, String, String), BTreeMap<String, Dtype>>;

/// Point every table of a pipeline at the scratch schema (database) of its dialect.
fn retarget(p: &mut Pipeline, scratch: &HashMap<DialectKind, String>) {
    if let Some(d) = p.source.store.kind.dialect() {
        p.source.table.table.schema = Some(scratch[&d].clone());
        for j in &mut p.source.joins {
            j.table.table.schema = Some(scratch[&d].clone());
        }
    }
    if let Some(d) = p.sink.store.kind.dialect() {
        p.sink.table.schema = Some(scratch[&d].clone());
    }
}

/// The source tables and columns a pipeline needs.
fn source_tables(p: &Pipeline, scratch: &HashMap<DialectKind, String>, out: &mut Tables) {
    let Some(d) = p.source.store.kind.dialect() else {
        return;
    };
    let schema = scratch[&d].clone();
    let main = p.source.table.qualifier().to_string();
    let table_of = |q: &Option<String>| -> String {
        let q = q.clone().unwrap_or_else(|| main.clone());
        std::iter::once(&p.source.table)
            .chain(p.source.joins.iter().map(|j| &j.table))
            .find(|t| t.qualifier() == q)
            .map(|t| t.table.name.clone())
            .unwrap_or(q)
    };
    let mut add = |q: &Option<String>, col: &str, dt: Dtype| {
        out.entry((d, schema.clone(), table_of(q)))
            .or_default()
            .entry(col.to_string())
            .or_insert(dt);
    };
    for f in &p.source.fields {
        add(&f.column.qualifier, &f.column.name, f.dtype);
    }
    for f in &p.source.filters {
        add(&f.column.qualifier, &f.column.name, f.dtype);
    }
    for r in &p.reconciliations {
        add(
            &r.source_partition.qualifier,
            &r.source_partition.name,
            r.kind.dtype(),
        );
    }
    struct Cols(Vec<(Option<String>, String)>);
    impl Visitor for Cols {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(i) => self.0.push((None, i.value.clone())),
                Expr::CompoundIdentifier(ids) if ids.len() == 2 => self
                    .0
                    .push((Some(ids[0].value.clone()), ids[1].value.clone())),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    for j in &p.source.joins {
        let mut c = Cols(Vec::new());
        let _ = j.on.visit(&mut c);
        for (q, n) in c.0 {
            add(&q, &n, Dtype::Int);
        }
    }
}

fn ddl(d: DialectKind, schema: &str, table: &str, cols: &BTreeMap<String, Dtype>) -> String {
    let dia = d.dialect();
    let cols: Vec<String> = cols
        .iter()
        .map(|(c, t)| {
            let ty = dia.column_type(*t, false);
            let ty = if d == DialectKind::Clickhouse {
                dia.nullable(ty)
            } else {
                ty
            };
            format!("{} {ty}", dia.ident(c))
        })
        .collect();
    let engine = match d {
        DialectKind::Clickhouse => " ENGINE = Memory",
        DialectKind::Mysql => " DEFAULT CHARSET = utf8mb4",
        DialectKind::Postgres => "",
    };
    format!(
        "CREATE TABLE {}.{} ({}){engine}",
        dia.ident(schema),
        dia.ident(table),
        cols.join(", ")
    )
}

/// A sample value per parameter type, as ClickHouse literal text (for 18.16, which has no
/// query parameters) and as a chdb parameter value.
fn ch_sample(ty: &str) -> (&'static str, &'static str) {
    let base = ty.trim_start_matches("Nullable(").trim_end_matches(')');
    match base {
        t if t.starts_with("Int")
            || t.starts_with("UInt")
            || t.starts_with("Float")
            || t.starts_with("Decimal") =>
        {
            ("1", "1")
        }
        t if t.starts_with("DateTime") => {
            ("toDateTime('2020-01-01 00:00:00')", "2020-01-01 00:00:00")
        }
        "Date" => ("toDate('2020-01-01')", "2020-01-01"),
        "UUID" => (
            "toUUID('00000000-0000-0000-0000-000000000000')",
            "00000000-0000-0000-0000-000000000000",
        ),
        _ => ("'x'", "x"),
    }
}

/// `{name:Type}` placeholders of a ClickHouse statement.
fn ch_placeholders(sql: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        let inner = &rest[i + 1..i + j];
        if let Some((name, ty)) = inner.split_once(':') {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push((format!("{{{inner}}}"), name.to_string(), ty.to_string()));
            }
        }
        rest = &rest[i + j + 1..];
    }
    out
}

/// chdb refuses an INSERT without data ("No data to insert"): check a RowBinary insert's
/// table and column list there with an INSERT … SELECT of no rows instead (the 18.16 server
/// runs the statement itself, with an empty body).
fn for_chdb(sql: &str) -> String {
    let Some(head) = sql.strip_suffix(" FORMAT RowBinary") else {
        return sql.to_string();
    };
    let (target, cols) = head.split_once(" (").expect("INSERT INTO t (cols)");
    let cols = cols.strip_suffix(')').expect("column list");
    let table = target.trim_start_matches("INSERT INTO ");
    format!("{target} ({cols}) SELECT {cols} FROM {table} WHERE 0")
}

/// The configs whose statements are checked: the examples, then the test configs in
/// `tests/integration/configs/` (pipelines no example has, such as ClickHouse date keys).
fn statement_configs() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/configs");
    let mut extra: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/integration/configs/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    extra.sort();
    let mut all = example_files();
    all.extend(extra);
    all
}

/// Everything the examples (and test configs) emit, retargeted at one scratch schema per example and dialect
/// (`<base>_<n>`, so that examples with tables of the same name do not meet).
fn compiled(
    base: &HashMap<DialectKind, String>,
) -> (Tables, Vec<(String, Pipeline, Vec<SqlStep>)>) {
    let mut tables = Tables::new();
    let mut out = Vec::new();
    for (n, path) in statement_configs().into_iter().enumerate() {
        let scratch: HashMap<DialectKind, String> =
            base.iter().map(|(d, s)| (*d, format!("{s}_{n}"))).collect();
        let scratch = &scratch;
        let text = std::fs::read_to_string(&path).unwrap();
        let env: HashMap<String, String> = HashMap::new();
        let fe = frontend(&path.display().to_string(), &text, &env, &[])
            .unwrap_or_else(|e| panic!("{}", e.render()));
        for mut p in fe.checked.program.pipelines {
            retarget(&mut p, scratch);
            source_tables(&p, scratch, &mut tables);
            let steps = sql::generate(&p).unwrap();
            let name = format!("{}:{}", path.file_stem().unwrap().to_string_lossy(), p.name);
            out.push((name, p, steps));
        }
    }
    (tables, out)
}

fn dialect_of(p: &Pipeline, s: &SqlStep) -> Option<DialectKind> {
    match s.side {
        Side::Source | Side::SourceState => p.source.store.kind.dialect(),
        Side::Sink | Side::SinkState => p.sink.store.kind.dialect(),
    }
    .filter(|d| *d == s.dialect)
}

fn is_ddl_or_setting(sql: &str) -> bool {
    let head = sql.trim_start().to_ascii_uppercase();
    ["CREATE", "SET", "TRUNCATE", "DROP"]
        .iter()
        .any(|k| head.starts_with(k))
}

/// An empty PostgreSQL binary COPY stream: header, no tuples, trailer.
const PG_EMPTY_BINARY_COPY: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff";

#[tokio::test]
async fn every_statement_is_accepted_by_postgres_and_mariadb() {
    use futures_util::SinkExt;
    let pg_schema = support::unique("st_pg");
    let my_db = support::unique("st_my");
    let scratch = HashMap::from([
        (DialectKind::Postgres, pg_schema.clone()),
        (DialectKind::Mysql, my_db.clone()),
        (DialectKind::Clickhouse, "unused".to_string()),
    ]);
    let (tables, programs) = compiled(&scratch);
    let pg = support::pg().await;
    let mut my = support::mysql().await;
    let n = statement_configs().len();
    for i in 0..n {
        pg.batch_execute(&format!("CREATE SCHEMA \"{pg_schema}_{i}\""))
            .await
            .unwrap();
        support::mysql_exec(&mut my, &format!("CREATE DATABASE `{my_db}_{i}`")).await;
    }
    for ((d, schema, table), cols) in &tables {
        match d {
            DialectKind::Postgres => pg
                .batch_execute(&ddl(*d, schema, table, cols))
                .await
                .unwrap(),
            DialectKind::Mysql => support::mysql_exec(&mut my, &ddl(*d, schema, table, cols)).await,
            DialectKind::Clickhouse => {}
        }
    }
    let mut checked = 0;
    for (name, p, steps) in &programs {
        // Each pipeline runs on sessions of its own: staging tables are temporary, and two
        // examples may stage a sink table of one name with different columns.
        pg.batch_execute("DISCARD TEMP").await.unwrap();
        my = support::mysql().await;
        // The multi-row INSERTs MySQL loads fall back to (built per row count at run time).
        let fallbacks: Vec<SqlStep> = if p.sink.store.kind.dialect() == Some(DialectKind::Mysql) {
            let has = |id: &str| steps.iter().any(|s| s.id == id);
            [
                has("sink.load").then(|| synctool::sql::stage_insert(p, 2)),
                has("sink.load_keys").then(|| synctool::sql::stage_keys_insert(p, 2)),
                has("sink.load_direct").then(|| synctool::sql::direct_insert(p, 2)),
            ]
            .into_iter()
            .flatten()
            .flatten()
            .collect()
        } else {
            vec![]
        };
        for s in steps.iter().chain(&fallbacks) {
            let Some(d) = dialect_of(p, s) else { continue };
            for sql in s.sql() {
                let ctx = format!("{name} step {} ({}):\n{sql}", s.id, d.name());
                match d {
                    DialectKind::Postgres if sql.starts_with("COPY") => {
                        let sink = pg
                            .copy_in::<_, bytes::Bytes>(sql.as_str())
                            .await
                            .unwrap_or_else(|e| panic!("{ctx}\n{e}"));
                        futures_util::pin_mut!(sink);
                        sink.send(bytes::Bytes::from_static(PG_EMPTY_BINARY_COPY))
                            .await
                            .unwrap_or_else(|e| panic!("{ctx}\n{e}"));
                        sink.finish().await.unwrap_or_else(|e| panic!("{ctx}\n{e}"));
                    }
                    DialectKind::Postgres if is_ddl_or_setting(&sql) && s.params.is_empty() => pg
                        .batch_execute(&sql)
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}\n{e}")),
                    DialectKind::Postgres => {
                        pg.prepare(&sql)
                            .await
                            .unwrap_or_else(|e| panic!("{ctx}\n{e:?}"));
                    }
                    DialectKind::Mysql if sql.starts_with("LOAD DATA LOCAL INFILE") => {
                        // Runs it, with an empty file: the table and columns must exist.
                        use mysql_async::prelude::Queryable;
                        my.set_infile_handler(async {
                            let empty =
                                futures_util::stream::empty::<std::io::Result<bytes::Bytes>>();
                            Ok(Box::pin(empty) as mysql_async::InfileData)
                        });
                        my.query_drop(&sql)
                            .await
                            .unwrap_or_else(|e| panic!("{ctx}\n{e}"))
                    }
                    DialectKind::Mysql if is_ddl_or_setting(&sql) && s.params.is_empty() => {
                        use mysql_async::prelude::Queryable;
                        my.query_drop(&sql)
                            .await
                            .unwrap_or_else(|e| panic!("{ctx}\n{e}"))
                    }
                    DialectKind::Mysql => {
                        use mysql_async::prelude::Queryable;
                        let st = my.prep(&sql).await.unwrap_or_else(|e| panic!("{ctx}\n{e}"));
                        my.close(st).await.unwrap();
                    }
                    DialectKind::Clickhouse => continue,
                }
                checked += 1;
            }
        }
    }
    for i in 0..n {
        pg.batch_execute(&format!("DROP SCHEMA \"{pg_schema}_{i}\" CASCADE"))
            .await
            .unwrap();
        support::mysql_exec(&mut my, &format!("DROP DATABASE `{my_db}_{i}`")).await;
    }
    assert!(checked > 100, "only {checked} statements checked");
}

#[tokio::test]
async fn every_clickhouse_statement_runs_on_18_16_and_a_current_engine() {
    let db = support::unique("st_ch");
    let scratch = HashMap::from([
        (DialectKind::Postgres, "unused".to_string()),
        (DialectKind::Mysql, "unused".to_string()),
        (DialectKind::Clickhouse, db.clone()),
    ]);
    let (tables, programs) = compiled(&scratch);
    let ch = support::clickhouse().await;
    let n = statement_configs().len();
    let mut setup: Vec<String> = (0..n)
        .map(|i| format!("CREATE DATABASE \"{db}_{i}\""))
        .collect();
    for ((d, schema, table), cols) in &tables {
        if *d == DialectKind::Clickhouse {
            setup.push(ddl(*d, schema, table, cols));
        }
    }
    let mut chdb_statements: Vec<ChdbStatement> = setup
        .iter()
        .map(|s| ChdbStatement {
            sql: s.clone(),
            params: vec![],
        })
        .collect();
    for s in &setup {
        ch.exec(s).await;
    }
    let mut checked = 0;
    for (name, p, steps) in &programs {
        if !matches!(p.sink.store.kind, StoreKind::Sql(DialectKind::Clickhouse))
            && !matches!(p.source.store.kind, StoreKind::Sql(DialectKind::Clickhouse))
        {
            continue;
        }
        for s in steps {
            if dialect_of(p, s) != Some(DialectKind::Clickhouse) {
                continue;
            }
            for sql in s.sql() {
                let holes = ch_placeholders(&sql);
                let mut literal = sql.clone();
                let mut params = Vec::new();
                for (hole, pname, ty) in &holes {
                    let (lit, val) = ch_sample(ty);
                    literal = literal.replace(hole.as_str(), lit);
                    params.push((pname.clone(), val.to_string()));
                }
                // 18.16 has no query parameters: the runtime binds them as escaped literals.
                let mut body = Err(String::new());
                // 18.16 fails a system.tables/columns listing when another test drops a
                // table meanwhile (`Code: 60`, naming that table): ask again, as synctool
                // does.
                for _ in 0..5 {
                    body = if literal.trim_start().starts_with("SET ") {
                        ch.try_exec_in_session(&literal).await
                    } else {
                        ch.try_exec(&literal).await
                    };
                    match &body {
                        Err(e) if e.contains("Code: 60,") && literal.contains("system.") => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        _ => break,
                    }
                }
                assert!(
                    body.is_ok(),
                    "{name} step {} on ClickHouse {}:\n{literal}\n{}",
                    s.id,
                    ch.version().await,
                    body.unwrap_err()
                );
                chdb_statements.push(ChdbStatement {
                    sql: for_chdb(&sql),
                    params,
                });
                checked += 1;
            }
        }
    }
    for i in 0..n {
        ch.exec(&format!("DROP DATABASE \"{db}_{i}\"")).await;
    }
    // The current engine binds the `{name:Type}` parameters itself.
    let _ = support::chdb(&chdb_statements);
    assert!(
        checked >= 25,
        "only {checked} ClickHouse statements checked"
    );
}
