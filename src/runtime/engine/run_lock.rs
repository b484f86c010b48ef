//! The run lock of a sink scope (the sink table and its `filters`): `apply` takes it before
//! it touches the sink and holds it to the end, so that two runs into one scope take turns
//! (their ClickHouse staging tables are the scope's, and ClickHouse has no transactions to
//! keep a delete of one run from meeting an insert of the other). The statements are the
//! generator's (`sink.lock*`, `sink.unlock`, `sink.stage_drop`).
//!
//! - PostgreSQL/MySQL: an advisory lock (`pg_try_advisory_lock`, `GET_LOCK`) on a session
//!   of its own, tried every second; while holding, the session is asked every few seconds
//!   whether it still holds the lock ([`RuntimeError::LockLost`] when the session died).
//! - ClickHouse: a ticket in `synctool_run_locks` (Lamport's bakery, see
//!   [`crate::sql::lock`]), with a heartbeat every few seconds; the live claim with the
//!   smallest ticket holds, once no other run is choosing its ticket. A claim whose
//!   heartbeat is older than [`crate::sql::STALE_SECS`] is taken over, and its run, unable
//!   to beat for that long or finding its claim no longer live, stops with
//!   [`RuntimeError::LockLost`].
//!
//! A waiting run waits as long as the holder runs (a full sync may take hours), logging at
//! info level that it waits and who holds the lock, when it starts waiting and every
//! [`REPORT_EVERY`] after.
//!
//! The lock's task also drops the scope's staging tables (`sink.stage_drop`) before it
//! gives the lock back, when the run ends or its future is dropped (an interrupt).

use super::sink::connect;
use super::steps::{Binds, Prepared, Steps};
use crate::config::raw::RawConfig;
use crate::expr::Value;
use crate::ir::Pipeline;
use crate::runtime::connect::Conn;
use crate::runtime::RuntimeError;
use crate::sql::{self, DialectKind};
use crate::types::Dtype;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How often a waiting PostgreSQL/MySQL run tries the lock again.
const RETRY: Duration = Duration::from_secs(1);
/// How often a waiting ClickHouse run beats and looks again.
const CH_RETRY: Duration = Duration::from_secs(2);
/// How soon a ClickHouse run looks again when only runs choosing their tickets (a few
/// milliseconds' work) are in its way.
const CH_CHOOSING_RETRY: Duration = Duration::from_millis(100);
/// How often the holder beats (ClickHouse) or checks its session (PostgreSQL, MySQL).
const BEAT: Duration = Duration::from_secs(5);
/// How often a waiting run says again that it waits.
const REPORT_EVERY: Duration = Duration::from_secs(30);
/// How long [`RunLock::release`] waits for the staging tables to be dropped and the lock
/// given back.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A held run lock; its task beats and watches it until [`RunLock::release`].
///
/// Dropped without [`RunLock::release`] (the run's future dropped by an interrupt), it
/// tells its task to give the lock back and leaves the task in [`DROPPED`], for
/// [`settle_dropped`] to wait for before the process exits: the runtime's shutdown
/// cancels its tasks, and a ClickHouse claim never given back makes the next run wait
/// [`crate::sql::STALE_SECS`] for it.
pub struct RunLock {
    stop: Option<oneshot::Sender<()>>,
    lost: oneshot::Receiver<RuntimeError>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The tasks of run locks dropped without [`RunLock::release`], still giving their lock
/// back.
static DROPPED: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

impl Drop for RunLock {
    fn drop(&mut self) {
        // Dropping the sender tells the task to stop, which drops the staging tables and
        // gives the lock back.
        if self.stop.take().is_some() {
            if let Some(task) = self.task.take() {
                if let Ok(mut dropped) = DROPPED.lock() {
                    dropped.push(task);
                }
            }
        }
    }
}

/// Waits, at most `grace`, for the run locks dropped by an interrupt to be given back
/// (their ClickHouse staging tables dropped and claims released; a PostgreSQL or MySQL
/// lock goes with its session anyway).
pub async fn settle_dropped(grace: Duration) {
    let tasks = match DROPPED.lock() {
        Ok(mut dropped) => std::mem::take(&mut *dropped),
        Err(_) => return,
    };
    let deadline = tokio::time::Instant::now() + grace;
    for task in tasks {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::warn!(
                "giving the run lock back took too long; another run may wait for it to go stale"
            );
            return;
        }
    }
}

