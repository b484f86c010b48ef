//! Connection helpers for the real services. Each one panics with a message naming the
//! service and how to start it when the service is unreachable: tests never skip.

#![allow(dead_code)]

pub mod rng;

use std::io::Write;
use std::process::{Command, Stdio};

use synctool::sql::dialect::{Mysql, Postgres};
use synctool::sql::hash::session_setup;

/// How to bring every service up.
pub const START_HINT: &str = "start the services with `scripts/services.sh`";

/// A result row: each value as text, `None` for SQL NULL.
pub type Row = Vec<Option<String>>;

/// A unique suffix for scratch tables and schemas.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A PostgreSQL 15 client on 127.0.0.1:5432 (trust auth, database `test`), with the hash
/// session setup applied.
pub async fn pg() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .unwrap_or_else(|e| {
        panic!("PostgreSQL is unreachable on 127.0.0.1:5432 (database `test`): {e}; {START_HINT}")
    });
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("PostgreSQL connection ended: {e}");
        }
    });
    for st in session_setup(&Postgres) {
        client
            .batch_execute(&st.to_string())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL session setup `{st}` failed: {e}"));
    }
    client
}

/// Run a PostgreSQL query whose columns are all text, returning rows of strings.
pub async fn pg_rows(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<Row> {
    let rows = client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL query failed: {e:?}\n{sql}"));
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect()
}

/// A MariaDB connection on 127.0.0.1:3306 (root, no password, database `test`), with the
/// hash session setup applied.
pub async fn mysql() -> mysql_async::Conn {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url("mysql://root@127.0.0.1:3306/test")
        .await
        .unwrap_or_else(|e| {
            panic!("MariaDB is unreachable on 127.0.0.1:3306 (root, database `test`): {e}; {START_HINT}")
        });
    for st in session_setup(&Mysql) {
        conn.query_drop(st.to_string())
            .await
            .unwrap_or_else(|e| panic!("MariaDB session setup `{st}` failed: {e}"));
    }
    conn
}

/// Run a MariaDB statement with `?` parameters whose columns are all text.
pub async fn mysql_rows(
    conn: &mut mysql_async::Conn,
    sql: &str,
    params: mysql_async::Params,
) -> Vec<Row> {
    use mysql_async::prelude::Queryable;
    let rows: Vec<mysql_async::Row> = conn
        .exec(sql, params)
        .await
        .unwrap_or_else(|e| panic!("MariaDB query failed: {e}\n{sql}"));
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.as_ref(i) {
                    None | Some(mysql_async::Value::NULL) => None,
                    Some(mysql_async::Value::Bytes(b)) => {
                        Some(String::from_utf8(b.clone()).expect("MariaDB returned non-UTF-8 text"))
                    }
                    Some(other) => Some(other.as_sql(true).trim_matches('\'').to_string()),
                })
                .collect()
        })
        .collect()
}

/// Run a MariaDB statement without results.
pub async fn mysql_exec(conn: &mut mysql_async::Conn, sql: &str) {
    use mysql_async::prelude::Queryable;
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("MariaDB statement failed: {e}\n{sql}"));
}

/// The ClickHouse server (18.16 on these machines) over HTTP on 127.0.0.1:8123.
pub struct ClickHouse {
    http: reqwest::Client,
    url: String,
}

