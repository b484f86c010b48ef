//! Streaming runs: the full sync (`source.extract`) and the timestamp increment (the
//! lookback window compared block by block, then `recon.R.source.extract_since` from the
//! sink's watermark; without window steps, from the watermark minus the lookback). Rows flow
//! from the source through a bounded channel, so memory stays at a few batches however
//! large the table; each batch is enriched, transformed and written in one transaction.
//! When a progress bar is drawn, a stream of the whole source table (`source.extract`) first
//! reads the catalog's estimate of its row count ([`row_estimate`]) as the bar's total.

use super::blocks::{minus_lookback, Unit};
use super::params::base_binds;
use super::progress::Progress;
use super::recon::compare_window;
use super::report::{KeyChange, PipelineReport};
use super::rows::{alias_rows, extract_columns, key_rows, to_sink_rows, Projection};
use super::sink::{catalog_query, connect, SinkIo};
use super::steps::{Binds, Steps};
use super::RunOptions;
use crate::config::raw::RawConfig;
use crate::expr::Value;
use crate::ir::{PartitionKind, Pipeline, Reconciliation, StoreKind};
use crate::runtime::connect::Conn;
use crate::runtime::enrich::{Enricher, SharedTally};
use crate::runtime::{Row, RuntimeError};
use crate::sql::DialectKind;
use crate::types::Dtype;
use tokio::sync::mpsc;

/// How long the writer waits for the next batch before it ends the loads left open
/// ([`SinkIo::stream_loads`]).
const STREAM_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Batches in flight between the source reader and the sink writer.
const CHANNEL_BATCHES: usize = 1;

/// A text key column of a MySQL source and its collation (see
/// [`Ctx::source_key_collations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKeyCollation {
    /// The sink key column.
    pub sink: String,
    /// The source column it copies.
    pub source: String,
    /// The source column's collation; `None` for a binary column.
    pub collation: Option<String>,
}

/// Everything a run needs besides connections.
pub struct Ctx<'a> {
    /// The pipeline.
    pub p: &'a Pipeline,
    /// The config (connection settings by datastore name).
    pub cfg: &'a RawConfig,
    /// Run options.
    pub opts: &'a RunOptions,
    /// Progress display.
    pub progress: &'a Progress,
    /// The generated steps.
    pub steps: Steps,
    /// Values bound by name.
    pub binds: Binds,
    /// What `on_error: null` / `skip` did in this run, over all its enrichers.
    pub on_error: SharedTally,
    /// Whether the source table's engine was found fit (`source.engine`): asked once per
    /// run, not per connection.
    engine_checked: std::sync::atomic::AtomicBool,
    /// The source table's columns and collations (`source.collations`), read once.
    collations: std::sync::Mutex<Option<Vec<Row>>>,
}