/// The lock steps and values of one pipeline, owned by the lock's task.
struct Lock {
    store: String,
    table: String,
    dialect: DialectKind,
    /// The values of the lock parameters.
    binds: Binds,
    holder: String,
    /// How long to wait for a lock another run holds (`apply --lock-timeout`).
    timeout: Option<Duration>,
    steps: Vec<(String, Prepared)>,
    /// ClickHouse: the ticket the run held the lock with (0 before, and on other dialects).
    ticket: i64,
}

impl Lock {
    fn step(&self, id: &str) -> Result<&Prepared, RuntimeError> {
        self.steps
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, p)| p)
            .ok_or_else(|| {
                RuntimeError::Config(format!("the SQL generator produced no step `{id}`"))
            })
    }

    async fn query(
        &self,
        conn: &mut Conn,
        id: &str,
        extra: &[(&str, Value)],
        out: &[Dtype],
    ) -> Result<Vec<crate::runtime::Row>, RuntimeError> {
        let step = self.step(id)?;
        let vals = step.values(&self.binds, extra)?;
        conn.query(step.stmt(0), &vals, out).await
    }

    async fn execute(
        &self,
        conn: &mut Conn,
        id: &str,
        extra: &[(&str, Value)],
    ) -> Result<(), RuntimeError> {
        let step = self.step(id)?;
        let vals = step.values(&self.binds, extra)?;
        for i in 0..step.sql.len() {
            conn.execute(step.stmt(i), &vals).await?;
        }
        Ok(())
    }

    fn lost(&self, message: String) -> RuntimeError {
        RuntimeError::LockLost {
            store: self.store.clone(),
            table: self.table.clone(),
            message,
        }
    }

    /// PostgreSQL/MySQL: the sessions holding the lock and this session's id
    /// (`sink.lock_holder`).
    async fn holders(&self, conn: &mut Conn) -> Result<(Vec<i64>, i64), RuntimeError> {
        let rows = self
            .query(conn, "sink.lock_holder", &[], &[Dtype::Int, Dtype::Int])
            .await?;
        let mut me = 0;
        let mut held = Vec::new();
        for r in rows {
            if let Some(Value::Int(s)) = r.get(1) {
                me = *s;
            }
            if let Some(Value::Int(h)) = r.first() {
                held.push(*h);
            }
        }
        Ok((held, me))
    }

    /// ClickHouse: how many queries of the scope's other runs the server still runs
    /// (`sink.lock_inflight`).
    async fn inflight(&self, conn: &mut Conn) -> Result<i64, RuntimeError> {
        let rows = self
            .query(conn, "sink.lock_inflight", &[], &[Dtype::Int])
            .await?;
        Ok(match rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => *n,
            _ => 0,
        })
    }

    /// ClickHouse: the live claims and their tickets (0 while choosing), smallest ticket
    /// first (`sink.lock_state`).
    async fn claims(&self, conn: &mut Conn) -> Result<Vec<(String, i64)>, RuntimeError> {
        let rows = self
            .query(conn, "sink.lock_state", &[], &[Dtype::Str, Dtype::Int])
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match (r.first(), r.get(1)) {
                (Some(Value::Str(h)), Some(Value::Int(t))) => Some((h.to_string(), *t)),
                _ => None,
            })
            .collect())
    }

    async fn beat(&self, conn: &mut Conn, released: bool) -> Result<(), RuntimeError> {
        self.execute(
            conn,
            "sink.lock_beat",
            &[(sql::P_RELEASED, Value::Int(released as i64))],
        )
        .await
    }

    /// Takes the lock, waiting while another run holds it; the ClickHouse ticket it holds
    /// the lock with (0 on other dialects).
    async fn take(&self, conn: &mut Conn) -> Result<i64, RuntimeError> {
        let mut said: Option<Instant> = None;
        let started = Instant::now();
        let mut ticket = 0;
        let mut say = |holder: &str| -> Result<(), RuntimeError> {
            if let Some(t) = self.timeout.filter(|t| started.elapsed() >= *t) {
                return Err(RuntimeError::LockTimeout {
                    store: self.store.clone(),
                    table: self.table.clone(),
                    holder: holder.to_string(),
                    seconds: t.as_secs(),
                });
            }
            if said.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                tracing::info!(
                    datastore = %self.store,
                    table = %self.table,
                    "waiting for the run lock of the sink table's scope, held by {holder}: another run writes into it"
                );
                said = Some(Instant::now());
            }
            Ok(())
        };
        if self.dialect == DialectKind::Clickhouse {
            self.execute(conn, "sink.lock_table", &[]).await?;
            self.execute(conn, "sink.lock_claim", &[]).await?;
            self.execute(conn, "sink.lock_ticket", &[]).await?;
            loop {
                let claims = self.claims(conn).await?;
                let pause = match bakery_turn(&claims, &self.holder) {
                    Turn::Mine => {
                        // A run that stopped (interrupted, killed) may have left its last
                        // insert running on the server: its rows land after it ended.
                        let running = self.inflight(conn).await?;
                        if running == 0 {
                            ticket = claims
                                .iter()
                                .find(|(h, _)| *h == self.holder)
                                .map_or(0, |(_, t)| *t);
                            break;
                        }
                        say(&format!(
                            "{running} quer{} of an earlier run, still running on the server",
                            if running == 1 { "y" } else { "ies" }
                        ))?;
                        CH_CHOOSING_RETRY
                    }
                    Turn::Choosing => CH_CHOOSING_RETRY,
                    Turn::After(first) => {
                        say(&format!("run `{first}`"))?;
                        CH_RETRY
                    }
                    // Our own claim is not live: its heartbeats failed for too long. (Claiming
                    // again under the same name would show its old, smaller ticket.)
                    Turn::Gone => {
                        return Err(self.lost(format!(
                            "its claim got no heartbeat for {} s while it waited",
                            sql::STALE_SECS
                        )))
                    }
                };
                tokio::time::sleep(pause).await;
                self.beat(conn, false).await?;
            }
        } else {
            loop {
                let out = match self.dialect {
                    DialectKind::Postgres => Dtype::Bool,
                    _ => Dtype::Int,
                };
                let rows = self.query(conn, "sink.lock", &[], &[out]).await?;
                let taken = matches!(
                    rows.first().and_then(|r| r.first()),
                    Some(Value::Bool(true)) | Some(Value::Int(1))
                );
                if taken {
                    break;
                }
                let who = match self.holders(conn).await {
                    Ok((held, _)) if !held.is_empty() => format!("session {}", held[0]),
                    _ => "another session".to_string(),
                };
                say(&who)?;
                tokio::time::sleep(RETRY).await;
            }
        }
        tracing::debug!(datastore = %self.store, table = %self.table, holder = %self.holder, ticket, "run lock taken");
        Ok(ticket)
    }

    /// One check while holding: `Err` with what happened when the lock is lost.
    async fn check(&self, conn: &mut Conn, last_beat: &mut Instant) -> Result<(), String> {
        if self.dialect == DialectKind::Clickhouse {
            let stale = Duration::from_secs(sql::STALE_SECS as u64 - 5);
            if last_beat.elapsed() >= stale {
                return Err(format!(
                    "no heartbeat reached the lock table for {}s, so another run may have taken the lock over",
                    last_beat.elapsed().as_secs()
                ));
            }
            let before = Instant::now();
            if let Err(e) = self.beat(conn, false).await {
                tracing::warn!(datastore = %self.store, error = %e, "run lock heartbeat failed; trying again");
                return Ok(());
            }
            *last_beat = before;
            match self.claims(conn).await {
                Ok(claims) => match bakery_turn(&claims, &self.holder) {
                    Turn::Mine | Turn::Choosing => Ok(()),
                    Turn::After(first) => Err(format!("run `{first}` took it over")),
                    Turn::Gone => Err("the claim is no longer live".to_string()),
                },
                Err(e) => {
                    tracing::warn!(datastore = %self.store, error = %e, "reading the run lock failed; trying again");
                    Ok(())
                }
            }
        } else {
            match self.holders(conn).await {
                Ok((held, me)) if held.contains(&me) => Ok(()),
                Ok(_) => Err("its session no longer holds it".to_string()),
                Err(e) => Err(format!("the lock's session failed: {e}")),
            }
        }
    }

    /// Withdraws the claim of a run that did not take the lock (ClickHouse; a PostgreSQL or
    /// MySQL run holds nothing then). The staging tables are left alone: they are the
    /// holder's. A failure is logged: the claim then goes stale.
    async fn withdraw(&self, conn: &mut Conn) {
        if self.dialect == DialectKind::Clickhouse {
            if let Err(e) = self.beat(conn, true).await {
                tracing::warn!(datastore = %self.store, error = %e, "could not withdraw the run lock claim");
            }
        }
    }

    /// Drops the staging tables and gives the lock back (a failure is logged: the lock
    /// goes with the session, or its ClickHouse claim goes stale).
    async fn finish(&self, conn: &mut Conn) {
        if self.steps.iter().any(|(i, _)| i == "sink.stage_drop") {
            // ClickHouse only, over HTTP: the lock's connection serves as well as any.
            if let Err(e) = self.execute(conn, "sink.stage_drop", &[]).await {
                tracing::warn!(datastore = %self.store, error = %e, "could not drop the staging tables");
            }
        }
        let r = if self.dialect == DialectKind::Clickhouse {
            self.beat(conn, true).await
        } else {
            let out = match self.dialect {
                DialectKind::Postgres => Dtype::Bool,
                _ => Dtype::Int,
            };
            self.query(conn, "sink.unlock", &[], &[out])
                .await
                .map(|_| ())
        };
        if let Err(e) = r {
            tracing::warn!(datastore = %self.store, error = %e, "could not give the run lock back");
            return;
        }
        if self.ticket > 0 && self.ticket % sql::TRIM_EVERY == 0 {
            // The scope's old claims, which ClickHouse 18.16 cannot expire by itself.
            if let Err(e) = self.execute(conn, "sink.lock_trim", &[]).await {
                tracing::warn!(datastore = %self.store, error = %e, "could not delete old rows of the run lock table");
            }
        }
    }
}

