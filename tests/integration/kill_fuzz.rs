//! SPEC §6 under random kills: for each sink dialect and merge strategy (`allow_delete:
//! true`), `synctool apply` runs as a child process and is SIGKILLed after a pseudo-random
//! delay drawn from a fixed seed (printed, and overridden by `KILL_FUZZ_SEED=<u64>` to
//! explore or to reproduce a failure), spread over the duration of an unkilled run of the
//! same kind. Then `apply` runs again without a kill, and the sink must hold exactly the
//! source rows (both read directly, a collapse sink through its live rows), `plan
//! --exit-code` must find nothing and another `apply` must write nothing. Kills land in a
//! full sync into a sink table that does not exist yet, in full syncs (`apply --full`) over
//! an existing sink after random source changes, and in hash reconciliations (`apply -r r`)
//! after random source changes. The source is a PostgreSQL table. A killed run cannot give
//! its ClickHouse run-lock claim back, so the test releases it before the rerun instead of
//! waiting the 30 s until it goes stale.

use crate::support::rng::{self, Rng};
use crate::support::{self, assert_same, drop_table, live_rows_from, n, run_json, sink_read};
use crate::support::{dbs, tsv_value, write_config, Db, Dbs, Read, Row};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Source rows at the start.
const ROWS: i64 = 10_000;
/// Full-sync rounds killed over an existing sink, and reconciliation rounds killed.
/// ClickHouse `delete_insert` runs fewer: each of its runs over an existing sink waits for
/// `ALTER TABLE … DELETE` mutations, several seconds on 18.16.
fn rounds(sink: Db, merge: &str) -> (usize, usize) {
    if (sink, merge) == (Db::Ch, "delete_insert") {
        (1, 2)
    } else {
        (2, 3)
    }
}

struct KillFuzz {
    what: String,
    sink: Db,
    merge: &'static str,
    rng: Rng,
    src_table: String,
    sink_table: String,
    cfg: std::path::PathBuf,
    /// The next fresh key for inserts above the initial range.
    next_id: i64,
}

impl KillFuzz {
    fn new(sink: Db, merge: &'static str) -> KillFuzz {
        let name = format!("{}_{merge}", sink.store());
        let seed = rng::seed(
            "KILL_FUZZ_SEED",
            rng::name_seed(0x4B11_F022, &name),
            &format!("kill_fuzz {name}"),
        );
        let src_table = support::unique(&format!("kfz_{name}_s"));
        let sink_table = support::unique(&format!("kfz_{name}_k"));
        let rest = format!(
            r#"      batch_size: 200
      fields:
        - {{column: id, dtype: int}}
        - {{column: s, dtype: str}}
        - {{column: n, dtype: int}}
        - {{column: ts, dtype: datetime}}
    sink:
      datastore: SINK_STORE
      table: SINK_TABLE
      batch_size: 200
      merge_strategy: {{strategy: {merge}, allow_delete: true}}
      unique_key: [id]
      fields:
        - {{column: id, source_column: id}}
        - {{column: s, source_column: s}}
        - {{column: n, source_column: n}}
        - {{column: ts, source_column: ts}}
    reconciliation:
      - name: r
        strategy: md5sum_hash
        partition_column: id
        partition_column_type: int
        initial_partition_interval: 4096
        max_block_size: 256
        interval_reduction_factor: 4
"#
        );
        let cfg = write_config(&support::edge_config(
            "pg",
            &src_table,
            sink.store(),
            &sink_table,
            &rest,
        ));
        KillFuzz {
            what: format!("kill_fuzz {name} (seed {seed})"),
            sink,
            merge,
            rng: Rng::new(seed),
            src_table,
            sink_table,
            cfg,
            next_id: ROWS + 1,
        }
    }

    /// The source: `id`, text `s` (NULL now and then), `n`, `ts` in whole seconds (a
    /// ClickHouse `DateTime` keeps no fraction).
    async fn create_source(&self, dbs: &mut Dbs) {
        let t = &self.src_table;
        dbs.pg
            .batch_execute(&format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, s text, n bigint, ts timestamptz);
                 INSERT INTO {t} SELECT g, CASE WHEN g % 17 = 0 THEN NULL ELSE 'row ' || g || ' ✓' END,
                   g * 3, TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 minute'
                   FROM generate_series(1, {ROWS}) g;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: create the source: {e:?}", self.what));
    }

