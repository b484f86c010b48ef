//! `plan`'s count of the sink rows a full sync with `allow_delete` would remove
//! (`sink.delete_absent`): the source's keys (`source.keys`) and the sink's (`sink.keys`,
//! within `sink.filters`), both read in key order, merged as two sorted streams. Memory
//! holds a batch per side however large the tables, and nothing is written: no staging
//! table, not even a temporary one (a read-only user, or a PostgreSQL standby, can plan).
//!
//! Keys compare as `apply`'s delete matches them for the values both sides read: numbers
//! and times by value, text by its bytes (as the reconciliation's leaf diff does). A sink
//! key with a NULL part matches no source key (`NULL = x` is never true), so its row is
//! counted; a source key with a NULL part matches nothing and is passed over. Either
//! stream coming out of that order (a database that orders text otherwise) is an error
//! rather than a wrong count.

use super::full::Ctx;
use super::rows::key_label;
use super::sink::SinkIo;
use crate::expr::Value;
use crate::ir::Pipeline;
use crate::runtime::{Row, RuntimeError};
use crate::types::Dtype;
use std::cmp::Ordering;
use tokio::sync::mpsc;

/// Keys per batch read from either side.
const BATCH: usize = 10_000;

/// Batches in flight per side.
const CHANNEL_BATCHES: usize = 1;

type Batches = mpsc::Receiver<Result<Vec<Row>, RuntimeError>>;

/// The number of sink rows (within `sink.filters`) whose key the source does not hold:
/// what `sink.delete_absent` would remove after a full sync of the source as it is now;
/// and the first `list` of their keys, in key order (`--show-keys`). The sink table must
/// exist.
pub async fn count_absent(
    ctx: &Ctx<'_>,
    sink: &mut SinkIo<'_>,
    list: usize,
) -> Result<(u64, Vec<Row>), RuntimeError> {
    let p = ctx.p;
    let (src_step, sink_step) = (ctx.steps.need("source.keys")?, ctx.steps.need("sink.keys")?);
    let src_vals = src_step.values(&ctx.binds, &[])?;
    let sink_vals = sink_step.values(&ctx.binds, &[])?;
    let types: Vec<Dtype> = p.key.iter().map(|k| k.dtype).collect();
    let mut src = ctx.source().await?;
    let conn = sink.conn().ok_or_else(|| {
        RuntimeError::Config(format!(
            "pipeline `{}`: step sink.keys: the sink is not a database",
            p.name
        ))
    })?;
    let (src_tx, src_rx) = mpsc::channel(CHANNEL_BATCHES);
    let (sink_tx, sink_rx) = mpsc::channel(CHANNEL_BATCHES);
    let read_src = src.stream(src_step.stmt(0), &src_vals, &types, BATCH, src_tx);
    let read_sink = conn.stream(sink_step.stmt(0), &sink_vals, &types, BATCH, sink_tx);
    let mut first = Vec::new();
    let merged = merge(
        p,
        Cursor::new(src_rx, "source.keys"),
        Cursor::new(sink_rx, "sink.keys"),
        (&mut first, list),
    );
    let (read_src, read_sink, merged) = tokio::join!(read_src, read_sink, merged);
    // The merge's error first: it explains a reader that stopped. Once every sink key is
    // merged, the source's keys after the last are not needed: its reader stopped early.
    let absent = merged?;
    read_sink?;
    match read_src {
        Ok(_) | Err(RuntimeError::ConsumerGone { .. }) => Ok((absent, first)),
        Err(e) => Err(e),
    }
}

/// One side's keys, batch by batch.
struct Cursor {
    rx: Batches,
    batch: std::vec::IntoIter<Row>,
    /// The previous key without a NULL part, to check the order.
    last: Option<Row>,
    step: &'static str,
}

impl Cursor {
    fn new(rx: Batches, step: &'static str) -> Cursor {
        Cursor {
            rx,
            batch: Vec::new().into_iter(),
            last: None,
            step,
        }
    }

    /// The next key, checked to come after the previous one (keys with a NULL part are not
    /// ordered alike on every dialect, and are not checked).
    async fn next(&mut self, p: &Pipeline) -> Result<Option<Row>, RuntimeError> {
        let key = loop {
            if let Some(k) = self.batch.next() {
                break k;
            }
            match self.rx.recv().await {
                Some(batch) => self.batch = batch?.into_iter(),
                None => return Ok(None),
            }
        };
        if has_null(&key) {
            return Ok(Some(key));
        }
        if let Some(last) = &self.last {
            if cmp_keys(last, &key) == Ordering::Greater {
                return Err(RuntimeError::Config(format!(
                    "pipeline `{}`, step {}: the database returned the key ({}) after ({}), out of the byte order plan merges the two sides' keys in, so it cannot count the rows apply would delete (a PostgreSQL database whose encoding is not UTF8 orders text by other bytes)",
                    p.name,
                    self.step,
                    label(p, &key),
                    label(p, last)
                )));
            }
        }
        self.last = Some(key.clone());
        Ok(Some(key))
    }
}

/// Counts the sink keys that no source key equals, merging the two ordered streams; keeps
/// the first `list.1` of them in `list.0`.
async fn merge(
    p: &Pipeline,
    mut src: Cursor,
    mut sink: Cursor,
    (first, list): (&mut Vec<Row>, usize),
) -> Result<u64, RuntimeError> {
    let mut absent = 0u64;
    let mut gone = |k: Row| {
        if first.len() < list {
            first.push(k);
        }
    };
    // The smallest source key not yet passed, and whether the source has no more.
    let mut head: Option<Row> = None;
    let mut src_done = false;
    while let Some(k) = sink.next(p).await? {
        if has_null(&k) {
            absent += 1;
            gone(k);
            continue;
        }
        loop {
            if head.is_none() && !src_done {
                head = loop {
                    match src.next(p).await? {
                        Some(s) if has_null(&s) => continue,
                        other => break other,
                    }
                };
                src_done = head.is_none();
            }
            match head.as_ref().map(|s| cmp_keys(s, &k)) {
                // Source keys before this sink key match none of the sink's.
                Some(Ordering::Less) => head = None,
                // Kept: the sink may hold the key more than once.
                Some(Ordering::Equal) => break,
                Some(Ordering::Greater) | None => {
                    absent += 1;
                    gone(k);
                    break;
                }
            }
        }
    }
    Ok(absent)
}

