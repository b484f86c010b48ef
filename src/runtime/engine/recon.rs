//! Hash reconciliation (`md5sum_hash`, `hash_md5_hash`), SPEC §5.
//!
//! 1. The range: `start`/`end` (overrides, then the config's bounds, evaluated once), else
//!    the `range` steps of both sides (min of the minimums, just past the max of the
//!    maximums). uuid/str partitions have no range: level 1 is every md5 prefix.
//! 2. Per level, ONE grouped `block_hash` query per side over each contiguous run of
//!    changed parents returns (block, rows, hash); blocks compare as unchanged, modified,
//!    added (source only) or deleted (sink only).
//! 3. Changed blocks with more than `max_block_size` rows (on either side) are split: the
//!    interval is divided by the reduction factor (prefix length + 1 for uuid/str), until
//!    it cannot shrink further.
//! 4. Changed leaves, touching ones merged up to `max_block_size` rows, are diffed key by
//!    key (`leaf_diff` on both sides); the source rows whose hash differs or that the sink
//!    lacks are extracted (`extract_range`) and merged, and with `allow_delete` the keys
//!    only the sink has are deleted — in one transaction per merged leaf.
//! 5. With `allow_delete`, blocks the source holds no row of are not split (when larger
//!    than `max_block_size`): the sink rows
//!    of each run of them are deleted by range (`delete_range`), before the leaves are
//!    written, where the sink's merge allows it (not collapse, not `ReplacingMergeTree`).
//!
//! A sink table that does not exist yet (or `plan` against a missing one) gets a full sync,
//! unless the run's range is bounded (start/end): a new table then gets the range only.

use super::blocks::{merge_adjacent, merge_leaves, next_interval, Range, Unit};
use super::full::{block_hash_fix, partition_dtype, row_estimate, stream_into, Ctx, Extract};
use super::params::{bound_value, eval_bound};
use super::progress::Bar;
use super::report::{KeyChange, PipelineReport};
use super::rows::{
    alias_key, alias_rows, extract_columns, key_label, key_of, to_sink_rows, Projection,
};
use super::sink::{connect, SinkIo};
use super::steps::Prepared;
use crate::expr::Value;
use crate::ir::{Pipeline, ReconStrategy, Reconciliation};
use crate::runtime::connect::Conn;
use crate::runtime::enrich::Enricher;
use crate::runtime::{Row, RuntimeError};
use crate::sql::Side;
use crate::types::Dtype;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The `range_start`/`range_end` parameters of `q`, and `range_last`, its last instant (the
/// inclusive end of a MySQL date or datetime range, [`crate::sql::ends_inclusively`]).
fn bounds(unit: Unit, q: Range) -> [(&'static str, Value); 3] {
    [
        ("range_start", unit.value(q.lo)),
        ("range_end", unit.value(q.hi)),
        ("range_last", unit.last_instant(q.hi)),
    ]
}

/// Most sink rows one `delete_range` statement (one transaction) deletes.
const DELETE_RANGE_ROWS: u64 = 1_000_000;

/// Longest md5 hex prefix.
const MAX_PREFIX: i64 = 32;

/// The connections of a reconciliation: source, sink, and the state tables' stores.
struct Sides<'a> {
    src: Conn,
    sink: SinkIo<'a>,
    src_state: Option<Conn>,
    sink_state: Option<Conn>,
}

impl Sides<'_> {
    async fn query(
        &mut self,
        step: &Prepared,
        vals: &[Value],
        out: &[Dtype],
    ) -> Result<Vec<Row>, RuntimeError> {
        if step.step.side == Side::Sink && self.sink.table_missing() {
            return Ok(Vec::new());
        }
        let conn = match step.step.side {
            Side::Source => Some(&mut self.src),
            Side::Sink => self.sink.conn(),
            Side::SourceState => self.src_state.as_mut(),
            Side::SinkState => self.sink_state.as_mut(),
        }
        .ok_or_else(|| {
            RuntimeError::Config(format!(
                "step {}: its datastore is not connected",
                step.step.id
            ))
        })?;
        conn.query(step.stmt(0), vals, out).await
    }

    /// Runs a source-side and a sink-side query at the same time (each on its own
    /// connection); returns their rows in that order.
    async fn query_pair(
        &mut self,
        (a, va): (&Prepared, &[Value]),
        (b, vb): (&Prepared, &[Value]),
        out: &[Dtype],
    ) -> Result<(Vec<Row>, Vec<Row>), RuntimeError> {
        let missing = |p: &Prepared| {
            RuntimeError::Config(format!(
                "step {}: its datastore is not connected",
                p.step.id
            ))
        };
        let Sides {
            src,
            sink,
            src_state,
            sink_state,
        } = self;
        let ca: &mut Conn = match a.step.side {
            Side::Source => src,
            Side::SourceState => src_state.as_mut().ok_or_else(|| missing(a))?,
            _ => return Err(missing(a)),
        };
        if b.step.side == Side::Sink && sink.table_missing() {
            return Ok((ca.query(a.stmt(0), va, out).await?, Vec::new()));
        }
        let cb: &mut Conn = match b.step.side {
            Side::Sink => sink.conn().ok_or_else(|| missing(b))?,
            Side::SinkState => sink_state.as_mut().ok_or_else(|| missing(b))?,
            _ => return Err(missing(b)),
        };
        let (ra, rb) = tokio::join!(ca.query(a.stmt(0), va, out), cb.query(b.stmt(0), vb, out));
        Ok((ra?, rb?))
    }
}

/// One block's (rows, hash) on each side.
#[derive(Debug, Default, Clone)]
struct Pair {
    src: Option<(u64, String)>,
    sink: Option<(u64, String)>,
}

impl Pair {
    fn rows(&self) -> u64 {
        let n = |s: &Option<(u64, String)>| s.as_ref().map_or(0, |x| x.0);
        n(&self.src).max(n(&self.sink))
    }
}

/// Most blocks one `md5sum_hash` query may return per side when it reads ahead to finer
/// levels.
const FINE_BLOCKS: i64 = 20_000;

/// A block's (rows, hash sum) on the source and on the sink side, when it has rows there.
type SideSums = (Option<(u64, i128)>, Option<(u64, i128)>);

/// `md5sum_hash` blocks read at a fine interval over `span`: (rows, hash sum) per side.
#[derive(Debug)]
struct Fine {
    interval: i64,
    span: Range,
    blocks: BTreeMap<i64, SideSums>,
}

impl Fine {
    /// Whether blocks of `interval` over `q` can be summed from these: `q` lies inside the
    /// span and every block of `interval` is a whole number of fine blocks. (Parent ranges
    /// are blocks of coarser levels, so their bounds fall on fine block bounds or on the
    /// span's own.)
    fn covers(&self, q: Range, interval: i64) -> bool {
        self.span.lo <= q.lo && q.hi <= self.span.hi && interval % self.interval == 0
    }

