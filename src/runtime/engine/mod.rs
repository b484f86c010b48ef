//! The engine: runs one pipeline's steps against its datastores.
//!
//! - [`run_pipeline`] picks the mode (a full sync, a hash reconciliation or a timestamp
//!   increment, see [`RunOptions`]), connects, and returns a [`PipelineReport`].
//! - `full.rs` streams the extract through enrichment and transform into the sink;
//!   `from_nats.rs` does the same with the batches a NATS source consumes, acknowledging
//!   each batch's messages once the sink committed it;
//!   `recon.rs` compares block hashes level by level and re-syncs only the rows of changed
//!   leaves; `sink.rs` owns every write (staging, load, merge, deletes, ClickHouse
//!   mutations), checking rows against the sink table's column types (`sink_table.rs`);
//!   `steps.rs` turns generated steps into statements and binds parameters;
//!   `params.rs` computes bound values (filters, range bounds); `blocks.rs` is the pure
//!   block arithmetic.
//!
//! The engine builds no SQL text: it executes the statements of [`crate::sql::generate`],
//! [`crate::sql::stage_insert`] and [`crate::sql::stage_keys_insert`] and binds values.

mod absent;
mod blocks;
mod ch_engine;
mod from_nats;
mod full;
mod params;
mod progress;
mod recon;
mod report;
mod rows;
mod run_lock;
pub use run_lock::settle_dropped;
mod sink;
mod sink_table;
mod steps;

pub use params::parse_bound;
pub use progress::Progress;
pub use report::{render_json, render_text, BlockCounts, KeyChange, PipelineReport};

use crate::config::raw::RawConfig;
use crate::expr::TypedExpr;
use crate::ir::{Pipeline, ReconStrategy, Reconciliation, StoreKind};
use crate::runtime::RuntimeError;
use chrono::NaiveDateTime;
use std::time::Instant;

/// What a run does and with which overrides.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The reconciliation to run (by name); `None`: the pipeline's first, or a full sync.
    pub reconciliation: Option<String>,
    /// Overrides the reconciliation's `start` (a checked constant expression).
    pub start: Option<TypedExpr>,
    /// Overrides the reconciliation's `end` (a checked constant expression).
    pub end: Option<TypedExpr>,
    /// Ignore reconciliation: copy everything.
    pub full: bool,
    /// Read only: compare and report what `apply` would write, write nothing.
    pub dry_run: bool,
    /// The run's fixed "now" (UTC), used by `now()` in bounds and expressions.
    pub now: NaiveDateTime,
    /// How long `apply` waits for the run lock of a sink scope that another run holds
    /// (`None`: as long as that run takes).
    pub lock_timeout: Option<std::time::Duration>,
    /// List up to this many changed keys per pipeline in the report
    /// ([`PipelineReport::keys`]); 0: none.
    pub show_keys: usize,
}

impl RunOptions {
    /// Options for a plain `apply` at `now`.
    pub fn new(now: NaiveDateTime) -> RunOptions {
        RunOptions {
            reconciliation: None,
            start: None,
            end: None,
            full: false,
            dry_run: false,
            now,
            lock_timeout: None,
            show_keys: 0,
        }
    }
}

/// What a pipeline run does.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// Stream every source row into the sink.
    Full,
    /// Block-hash reconciliation.
    Hash(&'a Reconciliation),
    /// Incremental by watermark.
    Timestamp(&'a Reconciliation),
}

impl Mode<'_> {
    /// The mode's name in reports: `full`, `md5sum_hash`, `hash_md5_hash` or `timestamp`.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Hash(r) | Mode::Timestamp(r) => match r.strategy {
                ReconStrategy::Md5sumHash => "md5sum_hash",
                ReconStrategy::HashMd5Hash => "hash_md5_hash",
                ReconStrategy::Timestamp => "timestamp",
            },
        }
    }
}