/// A client for the ClickHouse server; panics when it does not answer `/ping`.
pub async fn clickhouse() -> ClickHouse {
    let url = "http://127.0.0.1:8123/".to_string();
    let http = reqwest::Client::new();
    let ok = http
        .get(format!("{url}ping"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    assert!(
        ok,
        "ClickHouse is unreachable on http://127.0.0.1:8123 (no answer to /ping); {START_HINT}"
    );
    // The connector's session settings (`SET join_use_nulls = 1`) need a server session,
    // which this client, reading and writing test tables without joins, does not keep.
    ClickHouse { http, url }
}

impl ClickHouse {
    /// Run a statement; panics with the server's message on failure.
    pub async fn exec(&self, sql: &str) -> String {
        let resp = self
            .http
            .post(&self.url)
            .body(sql.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("ClickHouse request failed: {e}; {START_HINT}"));
        let status = resp.status();
        let body = resp.text().await.expect("ClickHouse response body");
        assert!(
            status.is_success(),
            "ClickHouse error {status}: {body}\n{sql}"
        );
        body
    }

    /// Run a statement; the server's message on failure.
    pub async fn try_exec(&self, sql: &str) -> Result<String, String> {
        self.post(&self.url, sql).await
    }

    /// Run a statement in a server session of its own (a `SET` needs one); the server's
    /// message on failure.
    pub async fn try_exec_in_session(&self, sql: &str) -> Result<String, String> {
        let url = format!("{}?session_id={}", self.url, unique("session"));
        self.post(&url, sql).await
    }

    async fn post(&self, url: &str, sql: &str) -> Result<String, String> {
        let resp = self
            .http
            .post(url)
            .body(sql.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("ClickHouse request failed: {e}; {START_HINT}"));
        let status = resp.status();
        let body = resp.text().await.expect("ClickHouse response body");
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("ClickHouse error {status}: {body}"))
        }
    }

    /// Run a query and return its rows (TabSeparated, `\N` as `None`).
    pub async fn rows(&self, sql: &str) -> Vec<Row> {
        parse_tsv(&self.exec(&format!("{sql} FORMAT TabSeparated")).await)
    }

    /// The server version (`SELECT version()`).
    pub async fn version(&self) -> String {
        self.exec("SELECT version()").await.trim().to_string()
    }
}

/// Parse TabSeparated output (the tests only select values without escapes).
pub fn parse_tsv(body: &str) -> Vec<Row> {
    body.lines()
        .map(|l| {
            l.split('\t')
                .map(|v| {
                    if v == "\\N" {
                        None
                    } else {
                        Some(v.to_string())
                    }
                })
                .collect()
        })
        .collect()
}

/// One statement for [`chdb`], with ClickHouse query parameters bound by name.
pub struct ChdbStatement {
    /// The SQL text (without a FORMAT clause).
    pub sql: String,
    /// `{name:Type}` parameter values, as text.
    pub params: Vec<(String, String)>,
}

/// Run statements, in one session, on the current ClickHouse engine embedded by the PyPI
/// package `chdb-core` (tests/integration/chdb_run.py); returns each statement's rows.
pub fn chdb(statements: &[ChdbStatement]) -> Vec<Vec<Row>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/chdb_run.py");
    let input = serde_json::json!(statements
        .iter()
        .map(|s| serde_json::json!({
            "sql": s.sql,
            "params": s
                .params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>(),
        }))
        .collect::<Vec<_>>());
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 for chdb: {e}; {START_HINT}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to chdb_run.py");
    let out = child.wait_with_output().expect("chdb_run.py");
    assert!(
        out.status.success(),
        "chdb (PyPI chdb-core, a current ClickHouse engine) failed: {}\n(install it with \
         `scripts/services.sh`)",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs: Vec<String> =
        serde_json::from_slice(&out.stdout).expect("chdb_run.py prints a JSON list of outputs");
    outputs.iter().map(|o| parse_tsv(o)).collect()
}

/// Writes a config to a new file under the test target directory; returns its path.
pub fn write_config(text: &str) -> std::path::PathBuf {
    let p =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.yaml", unique("cfg")));
    std::fs::write(&p, text).expect("write config");
    p
}

/// Runs the built `synctool -c cfg args…` and waits for it.
pub fn synctool(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(cfg)
        .args(args)
        .output()
        .expect("run synctool")
}

/// The datastores the end-to-end edge tests configure: PostgreSQL `pg`, MariaDB `my`,
/// ClickHouse `ch`, each on the local test server.
pub const PG: &str =
    "{name: pg, type: postgres, host: 127.0.0.1, port: 5432, username: postgres, database: test}";
/// See [`PG`].
pub const MY: &str =
    "{name: my, type: mysql, host: 127.0.0.1, port: 3306, username: root, database: test}";