    /// The blocks of `interval` over `q`, each the sum of its fine blocks.
    fn roll_up(&self, q: Range, interval: i64) -> Vec<(i64, Pair)> {
        let add = |acc: &mut Option<(u64, i128)>, v: &Option<(u64, i128)>| {
            if let Some((n, h)) = v {
                let a = acc.get_or_insert((0, 0));
                a.0 += n;
                a.1 += h;
            }
        };
        let mut sums: BTreeMap<i64, SideSums> = BTreeMap::new();
        for (fid, (src, snk)) in self.blocks_in(q) {
            let lo = self.span.block(*fid, self.interval).lo;
            if lo < q.lo || lo >= q.hi {
                continue;
            }
            let e = sums.entry(lo.div_euclid(interval)).or_default();
            add(&mut e.0, src);
            add(&mut e.1, snk);
        }
        let text = |v: Option<(u64, i128)>| v.map(|(n, h)| (n, h.to_string()));
        sums.into_iter()
            .map(|(b, (src, snk))| {
                (
                    b,
                    Pair {
                        src: text(src),
                        sink: text(snk),
                    },
                )
            })
            .collect()
    }

    /// The fine blocks whose ids fall within `q` (a block's id is its floor division by the
    /// interval, as the generated `block_id`).
    fn blocks_in(&self, q: Range) -> impl Iterator<Item = (&i64, &SideSums)> {
        let ids = (!q.is_empty())
            .then(|| q.lo.div_euclid(self.interval)..=(q.hi - 1).div_euclid(self.interval));
        ids.into_iter().flat_map(|ids| self.blocks.range(ids))
    }

    /// Forgets the fine blocks of `q` that lie outside `keep` (the blocks of `q` split
    /// further, sorted): later levels only compare inside those.
    fn prune(&mut self, q: Range, keep: &[Range]) {
        let kept = |lo: i64| {
            let i = keep.partition_point(|k| k.hi <= lo);
            keep.get(i).is_some_and(|k| k.lo <= lo)
        };
        let gone: Vec<i64> = self
            .blocks_in(q)
            .map(|(fid, _)| *fid)
            .filter(|fid| {
                let lo = self.span.block(*fid, self.interval).lo;
                q.lo <= lo && lo < q.hi && !kept(lo)
            })
            .collect();
        for fid in gone {
            self.blocks.remove(&fid);
        }
    }
}

/// After the blocks of parent range `q` were compared: forgets the fine blocks of `q` that no
/// later level needs, those outside `split` (the blocks of `q` split further), and the
/// [`Fine`]s left without blocks. Without this, every changed parent's read-ahead stayed in
/// memory to the end of the run: a 10M-row table with ~100 scattered changes kept ~100
/// answers of 10,000 blocks (over 100 MB).
fn prune_fines(fine: &mut Vec<Fine>, q: Range, split: &[Range]) {
    let mut keep = split.to_vec();
    keep.sort();
    for f in fine.iter_mut() {
        f.prune(q, &keep);
    }
    fine.retain(|f| !f.blocks.is_empty());
}

/// What a leaf covers.
#[derive(Debug, Clone)]
enum Scope {
    Range(Range),
    /// Buckets of one prefix length.
    Prefixes(usize, Vec<String>),
    /// The rows whose (range) partition column is NULL.
    Nulls,
}

struct Recon<'c, 'a> {
    ctx: &'c Ctx<'a>,
    r: &'c Reconciliation,
    sides: Sides<'c>,
    enricher: Option<Enricher>,
    unit: Option<Unit>,
    /// A timestamp run's lookback window: the only range compared, rows written but none
    /// deleted.
    window: Option<Range>,
    bar: Bar,
    /// `plan`: the keys an earlier leaf would write. A row whose partition value moved to
    /// an earlier block is written there first, so `apply` finds nothing of it left to
    /// delete in its old block: `plan` does not count that delete either. `apply` into a
    /// sink that gathers leaves ([`SinkIo::defer_merges`]): the keys of the rows gathered
    /// and not yet merged, whose merge deletes their old rows.
    planned_writes: HashSet<String>,
    /// A timestamp run's window: the rows that differ from the sink although their
    /// timestamp is not past the sink's ([`Recon::warn_unmoved`]).
    unmoved: Repeated,
    /// Whether the sink's partition column keeps less than the source's datetimes (whole
    /// seconds, or rounded): timestamps are then compared at whole seconds.
    coarse_sink_time: bool,
}

/// Reconciles `ctx`'s pipeline with reconciliation `r`.
pub async fn run(
    ctx: &Ctx<'_>,
    r: &Reconciliation,
    report: &mut PipelineReport,
) -> Result<(), RuntimeError> {
    let p = ctx.p;
    let dry = ctx.opts.dry_run;
    let mut src = ctx.source().await?;
    let mut sink = SinkIo::open(p, ctx.cfg, &ctx.steps, &ctx.binds).await?;
    sink.source_keys = ctx.source_key_collations();
    let exists = sink.prepare(!dry).await?;
    // A range from start/end is honoured on a new table too: compared against a table that
    // holds nothing (its queries are not sent while it is missing), every block of the
    // range is added, and nothing beyond it is copied or counted. The table is created
    // with the first write, so a failing source query leaves none behind.
    let ranged = bounded(ctx, r) && Unit::of(r.kind).is_some();
    if !exists && !ranged {
        tracing::info!(pipeline = %p.name, "the sink table is new: running a full sync");
        report.mode = "full".into();
        let extract = Extract {
            step: "source.extract",
            extra: vec![],
            delete_absent: false,
            estimate: row_estimate(ctx, &mut src).await,
        };
        return stream_into(ctx, src, &mut sink, extract, report).await;
    }
    let mut rc = Recon::open(ctx, r, src, sink, None).await?;
    rc.reconcile(report).await?;
    // A range the source holds no row of still leaves the (new, empty) sink table.
    if !dry {
        rc.sides.sink.ensure_table().await?;
    }
    Ok(())
}

/// Most keys a reconciliation gathers before it has its sink merge them
/// ([`SinkIo::defer_merges`]): it remembers each gathered key (so as not to delete its old
/// row elsewhere), and a repair of half of 1M rows gathered at once peaked at 149 MB.
const GATHERED_KEYS: usize = 100_000;

/// Most buckets one query lists.
const PREFIXES_PER_QUERY: usize = 4096;

/// Rows a group of changed md5-prefix leaves may hold (keys and hashes of both sides, and
/// the source rows, are in memory at once: tens of MB).
const LEAF_GROUP_ROWS: u64 = 50_000;

/// The `prefixes` parameter: `,a3,f0,` (`,,` for the one empty prefix).
fn prefix_list(prefixes: &[String]) -> String {
    format!(",{},", prefixes.join(","))
}

