//! Concurrent runs into one sink table: two `apply` of the same pipeline (a scheduler
//! starting it twice) take turns through the run lock of the sink scope and end with
//! exactly the source rows on every sink dialect; two pipelines writing one ClickHouse
//! table under different sink filters run side by side, each with its own staging tables,
//! without mixing; ClickHouse staging tables are gone after a run; `validate` warns about
//! two `allow_delete` pipelines into one table that no filters separate; a run that loses
//! its lock (ClickHouse claim overtaken, PostgreSQL/MariaDB lock session killed) stops; an
//! interrupted ClickHouse run gives its claim back, and so does one that waited for it and
//! gave up or was interrupted;
//! `--lock-timeout` gives up on a lock held too long.

use crate::support::{self, synctool, unique, write_config, CH, MY, PG};
use std::process::{Command, Output, Stdio};

/// Rows of the source table.
const ROWS: i64 = 20_000;

/// Starts `synctool -c cfg args…` without waiting.
fn spawn(cfg: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_synctool"))
        .arg("-c")
        .arg(cfg)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synctool")
}

/// Runs the commands concurrently and waits for all of them.
fn together(cfg: &std::path::Path, runs: &[&[&str]]) -> Vec<Output> {
    let children: Vec<_> = runs.iter().map(|a| spawn(cfg, a)).collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for synctool"))
        .collect()
}

/// A running synctool whose stderr is read as it comes, so that a test can wait for a
/// log line.
struct Watched {
    child: std::process::Child,
    err: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    fn start(cfg: &std::path::Path, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = spawn(cfg, args);
        let stderr = child.stderr.take().expect("piped stderr");
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = err.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watched { child, err, reader }
    }

