//! Enrichment (SPEC §5): per batch, after extract, each enrichment of the pipeline runs in
//! config order over the batch's rows:
//!
//! 1. its lookup template (Redis key, or HTTP path and query parameters) is rendered per row
//!    with the row context — source aliases plus the outputs of earlier enrichments;
//! 2. the batch's *distinct* lookups are sent: Redis as one pipeline of `GET`s (one round
//!    trip per batch), HTTP as `GET` requests with bounded concurrency, a timeout and
//!    retries with exponential backoff (see [`http`]);
//! 3. the looked-up value `v` — [`Value::Str`] for Redis ([`Value::Null`] for a missing
//!    key), [`Value::Json`] for HTTP (a body that is not JSON stays [`Value::Str`]) — goes
//!    through the enrichment's `output` expression, giving its output fields, which are
//!    added to the row under their names;
//! 4. a failure for a row (template, lookup or output expression) follows `on_error`:
//!    `fail` stops with [`RuntimeError::Enrichment`] for the first failing row — the rows
//!    after one whose request cannot be rendered are not looked up, and the first HTTP
//!    lookup that fails for good cancels the batch's others —, `null` gives NULL outputs,
//!    `skip` drops the row. The rows `null` and `skip` handled are counted over the run
//!    ([`OnErrorTally`]), once per row however many of its enrichments failed, for one
//!    warning at its end.
//!
//! A row `null` handled because its *lookup* failed (the store could not be reached, timed
//! out, or answered with an error: an HTTP status other than 2xx, a Redis error reply or a
//! value that is not UTF-8) is flagged in [`EnrichReport::lookup_failed`]: its NULL
//! outputs say nothing about the store's data, so the engine stores a row hash that
//! matches no source row for it, and the next reconciliation looks it up again. A lookup
//! that found nothing (a missing Redis key, a JSON `null`, a field the output expression
//! does not find) is not a failure, and neither are a request that cannot be rendered
//! or an output expression that fails on the value it got: those give the same result on
//! every run.

pub mod http;
pub mod redis;

use super::transform::row_key;
use super::RuntimeError;
use crate::config::raw::{RawConfig, RawExternalStore};
use crate::expr::{eval, EvalCtx, Type, Value};
use crate::ir::{Enrichment, ExternalKind, KeyPair, Lookup, OnError, Pipeline};
use chrono::NaiveDateTime;
use indexmap::IndexMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A row keyed by alias (source fields, pushed expressions, enrichment outputs).
pub type AliasRow = IndexMap<String, Value>;

/// Default HTTP lookup concurrency.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// Default lookup timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of retries.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default largest HTTP lookup answer: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The output fields of one looked-up value, by name.
type Outputs = Vec<(String, Value)>;

/// A lookup failure for one distinct request (shared by every row that asked for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError(pub String);

/// The first row an `on_error: null` or `skip` policy handled in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstFailure {
    /// The enrichment that failed.
    pub enrichment: String,
    /// Its external store.
    pub store: String,
    /// The row's key, rendered (`id=7`).
    pub key: String,
    /// Why (no secrets, no query strings).
    pub reason: String,
}

/// What `on_error: null` and `on_error: skip` did over a run (every batch, every
/// enrichment), so that a run that dropped or blanked rows says so once, at its end
/// ([`OnErrorTally::warn`]), instead of once per row or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnErrorTally {
    /// Rows dropped under `on_error: skip`.
    pub skipped: u64,
    /// Rows given NULL outputs under `on_error: null` and written (a row counts once,
    /// however many of its enrichments failed; a row later skipped counts as skipped).
    pub nulled: u64,
    /// The first such row.
    pub first: Option<FirstFailure>,
}

/// An [`OnErrorTally`] shared by the enrichers of one run.
pub type SharedTally = Arc<Mutex<OnErrorTally>>;