/// See [`PG`].
pub const CH: &str = "{name: ch, type: clickhouse, host: 127.0.0.1, port: 8123, database: default}";

/// Runs `synctool args… --format json`, asserts the exit code; returns the one pipeline's
/// report and stderr.
pub fn run_report(cfg: &std::path::Path, args: &[&str], code: i32) -> (serde_json::Value, String) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let o = synctool(cfg, &all);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(code),
        "synctool {args:?}: stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("JSON: {e}\n{err}"));
    (v["pipelines"][0].clone(), err)
}

/// A pipeline report's `rows_written`.
pub fn written(v: &serde_json::Value) -> i64 {
    v["rows_written"].as_i64().unwrap_or_else(|| panic!("{v}"))
}

/// A config with the [`PG`], [`MY`] and [`CH`] datastores and one pipeline `p` from `src`
/// on `src_store`; `rest` holds the lines after the source table (`SINK_STORE` and
/// `SINK_TABLE` replaced by `sink_store` and `sink`).
pub fn edge_config(src_store: &str, src: &str, sink_store: &str, sink: &str, rest: &str) -> String {
    format!(
        r#"
datastores:
  - {PG}
  - {MY}
  - {CH}
pipelines:
  - name: p
    source:
      datastore: {src_store}
      table: {src}
{rest}"#
    )
    .replace("SINK_STORE", sink_store)
    .replace("SINK_TABLE", sink)
}

/// One of the three test databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// PostgreSQL ([`PG`]).
    Pg,
    /// MariaDB ([`MY`]).
    My,
    /// ClickHouse 18.16 ([`CH`]).
    Ch,
}

impl Db {
    /// The datastore name the test configs give it (`pg`, `my`, `ch`).
    pub fn store(self) -> &'static str {
        match self {
            Db::Pg => "pg",
            Db::My => "my",
            Db::Ch => "ch",
        }
    }
}

/// Every test database.
pub const ALL: [Db; 3] = [Db::Pg, Db::My, Db::Ch];

/// Connections to the three servers.
pub struct Dbs {
    /// PostgreSQL, with the hash session setup.
    pub pg: tokio_postgres::Client,
    /// MariaDB, with the hash session setup (`NO_BACKSLASH_ESCAPES` among it).
    pub my: mysql_async::Conn,
    /// ClickHouse over HTTP.
    pub ch: ClickHouse,
}

/// Connects to the three servers.
pub async fn dbs() -> Dbs {
    Dbs {
        pg: pg().await,
        my: mysql().await,
        ch: clickhouse().await,
    }
}

/// A string literal for `db`.
pub fn str_lit(db: Db, s: &str) -> String {
    match db {
        // The MariaDB session runs with NO_BACKSLASH_ESCAPES.
        Db::Pg | Db::My => format!("'{}'", s.replace('\'', "''")),
        Db::Ch => format!(
            "'{}'",
            s.replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('\t', "\\t")
                .replace('\n', "\\n")
        ),
    }
}

/// Runs a statement without results on `db`; panics with the server's message.
pub async fn exec(dbs: &mut Dbs, db: Db, sql: &str) {
    match db {
        Db::Pg => dbs
            .pg
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL: {e:?}\n{sql}")),
        Db::My => mysql_exec(&mut dbs.my, sql).await,
        Db::Ch => {
            dbs.ch.exec(sql).await;
        }
    }
}