/// Takes the run lock of `p`'s sink scope, waiting while another run holds it; `None` for
/// a sink that is not a database.
pub async fn acquire(
    p: &Pipeline,
    cfg: &RawConfig,
    steps: &Steps,
    timeout: Option<Duration>,
) -> Result<Option<RunLock>, RuntimeError> {
    let Some(dialect) = p.sink.store.kind.dialect() else {
        return Ok(None);
    };
    let ids = [
        "sink.lock",
        "sink.lock_holder",
        "sink.unlock",
        "sink.lock_table",
        "sink.lock_claim",
        "sink.lock_ticket",
        "sink.lock_beat",
        "sink.lock_state",
        "sink.lock_inflight",
        "sink.lock_trim",
        "sink.stage_drop",
    ];
    let digest = p.sink.scope_digest();
    let holder = holder_name();
    let mut binds = Binds::default();
    binds.set(false, sql::P_KEY, Value::Int(sql::pg_key(&digest)));
    binds.set(false, sql::P_NAME, Value::Str(sql::mysql_name(&digest)));
    binds.set(false, sql::P_SCOPE, Value::Str(digest));
    binds.set(false, sql::P_HOLDER, Value::Str(holder.clone()));
    binds.set(
        false,
        sql::P_RUN,
        Value::Str(crate::runtime::run_id().to_string()),
    );
    let mut lock = Lock {
        store: p.sink.store.name.clone(),
        table: p.sink.table.name.clone(),
        dialect,
        binds,
        holder,
        timeout,
        steps: ids
            .iter()
            .filter_map(|id| steps.get(id).map(|s| (id.to_string(), s.clone())))
            .collect(),
        ticket: 0,
    };
    let mut conn = connect(cfg, &p.sink.store.name).await?;
    let (store, table) = (lock.store.clone(), lock.table.clone());
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let (lost_tx, lost_rx) = oneshot::channel::<RuntimeError>();
    let (taken_tx, taken_rx) = oneshot::channel::<Result<(), RuntimeError>>();
    let task = tokio::spawn(async move {
        // While it waits, an interrupt (the stop sender dropped) or a failure (a lock
        // timeout) withdraws the claim, so that no run waits for it to go stale.
        let taken = tokio::select! {
            r = lock.take(&mut conn) => Some(r),
            _ = &mut stop_rx => None,
        };
        match taken {
            Some(Ok(ticket)) => {
                lock.ticket = ticket;
                // Nobody waiting (the run was interrupted as the lock came): the stop
                // sender is gone too, and the loop below gives the lock back at once.
                let _ = taken_tx.send(Ok(()));
            }
            Some(Err(e)) => {
                lock.withdraw(&mut conn).await;
                let _ = taken_tx.send(Err(e));
                return;
            }
            None => {
                lock.withdraw(&mut conn).await;
                return;
            }
        }
        let mut last_beat = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tokio::time::sleep(BEAT) => {}
            }
            if let Err(m) = lock.check(&mut conn, &mut last_beat).await {
                tracing::error!(datastore = %lock.store, table = %lock.table, "run lock lost: {m}");
                let _ = lost_tx.send(lock.lost(m));
                return;
            }
        }
        lock.finish(&mut conn).await;
    });
    // Dropped while waiting (an interrupt), this hands the task to [`settle_dropped`].
    let mut held = RunLock {
        stop: Some(stop_tx),
        lost: lost_rx,
        task: Some(task),
    };
    match taken_rx.await {
        Ok(Ok(())) => Ok(Some(held)),
        Ok(Err(e)) => {
            // The task has withdrawn the claim and ended.
            held.stop = None;
            Err(e)
        }
        Err(_) => {
            held.stop = None;
            Err(RuntimeError::LockLost {
                store,
                table,
                message: "the lock's task ended before it took the lock".to_string(),
            })
        }
    }
}