impl OnErrorTally {
    /// Remember the first row `e`'s `on_error` handled (`key` is rendered for it only); the
    /// rows are counted per batch, by [`Enricher::run`].
    fn record(&mut self, e: &Enrichment, key: impl FnOnce() -> String, reason: &str) {
        if e.on_error == OnError::Fail {
            return;
        }
        self.first.get_or_insert_with(|| FirstFailure {
            enrichment: e.name.clone(),
            store: e.store.name.clone(),
            key: key(),
            reason: reason.to_string(),
        });
    }

    /// True when no row was skipped or given NULL outputs.
    pub fn is_empty(&self) -> bool {
        self.skipped == 0 && self.nulled == 0
    }

    /// The one-line summary: counts and the first row's reason; `None` when empty.
    pub fn summary(&self) -> Option<String> {
        let first = self.first.as_ref().filter(|_| !self.is_empty())?;
        let rows = |n: u64| {
            if n == 1 {
                "1 row".to_string()
            } else {
                format!("{n} rows")
            }
        };
        let mut what = Vec::new();
        if self.skipped > 0 {
            what.push(format!(
                "{} skipped (on_error: skip), not written",
                rows(self.skipped)
            ));
        }
        if self.nulled > 0 {
            what.push(format!(
                "{} given NULL enrichment outputs (on_error: null)",
                rows(self.nulled)
            ));
        }
        Some(format!(
            "enrichment failed for some rows: {}; the first: enrichment `{}` (store `{}`), row with key ({}): {}",
            what.join(", "),
            first.enrichment,
            first.store,
            first.key,
            first.reason
        ))
    }

    /// Log the summary as one warning of `pipeline` (nothing when empty).
    pub fn warn(&self, pipeline: &str) {
        if let Some(msg) = self.summary() {
            tracing::warn!(
                pipeline = %pipeline,
                rows_skipped = self.skipped,
                rows_nulled = self.nulled,
                "{msg}"
            );
        }
    }
}

/// The connected enrichments of one pipeline.
pub struct Enricher {
    pipeline: String,
    key: Vec<KeyPair>,
    steps: Vec<Step>,
    now: NaiveDateTime,
    tally: SharedTally,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("pipeline", &self.pipeline)
            .field(
                "enrichments",
                &self
                    .steps
                    .iter()
                    .map(|s| s.enrichment.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

struct Step {
    enrichment: Enrichment,
    backend: Backend,
}

enum Backend {
    Redis(redis::RedisLookup),
    Http(http::HttpLookup),
}

/// A row dropped by an enrichment under `on_error: skip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// Its index in the batch as passed to [`Enricher::run`].
    pub index: usize,
    /// Its key, rendered (`id=7`).
    pub key: String,
    /// The enrichment that failed.
    pub enrichment: String,
    /// Why.
    pub reason: String,
}

/// Per-enrichment counters of one [`Enricher::run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// The enrichment.
    pub enrichment: String,
    /// Rows it processed.
    pub rows: usize,
    /// Distinct lookups sent (Redis keys or HTTP requests, after de-duplication).
    pub lookups: usize,
    /// Rows whose lookup or output failed (then handled by `on_error`).
    pub failed_rows: usize,
}

/// What [`Enricher::run`] did to a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichReport {
    /// For each input row (by index): whether it was kept.
    pub kept: Vec<bool>,
    /// The dropped rows (`on_error: skip`), in input order.
    pub skipped: Vec<SkippedRow>,
    /// Counters per enrichment, in config order.
    pub stats: Vec<LookupStats>,
    /// For each row left in `rows` (in order): whether `on_error: null` gave it NULL
    /// outputs because a lookup failed (see the module documentation), so that its stored
    /// row hash must mark it as not in sync.
    pub lookup_failed: Vec<bool>,
}

/// How one row fared in one enrichment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The request could not be rendered, or the output expression failed on the value.
    Row,
    /// The lookup itself failed: the store gave no value.
    Lookup,
}

/// Settings of an external store, from the config.
fn store_of<'a>(cfg: &'a RawConfig, name: &str) -> Result<&'a RawExternalStore, RuntimeError> {
    cfg.externalstores
        .iter()
        .find(|s| s.name.value == name)
        .ok_or_else(|| RuntimeError::Config(format!("external store `{name}` is not configured")))
}

