//! A pipeline whose source is NATS (SPEC §5): messages are consumed in `batch_size`
//! batches ([`NatsSource`]), each batch is enriched, transformed and written to the sink in
//! one transaction like a full sync's, and its messages are acknowledged only after that
//! transaction committed. A failure before the commit hands the batch's messages back to
//! the stream (a nak), so the next run writes them; a kill leaves them unacknowledged, and
//! the stream redelivers them after the consumer's ack wait. A message redelivered after
//! its batch committed (a kill between the commit and the ack) is written again, which an
//! `upsert` (or `delete_insert`) by `unique_key` makes converge.
//!
//! There is no reconciliation (the checker refuses one) and no delete of absent rows: a
//! run's messages are changes, not the whole table. `plan` consumes nothing: it reports the
//! messages waiting for the consumer ([`NatsSource::pending`]).

use super::full::Ctx;
use super::report::PipelineReport;
use super::rows::to_sink_rows;
use super::sink::SinkIo;
use crate::runtime::nats::{NatsBatch, NatsSource};
use crate::runtime::RuntimeError;

/// Consumes `ctx`'s NATS source into its sink (plan: counts the waiting messages only).
pub async fn run(ctx: &Ctx<'_>, report: &mut PipelineReport) -> Result<(), RuntimeError> {
    let p = ctx.p;
    let mut sink = SinkIo::open(p, ctx.cfg, &ctx.steps, &ctx.binds).await?;
    sink.prepare(!ctx.opts.dry_run).await?;
    if ctx.opts.dry_run {
        match NatsSource::pending(p, ctx.cfg).await? {
            Some(n) => {
                report.rows_read += n;
                report.rows_written += n;
            }
            None => tracing::warn!(
                pipeline = %p.name,
                "plan does not read a core NATS source (it keeps no messages to count, and reading would consume them): reporting 0 rows"
            ),
        }
        return Ok(());
    }
    let Some(enricher) = ctx.enricher().await? else {
        return Err(RuntimeError::Config(format!(
            "pipeline `{}`: no enrichment context for a run that writes",
            p.name
        )));
    };
    let mut src = NatsSource::connect(p, ctx.cfg).await?;
    // The sink table exists after a run, also one that found no message.
    sink.ensure_table().await?;
    let bar = ctx.progress.rows(&p.name, None);
    let consume = async {
        while let Some(NatsBatch { rows, ack }) = src.next_batch().await? {
            let n = rows.len() as u64;
            report.rows_read += n;
            bar.inc(n);
            let written = match to_sink_rows(p, &enricher, rows, ctx.opts.now).await {
                Ok(out) => sink.write(&out, &[], &[]).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(w) => {
                    // Committed: only now may the stream forget these messages.
                    ack.ack().await?;
                    report.rows_written += w.rows;
                }
                Err(e) => {
                    ack.nak().await;
                    return Err(e);
                }
            }
        }
        Ok::<(), RuntimeError>(())
    };
    let consumed = consume.await;
    // Unsubscribe and flush the acks (or naks) even when the run failed.
    let closed = src.close().await;
    consumed?;
    closed
}