impl<'a> Ctx<'a> {
    /// Generates the steps and base values of `p`.
    pub fn new(
        p: &'a Pipeline,
        cfg: &'a RawConfig,
        opts: &'a RunOptions,
        progress: &'a Progress,
    ) -> Result<Ctx<'a>, RuntimeError> {
        if p.source.store.kind == StoreKind::Webhook {
            return Err(RuntimeError::Config(format!(
                "pipeline `{}`: a webhook datastore cannot be a source",
                p.name
            )));
        }
        Ok(Ctx {
            p,
            cfg,
            opts,
            progress,
            steps: Steps::generate(p)?,
            binds: base_binds(p)?,
            on_error: SharedTally::default(),
            engine_checked: std::sync::atomic::AtomicBool::new(false),
            collations: std::sync::Mutex::new(None),
        })
    }

    /// A session on the source datastore. A ClickHouse source that leaves `final` unset
    /// is refused when its table's engine merges rows in the background: its parts can
    /// hold older versions of a row, which a read without `FINAL` would give too.
    pub async fn source(&self) -> Result<Conn, RuntimeError> {
        use std::sync::atomic::Ordering;
        let mut conn = connect(self.cfg, &self.p.source.store.name).await?;
        let step = self.steps.get("source.engine");
        if let Some(step) = step.filter(|_| !self.engine_checked.load(Ordering::Relaxed)) {
            let vals = step.values(&self.binds, &[])?;
            let rows = catalog_query(&mut conn, step, &vals, &[Dtype::Str], true).await?;
            if let Some(Value::Str(engine)) = rows.first().and_then(|r| r.first()) {
                if merges_rows(engine.as_str()) {
                    return Err(RuntimeError::Config(format!(
                        "pipeline `{}`: source table `{}` is a {engine}, whose parts hold older versions of rows until ClickHouse merges them; set `final: true` on the source to read the merged rows (`FINAL`), or `final: false` to read the parts as they are",
                        self.p.name, self.p.source.table.table.name
                    )));
                }
            }
            self.engine_checked.store(true, Ordering::Relaxed);
        }
        if let Some(step) = self.steps.get("source.collations") {
            let read = self
                .collations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
            if !read {
                let vals = step.values(&self.binds, &[])?;
                let rows =
                    catalog_query(&mut conn, step, &vals, &[Dtype::Str, Dtype::Str], false).await?;
                *self.collations.lock().unwrap_or_else(|p| p.into_inner()) = Some(rows);
            }
        }
        Ok(conn)
    }

    /// MySQL to MySQL: each text key column the source copies from its main table, as
    /// (sink column, source column, the source column's collation; `None` for a binary
    /// column), once [`Ctx::source`] read them (`source.collations`).
    pub fn source_key_collations(&self) -> Vec<SourceKeyCollation> {
        let guard = self.collations.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rows) = guard.as_ref() else {
            return Vec::new();
        };
        crate::sql::text_key_columns(self.p)
            .into_iter()
            .filter_map(|(sink, source)| {
                let row = rows.iter().find(
                    |r| matches!(r.first(), Some(Value::Str(n)) if n.eq_ignore_ascii_case(&source)),
                )?;
                let collation = match row.get(1) {
                    Some(Value::Str(c)) => Some(c.clone()),
                    _ => None,
                };
                Some(SourceKeyCollation {
                    sink,
                    source,
                    collation,
                })
            })
            .collect()
    }

    /// The pipeline's enrichment stores, connected; none for a plan, which writes nothing
    /// and so looks nothing up.
    pub async fn enricher(&self) -> Result<Option<Enricher>, RuntimeError> {
        if self.opts.dry_run {
            return Ok(None);
        }
        let e = Enricher::connect(self.p, self.cfg).await?;
        Ok(Some(
            e.with_now(self.opts.now).with_tally(self.on_error.clone()),
        ))
    }

    /// The dialects a reconciliation reads and binds partition values on: the source's,
    /// the sink's and the state tables'.
    pub fn dialects(&self) -> Vec<DialectKind> {
        let p = self.p;
        [
            Some(&p.source.store),
            Some(&p.sink.store),
            p.source_state.as_ref().map(|s| &s.store),
            p.sink_state.as_ref().map(|s| &s.store),
        ]
        .into_iter()
        .flatten()
        .filter_map(|s| s.kind.dialect())
        .collect()
    }

    /// Warn once about the rows `on_error: null` / `skip` handled in this run, if any.
    pub fn warn_on_error(&self) {
        self.on_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .warn(&self.p.name);
    }
}

/// The dtype partition values and bounds are read and bound as.
pub fn partition_dtype(kind: PartitionKind) -> Dtype {
    match kind {
        PartitionKind::Int => Dtype::Int,
        PartitionKind::Float => Dtype::Float,
        PartitionKind::Datetime => Dtype::Datetime,
        PartitionKind::Date => Dtype::Date,
        PartitionKind::Uuid => Dtype::Uuid,
        PartitionKind::Str => Dtype::Str,
    }
}