    /// Waits (at most 30 s) until the run's stderr holds `needle`, or the run has ended.
    async fn wait_for(&mut self, needle: &str) -> bool {
        for _ in 0..300 {
            if self.err.lock().unwrap().contains(needle) {
                return true;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.err.lock().unwrap().contains(needle)
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits for the run to end; its output (with the stderr read so far).
    fn finish(self) -> Output {
        let mut out = self.child.wait_with_output().expect("wait for synctool");
        self.reader.join().expect("stderr reader");
        out.stderr = self.err.lock().unwrap().clone().into_bytes();
        out
    }
}

fn assert_ok(outs: &[Output]) {
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(
            o.status.code(),
            Some(0),
            "run {i}: stderr:\n{}\nstdout:\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

async fn pg_exec(sql: &str) {
    let c = support::pg().await;
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL: {e:?}\n{sql}"));
}

/// A PostgreSQL source table `src` of [`ROWS`] rows (`g` is `a` for even ids, `b` for
/// odd ones).
async fn source(src: &str) {
    pg_exec(&format!(
        "DROP TABLE IF EXISTS {src};
         CREATE TABLE {src} (id bigint PRIMARY KEY, g text NOT NULL, v text NOT NULL);
         INSERT INTO {src} SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, 'v' || i
           FROM generate_series(1, {ROWS}) AS i;"
    ))
    .await;
}

/// Changes every row's value, deletes 1000 rows and adds 1000, so that the next run merges
/// through the staging tables and deletes.
async fn change_source(src: &str) {
    pg_exec(&format!(
        "UPDATE {src} SET v = v || 'x';
         DELETE FROM {src} WHERE id <= 1000;
         INSERT INTO {src} SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, 'n' || i
           FROM generate_series({ROWS} + 1, {ROWS} + 1000) AS i;"
    ))
    .await;
}

/// The sink table's row count, distinct (g, id) count and a checksum of its contents, and
/// the same of the source.
async fn counts(store: &str, t: &str, src: &str) -> (Vec<support::Row>, Vec<support::Row>) {
    let pg = support::pg().await;
    let want = support::pg_rows(
        &pg,
        &format!("SELECT count(*)::text, count(DISTINCT (g, id))::text, sum(length(v) * id)::text FROM {src}"),
        &[],
    )
    .await;
    let got = match store {
        "pg" => {
            support::pg_rows(
                &pg,
                &format!("SELECT count(*)::text, count(DISTINCT (g, id))::text, sum(length(v) * id)::text FROM {t}"),
                &[],
            )
            .await
        }
        "my" => {
            let mut m = support::mysql().await;
            support::mysql_rows(
                &mut m,
                &format!("SELECT CAST(count(*) AS CHAR), CAST(count(DISTINCT g, id) AS CHAR), CAST(sum(length(v) * id) AS CHAR) FROM {t}"),
                mysql_async::Params::Empty,
            )
            .await
        }
        _ => {
            support::clickhouse()
                .await
                .rows(&format!(
                    "SELECT count(), uniqExact(g, id), sum(length(v) * id) FROM default.{t}"
                ))
                .await
        }
    };
    (got, want)
}

/// The ClickHouse tables whose name contains `t` (the sink table, and staging tables).
async fn ch_tables(t: &str) -> Vec<String> {
    support::clickhouse()
        .await
        .rows(&format!(
            "SELECT name FROM system.tables WHERE database = 'default' AND name LIKE '%{t}%' ORDER BY name"
        ))
        .await
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

/// `{src}_v`: the source table `src` read slowly (a row a millisecond, 15000 rows), so that
/// a run lasts some seconds.
async fn slow_view(src: &str) {
    pg_exec(&format!(
        "CREATE FUNCTION {src}_slow(i bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT pg_sleep(0.001); SELECT i $$;
         CREATE VIEW {src}_v AS SELECT {src}_slow(id) AS id, g, v FROM {src} WHERE id <= 15000;"
    ))
    .await;
}

/// The config of a run from a slow source ([`slow_view`]) into a new table `prefix…` of
/// `store`, written out, its sink scope digest (the run lock's name) and the table's name.
async fn slow_run_config(store: &str, prefix: &str) -> (std::path::PathBuf, String, String) {
    let src = unique("cc_src");
    let t = unique(prefix);
    source(&src).await;
    slow_view(&src).await;
    let yaml = config(store, &format!("{src}_v"), &t);
    (write_config(&yaml), scope_digest(&yaml), t)
}

/// The sink scope digest of the config's first pipeline (the run lock's name).
fn scope_digest(yaml: &str) -> String {
    let fe = synctool::driver::frontend(
        "c.yaml",
        yaml,
        &std::collections::HashMap::<String, String>::new(),
        &[],
    )
    .unwrap_or_else(|f| panic!("{}", f.render()));
    fe.checked.program.pipelines[0].sink.scope_digest()
}

fn config(store: &str, src: &str, t: &str) -> String {
    format!(
        r#"
datastores:
  - {PG}
  - {MY}
  - {CH}
pipelines:
  - name: p
    source:
      datastore: pg
      table: {src}
      batch_size: 1000
      fields: [{{column: id, dtype: int}}, {{column: g, dtype: str}}, {{column: v, dtype: str}}]
    sink:
      datastore: {store}
      table: {t}
      batch_size: 1000
      unique_key: [id]
      merge_strategy: {{strategy: delete_insert, allow_delete: true}}
    reconciliation:
      - {{name: by_id, strategy: md5sum_hash, partition_column: id, partition_column_type: int, initial_partition_interval: 100000, max_block_size: 1000, interval_reduction_factor: 10}}
"#
    )
}

/// Two overlapping `apply --full` of one pipeline (its reconciliation is `plan`'s), into
/// a new sink table and then into the existing one after the source changed: the second
/// waits for the first's lock, both exit 0 and the sink holds exactly the source rows;
/// `plan --exit-code` finds nothing to do.
async fn same_pipeline_twice(store: &str) {
    let src = unique("cc_src");
    let t = unique(&format!("cc_{store}"));
    source(&src).await;
    let cfg = write_config(&config(store, &src, &t));
    for round in 0..2 {
        if round == 1 {
            change_source(&src).await;
        }
        // The first run takes the lock and then waits for the source, which the test holds
        // locked until the second run waits for the lock: the runs overlap however fast
        // they are.
        let hold = support::pg().await;
        hold.batch_execute(&format!("BEGIN; LOCK TABLE {src} IN ACCESS EXCLUSIVE MODE"))
            .await
            .expect("lock the source");
        let mut first = Watched::start(&cfg, &["-vv", "apply", "--full"]);
        assert!(
            first.wait_for("run lock taken").await,
            "{store}, round {round}: the first run did not take the lock:\n{}",
            first.stderr()
        );
        let mut second = Watched::start(&cfg, &["-v", "apply", "--full"]);
        assert!(
            second.wait_for("waiting for the run lock").await,
            "{store}, round {round}: the second run did not wait for the first:\n{}",
            second.stderr()
        );
        hold.batch_execute("COMMIT")
            .await
            .expect("unlock the source");
        let outs = [first.finish(), second.finish()];
        assert_ok(&outs);
        let (got, want) = counts(store, &t, &src).await;
        assert_eq!(
            got, want,
            "{store}, round {round}: sink (rows, distinct keys, checksum) against the source"
        );
        let plan = synctool(&cfg, &["plan", "--exit-code"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "{store}, round {round}: plan after the runs:\n{}\n{}",
            String::from_utf8_lossy(&plan.stdout),
            String::from_utf8_lossy(&plan.stderr)
        );
    }
    if store == "ch" {
        assert_eq!(ch_tables(&t).await, vec![t.clone()], "staging tables left");
    }
}

#[tokio::test]
async fn concurrent_apply_same_pipeline_clickhouse() {
    same_pipeline_twice("ch").await;
}

#[tokio::test]
async fn concurrent_apply_same_pipeline_postgres() {
    same_pipeline_twice("pg").await;
}

#[tokio::test]
async fn concurrent_apply_same_pipeline_mariadb() {
    same_pipeline_twice("my").await;
}

/// Two pipelines writing one (new, then existing) ClickHouse table under different sink
/// filters, run at the same time: each owns its rows, and the table ends with the source's.
#[tokio::test]
async fn concurrent_filtered_pipelines_share_clickhouse_table() {
    let src = unique("cc_src");
    let t = unique("cc_chf");
    source(&src).await;
    let pipeline = |g: &str| {
        format!(
            r#"
  - name: p_{g}
    source:
      datastore: pg
      table: {src}
      batch_size: 500
      fields: [{{column: id, dtype: int}}, {{column: g, dtype: str}}, {{column: v, dtype: str}}]
      filters: [{{column: g, operator: '=', value: {g}}}]
    sink:
      datastore: ch
      table: {t}
      batch_size: 500
      unique_key: [id]
      merge_strategy: {{strategy: delete_insert, allow_delete: true}}
      filters: [{{column: g, operator: '=', value: {g}}}]
    reconciliation:
      - {{name: by_id, strategy: md5sum_hash, partition_column: id, partition_column_type: int, initial_partition_interval: 100000, max_block_size: 1000, interval_reduction_factor: 10}}
"#
        )
    };
    let cfg = write_config(&format!(
        "datastores:\n  - {PG}\n  - {CH}\npipelines:{}{}",
        pipeline("a"),
        pipeline("b")
    ));
    for round in 0..2 {
        if round == 1 {
            change_source(&src).await;
        }
        let outs = together(
            &cfg,
            &[
                &["apply", "--full", "-p", "p_a"],
                &["apply", "--full", "-p", "p_b"],
            ],
        );
        assert_ok(&outs);
        let (got, want) = counts("ch", &t, &src).await;
        assert_eq!(
            got, want,
            "round {round}: sink (rows, distinct keys, checksum) against the source"
        );
        let plan = synctool(&cfg, &["plan", "--exit-code"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "round {round}: plan after the runs:\n{}\n{}",
            String::from_utf8_lossy(&plan.stdout),
            String::from_utf8_lossy(&plan.stderr)
        );
    }
    assert_eq!(ch_tables(&t).await, vec![t.clone()], "staging tables left");
}

/// A ClickHouse run's staging tables are dropped when it ends, also when it failed.
#[tokio::test]
async fn clickhouse_stage_tables_dropped_after_run() {
    let src = unique("cc_src");
    let t = unique("cc_drop");
    source(&src).await;
    let cfg = write_config(&config("ch", &src, &t));
    let o = synctool(&cfg, &["apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    change_source(&src).await;
    let o = synctool(&cfg, &["apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        ch_tables(&t).await,
        vec![t.clone()],
        "staging tables left after a run"
    );
    // A value the sink column refuses fails the run after the staging tables were made.
    pg_exec(&format!("ALTER TABLE {src} ADD COLUMN big bigint; UPDATE {src} SET big = 1 WHERE id = 2000; UPDATE {src} SET v = v || 'y' WHERE id > 1500")).await;
    support::clickhouse()
        .await
        .exec(&format!("ALTER TABLE default.{t} ADD COLUMN big UInt8"))
        .await;
    pg_exec(&format!("UPDATE {src} SET big = 100000 WHERE id = 3000")).await;
    let failing = write_config(&config("ch", &src, &t).replace(
        "{column: v, dtype: str}]",
        "{column: v, dtype: str}, {column: big, dtype: int}]",
    ));
    let o = synctool(&failing, &["apply"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the run should fail: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        ch_tables(&t).await,
        vec![t.clone()],
        "staging tables left after a failed run"
    );
}

/// `validate` warns about two `allow_delete` pipelines writing one sink table without
/// sink filters that separate them, and not when filters do.
#[test]
fn validate_warns_shared_allow_delete_sink() {
    let pipeline = |name: &str, filters: &str| {
        format!(
            r#"
  - name: {name}
    source:
      datastore: pg
      table: src_{name}
      fields: [{{column: id, dtype: int}}, {{column: g, dtype: str}}]
    sink:
      datastore: ch
      table: shared
      unique_key: [id]
      merge_strategy: {{strategy: delete_insert, allow_delete: true}}
{filters}"#
        )
    };
    let head = format!("datastores:\n  - {PG}\n  - {CH}\npipelines:");
    let unfiltered = write_config(&format!(
        "{head}{}{}",
        pipeline("one", ""),
        pipeline("two", "")
    ));
    let o = synctool(&unfiltered, &["validate"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning")
            && err.contains("pipelines `one` and `two` both write sink table `shared`")
            && err.contains("pipelines[1].sink.merge_strategy.allow_delete"),
        "{err}"
    );
    let filter = |g: &str| format!("      filters: [{{column: g, operator: '=', value: {g}}}]\n");
    let separated = write_config(&format!(
        "{head}{}{}",
        pipeline("one", &filter("a")),
        pipeline("two", &filter("b"))
    ));
    let o = synctool(&separated, &["validate"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("both write sink table"), "{err}");
}

/// A run whose ClickHouse claim another claim overtakes (a smaller ticket, as when its
/// heartbeat lapsed and another run took the lock over) stops with an error naming the sink, before it ends.
#[tokio::test]
async fn clickhouse_run_stops_when_its_lock_is_taken_over() {
    let (cfg, digest, t) = slow_run_config("ch", "cc_lost").await;
    let run = spawn(&cfg, &["apply", "--full"]);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let ch = support::clickhouse().await;
    ch.exec(&format!(
        "INSERT INTO default.synctool_run_locks (scope, holder, ticket, heartbeat, released) VALUES ('{digest}', '!intruder', 1, now() + 3600, 0)"
    ))
    .await;
    let o = run.wait_with_output().expect("wait for synctool");
    // A new client: the first one's connection went stale while the wait blocked.
    support::clickhouse().await.exec(&format!(
        "INSERT INTO default.synctool_run_locks (scope, holder, ticket, heartbeat, released) VALUES ('{digest}', '!intruder', 1, now() + 3600, 1)"
    ))
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the run lost the lock of its sink scope (run `!intruder` took it over)")
            && err.contains(&format!("sink table `{t}`")),
        "{err}"
    );
}

/// A ClickHouse run stopped by SIGINT gives its claim back before it exits (exit 130), so
/// that the next run, which the interrupt message tells the user to start, does not wait
/// for the claim to go stale (30 s).
#[tokio::test]
async fn clickhouse_run_lock_given_back_on_interrupt() {
    let (cfg, digest, _) = slow_run_config("ch", "cc_int").await;
    let run = spawn(&cfg, &["apply", "--full"]);
    // Until the run holds the lock (its claim has a ticket), then some more rows.
    assert_eq!(
        wait_live_claims(&digest, 1).await,
        1,
        "the run never took the lock"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    interrupt(&run);
    let o = run.wait_with_output().expect("wait for synctool");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted: pipeline `p`"), "{err}");
    assert_eq!(
        live_claims(&digest).await,
        0,
        "the interrupted run's claim is still live: the next run would wait for it"
    );
}

/// A ClickHouse run that waits for the lock and gives up (`--lock-timeout`) or is stopped
/// by SIGINT withdraws its claim: after the holder, the next run does not wait for the
/// dead claim to go stale (30 s).
#[tokio::test]
async fn clickhouse_waiting_run_withdraws_its_claim() {
    let (cfg, digest, _) = slow_run_config("ch", "cc_wait").await;
    let holder = spawn(&cfg, &["apply", "--full"]);
    assert_eq!(
        wait_live_claims(&digest, 1).await,
        1,
        "the first run never took the lock"
    );
    // Gives up after a second of waiting.
    let o = synctool(&cfg, &["apply", "--full", "--lock-timeout", "1"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        live_claims(&digest).await,
        1,
        "the run that gave up left its claim"
    );
    // Interrupted while it waits.
    let waiter = spawn(&cfg, &["apply", "--full"]);
    assert_eq!(
        wait_live_claims(&digest, 2).await,
        2,
        "the second run never claimed the lock"
    );
    interrupt(&waiter);
    let o = waiter.wait_with_output().expect("wait for synctool");
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        live_claims(&digest).await,
        1,
        "the interrupted waiter left its claim"
    );
    interrupt(&holder);
    let o = holder.wait_with_output().expect("wait for synctool");
    assert_eq!(o.status.code(), Some(130));
    assert_eq!(
        live_claims(&digest).await,
        0,
        "the interrupted holder left its claim"
    );
}

/// `apply --lock-timeout N` gives up on a pipeline whose sink scope another session has
/// held locked for N seconds: exit 1, an error naming the sink and the option, and nothing
/// written (the sink table is not even created); once the lock is free, the run goes
/// through.
#[tokio::test]
async fn apply_gives_up_after_lock_timeout() {
    let src = unique("cc_src");
    let t = unique("cc_busy");
    source(&src).await;
    let yaml = config("pg", &src, &t);
    let cfg = write_config(&yaml);
    let key = synctool::sql::pg_key(&scope_digest(&yaml));
    let holder = support::pg().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let o = synctool(&cfg, &["apply", "--lock-timeout", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("sink table `{t}`"))
            && err.contains("for more than 1 s (--lock-timeout); nothing was written"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let exists = support::pg_rows(
        &support::pg().await,
        "SELECT count(*)::text FROM pg_class WHERE relname = $1",
        &[&t],
    )
    .await;
    assert_eq!(exists, vec![vec![Some("0".to_string())]]);
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let o = synctool(&cfg, &["apply", "--lock-timeout", "1"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A PostgreSQL run whose lock session dies (terminated by an administrator, or its
/// connection lost) stops with an error naming the sink, before it ends: another run may
/// take the lock at once.
#[tokio::test]
async fn postgres_run_stops_when_its_lock_session_dies() {
    let (cfg, digest, t) = slow_run_config("pg", "cc_pglost").await;
    let key = synctool::sql::pg_key(&digest);
    let run = spawn(&cfg, &["apply", "--full"]);
    let c = support::pg().await;
    let holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid::bigint * 4294967296 + objid::bigint = $1";
    let mut pid: Option<i32> = None;
    for _ in 0..100 {
        if let Some(r) = c.query_opt(holder, &[&key]).await.unwrap() {
            pid = Some(r.get(0));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = pid.expect("the run takes its lock");
    c.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let o = run.wait_with_output().expect("wait for synctool");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the run lost the lock of its sink scope")
            && err.contains(&format!("sink table `{t}`")),
        "{err}"
    );
}

/// The same on MariaDB: the connection holding `GET_LOCK` killed, the run stops.
#[tokio::test]
async fn mariadb_run_stops_when_its_lock_session_dies() {
    use mysql_async::prelude::Queryable;
    let (cfg, digest, t) = slow_run_config("my", "cc_mylost").await;
    let name = synctool::sql::mysql_name(&digest);
    let run = spawn(&cfg, &["apply", "--full"]);
    let mut m = support::mysql().await;
    let mut id: Option<u64> = None;
    for _ in 0..100 {
        let r: Option<Option<u64>> = m
            .exec_first("SELECT IS_USED_LOCK(?)", (name.clone(),))
            .await
            .unwrap();
        if let Some(Some(i)) = r {
            id = Some(i);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = id.expect("the run takes its lock");
    support::mysql_exec(&mut m, &format!("KILL {id}")).await;
    let o = run.wait_with_output().expect("wait for synctool");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the run lost the lock of its sink scope")
            && err.contains(&format!("sink table `{t}`")),
        "{err}"
    );
}

/// The ClickHouse lock table does not grow without end: the run whose ticket is a multiple
/// of 100 deletes its scope's rows without a heartbeat for a day when it gives the lock
/// back (a mutation), and leaves younger rows and every other run alone.
#[tokio::test]
async fn clickhouse_lock_table_trims_old_claims() {
    let src = unique("cc_src");
    let t = unique("cc_trim");
    source(&src).await;
    let yaml = config("ch", &src, &t);
    let cfg = write_config(&yaml);
    let digest = scope_digest(&yaml);
    let ch = support::clickhouse().await;
    ch.exec(
        "CREATE TABLE IF NOT EXISTS default.synctool_run_locks (scope String, holder String, ticket UInt64, heartbeat DateTime, released UInt8) ENGINE = ReplacingMergeTree(heartbeat) ORDER BY (scope, holder, released)",
    )
    .await;
    ch.exec(&format!(
        "INSERT INTO default.synctool_run_locks (scope, holder, ticket, heartbeat, released) VALUES \
         ('{digest}', '!old', 98, now() - 2 * 86400, 0), ('{digest}', '!old', 98, now() - 2 * 86400, 1), \
         ('{digest}', '!recent', 97, now() - 3600, 1)"
    ))
    .await;
    // Ticket 99: nothing is deleted.
    let o = synctool(&cfg, &["apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after_first = lock_holders(&ch, &digest).await;
    assert_eq!(after_first.len(), 3, "{after_first:?}");
    assert!(after_first.contains(&"!old".to_string()), "{after_first:?}");
    // Ticket 100: the day-old claim goes, in the background.
    let o = synctool(&cfg, &["apply"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut left = Vec::new();
    for _ in 0..60 {
        left = lock_holders(&ch, &digest).await;
        if !left.contains(&"!old".to_string()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(
        left.len(),
        3,
        "the two runs and `!recent` should be left: {left:?}"
    );
    assert!(
        left.contains(&"!recent".to_string()) && !left.contains(&"!old".to_string()),
        "{left:?}"
    );
}

/// The holders with rows in the ClickHouse lock table for a scope.
async fn lock_holders(ch: &support::ClickHouse, digest: &str) -> Vec<String> {
    ch.rows(&format!(
        "SELECT holder FROM default.synctool_run_locks WHERE scope = '{digest}' GROUP BY holder ORDER BY holder"
    ))
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap_or_default())
    .collect()
}

/// A run that stopped (interrupted, killed) can leave its last insert running on the
/// ClickHouse server, its rows landing after the process ended. The next run into the
/// scope waits for every query of the scope's earlier runs (known by their `query_id`,
/// which starts with the run's name) before it touches the sink.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_run_waits_for_an_earlier_runs_queries_still_running() {
    let src = unique("cc_src");
    let t = unique("cc_inflight");
    source(&src).await;
    let yaml = config("ch", &src, &t);
    let cfg = write_config(&yaml);
    let digest = scope_digest(&yaml);
    let ch = support::clickhouse().await;
    ch.exec(
        "CREATE TABLE IF NOT EXISTS default.synctool_run_locks (scope String, holder String, ticket UInt64, heartbeat DateTime, released UInt8) ENGINE = ReplacingMergeTree(heartbeat) ORDER BY (scope, holder, released)",
    )
    .await;
    // An earlier run, `gone:1:2`, gave its claim back (an interrupt) while one of its
    // queries still runs.
    let earlier = format!("gone:{}:2", std::process::id());
    ch.exec(&format!(
        "INSERT INTO default.synctool_run_locks (scope, holder, ticket, heartbeat, released) VALUES \
         ('{digest}', '{earlier}#0', 1, now(), 0), ('{digest}', '{earlier}#0', 1, now(), 1)"
    ))
    .await;
    let query_id = format!("{earlier}/7");
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .post("http://127.0.0.1:8123/")
            .query(&[("query_id", query_id.as_str())])
            .body("SELECT sleep(3)")
            .send()
            .await
            .expect("ClickHouse")
            .text()
            .await
            .expect("ClickHouse")
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let o = synctool(&cfg, &["-v", "apply"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("held by 1 query of an earlier run, still running on the server"),
        "{err}"
    );
    assert!(
        slow.is_finished(),
        "the run ended before the earlier run's query"
    );
    slow.await.expect("the slow query");
}

/// Sends SIGINT to a running synctool.
fn interrupt(run: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
}

/// The live ClickHouse claims with a ticket of a scope (runs holding or waiting for its
/// lock), one holder per line.
fn live_claims_query(digest: &str) -> String {
    format!(
        "SELECT holder FROM default.synctool_run_locks WHERE scope = '{digest}' GROUP BY holder HAVING max(released) = 0 AND max(heartbeat) >= now() - 30 AND max(ticket) > 0"
    )
}

fn count_lines(out: &str) -> usize {
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

/// How many live claims the scope has (the query must succeed).
async fn live_claims(digest: &str) -> usize {
    count_lines(
        &support::clickhouse()
            .await
            .exec(&live_claims_query(digest))
            .await,
    )
}

/// Waits (at most 10 s) until the scope has `n` live claims (the lock table may not exist
/// yet); the last count.
async fn wait_live_claims(digest: &str, n: usize) -> usize {
    let ch = support::clickhouse().await;
    let mut got = 0;
    for _ in 0..100 {
        got = ch
            .try_exec(&live_claims_query(digest))
            .await
            .map(|r| count_lines(&r))
            .unwrap_or(0);
        if got == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    got
}