/// The configured timeout, or `default`. The checker allows 0 < t ≤ one day; anything
/// longer is cut to a day here too (a timeout beyond what `Instant` can add would panic
/// deep in the clients), and anything else is `default`.
pub(crate) fn timeout_of(t: Option<f64>, default: Duration) -> Duration {
    match t {
        Some(s) if s > 0.0 => {
            Duration::try_from_secs_f64(s.min(crate::config::raw::MAX_TIMEOUT)).unwrap_or(default)
        }
        _ => default,
    }
}

impl Enricher {
    /// Connect every enrichment of `pipeline` to its external store (settings from `cfg`).
    /// Redis stores are connected (and authenticated) now, so that a wrong host or password
    /// fails before the first row; HTTP stores get a client with their headers and timeout.
    /// The run's "now" defaults to the current UTC time; see [`Enricher::with_now`].
    pub async fn connect(pipeline: &Pipeline, cfg: &RawConfig) -> Result<Enricher, RuntimeError> {
        let mut steps = Vec::with_capacity(pipeline.enrichments.len());
        // One connection per external store, shared by its enrichments.
        let mut redis_conns: HashMap<String, redis::RedisLookup> = HashMap::new();
        let mut http_clients: HashMap<String, http::HttpLookup> = HashMap::new();
        for e in &pipeline.enrichments {
            let raw = store_of(cfg, &e.store.name)?;
            let backend = match e.store.kind {
                ExternalKind::Redis => {
                    if !redis_conns.contains_key(&e.store.name) {
                        let c = redis::RedisLookup::connect(raw).await?;
                        redis_conns.insert(e.store.name.clone(), c);
                    }
                    Backend::Redis(redis_conns[&e.store.name].clone())
                }
                ExternalKind::Http => {
                    if !http_clients.contains_key(&e.store.name) {
                        let c = http::HttpLookup::new(raw)?;
                        http_clients.insert(e.store.name.clone(), c);
                    }
                    Backend::Http(http_clients[&e.store.name].clone())
                }
            };
            steps.push(Step {
                enrichment: e.clone(),
                backend,
            });
        }
        Ok(Enricher {
            pipeline: pipeline.name.clone(),
            key: pipeline.key.clone(),
            steps,
            now: chrono::Utc::now().naive_utc(),
            tally: SharedTally::default(),
        })
    }

    /// Count the rows `on_error: null` / `skip` handle into `tally` (shared with the other
    /// enrichers of the run) instead of this enricher's own.
    pub fn with_tally(mut self, tally: SharedTally) -> Enricher {
        self.tally = tally;
        self
    }