impl RunLock {
    /// Resolves when the lock is lost (never, while it is held).
    pub async fn lost(&mut self) -> RuntimeError {
        match (&mut self.lost).await {
            Ok(e) => e,
            Err(_) => std::future::pending().await,
        }
    }

    /// Drops the scope's staging tables and gives the lock back (unless it was lost),
    /// waiting at most [`RELEASE_WAIT`].
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.as_mut() {
            if tokio::time::timeout(RELEASE_WAIT, task).await.is_err() {
                tracing::warn!("giving the run lock back took too long; it goes with the session");
            }
        }
    }
}

/// Where a ClickHouse run stands among the live claims of its scope.
#[derive(Debug, PartialEq)]
enum Turn {
    /// Its ticket is the smallest, and no run is choosing one: it holds the lock.
    Mine,
    /// Another run is choosing its ticket, which may come out smaller (its claim row was
    /// not yet visible when this run took its ticket).
    Choosing,
    /// This run (holder) comes first, and holds the lock.
    After(String),
    /// This run's claim is not live (no heartbeat for too long).
    Gone,
}

/// The bakery's rule: a run holds the lock when no other live claim is choosing (ticket 0)
/// and none has a smaller (ticket, holder).
fn bakery_turn(claims: &[(String, i64)], me: &str) -> Turn {
    let Some(mine) = claims.iter().find(|(h, t)| h == me && *t > 0) else {
        return Turn::Gone;
    };
    let mine = (mine.1, me);
    let mut choosing = false;
    for (h, t) in claims.iter().filter(|(h, _)| h != me) {
        if *t == 0 {
            choosing = true;
        } else if (*t, h.as_str()) < mine {
            return Turn::After(h.clone());
        }
    }
    if choosing {
        Turn::Choosing
    } else {
        Turn::Mine
    }
}