/// A timestamp run's lookback window, `from` to `to` (the sink watermark) inclusive,
/// compared block by block like a block-hash reconciliation: only the source rows that
/// differ from the sink are written, none deleted. Returns the connections, and the value
/// the rest of the run streams rows after (`p > value` starts where the window ends);
/// `None` when the partition has no such value (floats: the caller streams the window).
///
/// A window reaching past the last end the sides can query (a watermark at ClickHouse's
/// last `Date` or `DateTime`, or past MySQL's types, read from another side) stops there:
/// the rows after it are streamed, merged again on every run (a warning says so). A
/// watermark at MySQL's last value needs no such stop: MySQL ranges end at their last
/// instant.
pub async fn compare_window<'s>(
    ctx: &'s Ctx<'_>,
    r: &'s Reconciliation,
    src: Conn,
    sink: SinkIo<'s>,
    (from, to): (&Value, &Value),
    report: &mut PipelineReport,
) -> Result<(Conn, SinkIo<'s>, Option<Value>), RuntimeError> {
    let unit = Unit::of(r.kind);
    let bounds = unit.and_then(|u| {
        let lo = u.to_units(from, false)?;
        let hi = u.to_units(to, false)?.checked_add(1)?;
        Some((u, lo, hi))
    });
    let Some((unit, lo, hi)) = bounds else {
        return Ok((src, sink, None));
    };
    let hi = match unit.limit_of(&ctx.dialects()) {
        Some((limit, _)) if hi > limit => {
            // The watermark itself lies at or past the limit.
            tracing::warn!(
                "pipeline `{}`, reconciliation `{}`: rows whose partition value is {} or later lie past the last date or time the databases can bound the lookback window with: they are not compared but merged again on every run",
                ctx.p.name,
                r.name,
                unit.value(limit).to_text()
            );
            limit
        }
        _ => hi,
    };
    let Some(after) = unit.just_before(hi) else {
        return Ok((src, sink, None));
    };
    let window = Range {
        lo: lo.min(hi - 1),
        hi,
    };
    let mut rc = Recon::open(ctx, r, src, sink, Some(window)).await?;
    rc.reconcile(report).await?;
    rc.warn_unmoved();
    Ok((rc.sides.src, rc.sides.sink, Some(after)))
}

/// Whether the run's range is bounded by a start or an end (the config's or the command
/// line's).
fn bounded(ctx: &Ctx<'_>, r: &Reconciliation) -> bool {
    ctx.opts.start.is_some() || ctx.opts.end.is_some() || r.start.is_some() || r.end.is_some()
}

/// The source keys a leaf read more than once: each key counted once, however many rows
/// hold it, and the label of the first.
#[derive(Default)]
struct Repeated {
    keys: HashSet<String>,
    first: Option<String>,
}

impl Repeated {
    /// A row repeating `key`, labelled by `label` if it is the first repeated key.
    fn add(&mut self, key: String, label: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(label());
        }
        self.keys.insert(key);
    }
}

fn id(r: &Reconciliation, side: &str, what: &str) -> String {
    format!("recon.{}.{side}.{what}", r.name)
}

fn text(v: Option<&Value>) -> String {
    v.map(|v| v.to_text()).unwrap_or_default()
}

fn count(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Int(n)) => (*n).max(0) as u64,
        Some(Value::Decimal(d)) => d.trunc_i64().unwrap_or(0).max(0) as u64,
        _ => 0,
    }
}