    /// Random updates, deletes and inserts on the source; returns what they were.
    async fn change_source(&mut self, dbs: &mut Dbs, round: usize) -> String {
        let t = self.src_table.clone();
        let um = self.rng.range(2, 9);
        let ur = self.rng.range(0, um - 1);
        let dm = self.rng.range(5, 40);
        let dr = self.rng.range(0, dm - 1);
        let ins = self.rng.range(0, 1500);
        let lo = self.next_id;
        self.next_id += ins;
        // Also fill some of the holes earlier deletes left.
        let refill_lo = self.rng.range(1, ROWS);
        let refill_hi = refill_lo + self.rng.range(0, 300);
        let sql = format!(
            "UPDATE {t} SET s = CASE WHEN id % 11 = {round} THEN NULL ELSE 'r{round} ' || id END, \
               n = n + {round} + 1, ts = ts + INTERVAL '1 second' WHERE id % {um} = {ur};
             DELETE FROM {t} WHERE id % {dm} = {dr};
             INSERT INTO {t} SELECT g, 'new ' || g, -g, TIMESTAMPTZ '2025-06-01 00:00:00+00' + g * INTERVAL '1 second'
               FROM generate_series({lo}, {hi}) g;
             INSERT INTO {t} SELECT g, 'back ' || g, g, TIMESTAMPTZ '2023-06-01 12:00:00+00'
               FROM generate_series({refill_lo}, {refill_hi}) g ON CONFLICT (id) DO NOTHING;",
            hi = lo + ins - 1,
        );
        dbs.pg
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{}: change the source: {e:?}\n{sql}", self.what));
        format!(
            "update id % {um} = {ur}, delete id % {dm} = {dr}, insert {lo}..{}, refill \
             {refill_lo}..={refill_hi}",
            lo + ins - 1
        )
    }

    /// `(id, s, n, ts)` of every live row of `table` on `db`, sorted.
    async fn read(&self, dbs: &mut Dbs, db: Db, table: &str, how: Read) -> Vec<Row> {
        let from = live_rows_from(db, table, "id, s, n, ts", how);
        let mut rows = match db {
            Db::Pg => {
                support::pg_rows(
                    &dbs.pg,
                    &format!(
                        "SELECT id::text, s, n::text, \
                         to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM {from}"
                    ),
                    &[],
                )
                .await
            }
            Db::My => {
                support::mysql_rows(
                    &mut dbs.my,
                    &format!(
                        "SELECT CAST(id AS CHAR), s, CAST(n AS CHAR), \
                         DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s') FROM {from}"
                    ),
                    mysql_async::Params::Empty,
                )
                .await
            }
            Db::Ch => dbs
                .ch
                .exec(&format!(
                    "SELECT toString(id), s, toString(n), toString(ts, 'UTC') FROM {from} \
                     FORMAT TabSeparated"
                ))
                .await
                .lines()
                .map(|l| l.split('\t').map(tsv_value).collect())
                .collect(),
        };
        rows.sort();
        rows
    }