/// Which extract a streaming run reads.
pub struct Extract<'e> {
    /// The step id.
    pub step: &'e str,
    /// Values bound besides the filters.
    pub extra: Vec<(&'e str, Value)>,
    /// Whether every key is staged and absent sink rows deleted at the end.
    pub delete_absent: bool,
    /// About how many rows the extract gives ([`row_estimate`]), for the progress bar.
    pub estimate: Option<u64>,
}

/// A full sync: every source row, merged; with `allow_delete`, absent keys removed.
pub async fn run(ctx: &Ctx<'_>, report: &mut PipelineReport) -> Result<(), RuntimeError> {
    let p = ctx.p;
    let mut src = ctx.source().await?;
    let mut sink = SinkIo::open(p, ctx.cfg, &ctx.steps, &ctx.binds).await?;
    sink.source_keys = ctx.source_key_collations();
    let exists = sink.prepare(!ctx.opts.dry_run).await?;
    // A table this run created holds no row the source lacks: nothing to delete.
    let extract = Extract {
        step: "source.extract",
        extra: vec![],
        delete_absent: exists
            && p.sink.merge.allow_delete
            && !p.key.is_empty()
            && ctx.steps.get("sink.delete_absent").is_some(),
        estimate: row_estimate(ctx, &mut src).await,
    };
    stream_into(ctx, src, &mut sink, extract, report).await
}