/// The first `n` of a leaf's changed keys in key order, for `--show-keys`.
fn first_keys(p: &Pipeline, mut changed: Vec<(&'static str, &Row)>, n: usize) -> Vec<KeyChange> {
    changed.sort_by(|(_, a), (_, b)| super::absent::cmp_keys(a, b));
    changed
        .into_iter()
        .take(n)
        .map(|(change, kv)| KeyChange::of(p, change, kv))
        .collect()
}

impl<'c, 'a> Recon<'c, 'a> {
    /// A reconciliation over `src` and `sink`, with the state stores (`sourcestate`,
    /// `sinkstate`) and the enrichment stores connected; `window` limits it to one range.
    async fn open(
        ctx: &'c Ctx<'a>,
        r: &'c Reconciliation,
        src: Conn,
        sink: SinkIo<'c>,
        window: Option<Range>,
    ) -> Result<Recon<'c, 'a>, RuntimeError> {
        let p = ctx.p;
        let src_state = match &p.source_state {
            Some(st) => Some(connect(ctx.cfg, &st.store.name).await?),
            None => None,
        };
        let sink_state = match &p.sink_state {
            Some(st) => Some(connect(ctx.cfg, &st.store.name).await?),
            None => None,
        };
        let coarse_sink_time =
            p.row_hash.seconds_precision || sink.keeps_less(&r.sink_partition, Dtype::Datetime);
        Ok(Recon {
            ctx,
            r,
            sides: Sides {
                src,
                sink,
                src_state,
                sink_state,
            },
            enricher: ctx.enricher().await?,
            unit: Unit::of(r.kind),
            window,
            bar: ctx.progress.blocks(&p.name),
            planned_writes: HashSet::new(),
            unmoved: Repeated::default(),
            coarse_sink_time,
        })
    }

    /// Compares and repairs the range (or the md5-prefix buckets), with the sink's merges
    /// gathered across the changed leaves where it gathers them ([`SinkIo::defer_merges`]).
    async fn reconcile(&mut self, report: &mut PipelineReport) -> Result<(), RuntimeError> {
        let deferring = !self.ctx.opts.dry_run && self.sides.sink.defer_merges(true);
        match self.unit {
            Some(unit) => self.ranges(unit, report).await?,
            None => self.prefixes(report).await?,
        }
        if deferring {
            self.sides.sink.end_deferring().await?;
        }
        Ok(())
    }

    fn hash_dtype(&self) -> Dtype {
        match self.r.strategy {
            ReconStrategy::HashMd5Hash => Dtype::Str,
            _ => Dtype::Decimal {
                precision: 38,
                scale: 0,
            },
        }
    }

    /// Whether a row's source timestamp `src` is not past the sink's `sink` (the row's
    /// change did not move it forward): compared at whole seconds where the sink keeps
    /// less than the source (it may have cut or rounded the value it was given).
    fn not_moved(&self, src: &Value, sink: &Value) -> bool {
        match (src, sink) {
            (Value::Datetime(a), Value::Datetime(b)) if self.coarse_sink_time => {
                let secs = |t: &chrono::NaiveDateTime, ceil: bool| {
                    Unit::Seconds.to_units(&Value::Datetime(*t), ceil)
                };
                secs(a, false) <= secs(b, true)
            }
            (Value::Null, _) | (_, Value::Null) => false,
            (a, b) => crate::expr::eval::order(a, b).is_ok_and(|o| o.is_some_and(|o| o.is_le())),
        }
    }

    /// After a timestamp run's window: warns when rows in it differed from the sink
    /// although their timestamp had not moved past the sink's, a change the watermark
    /// cannot show (a changed field definition, an update that left the timestamp as it
    /// was), which the rows before the window, never compared, may have too.
    fn warn_unmoved(&self) {
        let Some(first) = &self.unmoved.first else {
            return;
        };
        let (p, r) = (self.ctx.p, self.r);
        let fix = block_hash_fix(p);
        tracing::warn!(
            "pipeline `{}`, reconciliation `{}`: {} row(s) of the lookback window differ from the sink although their `{}` is not later than the sink's (first: ({first})): a changed field definition (an expression, a template, an enrichment) or updates that leave `{}` as it was. A timestamp run compares only its lookback window, so the rows before it may differ the same way: run {fix} or `apply --full` to repair them",
            p.name,
            r.name,
            self.unmoved.keys.len(),
            r.source_partition,
            r.source_partition,
        );
    }

    /// The range to reconcile, in units; `None` when both sides are empty.
    async fn range(&mut self, unit: Unit) -> Result<Option<Range>, RuntimeError> {
        let (ctx, r) = (self.ctx, self.r);
        let now = ctx.opts.now;
        let start = match (&ctx.opts.start, &r.start) {
            (Some(e), _) => Some(eval_bound(e, now)?),
            (None, Some(b)) => Some(bound_value(b, now)?),
            (None, None) => None,
        };
        let end = match (&ctx.opts.end, &r.end) {
            (Some(e), _) => Some(eval_bound(e, now)?),
            (None, Some(b)) => Some(bound_value(b, now)?),
            (None, None) => None,
        };
        let units = |v: &Value, ceil: bool| {
            unit.to_units(v, ceil).ok_or_else(|| {
                RuntimeError::Config(format!(
                    "reconciliation `{}`: bound {} does not fit a {:?} partition",
                    r.name,
                    v.to_text(),
                    r.kind
                ))
            })
        };
        let mut lo = start.as_ref().map(|v| units(v, false)).transpose()?;
        let mut hi = end.as_ref().map(|v| units(v, true)).transpose()?;
        if let (Some(a), Some(b), Some(l), Some(h)) = (&start, &end, lo, hi) {
            if h <= l {
                return Err(RuntimeError::Config(format!(
                    "pipeline `{}`, reconciliation `{}`: the range is empty: end {} is not after start {}",
                    ctx.p.name,
                    r.name,
                    b.to_text(),
                    a.to_text()
                )));
            }
        }
        // Just past the largest partition value of either side, when read.
        let mut data_end: Option<i64> = None;
        if lo.is_none() || hi.is_none() {
            let t = partition_dtype(r.kind);
            let mut mins = Vec::new();
            let mut maxs = Vec::new();
            let (sa, sb) = (
                ctx.steps.need(&id(r, "source", "range"))?,
                ctx.steps.need(&id(r, "sink", "range"))?,
            );
            let (va, vb) = (sa.values(&ctx.binds, &[])?, sb.values(&ctx.binds, &[])?);
            let (ra, rb) = self.sides.query_pair((sa, &va), (sb, &vb), &[t, t]).await?;
            // A value the blocks cannot count (a float beyond ±9.2e18, NaN) would leave its
            // rows in no block, compared never: the run stops rather than pass them.
            let data_units = |v: &Value, side: &str| {
                unit.to_units(v, false).ok_or_else(|| {
                    RuntimeError::Config(format!(
                        "pipeline `{}`, reconciliation `{}`: the {side}'s partition value {} lies beyond the range blocks are counted in (±9.2e18; for a float partition ±9.0e15, past which floats are not every whole number), so its rows could not be compared; partition by another column{}",
                        ctx.p.name,
                        r.name,
                        v.to_text(),
                        if side == "sink" {
                            " (a value only the sink still holds goes with `apply --full`)"
                        } else {
                            ""
                        }
                    ))
                })
            };
            for (rows, side) in [(ra, "source"), (rb, "sink")] {
                if let Some(row) = rows.first() {
                    if let Some(v) = row.first().filter(|v| !v.is_null()) {
                        mins.push(data_units(v, side)?);
                    }
                    if let Some(v) = row.get(1).filter(|v| !v.is_null()) {
                        let max = data_units(v, side)?;
                        // Said once, though both sides may hold it.
                        if max == i64::MAX && !maxs.contains(&max.saturating_add(1)) {
                            // Blocks end before an exclusive bound, and none lies past it.
                            tracing::warn!(
                                "pipeline `{}`, reconciliation `{}`: rows whose partition value is {} (the largest 64-bit value) lie past every block and are not compared",
                                ctx.p.name,
                                r.name,
                                v.to_text()
                            );
                        }
                        maxs.push(max.saturating_add(1));
                    }
                }
            }
            data_end = maxs.iter().copied().max();
            lo = lo.or(mins.into_iter().min());
            hi = hi.or(data_end);
        }
        // An end past the last value a side's date or time type holds covers every row
        // up to it, and is not bound as it is (it does not fit the type): the range stops
        // at the last end the sides can query. On MySQL that is past its types' last value
        // (its ranges end inclusively), so nothing is left out; on ClickHouse, the type's
        // last `Date` or `DateTime` lies past every block: rows there (or, on another side,
        // later) are said to go uncompared, as the largest 64-bit integer is.
        if let (Some((limit, lossy)), Some(h)) = (unit.limit_of(&ctx.dialects()), hi) {
            if h > limit {
                hi = Some(limit);
                // Whether rows lie at or past the limit: the sides' maxima when read, else
                // (start and end both given) whether the type holds values there at all.
                let beyond = match data_end {
                    Some(end) => end > limit,
                    None => lossy,
                };
                if beyond {
                    tracing::warn!(
                        "pipeline `{}`, reconciliation `{}`: rows whose partition value is {} or later lie past the last date or time the databases can bound a block with, and are not compared",
                        ctx.p.name,
                        r.name,
                        unit.value(limit).to_text()
                    );
                }
            }
        }
        Ok(match (lo, hi) {
            (Some(lo), Some(hi)) if hi > lo => Some(Range { lo, hi }),
            _ => None,
        })
    }

    /// Compares the rows whose partition column is NULL, which no range block holds, as one
    /// block of their own; returns whether it changed. Only when the run's range is not
    /// bounded: a range from start/end leaves them out, as it leaves out every row beyond it.
    async fn null_block(&mut self, report: &mut PipelineReport) -> Result<bool, RuntimeError> {
        let (ctx, r) = (self.ctx, self.r);
        let (Some(sa), Some(sb)) = (
            ctx.steps.get(&id(r, "source", "nulls")),
            ctx.steps.get(&id(r, "sink", "nulls")),
        ) else {
            return Ok(false);
        };
        if bounded(ctx, r) {
            return Ok(false);
        }
        let (va, vb) = (sa.values(&ctx.binds, &[])?, sb.values(&ctx.binds, &[])?);
        let out = [Dtype::Int, self.hash_dtype()];
        let side = |rows: &[Row]| {
            let row = rows.first()?;
            let n = count(row.first());
            (n > 0).then(|| (n, text(row.get(1))))
        };
        // A NOT NULL sink column needs no look (on ClickHouse it would be another scan).
        let pair = if sb.step.side == Side::Sink && self.sides.sink.never_null(&r.sink_partition) {
            Pair {
                src: side(&self.sides.query(sa, &va, &out).await?),
                sink: None,
            }
        } else {
            let (ra, rb) = self.sides.query_pair((sa, &va), (sb, &vb), &out).await?;
            Pair {
                src: side(&ra),
                sink: side(&rb),
            }
        };
        if pair.src.is_none() && pair.sink.is_none() {
            return Ok(false);
        }
        tracing::debug!(pipeline = %ctx.p.name, source = ?pair.src, sink = ?pair.sink, "rows with a NULL partition value");
        self.bar.add_total(1);
        Ok(self.classify(&pair, report))
    }

    /// Runs both sides' `block_hash` with `extra` and pairs the blocks by id.
    async fn block_hashes(
        &mut self,
        extra: &[(&str, Value)],
        block_t: Dtype,
    ) -> Result<BTreeMap<String, (Value, Pair)>, RuntimeError> {
        let (ctx, r) = (self.ctx, self.r);
        let out = [block_t, Dtype::Int, self.hash_dtype()];
        let mut blocks: BTreeMap<String, (Value, Pair)> = BTreeMap::new();
        let (sa, sb) = (
            ctx.steps.need(&id(r, "source", "block_hash"))?,
            ctx.steps.need(&id(r, "sink", "block_hash"))?,
        );
        let (va, vb) = (sa.values(&ctx.binds, extra)?, sb.values(&ctx.binds, extra)?);
        let (ra, rb) = self.sides.query_pair((sa, &va), (sb, &vb), &out).await?;
        for (side, rows) in [("source", ra), ("sink", rb)] {
            for row in rows {
                let block = row.first().cloned().unwrap_or(Value::Null);
                // Sort integer ids numerically: zero-padded, sign-aware text.
                let key = match &block {
                    Value::Int(i) => format!("{:020}", (*i as i128) - (i64::MIN as i128)),
                    v => v.to_text(),
                };
                let entry = blocks
                    .entry(key)
                    .or_insert_with(|| (block.clone(), Pair::default()));
                let v = Some((count(row.get(1)), text(row.get(2))));
                if side == "source" {
                    entry.1.src = v;
                } else {
                    entry.1.sink = v;
                }
            }
        }
        Ok(blocks)
    }

    /// Counts a block's comparison; returns whether it changed.
    fn classify(&self, pair: &Pair, report: &mut PipelineReport) -> bool {
        let b = &mut report.blocks;
        match (&pair.src, &pair.sink) {
            (Some(a), Some(z)) if a == z => {
                b.unchanged += 1;
                self.bar.inc(1);
                self.bar.rows(pair.rows());
                false
            }
            (Some(_), Some(_)) => {
                b.modified += 1;
                true
            }
            (Some(_), None) => {
                b.added += 1;
                true
            }
            (None, Some(_)) => {
                b.deleted += 1;
                true
            }
            (None, None) => false,
        }
    }

    /// Undoes the count of a changed block that is split further (its children count).
    fn unclassify(pair: &Pair, report: &mut PipelineReport) {
        let b = &mut report.blocks;
        match (&pair.src, &pair.sink) {
            (Some(_), Some(_)) => b.modified -= 1,
            (Some(_), None) => b.added -= 1,
            (None, Some(_)) => b.deleted -= 1,
            (None, None) => {}
        }
    }

    async fn ranges(
        &mut self,
        unit: Unit,
        report: &mut PipelineReport,
    ) -> Result<(), RuntimeError> {
        // A timestamp run's window leaves out the NULL-partition rows, which no watermark
        // reaches: they are compared on every run.
        let nulls_changed = (self.window.is_none() || self.r.strategy == ReconStrategy::Timestamp)
            && self.null_block(report).await?;
        let total = match self.window {
            Some(w) => Some(w),
            None => self.range(unit).await?,
        };
        let Some(total) = total else {
            if nulls_changed {
                self.leaf(Scope::Nulls, report).await?;
            } else {
                tracing::info!(pipeline = %self.ctx.p.name, "both sides are empty");
            }
            return Ok(());
        };
        let max = self.r.max_block_size;
        let mut interval = unit.level1(self.r);
        let mut parents = vec![total];
        let mut leaves: Vec<(Range, u64)> = Vec::new();
        let mut added: Vec<(Range, u64)> = Vec::new();
        let mut level = 1;
        let additive = self.r.strategy == ReconStrategy::Md5sumHash;
        let mut fine: Vec<Fine> = Vec::new();
        let mut gone: Vec<(Range, u64)> = Vec::new();
        let range_deletes = self.window.is_none()
            && self
                .ctx
                .steps
                .get(&id(self.r, "sink", "delete_range"))
                .is_some();
        while !parents.is_empty() {
            let next = next_interval(interval, self.r.reduction_factor);
            let mut split = Vec::new();
            for q in merge_adjacent(std::mem::take(&mut parents)) {
                let first_split = split.len();
                let blocks: Vec<(i64, Pair)> = if additive {
                    self.rolled_up(&mut fine, unit, q, interval).await?
                } else {
                    let [lo, hi, last] = bounds(unit, q);
                    let extra = [("interval", Value::Int(interval)), lo, hi, last];
                    self.block_hashes(&extra, Dtype::Int)
                        .await?
                        .into_values()
                        .filter_map(|(b, pair)| match b {
                            Value::Int(b) => Some((b, pair)),
                            _ => None,
                        })
                        .collect()
                };
                self.bar.add_total(blocks.len() as u64);
                for (b, pair) in &blocks {
                    let range = q.block(*b, interval);
                    if range.is_empty() || !self.classify(pair, report) {
                        continue;
                    }
                    if pair.src.is_none() && range_deletes && pair.rows() > max {
                        // Nothing of it left in the source, and too big for a leaf: deleted
                        // by range below. (A small one is diffed as a leaf: a row that only
                        // moved to another block is then updated there, not deleted and
                        // written anew.)
                        self.bar.inc(1);
                        self.bar.rows(pair.rows());
                        gone.push((range, pair.rows()));
                    } else if pair.sink.is_none() && pair.rows() > max {
                        // Nothing of it in the sink (an interrupted first load, a new
                        // range): no need to split it, stream it whole.
                        self.bar.inc(1);
                        self.bar.rows(pair.rows());
                        added.push((range, pair.rows()));
                    } else if pair.rows() > max && next.is_some() {
                        Self::unclassify(pair, report);
                        self.bar.inc(1);
                        split.push(range);
                    } else {
                        leaves.push((range, pair.rows()));
                    }
                }
                if additive {
                    prune_fines(&mut fine, q, &split[first_split..]);
                }
            }
            tracing::debug!(
                level,
                interval,
                split = split.len(),
                leaves = leaves.len(),
                "level compared"
            );
            parents = split;
            // Blocks coarser than the next level's never roll up into it again.
            fine.retain(|f| next.is_some_and(|n| f.interval <= n));
            if let Some(n) = next {
                interval = n;
            }
            level += 1;
        }
        // First, so that a row moved from a deleted block into a changed leaf is deleted and
        // then written anew, as `plan` (which deletes nothing) counts it.
        for (range, rows) in merge_leaves(gone, DELETE_RANGE_ROWS) {
            self.delete_range(unit, range, rows, report).await?;
        }
        // Touching leaves are diffed and written together up to a batch: a change that
        // covers many leaves (an UPDATE of every row, an emptied source) costs one round of
        // queries and one write per batch rather than per leaf, while scattered changes
        // still read only their own leaves.
        let chunk = max.max(u64::from(self.ctx.p.source.batch_size));
        for (range, _rows) in merge_leaves(leaves, chunk) {
            self.leaf(Scope::Range(range), report).await?;
        }
        if nulls_changed {
            self.leaf(Scope::Nulls, report).await?;
        }
        // Last: streaming leaves the loads open across batches (ClickHouse), which the staged
        // merges of the leaves above must not meet.
        for (range, rows) in merge_leaves(added, u64::MAX) {
            self.stream_added(unit, range, rows, report).await?;
        }
        Ok(())
    }

    /// Deletes the sink rows of `range`, of which the source holds none (`rows`: the sink's
    /// count from the block hashes, which is what `plan` reports).
    async fn delete_range(
        &mut self,
        unit: Unit,
        range: Range,
        rows: u64,
        report: &mut PipelineReport,
    ) -> Result<(), RuntimeError> {
        tracing::debug!(?range, rows, "deleting a range the source lacks");
        if self.ctx.opts.dry_run {
            report.rows_deleted += rows;
            return Ok(());
        }
        let step = id(self.r, "sink", "delete_range");
        let extra = bounds(unit, range);
        report.rows_deleted += self.sides.sink.delete_range(&step, &extra, rows).await?;
        Ok(())
    }

    /// Streams the source rows of `range`, of which the sink holds none, into the sink in
    /// batches, as a full sync does (plan: counts them, `rows` from the block hashes).
    async fn stream_added(
        &mut self,
        unit: Unit,
        range: Range,
        rows: u64,
        report: &mut PipelineReport,
    ) -> Result<(), RuntimeError> {
        let ctx = self.ctx;
        tracing::debug!(?range, rows, "streaming a block the sink lacks");
        if ctx.opts.dry_run {
            report.rows_read += rows;
            report.rows_written += rows;
            report.rows_new += rows;
            return Ok(());
        }
        let step = id(self.r, "source", "extract_range");
        let extract = Extract {
            step: &step,
            extra: bounds(unit, range).to_vec(),
            delete_absent: false,
            estimate: None,
        };
        // The reader owns its connection while it streams.
        let src = ctx.source().await?;
        let before = report.rows_written;
        stream_into(ctx, src, &mut self.sides.sink, extract, report).await?;
        report.rows_new += report.rows_written - before;
        Ok(())
    }

    /// The blocks of interval `interval` over `q` for `md5sum_hash`, whose counts and hash
    /// sums add up: rolled up from finer blocks read earlier when some cover `q`, else from
    /// one grouped query per side at the finest interval of the coming levels that keeps
    /// the answer within [`FINE_BLOCKS`] blocks. A change then costs one scan of the
    /// changed range instead of one per level. The caller forgets what later levels do not
    /// need once `q` is compared ([`prune_fines`]).
    async fn rolled_up(
        &mut self,
        fine: &mut Vec<Fine>,
        unit: Unit,
        q: Range,
        interval: i64,
    ) -> Result<Vec<(i64, Pair)>, RuntimeError> {
        if let Some(f) = fine.iter().find(|f| f.covers(q, interval)) {
            return Ok(f.roll_up(q, interval));
        }
        let mut qi = interval;
        while let Some(n) = next_interval(qi, self.r.reduction_factor) {
            // In 128 bits: an int range may span more than i64::MAX (from negative to
            // positive partition values).
            let blocks = (i128::from(q.hi) - i128::from(q.lo)) / i128::from(n);
            if qi % n != 0 || blocks > i128::from(FINE_BLOCKS) {
                break;
            }
            qi = n;
        }
        tracing::debug!(?q, interval, read_ahead = qi, "reading blocks ahead");
        let [lo, hi, last] = bounds(unit, q);
        let extra = [("interval", Value::Int(qi)), lo, hi, last];
        let mut f = Fine {
            interval: qi,
            span: q,
            blocks: BTreeMap::new(),
        };
        for (b, pair) in self.block_hashes(&extra, Dtype::Int).await?.into_values() {
            let Value::Int(b) = b else { continue };
            let side = |s: &Option<(u64, String)>| -> Result<Option<(u64, i128)>, RuntimeError> {
                s.as_ref()
                    .map(|(n, h)| {
                        crate::expr::Decimal::parse(h)
                            .map(|d| d.normalized())
                            .filter(|d| d.scale() == 0)
                            .map(|d| (*n, d.mantissa()))
                            .ok_or_else(|| {
                                RuntimeError::Config(format!(
                                    "reconciliation `{}`: block hash {h:?} is not an integer sum",
                                    self.r.name
                                ))
                            })
                    })
                    .transpose()
            };
            f.blocks.insert(b, (side(&pair.src)?, side(&pair.sink)?));
        }
        let out = f.roll_up(q, interval);
        fine.push(f);
        Ok(out)
    }

    /// Reconciles md5-prefix buckets level by level. The buckets cannot use an index, so
    /// each query is a scan: one query per level serves every changed parent bucket (up
    /// to [`PREFIXES_PER_QUERY`]), and the changed leaves are diffed together in groups of
    /// up to [`LEAF_GROUP_ROWS`] rows, instead of one scan per bucket.
    async fn prefixes(&mut self, report: &mut PipelineReport) -> Result<(), RuntimeError> {
        let max = self.r.max_block_size;
        let mut len = self.r.initial_interval.clamp(1, MAX_PREFIX);
        let mut parents = vec![String::new()];
        let mut leaves: BTreeMap<usize, Vec<(String, u64)>> = BTreeMap::new();
        while !parents.is_empty() {
            let mut split = Vec::new();
            for chunk in std::mem::take(&mut parents).chunks(PREFIXES_PER_QUERY) {
                let extra = [
                    ("block_prefix_len", Value::Int(len)),
                    ("prefix_len", Value::Int(chunk[0].len() as i64)),
                    ("prefixes", Value::Str(prefix_list(chunk))),
                ];
                let blocks = self.block_hashes(&extra, Dtype::Str).await?;
                self.bar.add_total(blocks.len() as u64);
                for (block, pair) in blocks.values() {
                    if !self.classify(pair, report) {
                        continue;
                    }
                    let prefix = block.to_text();
                    if pair.rows() > max && len < MAX_PREFIX {
                        Self::unclassify(pair, report);
                        self.bar.inc(1);
                        split.push(prefix);
                    } else {
                        leaves
                            .entry(prefix.len())
                            .or_default()
                            .push((prefix, pair.rows()));
                    }
                }
            }
            parents = split;
            len += 1;
        }
        // Each group is a scan of both tables (the buckets cannot use an index), so groups
        // are large: up to LEAF_GROUP_ROWS rows, or ten max_block_size if more.
        let budget = max.saturating_mul(10).max(LEAF_GROUP_ROWS);
        for (len, group) in leaves {
            let mut batch: Vec<String> = Vec::new();
            let mut rows = 0u64;
            for (prefix, n) in group {
                if !batch.is_empty() && (rows + n > budget || batch.len() >= PREFIXES_PER_QUERY) {
                    let list = std::mem::take(&mut batch);
                    self.leaf(Scope::Prefixes(len, list), report).await?;
                    rows = 0;
                }
                batch.push(prefix);
                rows += n;
            }
            if !batch.is_empty() {
                self.leaf(Scope::Prefixes(len, batch), report).await?;
            }
        }
        Ok(())
    }

    /// Diffs one (merged) leaf key by key and writes what differs.
    async fn leaf(
        &mut self,
        scope: Scope,
        report: &mut PipelineReport,
    ) -> Result<(), RuntimeError> {
        let (ctx, r) = (self.ctx, self.r);
        let p = ctx.p;
        let extra: Vec<(&'static str, Value)> = match &scope {
            Scope::Range(q) => {
                let unit = self.unit.expect("range scopes have a unit");
                bounds(unit, *q).to_vec()
            }
            Scope::Prefixes(len, list) => vec![
                ("prefix_len", Value::Int(*len as i64)),
                ("prefixes", Value::Str(prefix_list(list))),
            ],
            Scope::Nulls => vec![],
        };
        let (diff, extract) = match scope {
            Scope::Nulls => ("null_leaf_diff", "extract_null"),
            _ => ("leaf_diff", "extract_range"),
        };
        let mut out: Vec<Dtype> = p.key.iter().map(|k| k.dtype).collect();
        out.push(Dtype::Int);
        // A timestamp reconciliation's leaf diffs give each row's partition value too.
        let timestamp = r.strategy == ReconStrategy::Timestamp;
        if timestamp {
            out.push(partition_dtype(r.kind));
        }
        let nkey = p.key.len();
        let mut hashes: [HashMap<String, (String, Row, Value)>; 2] =
            [HashMap::new(), HashMap::new()];
        let (sa, sb) = (
            ctx.steps.need(&id(r, "source", diff))?,
            ctx.steps.need(&id(r, "sink", diff))?,
        );
        let (va, vb) = (
            sa.values(&ctx.binds, &extra)?,
            sb.values(&ctx.binds, &extra)?,
        );
        let (ra, rb) = self.sides.query_pair((sa, &va), (sb, &vb), &out).await?;
        let mut repeated = Repeated::default();
        // Keys the sink holds more than once (a delete_insert sink without a unique key):
        // rewritten, which replaces every copy, even when one copy matches the source.
        let mut sink_repeated: HashSet<String> = HashSet::new();
        for (i, rows) in [ra, rb].into_iter().enumerate() {
            for row in rows {
                let key: Vec<&Value> = row.iter().take(nkey).collect();
                let k = key_of(&key);
                let h = text(row.get(nkey));
                let kv: Row = row.iter().take(nkey).cloned().collect();
                let part = row.get(nkey + 1).cloned().unwrap_or(Value::Null);
                if hashes[i].insert(k.clone(), (h, kv, part)).is_some() {
                    if i == 0 {
                        repeated.add(k, || key_label(p, &key));
                    } else {
                        sink_repeated.insert(k);
                    }
                }
            }
        }
        if let Some(first) = &repeated.first {
            // The sink holds one row per key: this leaf will differ on every run.
            tracing::warn!(
                "pipeline `{}`: the source has {} key(s) held by more than one row (first: ({first})); the sink keeps one row per key, so this block compares as changed on every run without anything to write. Make `unique_key` a key of the source.",
                p.name,
                repeated.keys.len()
            );
        }
        let [src, snk] = hashes;
        let to_write: HashSet<&String> = src
            .iter()
            .filter(|(k, (h, _, _))| {
                sink_repeated.contains(*k) || snk.get(*k).is_none_or(|(hs, _, _)| hs != h)
            })
            .map(|(k, _)| k)
            .collect();
        if timestamp && !matches!(scope, Scope::Nulls) {
            // Rows the sink holds with another hash although their timestamp is not past
            // the sink's: a change the watermark does not show, which rows before the
            // window may have too.
            for k in &to_write {
                let (Some((_, kv, ps)), Some((_, _, pk))) = (src.get(*k), snk.get(*k)) else {
                    continue;
                };
                if self.not_moved(ps, pk) {
                    self.unmoved.add((*k).clone(), || {
                        key_label(p, &kv.iter().collect::<Vec<_>>())
                    });
                }
            }
        }
        let allow_delete = p.sink.merge.allow_delete
            && self.window.is_none()
            && ctx.steps.get("sink.delete_keys").is_some();
        let dry = ctx.opts.dry_run;
        // A sink that gathers leaves to merge them together has not yet written the keys
        // of earlier leaves either.
        let tracked = dry || self.sides.sink.deferring();
        let to_delete: Vec<Row> = if allow_delete {
            snk.iter()
                .filter(|(k, _)| !src.contains_key(*k))
                .filter(|(k, _)| !(tracked && self.planned_writes.contains(*k)))
                .map(|(_, (_, kv, _))| kv.clone())
                .collect()
        } else {
            vec![]
        };
        let new = to_write.iter().filter(|k| !snk.contains_key(**k)).count() as u64;
        tracing::debug!(scope = ?scope, write = to_write.len(), new, delete = to_delete.len(), "leaf diffed");
        if let Some(keys) = report.keys.as_mut() {
            report.keys_found += (to_write.len() + to_delete.len()) as u64;
            let room = ctx.opts.show_keys.saturating_sub(keys.len());
            if room > 0 {
                let written = to_write.iter().filter_map(|k| {
                    let change = if snk.contains_key(*k) {
                        "modified"
                    } else {
                        "added"
                    };
                    src.get(*k).map(|(_, kv, _)| (change, kv))
                });
                let deleted = to_delete.iter().map(|kv| ("deleted", kv));
                keys.extend(first_keys(p, written.chain(deleted).collect(), room));
            }
        }
        self.bar.inc(1);
        self.bar.rows(src.len().max(snk.len()) as u64);
        if dry {
            self.planned_writes
                .extend(to_write.iter().map(|k| (*k).clone()));
            // What apply would do: read the leaf's source rows, when any of them is written.
            if !to_write.is_empty() {
                report.rows_read += src.len() as u64;
            }
            report.rows_written += to_write.len() as u64;
            report.rows_new += new;
            report.rows_deleted += to_delete.len() as u64;
            return Ok(());
        }
        let mut rows = Vec::new();
        if !to_write.is_empty() {
            let step = ctx.steps.need(&id(r, "source", extract))?;
            let vals = step.values(&ctx.binds, &extra)?;
            let cols = extract_columns(p);
            let types: Vec<Dtype> = cols.iter().map(|c| c.1).collect();
            let read = self.sides.query(step, &vals, &types).await?;
            report.rows_read += read.len() as u64;
            rows = match Projection::of(p, &cols) {
                // Plain copies: projected by position, as a full sync's batches are.
                Some(proj) => {
                    let keep: Vec<Row> = read
                        .into_iter()
                        .filter(|row| to_write.contains(&proj.extract_key(row)))
                        .collect();
                    proj.rows(p, keep)?
                }
                None => {
                    let keep: Vec<_> = alias_rows(&cols, read)
                        .into_iter()
                        .filter(|row| to_write.contains(&alias_key(p, row)))
                        .collect();
                    let enricher = self.enricher.as_ref().expect("apply runs have an enricher");
                    to_sink_rows(p, enricher, keep, ctx.opts.now).await?
                }
            };
        }
        // A collapse sink cancels the leaf's own versions of the keys to delete only.
        let cancel = id(
            r,
            "sink",
            match scope {
                Scope::Nulls => "cancel_null_leaf_keys",
                _ => "cancel_leaf_keys",
            },
        );
        let delete_step = ctx.steps.get(&cancel).map(|_| (cancel, extra));
        let w = self
            .sides
            .sink
            .write_leaf(&rows, &to_delete, delete_step)
            .await?;
        if self.sides.sink.staged() && self.planned_writes.len() + to_write.len() > GATHERED_KEYS {
            self.sides.sink.merge_gathered().await?;
        }
        if self.sides.sink.staged() {
            self.planned_writes
                .extend(to_write.iter().map(|k| (*k).clone()));
        } else {
            // Merged: the keys written no longer show in their old blocks.
            self.planned_writes.clear();
        }
        report.rows_written += w.rows;
        // Rows `on_error: skip` dropped are not written, new or not.
        report.rows_new += new.min(w.rows);
        report.rows_deleted += w.deleted;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_counted_once_however_many_rows_hold_them() {
        let mut r = Repeated::default();
        // One key held by five rows: four repeats of it.
        for _ in 0..4 {
            r.add("k5".into(), || "id=5".into());
        }
        r.add("k7".into(), || "id=7".into());
        assert_eq!(r.keys.len(), 2);
        assert_eq!(r.first.as_deref(), Some("id=5"));
    }

    #[test]
    fn fine_blocks_roll_up_into_coarser_ones_within_the_range() {
        // Blocks of 10 over [5, 95): the first and last are clipped to the span.
        let mut blocks = BTreeMap::new();
        blocks.insert(0, (Some((2, 10)), Some((2, 10))));
        blocks.insert(3, (Some((1, -4)), None));
        blocks.insert(5, (Some((3, 6)), Some((3, 7))));
        blocks.insert(9, (None, Some((1, 1))));
        let f = Fine {
            interval: 10,
            span: Range { lo: 5, hi: 95 },
            blocks,
        };
        let whole = Range { lo: 5, hi: 95 };
        assert!(f.covers(whole, 50));
        assert!(!f.covers(whole, 25));
        assert!(!f.covers(Range { lo: 0, hi: 95 }, 50));
        let up = f.roll_up(whole, 50);
        let pair = |s: Option<(u64, &str)>, k: Option<(u64, &str)>| Pair {
            src: s.map(|(n, h)| (n, h.to_string())),
            sink: k.map(|(n, h)| (n, h.to_string())),
        };
        assert_eq!(up.len(), 2);
        assert_eq!(up[0].0, 0);
        assert_eq!(
            (&up[0].1.src, &up[0].1.sink),
            (
                &pair(Some((3, "6")), None).src,
                &pair(None, Some((2, "10"))).sink
            )
        );
        assert_eq!(up[1].0, 1);
        assert_eq!(
            (&up[1].1.src, &up[1].1.sink),
            (
                &pair(Some((3, "6")), None).src,
                &pair(None, Some((4, "8"))).sink
            )
        );
        // A child range (block 1 of interval 50) sees only its own fine blocks.
        let child = f.roll_up(Range { lo: 50, hi: 95 }, 10);
        assert_eq!(child.iter().map(|b| b.0).collect::<Vec<_>>(), vec![5, 9]);
    }

    /// One block per unit over `span`, each holding one row on both sides.
    fn per_unit(span: Range) -> Fine {
        Fine {
            interval: 1,
            span,
            blocks: (span.lo..span.hi)
                .map(|u| (u, (Some((1, u.into())), Some((1, u.into())))))
                .collect(),
        }
    }

    fn total_blocks(fine: &[Fine]) -> usize {
        fine.iter().map(|f| f.blocks.len()).sum()
    }

    #[test]
    fn the_read_ahead_of_parents_whose_blocks_are_not_split_is_forgotten() {
        // Scattered changes in a wide range: each changed parent of 10,000 units reads
        // ahead to blocks of one unit, and none of its blocks is split further (they are
        // leaves). What is kept must stay at one parent's answer, not grow per parent.
        let mut fine: Vec<Fine> = Vec::new();
        let mut most = 0;
        for i in 0..100 {
            let q = Range {
                lo: i * 100_000,
                hi: i * 100_000 + 10_000,
            };
            fine.push(per_unit(q));
            most = most.max(total_blocks(&fine));
            prune_fines(&mut fine, q, &[]);
        }
        assert_eq!(most, 10_000);
        assert!(fine.is_empty(), "{} fine blocks kept", total_blocks(&fine));
    }

    #[test]
    fn pruned_read_ahead_still_rolls_up_the_blocks_split_further() {
        // Blocks of one unit over [5, 1000), compared at interval 100: blocks 2 and 7
        // (and the clipped first one, [5, 100)) are split further.
        let q = Range { lo: 5, hi: 1000 };
        let whole = per_unit(q);
        let mut fine = vec![per_unit(q)];
        let split = [
            Range { lo: 700, hi: 800 },
            Range { lo: 5, hi: 100 },
            Range { lo: 200, hi: 300 },
        ];
        prune_fines(&mut fine, q, &split);
        assert_eq!(total_blocks(&fine), 95 + 100 + 100);
        let sums = |f: &Fine, r: Range, i: i64| {
            f.roll_up(r, i)
                .into_iter()
                .map(|(b, p)| (b, p.src, p.sink))
                .collect::<Vec<_>>()
        };
        for r in split {
            assert!(fine[0].covers(r, 10));
            assert_eq!(sums(&fine[0], r, 10), sums(&whole, r, 10), "{r:?}");
            assert_eq!(sums(&fine[0], r, 1), sums(&whole, r, 1), "{r:?}");
        }
        // The next level compares [200, 300) at interval 10 and splits [230, 240) only:
        // the other split parents' blocks stay.
        let next = Range { lo: 200, hi: 300 };
        prune_fines(&mut fine, next, &[Range { lo: 230, hi: 240 }]);
        assert_eq!(total_blocks(&fine), 95 + 100 + 10);
        assert_eq!(
            sums(&fine[0], Range { lo: 230, hi: 240 }, 1),
            sums(&whole, Range { lo: 230, hi: 240 }, 1)
        );
        // Once nothing is split any more, nothing is kept.
        for r in [
            Range { lo: 5, hi: 100 },
            Range { lo: 230, hi: 240 },
            Range { lo: 700, hi: 800 },
        ] {
            prune_fines(&mut fine, r, &[]);
        }
        assert!(fine.is_empty());
    }
}