    /// What `on_error: null` and `skip` did so far, over every [`Enricher::run`].
    pub fn tally(&self) -> OnErrorTally {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Use the run's fixed "now" for `now()` / `today()` in output expressions.
    pub fn with_now(mut self, now: NaiveDateTime) -> Enricher {
        self.now = now;
        self
    }

    /// True when the pipeline has no enrichment (then [`Enricher::run`] keeps every row).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Enrich one batch in place: every enrichment, in config order, adds its outputs to
    /// each row. Rows dropped under `on_error: skip` are removed from `rows`; the report
    /// says which (by their index in the input) and why. An `on_error: fail` failure is a
    /// [`RuntimeError::Enrichment`] naming the enrichment, the store and the row's key;
    /// `rows` is then left partly enriched and must not be written.
    pub async fn run(&self, rows: &mut Vec<AliasRow>) -> Result<EnrichReport, RuntimeError> {
        let mut alive = vec![true; rows.len()];
        // Per input row: the worst failure `on_error: null` handled for it.
        let mut nulled: Vec<Option<Failure>> = vec![None; rows.len()];
        let mut report = EnrichReport::default();
        for step in &self.steps {
            let stats = self
                .run_step(step, rows, &mut alive, &mut nulled, &mut report)
                .await?;
            report.stats.push(stats);
        }
        {
            let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            t.skipped += alive.iter().filter(|a| !**a).count() as u64;
            t.nulled += alive
                .iter()
                .zip(&nulled)
                .filter(|(a, n)| **a && n.is_some())
                .count() as u64;
        }
        report.lookup_failed = alive
            .iter()
            .zip(&nulled)
            .filter(|(a, _)| **a)
            .map(|(_, n)| *n == Some(Failure::Lookup))
            .collect();
        let mut i = 0;
        rows.retain(|_| {
            let k = alive[i];
            i += 1;
            k
        });
        report.kept = alive;
        Ok(report)
    }

    async fn run_step(
        &self,
        step: &Step,
        rows: &mut [AliasRow],
        alive: &mut [bool],
        nulled: &mut [Option<Failure>],
        report: &mut EnrichReport,
    ) -> Result<LookupStats, RuntimeError> {
        let e = &step.enrichment;
        let mut stats = LookupStats {
            enrichment: e.name.clone(),
            ..LookupStats::default()
        };
        // 1. Render each live row's request; collect the distinct ones in first-seen order.
        let mut requests: Vec<Option<Result<usize, String>>> = Vec::with_capacity(rows.len());
        let mut distinct: Vec<String> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            if !alive[i] {
                requests.push(None);
                continue;
            }
            stats.rows += 1;
            let rendered = match (&e.lookup, &step.backend) {
                (Lookup::Redis { key }, _) => key.render(row).map_err(|x| x.to_string()),
                (Lookup::Http { path, params }, Backend::Http(h)) => {
                    h.request_url(path, params, row)
                }
                (Lookup::Http { .. }, Backend::Redis(_)) => {
                    Err("an HTTP lookup on a Redis store".to_string())
                }
            };
            // Under `fail` a row that cannot even be asked for stops the run: only the rows
            // before it (which may fail first) are looked up, the rest not even rendered.
            let stop = rendered.is_err() && e.on_error == OnError::Fail;
            requests.push(Some(rendered.map(|r| {
                *index_of.entry(r.clone()).or_insert_with(|| {
                    distinct.push(r);
                    distinct.len() - 1
                })
            })));
            if stop {
                break;
            }
        }
        stats.lookups = distinct.len();
        // 2. Look the distinct requests up. Under `fail`, the first lookup that fails for
        // good stops the others (`None`: never answered).
        let stop_on_error = e.on_error == OnError::Fail;
        let results: Vec<Option<Result<Value, LookupError>>> = if distinct.is_empty() {
            Vec::new()
        } else {
            match &step.backend {
                Backend::Redis(r) => r.get_many(&distinct).await.into_iter().map(Some).collect(),
                Backend::Http(h) => h.get_many(&distinct, stop_on_error).await,
            }
        };
        // 3. Outputs once per distinct lookup (the output expression sees nothing but the
        // looked-up value and the run's fixed "now"), then per row, or the failure policy.
        // Each looked-up value is dropped as soon as its outputs are computed.
        let map_output = matches!(e.output.as_ref().map(|o| &o.ty), Some(Type::Map(_)));
        let outputs: Vec<Option<Result<Outputs, (Failure, String)>>> = results
            .into_iter()
            .map(|r| {
                r.map(|r| {
                    r.map_err(|LookupError(m)| (Failure::Lookup, m))
                        .and_then(|v| {
                            self.outputs(e, v, map_output)
                                .map_err(|m| (Failure::Row, m))
                        })
                })
            })
            .collect();
        for (i, req) in requests.into_iter().enumerate() {
            let Some(req) = req else { continue };
            let outcome = match req.map(|idx| &outputs[idx]) {
                // A lookup cut short by another's failure: that failure stops the run.
                Ok(None) => continue,
                Ok(Some(r)) => r.clone(),
                Err(m) => Err((Failure::Row, m)),
            };
            match outcome {
                Ok(outs) => rows[i].extend(outs),
                Err((kind, message)) => {
                    stats.failed_rows += 1;
                    match e.on_error {
                        OnError::Fail => return Err(self.failure(e, &rows[i], message)),
                        OnError::Null => {
                            self.record(e, &rows[i], &message);
                            if nulled[i] != Some(Failure::Lookup) {
                                nulled[i] = Some(kind);
                            }
                            rows[i].extend(e.outputs.keys().map(|k| (k.clone(), Value::Null)))
                        }
                        OnError::Skip => {
                            self.record(e, &rows[i], &message);
                            alive[i] = false;
                            report.skipped.push(SkippedRow {
                                index: i,
                                key: row_key(&self.key, &rows[i]),
                                enrichment: e.name.clone(),
                                reason: message,
                            });
                        }
                    }
                }
            }
        }
        report.skipped.sort_by_key(|s| s.index);
        Ok(stats)
    }