fn has_null(key: &Row) -> bool {
    key.iter().any(Value::is_null)
}

fn label(p: &Pipeline, key: &Row) -> String {
    key_label(p, &key.iter().collect::<Vec<_>>())
}

/// Compares two keys part by part, in the byte order every side's keys are read in (a
/// NULL part, which no side orders alike, compares by its text). Also orders the keys
/// `--show-keys` lists.
pub(super) fn cmp_keys(a: &Row, b: &Row) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| cmp_value(x, y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// The order of two key values of one dtype, as the generated order keys sort them: text
/// (and uuids, in lower-case text) by bytes, the rest by value; `-0.0` equals `0.0`, as in
/// SQL.
fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or_else(|| x.total_cmp(y)),
        (Value::Decimal(x), Value::Decimal(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) | (Value::Uuid(x), Value::Uuid(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Datetime(x), Value::Datetime(y)) => x.cmp(y),
        _ => a.to_text().as_bytes().cmp(b.to_text().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline {
        let yaml = r#"
datastores:
  - {name: a, type: postgres, host: h, database: d}
pipelines:
  - name: w
    source: {datastore: a, table: t, fields: [{column: id, dtype: int}]}
    sink: {datastore: a, table: u, unique_key: [id], merge_strategy: {strategy: upsert, allow_delete: true}}
"#;
        let env = std::collections::HashMap::<String, String>::new();
        let fe = crate::driver::frontend("t.yaml", yaml, &env, &[])
            .unwrap_or_else(|f| panic!("{}", f.render()));
        fe.checked.program.pipelines[0].clone()
    }

    async fn count(src: Vec<Vec<Row>>, sink: Vec<Vec<Row>>) -> Result<u64, RuntimeError> {
        listed(src, sink, 0).await.map(|(n, _)| n)
    }

    /// The count and the first `list` absent keys.
    async fn listed(
        src: Vec<Vec<Row>>,
        sink: Vec<Vec<Row>>,
        list: usize,
    ) -> Result<(u64, Vec<Row>), RuntimeError> {
        let feed = |batches: Vec<Vec<Row>>| {
            let (tx, rx) = mpsc::channel(batches.len().max(1));
            for b in batches {
                tx.try_send(Ok(b)).expect("room for every batch");
            }
            rx
        };
        let p = pipeline();
        let mut first = Vec::new();
        let n = merge(
            &p,
            Cursor::new(feed(src), "source.keys"),
            Cursor::new(feed(sink), "sink.keys"),
            (&mut first, list),
        )
        .await?;
        Ok((n, first))
    }

    fn ints(v: &[i64]) -> Vec<Row> {
        v.iter().map(|i| vec![Value::Int(*i)]).collect()
    }

    #[tokio::test]
    async fn sink_keys_the_source_lacks_are_counted_across_batches() {
        let n = count(
            vec![ints(&[1, 3]), ints(&[4, 9])],
            vec![ints(&[0, 1, 2]), ints(&[3, 3, 5]), ints(&[9, 10])],
        )
        .await
        .unwrap();
        // 0, 2, 5, 10 are absent; the sink's two rows of key 3 both match.
        assert_eq!(n, 4);
        // `--show-keys 3`: the first three of them, in key order.
        let (n, first) = listed(
            vec![ints(&[1, 3]), ints(&[4, 9])],
            vec![ints(&[0, 1, 2]), ints(&[3, 3, 5]), ints(&[9, 10])],
            3,
        )
        .await
        .unwrap();
        assert_eq!((n, first), (4, ints(&[0, 2, 5])));
    }

    #[tokio::test]
    async fn an_empty_source_counts_every_sink_row_and_an_empty_sink_none() {
        assert_eq!(count(vec![], vec![ints(&[1, 2, 3])]).await.unwrap(), 3);
        assert_eq!(count(vec![ints(&[1, 2])], vec![]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn null_keys_match_nothing() {
        let null = vec![Value::Null];
        let n = count(
            vec![vec![null.clone(), vec![Value::Int(1)]]],
            vec![vec![vec![Value::Int(1)], null]],
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn keys_out_of_order_are_an_error_naming_them() {
        let e = count(vec![ints(&[2, 1])], vec![ints(&[5])])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("step source.keys") && e.contains("(id=1) after (id=2)"),
            "{e}"
        );
    }

    #[test]
    fn text_compares_by_bytes_and_floats_by_value() {
        let s = |t: &str| Value::Str(t.into());
        // Code point order, not a collation's: 'B' < 'a', 'a' < 'a\t' < 'a '.
        assert_eq!(cmp_value(&s("B"), &s("a")), Ordering::Less);
        assert_eq!(cmp_value(&s("a\t"), &s("a ")), Ordering::Less);
        assert_eq!(cmp_value(&s("a"), &s("a\t")), Ordering::Less);
        assert_eq!(cmp_value(&s("z"), &s("é")), Ordering::Less);
        assert_eq!(
            cmp_value(&Value::Float(-0.0), &Value::Float(0.0)),
            Ordering::Equal
        );
        assert_eq!(cmp_value(&Value::Int(-5), &Value::Int(3)), Ordering::Less);
    }
}