    /// Starts `synctool apply args…`, SIGKILLs it after `delay` (unless it ended first);
    /// returns the killed process's id, `None` when it ended before the kill.
    fn kill_after(&self, args: &[&str], delay: Duration) -> Option<u32> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_synctool"))
            .arg("-c")
            .arg(&self.cfg)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run synctool");
        let pid = child.id();
        let started = Instant::now();
        while started.elapsed() < delay {
            if child.try_wait().expect("poll synctool").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let ended = child.try_wait().expect("poll synctool");
        if ended.is_none() {
            child.kill().expect("SIGKILL synctool");
        }
        let out = child.wait_with_output().expect("wait for synctool");
        if ended.is_some() {
            assert!(
                out.status.success(),
                "{}: synctool {args:?} ended before the kill and failed: {}",
                self.what,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ended.is_none().then_some(pid)
    }

    /// Gives back the ClickHouse run-lock claims of the killed process `pid`, as its own
    /// release would have: a rerun would otherwise wait 30 s for the claim to go stale (a
    /// wait `matrix::killed_apply_into_clickhouse_converges_on_rerun` goes through).
    async fn release_claims(&self, dbs: &mut Dbs, pid: u32) {
        if self.sink != Db::Ch {
            return;
        }
        let released = dbs
            .ch
            .try_exec(&format!(
                "INSERT INTO default.synctool_run_locks (scope, holder, ticket, heartbeat, released) \
                 SELECT scope, holder, max(ticket), now(), 1 FROM default.synctool_run_locks \
                 WHERE holder LIKE '%:{pid}:%' GROUP BY scope, holder"
            ))
            .await;
        // Killed before it made the lock table: there is no claim.
        if let Err(e) = released {
            assert!(
                e.contains("doesn't exist"),
                "{}: release the claims: {e}",
                self.what
            );
        }
    }

    /// Runs `args` unkilled; returns the report and how long it took.
    fn run(&self, args: &[&str], what: &str) -> (serde_json::Value, Duration) {
        let started = Instant::now();
        let r = run_json(&self.cfg, args, 0, what);
        (r, started.elapsed())
    }

    /// The sink holds exactly the source rows, `plan --exit-code` finds nothing and
    /// another `apply` writes nothing.
    async fn check(&self, dbs: &mut Dbs, what: &str) {
        let source = self.read(dbs, Db::Pg, &self.src_table, Read::Plain).await;
        let how = sink_read(self.sink, self.merge);
        let got = self.read(dbs, self.sink, &self.sink_table, how).await;
        assert_same(&format!("{what}: the sink after the rerun"), &got, &source);
        let r = run_json(&self.cfg, &["plan", "--exit-code", "-r", "r"], 0, what);
        assert_eq!(
            (n(&r, "rows_written"), n(&r, "rows_deleted")),
            (0, 0),
            "{what}: plan after the rerun: {r}"
        );
        let r = run_json(&self.cfg, &["apply", "-r", "r"], 0, what);
        assert_eq!(
            (n(&r, "rows_written"), n(&r, "rows_deleted")),
            (0, 0),
            "{what}: another apply after the rerun: {r}"
        );
    }

    /// A delay in `0..=span`, in milliseconds drawn from the seed.
    fn delay(&mut self, span: Duration) -> Duration {
        Duration::from_millis(self.rng.range(0, span.as_millis().max(1) as i64) as u64)
    }

    /// Kills `apply args…` after a random delay within `span`, reruns it and checks.
    async fn kill_round(&mut self, dbs: &mut Dbs, args: &[&str], span: Duration, what: &str) {
        let delay = self.delay(span);
        let killed = self.kill_after(args, delay);
        if let Some(pid) = killed {
            self.release_claims(dbs, pid).await;
        }
        let what = format!(
            "{what}, {args:?} {} after {} ms",
            if killed.is_some() {
                "killed"
            } else {
                "not killed (ended)"
            },
            delay.as_millis()
        );
        eprintln!("{what}");
        let (r, took) = self.run(args, &what);
        eprintln!("{what}: rerun in {} ms: {r}", took.as_millis());
        self.check(dbs, &what).await;
    }
}

async fn kill_fuzz(sink: Db, merge: &'static str) {
    let started = Instant::now();
    let mut dbs = dbs().await;
    let mut f = KillFuzz::new(sink, merge);
    f.create_source(&mut dbs).await;
    let what = f.what.clone();

    // How long an unkilled full sync into a new sink takes, measured on a scratch sink.
    let full_new = {
        let scratch = support::unique(&format!("kfz_{}_m", sink.store()));
        let text = std::fs::read_to_string(&f.cfg)
            .expect("config")
            .replace(&f.sink_table, &scratch);
        let t = Instant::now();
        run_json(
            &write_config(&text),
            &["apply", "--full"],
            0,
            &format!("{what}, measure"),
        );
        let took = t.elapsed();
        drop_table(&mut dbs, sink, &scratch).await;
        took
    };
    eprintln!(
        "{what}: an unkilled full sync takes {} ms",
        full_new.as_millis()
    );

    // A full sync into a sink table that does not exist yet.
    f.kill_round(
        &mut dbs,
        &["apply", "--full"],
        full_new,
        &format!("{what}, new sink"),
    )
    .await;

    let (full_rounds, recon_rounds) = rounds(sink, merge);
    // Full syncs over the existing sink after source changes.
    let (_, full_span) = f.run(
        &["apply", "--full"],
        &format!("{what}, measure a full sync"),
    );
    for round in 0..full_rounds {
        let change = f.change_source(&mut dbs, round).await;
        let w = format!("{what}, full round {round} ({change})");
        f.kill_round(&mut dbs, &["apply", "--full"], full_span, &w)
            .await;
    }

    // Hash reconciliations after source changes: the first one unkilled, to measure.
    let change = f.change_source(&mut dbs, full_rounds).await;
    let w = format!("{what}, measure a reconciliation ({change})");
    let (_, recon_span) = f.run(&["apply", "-r", "r"], &w);
    f.check(&mut dbs, &w).await;
    for round in 0..recon_rounds {
        let round = full_rounds + 1 + round;
        let change = f.change_source(&mut dbs, round).await;
        let w = format!("{what}, reconciliation round {round} ({change})");
        f.kill_round(&mut dbs, &["apply", "-r", "r"], recon_span, &w)
            .await;
    }

    drop_table(&mut dbs, Db::Pg, &f.src_table.clone()).await;
    drop_table(&mut dbs, sink, &f.sink_table.clone()).await;
    eprintln!("{what}: done in {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_postgres_upsert() {
    kill_fuzz(Db::Pg, "upsert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_postgres_delete_insert() {
    kill_fuzz(Db::Pg, "delete_insert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_postgres_collapse() {
    kill_fuzz(Db::Pg, "collapse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_mariadb_upsert() {
    kill_fuzz(Db::My, "upsert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_mariadb_delete_insert() {
    kill_fuzz(Db::My, "delete_insert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_mariadb_collapse() {
    kill_fuzz(Db::My, "collapse").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_clickhouse_upsert() {
    kill_fuzz(Db::Ch, "upsert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_clickhouse_delete_insert() {
    kill_fuzz(Db::Ch, "delete_insert").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_fuzz_clickhouse_collapse() {
    kill_fuzz(Db::Ch, "collapse").await;
}