/// Waits until ClickHouse has applied every mutation of `table`.
pub async fn ch_wait_mutations(ch: &ClickHouse, table: &str) {
    for _ in 0..600 {
        // 18.16 fails the listing when another test drops a table meanwhile: ask again.
        let pending = ch
            .try_exec(&format!(
                "SELECT count() FROM system.mutations WHERE database = currentDatabase() \
                 AND table = '{table}' AND is_done = 0 FORMAT TabSeparated"
            ))
            .await;
        if pending.as_deref().map(str::trim) == Ok("0") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("ClickHouse mutations on {table} did not finish within a minute");
}

/// Drops `table` on `db` if it exists.
pub async fn drop_table(dbs: &mut Dbs, db: Db, table: &str) {
    let sql = format!("DROP TABLE IF EXISTS {table}");
    match db {
        Db::Pg => {
            let _ = dbs.pg.batch_execute(&sql).await;
        }
        Db::My => mysql_exec(&mut dbs.my, &sql).await,
        Db::Ch => {
            let _ = dbs.ch.try_exec(&sql).await;
        }
    }
}

/// How a table is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Every row as stored (a source, or a PostgreSQL/MariaDB upsert/delete_insert sink).
    Plain,
    /// ClickHouse ReplacingMergeTree: `FINAL`.
    Final,
    /// Collapse: the rows whose signs sum to more than zero.
    Collapse,
}

/// How the live rows of a sink on `sink` written with the merge strategy `merge` are read.
pub fn sink_read(sink: Db, merge: &str) -> Read {
    match (sink, merge) {
        (_, "collapse") => Read::Collapse,
        (Db::Ch, "upsert") => Read::Final,
        _ => Read::Plain,
    }
}

/// The `FROM` item that reads `table`'s live rows `how` (`cols`: every column the query
/// reads, a collapse table's sign column `sign` left out).
pub fn live_rows_from(db: Db, table: &str, cols: &str, how: Read) -> String {
    match (how, db) {
        (Read::Plain, _) => table.to_string(),
        (Read::Final, Db::Ch) => format!("{table} FINAL"),
        (Read::Final, _) => panic!("FINAL is ClickHouse only"),
        (Read::Collapse, _) => {
            format!("(SELECT {cols} FROM {table} GROUP BY {cols} HAVING sum(sign) > 0) live")
        }
    }
}

/// Asserts that the sink holds exactly the source rows (keyed by their first column, as an
/// integer when every key is one, else as text), listing the rows that differ.
pub fn assert_same(what: &str, sink: &[Row], source: &[Row]) {
    let key = |r: &Row| -> (Option<i128>, Option<String>) {
        let k = r[0].clone();
        (k.as_deref().and_then(|k| k.parse().ok()), k)
    };
    let by_key = |rows: &[Row]| -> std::collections::BTreeMap<(Option<i128>, Option<String>), Row> {
        rows.iter().map(|r| (key(r), r.clone())).collect()
    };
    let (a, b) = (by_key(source), by_key(sink));
    let mut diffs = Vec::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            diffs.push(format!(
                "key {:?}:\n  source {:?}\n  sink   {:?}",
                k.1,
                a.get(k),
                b.get(k)
            ));
        }
    }
    assert!(
        diffs.is_empty() && sink.len() == source.len(),
        "{what}: {} of {} source rows differ in the sink ({} rows):\n{}",
        diffs.len(),
        source.len(),
        sink.len(),
        diffs.iter().take(6).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// One TabSeparated field: `\N` is NULL, escapes undone.
pub fn tsv_value(v: &str) -> Option<String> {
    if v == "\\N" {
        return None;
    }
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// Runs `synctool args… --format json`, asserts the exit code (naming `what` otherwise) and
/// returns the pipelines' reports (at least one).
pub fn run_json_all(
    cfg: &std::path::Path,
    args: &[&str],
    code: i32,
    what: &str,
) -> Vec<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let o = synctool(cfg, &all);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: synctool {args:?}: stderr:\n{err}\nstdout:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: JSON output: {e}\n{err}"));
    let ps = v["pipelines"].as_array().expect("pipelines array");
    assert!(!ps.is_empty(), "{what}: no pipeline ran: {v}");
    ps.clone()
}

/// [`run_json_all`] of a config with one pipeline: its report.
pub fn run_json(cfg: &std::path::Path, args: &[&str], code: i32, what: &str) -> serde_json::Value {
    let mut ps = run_json_all(cfg, args, code, what);
    assert_eq!(ps.len(), 1, "{what}: {ps:?}");
    ps.remove(0)
}

/// The integer `k` of a pipeline report.
pub fn n(v: &serde_json::Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}