/// This run's name in the ClickHouse lock table: the process's [`crate::runtime::run_id`]
/// (host, process id and start time, so that a waiting run can say who holds the lock),
/// `#` and a sequence number (each pipeline of the process claims under a name of its own).
fn holder_name() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}#{}",
        crate::runtime::run_id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(h: &str, t: i64) -> (String, i64) {
        (h.to_string(), t)
    }

    #[test]
    fn the_smallest_ticket_holds_once_nobody_is_choosing() {
        assert_eq!(bakery_turn(&[c("a", 3)], "a"), Turn::Mine);
        assert_eq!(bakery_turn(&[c("a", 3), c("b", 4)], "a"), Turn::Mine);
        assert_eq!(
            bakery_turn(&[c("a", 3), c("b", 4)], "b"),
            Turn::After("a".into())
        );
        // Equal tickets (two runs that saw the same largest one): the holder name decides.
        assert_eq!(bakery_turn(&[c("a", 4), c("b", 4)], "a"), Turn::Mine);
        assert_eq!(
            bakery_turn(&[c("a", 4), c("b", 4)], "b"),
            Turn::After("a".into())
        );
        // Someone choosing may still take a smaller ticket than ours.
        assert_eq!(bakery_turn(&[c("a", 3), c("b", 0)], "a"), Turn::Choosing);
        // Our own claim still choosing, or gone stale.
        assert_eq!(bakery_turn(&[c("a", 0), c("b", 0)], "a"), Turn::Gone);
        assert_eq!(bakery_turn(&[c("b", 2)], "a"), Turn::Gone);
    }
}