    /// The `on_error: fail` error of `row`.
    fn failure(&self, e: &Enrichment, row: &AliasRow, message: String) -> RuntimeError {
        RuntimeError::Enrichment {
            pipeline: self.pipeline.clone(),
            enrichment: e.name.clone(),
            store: e.store.name.clone(),
            key: row_key(&self.key, row),
            message,
        }
    }

    /// Count a row `on_error: null` or `skip` handled.
    fn record(&self, e: &Enrichment, row: &AliasRow, message: &str) {
        self.tally.lock().unwrap_or_else(|p| p.into_inner()).record(
            e,
            || row_key(&self.key, row),
            message,
        );
    }

    /// The output fields of one looked-up value.
    fn outputs(
        &self,
        e: &Enrichment,
        v: Value,
        map_output: bool,
    ) -> Result<Vec<(String, Value)>, String> {
        let Some(expr) = &e.output else {
            return Ok(vec![(e.name.clone(), v)]);
        };
        let out = eval(expr, &EvalCtx::value(&v, self.now))
            .map_err(|x| format!("output expression failed: {}", x.message))?;
        if !map_output {
            return Ok(vec![(e.name.clone(), out)]);
        }
        match out {
            Value::Map(mut m) => Ok(e
                .outputs
                .keys()
                .map(|k| (k.clone(), m.shift_remove(k).unwrap_or(Value::Null)))
                .collect()),
            Value::Null => Ok(e.outputs.keys().map(|k| (k.clone(), Value::Null)).collect()),
            other => Err(format!(
                "output expression gave `{}`, not a mapping",
                other.shown()
            )),
        }
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[test]
    fn timeouts_never_panic() {
        let d = Duration::from_secs(7);
        assert_eq!(timeout_of(Some(1.5), d), Duration::from_millis(1500));
        assert_eq!(timeout_of(Some(1e20), d), Duration::from_secs(86_400));
        assert_eq!(
            timeout_of(Some(f64::INFINITY), d),
            Duration::from_secs(86_400)
        );
        assert_eq!(timeout_of(Some(f64::NAN), d), d);
        assert_eq!(timeout_of(Some(-1.0), d), d);
        assert_eq!(timeout_of(None, d), d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first() -> FirstFailure {
        FirstFailure {
            enrichment: "geo".into(),
            store: "api".into(),
            key: "id=1".into(),
            reason: "GET http://h/zip/1: HTTP 404 Not Found (after 1 attempt)".into(),
        }
    }

    #[test]
    fn an_empty_tally_says_nothing() {
        assert_eq!(OnErrorTally::default().summary(), None);
    }

    #[test]
    fn the_summary_counts_both_policies_and_names_the_first_row() {
        let t = OnErrorTally {
            skipped: 300,
            nulled: 0,
            first: Some(first()),
        };
        assert_eq!(
            t.summary().unwrap(),
            "enrichment failed for some rows: 300 rows skipped (on_error: skip), not written; \
             the first: enrichment `geo` (store `api`), row with key (id=1): \
             GET http://h/zip/1: HTTP 404 Not Found (after 1 attempt)"
        );
        let t = OnErrorTally {
            skipped: 2,
            nulled: 1,
            first: Some(first()),
        };
        let s = t.summary().unwrap();
        assert!(
            s.contains("2 rows skipped (on_error: skip), not written, 1 row given NULL enrichment outputs (on_error: null)"),
            "{s}"
        );
    }
}