/// The mode `opts` selects for `p`. A reconciliation name the pipeline does not have is a
/// [`RuntimeError::Config`], whatever its sink: webhook and NATS sinks (and NATS sources)
/// have no reconciliations and always run a full sync, so `-r` cannot apply to them.
pub fn select_mode<'a>(p: &'a Pipeline, opts: &RunOptions) -> Result<Mode<'a>, RuntimeError> {
    let reconcilable =
        p.sink.store.kind.dialect().is_some() && p.source.store.kind.dialect().is_some();
    let r = match &opts.reconciliation {
        _ if opts.full => None,
        Some(name) if !reconcilable => {
            let (side, kind) = if p.sink.store.kind.dialect().is_none() {
                ("sink", &p.sink.store.kind)
            } else {
                ("source", &p.source.store.kind)
            };
            let kind = match kind {
                StoreKind::Nats => "NATS",
                other => other.name(),
            };
            return Err(RuntimeError::Config(format!(
                "pipeline `{}` has no reconciliation `{name}`: its {kind} {side} is always fully synced (reconciliation needs a database on both sides); leave out -r, or pick the pipelines that have it with -p",
                p.name
            )));
        }
        _ if !reconcilable => None,
        Some(name) => Some(
            p.reconciliations
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        p.reconciliations.iter().map(|r| r.name.as_str()).collect();
                    RuntimeError::Config(format!(
                        "pipeline `{}` has no reconciliation `{name}` (it has: {})",
                        p.name,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                })?,
        ),
        None => p.reconciliations.first(),
    };
    let mode = match r {
        None => Mode::Full,
        Some(r) if r.strategy == ReconStrategy::Timestamp => Mode::Timestamp(r),
        Some(r) => Mode::Hash(r),
    };
    // A range the run would not honour must not turn into a whole-table run unnoticed.
    if opts.start.is_some() || opts.end.is_some() {
        let what = match mode {
            Mode::Hash(r) if blocks::Unit::of(r.kind).is_some() => {
                for (flag, e) in [("--start", &opts.start), ("--end", &opts.end)] {
                    let Some(e) = e else { continue };
                    if !bound_fits(r.kind, &e.ty) {
                        let hint = match r.kind {
                            crate::ir::PartitionKind::Date | crate::ir::PartitionKind::Datetime => {
                                " (write a date as `datetime.date(2021, 1, 1)` or `datetime.datetime(2021, 1, 1)`: a bare 2021-01-01 is a subtraction)"
                            }
                            _ => "",
                        };
                        return Err(RuntimeError::Config(format!(
                            "pipeline `{}`: {flag} `{e}` gives {}, and the partition column of reconciliation `{}` is {}{hint}",
                            p.name,
                            e.ty,
                            r.name,
                            r.kind.dtype()
                        )));
                    }
                }
                // Both bounds given: an empty range is a mistake on the command line.
                if let (Some(s), Some(e), Some(unit)) =
                    (&opts.start, &opts.end, blocks::Unit::of(r.kind))
                {
                    let (a, b) = (
                        params::eval_bound(s, opts.now)?,
                        params::eval_bound(e, opts.now)?,
                    );
                    if let (Some(lo), Some(hi)) =
                        (unit.to_units(&a, false), unit.to_units(&b, true))
                    {
                        if hi <= lo {
                            return Err(RuntimeError::Config(format!(
                                "pipeline `{}`, reconciliation `{}`: the range is empty: --end {} is not after --start {}",
                                p.name,
                                r.name,
                                b.to_text(),
                                a.to_text()
                            )));
                        }
                    }
                }
                return Ok(mode);
            }
            Mode::Hash(r) => format!(
                "reconciliation `{}` buckets its {:?} partition column by hash, which has no range",
                r.name, r.kind
            ),
            Mode::Timestamp(r) => format!(
                "reconciliation `{}` goes on from the sink's watermark",
                r.name
            ),
            Mode::Full => "the run is a full sync".to_string(),
        };
        return Err(RuntimeError::Config(format!(
            "pipeline `{}`: --start/--end narrow a block-hash reconciliation over an int, float, date or datetime partition; {what}",
            p.name
        )));
    }
    Ok(mode)
}

/// Whether a `--start`/`--end` value of type `ty` bounds a partition of `kind`: a number
/// for int and float partitions, a date or datetime for date and datetime ones.
fn bound_fits(kind: crate::ir::PartitionKind, ty: &crate::expr::Type) -> bool {
    use crate::expr::Type;
    use crate::ir::PartitionKind as K;
    match kind {
        K::Int | K::Float => matches!(ty, Type::Int | Type::Float | Type::Decimal),
        K::Datetime | K::Date => matches!(ty, Type::Datetime | Type::Date),
        K::Uuid | K::Str => false,
    }
}

/// Runs (or with `dry_run`, plans) one pipeline. `cfg` supplies connection settings by
/// datastore name. Errors name the datastore, its host and the step; never a secret.
pub async fn run_pipeline(
    p: &Pipeline,
    cfg: &RawConfig,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<PipelineReport, RuntimeError> {
    let started = Instant::now();
    let mode = select_mode(p, opts)?;
    tracing::info!(pipeline = %p.name, mode = mode.name(), dry_run = opts.dry_run, "pipeline start");
    let mut report = PipelineReport::new(&p.name, mode.name());
    report.allow_delete = p.sink.merge.allow_delete;
    if opts.show_keys > 0 {
        report.keys = Some(Vec::new());
    }
    let ctx = full::Ctx::new(p, cfg, opts, progress)?;
    // `apply` holds the run lock of the sink scope to the end (`plan` writes nothing).
    let mut lock = if opts.dry_run {
        None
    } else {
        run_lock::acquire(p, cfg, &ctx.steps, opts.lock_timeout).await?
    };
    let run = async {
        match mode {
            Mode::Full if p.source.store.kind == StoreKind::Nats => {
                from_nats::run(&ctx, &mut report).await
            }
            Mode::Full => full::run(&ctx, &mut report).await,
            Mode::Timestamp(r) => full::run_incremental(&ctx, r, &mut report).await,
            Mode::Hash(r) => recon::run(&ctx, r, &mut report).await,
        }
    };
    let outcome = match lock.as_mut() {
        Some(l) => tokio::select! {
            r = run => r,
            e = l.lost() => Err(e),
        },
        None => run.await,
    };
    // The scope's staging tables are dropped and the lock given back, whatever the outcome
    // (a lost lock is not given back: its task has ended).
    if let Some(l) = lock {
        l.release().await;
    }
    // Rows dropped or blanked by `on_error` are not in the report's counts: say so once,
    // also when the run failed later.
    ctx.warn_on_error();
    outcome?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        pipeline = %p.name,
        rows_read = report.rows_read,
        rows_written = report.rows_written,
        rows_deleted = report.rows_deleted,
        duration_ms = report.duration_ms,
        "pipeline done"
    );
    Ok(report)
}