/// A timestamp increment: the lookback window before the sink's watermark compared block
/// by block ([`compare_window`]), then the rows newer than the watermark streamed (without
/// window steps, every row newer than the watermark minus the lookback); a full sync when
/// the sink is empty or missing.
pub async fn run_incremental(
    ctx: &Ctx<'_>,
    r: &Reconciliation,
    report: &mut PipelineReport,
) -> Result<(), RuntimeError> {
    let p = ctx.p;
    let mut src = ctx.source().await?;
    let mut sink = SinkIo::open(p, ctx.cfg, &ctx.steps, &ctx.binds).await?;
    sink.source_keys = ctx.source_key_collations();
    let exists = sink.prepare(!ctx.opts.dry_run).await?;
    let wm_id = format!("recon.{}.sink.watermark", r.name);
    let watermark = if exists {
        let step = ctx.steps.need(&wm_id)?;
        let vals = step.values(&ctx.binds, &[])?;
        let conn = sink.conn().ok_or_else(|| {
            RuntimeError::Config(format!("step {wm_id}: the sink is not a database"))
        })?;
        let rows = conn
            .query(step.stmt(0), &vals, &[partition_dtype(r.kind)])
            .await?;
        rows.into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    // A sink column that keeps less than microseconds may have rounded its newest value
    // up (PostgreSQL `timestamp(0)` stores 04.75 as 05): past source rows it never held
    // (04.90). The run then starts a second earlier; rows it reads again are merged again.
    let watermark = match &watermark {
        Value::Datetime(t) if sink.keeps_less(&r.sink_partition, Dtype::Datetime) => {
            Value::Datetime(*t - chrono::TimeDelta::seconds(1))
        }
        _ => watermark,
    };
    if watermark.is_null() {
        tracing::info!(pipeline = %p.name, "the sink is empty: running a full sync");
        let extract = Extract {
            step: "source.extract",
            extra: vec![],
            delete_absent: false,
            estimate: row_estimate(ctx, &mut src).await,
        };
        return stream_into(ctx, src, &mut sink, extract, report).await;
    }
    warn_future_watermark(ctx, r, &watermark);
    let since = minus_lookback(&watermark, r.lookback_seconds);
    // A lookback reaching before what a side's type holds (1970 on ClickHouse) starts there;
    // one past what it can bind (a watermark MySQL cannot hold, read from another side)
    // stops at the last value it can.
    let since = match Unit::of(r.kind) {
        Some(u) => u.lower_to_limit(u.raise_to_floor(since, &ctx.dialects()), &ctx.dialects()),
        None => since,
    };
    tracing::info!(pipeline = %p.name, watermark = %watermark.to_text(), since = %since.to_text(), "incremental run");
    // The lookback window is compared block by block where the steps exist, so that rows
    // already in the sink are neither rewritten nor counted as drift; the rows after it
    // are streamed.
    let (src, mut sink, after) = if ctx
        .steps
        .get(&format!("recon.{}.source.block_hash", r.name))
        .is_some()
    {
        compare_window(ctx, r, src, sink, (&since, &watermark), report).await?
    } else {
        (src, sink, None)
    };
    let step = format!("recon.{}.source.extract_since", r.name);
    let extract = Extract {
        step: &step,
        extra: vec![("watermark", after.unwrap_or(since))],
        delete_absent: false,
        estimate: None,
    };
    // Without a window comparison (which compares them as a block of their own), the
    // rows whose partition value is NULL, which no watermark reaches, are merged whole
    // on every run, as the window is.
    let nulls = format!("recon.{}.source.extract_null", r.name);
    if ctx
        .steps
        .get(&format!("recon.{}.sink.nulls", r.name))
        .is_none()
        && ctx.steps.get(&nulls).is_some()
    {
        stream_into(ctx, ctx.source().await?, &mut sink, extract, report).await?;
        let extract = Extract {
            step: &nulls,
            extra: vec![],
            delete_absent: false,
            estimate: None,
        };
        return stream_into(ctx, src, &mut sink, extract, report).await;
    }
    stream_into(ctx, src, &mut sink, extract, report).await
}

/// How far past the run's "now" a sink watermark may lie before it is warned about: clocks
/// differ, and a column that holds local time rather than UTC (MySQL `DATETIME` written
/// with `NOW()` under a server time zone east of UTC) runs up to 14 hours ahead of UTC
/// without anything being missed, as every row is as far ahead.
const FUTURE_ALLOWANCE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Warns when the sink's watermark (a date or datetime) lies in the future: a timestamp
/// run copies only rows newer than it, so rows changed until then (with the current time
/// as their timestamp) are not copied, and `plan` reports no drift.
fn warn_future_watermark(ctx: &Ctx<'_>, r: &Reconciliation, watermark: &Value) {
    let at = match watermark {
        Value::Datetime(t) => *t,
        Value::Date(d) => d.and_time(chrono::NaiveTime::MIN),
        _ => return,
    };
    if ctx
        .opts
        .now
        .checked_add_signed(FUTURE_ALLOWANCE)
        .is_none_or(|latest| at <= latest)
    {
        return;
    }
    let block_hash = block_hash_fix(ctx.p);
    tracing::warn!(
        "pipeline `{}`, reconciliation `{}`: the sink's watermark, its newest `{}`, is {}, later than now ({} UTC): a timestamp run copies only the rows newer than the watermark (minus `lookback`), so rows changed now are not copied until then, and `plan` finds no drift. Correct the future-dated row(s) in the source and the sink, then run {block_hash} or `apply --full` to copy what was missed",
        ctx.p.name,
        r.name,
        r.sink_partition,
        watermark.to_text(),
        ctx.opts.now.format("%Y-%m-%d %H:%M:%S"),
    );
}

/// "a block-hash reconciliation", naming the pipeline's first (`-r NAME`) when it has one:
/// the repair a timestamp run's warnings point to.
pub fn block_hash_fix(p: &Pipeline) -> String {
    match p
        .reconciliations
        .iter()
        .find(|x| x.strategy != crate::ir::ReconStrategy::Timestamp)
    {
        Some(x) => format!("a block-hash reconciliation (`-r {}`)", x.name),
        None => "a block-hash reconciliation".to_string(),
    }
}

/// Streams `extract` from `src` into `sink` (plan: counts the rows only).
pub async fn stream_into(
    ctx: &Ctx<'_>,
    src: Conn,
    sink: &mut SinkIo<'_>,
    extract: Extract<'_>,
    report: &mut PipelineReport,
) -> Result<(), RuntimeError> {
    let p = ctx.p;
    let step = ctx.steps.need(extract.step)?;
    let vals = step.values(&ctx.binds, &extract.extra)?;
    let cols = extract_columns(p);
    let types: Vec<Dtype> = cols.iter().map(|c| c.1).collect();
    let batch_size = (p.source.batch_size.max(1)) as usize;
    let dry = ctx.opts.dry_run;
    let delete_absent = extract.delete_absent && !dry;
    let enricher = ctx.enricher().await?;
    if delete_absent {
        sink.begin_key_staging().await?;
    }
    let deferring = !dry && sink.defer_merges(false);
    if !dry {
        sink.stream_loads();
    }
    let fast = Projection::of(p, &cols);
    let bar = ctx.progress.rows(&p.name, extract.estimate);
    let (tx, rx) = mpsc::channel::<Result<Vec<Row>, RuntimeError>>(CHANNEL_BATCHES);
    // The reader runs as its own task, so that decoding the source's rows (on a worker
    // thread) overlaps the projection and the sink's encoding here.
    let producer = {
        let (step, mut src) = (step.clone(), src);
        let types = types.clone();
        tokio::spawn(async move {
            src.stream(step.stmt(0), &vals, &types, batch_size, tx)
                .await
        })
    };
    let mut read = 0u64;
    let mut written = 0u64;
    let consumer = async {
        // The consumer owns the receiver: when it stops on an error, the receiver is dropped
        // and the reader's next send ends the stream instead of waiting forever.
        let mut rx = rx;
        loop {
            // A source that pauses must not hold written rows back (nor leave the sink
            // server waiting on an open insert until it gives up): end the open loads.
            let batch = match tokio::time::timeout(STREAM_IDLE, rx.recv()).await {
                Ok(Some(batch)) => batch?,
                Ok(None) => break,
                Err(_) => {
                    sink.end_streams().await?;
                    continue;
                }
            };
            read += batch.len() as u64;
            bar.inc(batch.len() as u64);
            if let (Some(proj), false) = (&fast, dry) {
                let out = proj.rows(p, batch)?;
                let keys = if delete_absent {
                    proj.keys(&out)
                } else {
                    vec![]
                };
                let w = sink.write(&out, &[], &keys).await?;
                written += w.rows;
            } else if let Some(enricher) = &enricher {
                let rows = alias_rows(&cols, batch);
                let keys = if delete_absent {
                    key_rows(p, &rows)
                } else {
                    vec![]
                };
                let out = to_sink_rows(p, enricher, rows, ctx.opts.now).await?;
                let w = sink.write(&out, &[], &keys).await?;
                written += w.rows;
            } else {
                written += batch.len() as u64;
            }
        }
        Ok::<(), RuntimeError>(())
    };
    let (produced, consumed) = tokio::join!(producer, consumer);
    // End the loads left open even when the run failed, so that the whole batches sent
    // before the failure are kept, as on the databases with transactions; rows count as
    // written once they ended well. The writer's error explains a stopped reader; report
    // it first.
    let ended = sink.end_streams().await;
    if deferring {
        sink.stop_deferring();
    }
    consumed?;
    produced.map_err(|e| RuntimeError::Config(format!("the source reader failed: {e}")))??;
    ended?;
    // A source that gave no row still leaves its (new) sink table.
    if !dry {
        sink.ensure_table().await?;
    }
    report.rows_read += read;
    report.rows_written += written;
    if !dry {
        sink.analyze_created(written).await;
    }
    if delete_absent {
        let deleted = sink.delete_absent().await?;
        report.rows_deleted += deleted;
        if read == 0 && deleted > 0 {
            // An empty source is deleted into the sink like any other: say so loudly, as a
            // source emptied by mistake (a reload half done, a wrong filter) leaves an
            // empty sink. `plan` shows the count beforehand.
            tracing::warn!(
                "pipeline `{}`: the source returned no row, so allow_delete removed every sink row within sink.filters ({deleted}); run `plan` first (with --exit-code it exits 3) to catch an emptied source before apply",
                p.name
            );
        }
    } else if extract.delete_absent && dry && ctx.steps.get("sink.keys").is_some() {
        // What sink.delete_absent would remove, counted without writing: the source's and
        // the sink's keys merged in key order.
        let list = report
            .keys
            .as_ref()
            .map_or(0, |k| ctx.opts.show_keys.saturating_sub(k.len()));
        let (absent, first) = super::absent::count_absent(ctx, sink, list).await?;
        report.rows_deleted += absent;
        if let Some(keys) = report.keys.as_mut() {
            report.keys_found += absent;
            keys.extend(first.iter().map(|k| KeyChange::of(p, "deleted", k)));
        }
    }
    Ok(())
}

/// The database's own estimate of how many rows a full sync reads (`source.row_estimate`),
/// for the progress bar's total: read only when a bar is drawn and the step exists (a
/// source without filters that joins nothing but LEFT joins). It reads the catalog, never
/// the table. A failure (the catalog unreadable, no permission) never fails the run: it
/// is logged at debug level and gives none, as do a table the catalog does not list and
/// an estimate that is not a positive count (PostgreSQL's `-1` or `0` for a table never
/// analyzed, MySQL's NULL for a view, ClickHouse's `0` for an engine without parts): the
/// bar then counts rows alone.
pub async fn row_estimate(ctx: &Ctx<'_>, src: &mut Conn) -> Option<u64> {
    const STEP: &str = "source.row_estimate";
    if !ctx.progress.is_drawn() {
        return None;
    }
    let step = ctx.steps.get(STEP)?;
    let started = std::time::Instant::now();
    let read = async {
        let vals = step.values(&ctx.binds, &[])?;
        let ch = src.dialect() == crate::sql::DialectKind::Clickhouse;
        catalog_query(src, step, &vals, &[Dtype::Int], ch).await
    }
    .await;
    let ms = started.elapsed().as_millis() as u64;
    match read {
        Ok(rows) => {
            let value = rows.into_iter().next().and_then(|r| r.into_iter().next());
            let estimate = usable_estimate(value.as_ref());
            match (estimate, &value) {
                (Some(n), _) => {
                    tracing::debug!(pipeline = %ctx.p.name, step = STEP, estimate = n, ms, "source row estimate")
                }
                (None, Some(v)) => {
                    let value = if v.is_null() {
                        "NULL".into()
                    } else {
                        v.to_text()
                    };
                    tracing::debug!(pipeline = %ctx.p.name, step = STEP, %value, ms, "the source row estimate is not a positive count; the progress bar counts rows alone")
                }
                (None, None) => {
                    tracing::debug!(pipeline = %ctx.p.name, step = STEP, ms, "the catalog does not list the source table; the progress bar counts rows alone")
                }
            }
            estimate
        }
        Err(e) => {
            tracing::debug!(pipeline = %ctx.p.name, step = STEP, error = %e, ms, "no source row estimate; the progress bar counts rows alone");
            None
        }
    }
}

/// A row-count estimate as a total worth showing: a positive count, else none.
fn usable_estimate(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Int(n)) if *n > 0 => Some(*n as u64),
        _ => None,
    }
}

/// Whether a ClickHouse table engine merges rows in the background, so that a read
/// without `FINAL` can see several versions of one row.
fn merges_rows(engine: &str) -> bool {
    let e = engine.trim_start_matches("Replicated");
    [
        "ReplacingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
        "SummingMergeTree",
        "AggregatingMergeTree",
        "GraphiteMergeTree",
    ]
    .contains(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_positive_count_is_a_usable_estimate() {
        assert_eq!(
            usable_estimate(Some(&Value::Int(1_000_000))),
            Some(1_000_000)
        );
        assert_eq!(usable_estimate(Some(&Value::Int(1))), Some(1));
        // PostgreSQL: never analyzed (-1), or empty or never analyzed (0); MySQL: a view
        // (NULL); ClickHouse: an engine without parts (0); no catalog row at all.
        for v in [Value::Int(-1), Value::Int(0), Value::Null] {
            assert_eq!(usable_estimate(Some(&v)), None, "{v:?}");
        }
        assert_eq!(usable_estimate(None), None);
    }
}
