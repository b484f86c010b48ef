//! Rows between the extract and the sink: extracted rows keyed by alias, enrichment,
//! transform into sink rows (plus the stored row hash), and key identity.

use crate::expr::Value;
use crate::ir::{FieldValue, Pipeline};
use crate::runtime::enrich::Enricher;
use crate::runtime::transform;
use crate::runtime::{Row, RuntimeError};
use crate::types::Dtype;
use chrono::NaiveDateTime;
use indexmap::IndexMap;
use std::collections::HashMap;

/// The alias of the stored row hash in extracts.
pub const HASH_ALIAS: &str = "_synctool_hash";

/// A source row keyed by alias.
pub type AliasRow = IndexMap<String, Value>;

/// The columns of the source extracts, in order, with the dtypes they are read as: the
/// source fields, the pushed expressions, then the row hash when the sink stores it.
pub fn extract_columns(p: &Pipeline) -> Vec<(String, Dtype)> {
    let mut cols: Vec<(String, Dtype)> = p
        .source
        .fields
        .iter()
        .map(|f| (f.alias.clone(), f.dtype))
        .collect();
    for px in &p.source.pushed {
        let sink_dtype = p.sink.fields.iter().find_map(|f| match &f.value {
            FieldValue::Pushed { alias } if alias == &px.alias => Some(f.dtype),
            _ => None,
        });
        let dtype = sink_dtype
            .or_else(|| px.expr.ty.to_dtype())
            .unwrap_or(Dtype::Str);
        cols.push((px.alias.clone(), dtype));
    }
    if stores_hash(p) {
        cols.push((HASH_ALIAS.to_string(), Dtype::Int));
    }
    cols
}

/// Whether the sink keeps the source row hash in a column written at load time.
pub fn stores_hash(p: &Pipeline) -> bool {
    p.row_hash.sink.is_stored()
}

/// The columns a load writes, with dtypes and nullability: the sink fields, then the hash
/// column when it is not one of them. Key, hash and version columns are NOT NULL.
pub fn load_columns(p: &Pipeline) -> Vec<(String, Dtype, bool)> {
    let key = &p.sink.unique_key;
    let hash = p.sink.meta.hash_column.as_deref();
    let version = p.sink.merge.version_column.as_deref();
    let not_null = |c: &str| key.iter().any(|k| k == c) || Some(c) == hash || Some(c) == version;
    let mut cols: Vec<(String, Dtype, bool)> = p
        .sink
        .fields
        .iter()
        .map(|f| (f.column.clone(), f.dtype, !not_null(&f.column)))
        .collect();
    if let Some(h) = hash {
        if !cols.iter().any(|c| c.0 == h) {
            cols.push((h.to_string(), Dtype::Int, false));
        }
    }
    cols
}

/// Whether the hash column is appended after the sink fields in loads.
fn appends_hash(p: &Pipeline) -> bool {
    match &p.sink.meta.hash_column {
        Some(h) => !p.sink.fields.iter().any(|f| &f.column == h),
        None => false,
    }
}

/// Extracted rows (in [`extract_columns`] order) as alias-keyed rows.
pub fn alias_rows(cols: &[(String, Dtype)], rows: Vec<Row>) -> Vec<AliasRow> {
    rows.into_iter()
        .map(|r| cols.iter().map(|(a, _)| a.clone()).zip(r).collect())
        .collect()
}

/// An identity for key values: their text, with a NULL marker and a separator no text
/// form produces ambiguously.
pub fn key_of(values: &[&Value]) -> String {
    let mut s = String::new();
    for v in values {
        match v {
            Value::Null => s.push('\u{0}'),
            v => {
                let t = v.to_text();
                s.push_str(&t.len().to_string());
                s.push(':');
                s.push_str(&t);
            }
        }
        s.push('\u{1f}');
    }
    s
}

/// The key values of an alias row, in `p.key` order (NULL where one is missing).
fn alias_key_values<'r>(p: &Pipeline, r: &'r AliasRow) -> Vec<&'r Value> {
    const NULL: &Value = &Value::Null;
    p.key
        .iter()
        .map(|k| r.get(&k.source_alias).unwrap_or(NULL))
        .collect()
}

/// The key identity of an alias row (by the key's source aliases).
pub fn alias_key(p: &Pipeline, r: &AliasRow) -> String {
    key_of(&alias_key_values(p, r))
}

/// `id=5, region="eu"`: a key for messages, its values in `p.key` order.
pub fn key_label(p: &Pipeline, vals: &[&Value]) -> String {
    transform::key_label(
        p.key
            .iter()
            .map(|k| k.sink_column.as_str())
            .zip(vals.iter().copied()),
    )
}

/// Warns that `count` source rows of one batch repeated the key of an earlier row (`first`
/// names one): the sink holds one row per key, so all but the last are dropped. Not for a
/// message source, whose later messages about a key are its updates.
fn warn_duplicates(p: &Pipeline, count: usize, first: Option<String>) {
    if count > 0 && p.source.store.kind != crate::ir::StoreKind::Nats {
        tracing::warn!(
            "pipeline `{}`: {count} source row(s) of a batch repeat the key of an earlier row (first: ({})); the sink keeps one row per key, the last one read. Make `unique_key` a key of the source.",
            p.name,
            first.unwrap_or_default()
        );
    }
}

/// The stored row hash of a row whose enrichment lookup failed under `on_error: null`:
/// the source's hash with every bit flipped, which differs from it (and, unlike NULL, fits
/// a NOT NULL hash column). Every comparison (block hashes on every dialect, leaf diffs,
/// the upsert's skipping of unchanged rows) then sees the row as changed, so that the next
/// reconciliation looks it up again instead of keeping its NULL outputs for good.
pub fn failed_lookup_hash(h: Value) -> Value {
    match h {
        Value::Int(h) => Value::Int(!h),
        other => other,
    }
}

/// Enriches `rows` and turns them into load rows (sink fields, then the stored hash), with
/// duplicate keys inside the batch collapsed to their last row (and warned about). A row
/// an enrichment's lookup failed for (`on_error: null`) stores [`failed_lookup_hash`].
pub async fn to_sink_rows(
    p: &Pipeline,
    enricher: &Enricher,
    mut rows: Vec<AliasRow>,
    now: NaiveDateTime,
) -> Result<Vec<Row>, RuntimeError> {
    let report = enricher.run(&mut rows).await?;
    let append = appends_hash(p);
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let (mut dups, mut first) = (0, None);
    for (i, r) in rows.iter().enumerate() {
        let mut s = transform::sink_row(p, r, now)?;
        if append {
            let h = r.get(HASH_ALIAS).cloned().unwrap_or(Value::Null);
            s.push(match report.lookup_failed.get(i) {
                Some(true) => failed_lookup_hash(h),
                _ => h,
            });
        }
        if p.key.is_empty() {
            out.push(s);
            continue;
        }
        match seen.entry(alias_key(p, r)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                if dups == 0 {
                    first = Some(transform::row_key(&p.key, r));
                }
                dups += 1;
                out[*e.get()] = s
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(s);
            }
        }
    }
    warn_duplicates(p, dups, first);
    Ok(out)
}

/// The load row of a pipeline whose sink fields are all plain copies (source fields or
/// pushed-down expressions) and that has no enrichment: each load column is one extract
/// column, so rows convert by index, without keying them by alias.
#[derive(Debug, Clone)]
pub struct Projection {
    /// For each load column, the extract column it copies.
    from: Vec<usize>,
    /// The load columns' dtypes.
    dtypes: Vec<Dtype>,
    /// Sink field names (for errors).
    names: Vec<String>,
    /// The extract columns of the key, in `p.key` order.
    key: Vec<usize>,
}

impl Projection {
    /// The projection of `p` over the extract columns `cols`, or `None` when a sink field
    /// needs the row context (templates, runtime expressions, enrichment outputs).
    pub fn of(p: &Pipeline, cols: &[(String, Dtype)]) -> Option<Projection> {
        if !p.enrichments.is_empty() {
            return None;
        }
        let find = |alias: &str| cols.iter().position(|c| c.0 == alias);
        let mut from = Vec::new();
        let mut dtypes = Vec::new();
        let mut names = Vec::new();
        for f in &p.sink.fields {
            match &f.value {
                FieldValue::Column { alias } | FieldValue::Pushed { alias } => {
                    from.push(find(alias)?);
                    dtypes.push(f.dtype);
                    names.push(f.column.clone());
                }
                _ => return None,
            }
        }
        if appends_hash(p) {
            from.push(find(HASH_ALIAS)?);
            dtypes.push(Dtype::Int);
            names.push(p.sink.meta.hash_column.clone().unwrap_or_default());
        }
        let key = p
            .key
            .iter()
            .map(|k| find(&k.source_alias))
            .collect::<Option<Vec<_>>>()?;
        // Duplicate keys are recognised on the load rows: every key column must be loaded.
        if !key.iter().all(|k| from.contains(k)) {
            return None;
        }
        Some(Projection {
            from,
            dtypes,
            names,
            key,
        })
    }

    /// Load rows from extracted rows, with duplicate keys inside the batch collapsed to their
    /// last row (as [`to_sink_rows`] does). A value that does not fit its sink dtype is a
    /// [`RuntimeError::Value`] naming the row's key and the column.
    pub fn rows(&self, p: &Pipeline, batch: Vec<Row>) -> Result<Vec<Row>, RuntimeError> {
        let mut out: Vec<Row> = Vec::with_capacity(batch.len());
        let mut seen: HashMap<u64, usize> = HashMap::with_capacity(batch.len());
        let mut collided: HashMap<String, usize> = HashMap::new();
        let (mut dups, mut first) = (0, None);
        for mut r in batch {
            let slot = if self.key.is_empty() {
                None
            } else {
                let key: Vec<&Value> = self.key.iter().map(|i| &r[*i]).collect();
                let h = key_hash(&key);
                match seen.get(&h) {
                    None => {
                        seen.insert(h, out.len());
                        None
                    }
                    Some(&i) => {
                        let text = key_of(&key);
                        if self.key_text(&out[i]).as_deref() == Some(text.as_str()) {
                            Some(i)
                        } else {
                            // Two keys with one 64-bit hash: tell them apart by text.
                            match collided.get(&text) {
                                Some(&j) => Some(j),
                                None => {
                                    collided.insert(text, out.len());
                                    None
                                }
                            }
                        }
                    }
                }
            };
            if slot.is_some() {
                if dups == 0 {
                    let key: Vec<&Value> = self.key.iter().map(|i| &r[*i]).collect();
                    first = Some(key_label(p, &key));
                }
                dups += 1;
            }
            let row = self.project(p, &mut r)?;
            match slot {
                Some(i) => out[i] = row,
                None => out.push(row),
            }
        }
        warn_duplicates(p, dups, first);
        Ok(out)
    }

    /// The key identity of an extracted row (as [`alias_key`] gives it for the row's alias
    /// form).
    pub fn extract_key(&self, r: &Row) -> String {
        key_of(&self.key.iter().map(|i| &r[*i]).collect::<Vec<_>>())
    }

    /// The key columns of load rows (as [`Projection::rows`] made them: keys are unique),
    /// in `p.key` order, for key staging.
    pub fn keys(&self, load: &[Row]) -> Vec<Row> {
        let at: Vec<usize> = self
            .key
            .iter()
            .filter_map(|k| self.from.iter().position(|f| f == k))
            .collect();
        load.iter()
            .map(|r| at.iter().map(|j| r[*j].clone()).collect())
            .collect()
    }

    /// The key identity of a load row (every key column is a load column).
    fn key_text(&self, load: &Row) -> Option<String> {
        let vals: Option<Vec<&Value>> = self
            .key
            .iter()
            .map(|k| self.from.iter().position(|f| f == k).map(|j| &load[j]))
            .collect();
        vals.map(|v| key_of(&v))
    }

    /// `k=v` pairs of the key for errors, read while `r` is being moved into `row`.
    fn error_key(&self, p: &Pipeline, r: &Row, row: &Row) -> String {
        transform::key_label(p.key.iter().zip(&self.key).map(|(k, i)| {
            let v = match self.from[..row.len()].iter().position(|f| f == i) {
                Some(j) => &row[j],
                None => &r[*i],
            };
            (k.sink_column.as_str(), v)
        }))
    }

    fn project(&self, p: &Pipeline, r: &mut Row) -> Result<Row, RuntimeError> {
        let mut row = Vec::with_capacity(self.from.len());
        for (j, (&i, &d)) in self.from.iter().zip(&self.dtypes).enumerate() {
            // A column copied twice is cloned for all but its last use.
            let v = if self.from[j + 1..].contains(&i) {
                r[i].clone()
            } else {
                std::mem::replace(&mut r[i], Value::Null)
            };
            let v = match crate::runtime::values::coerce(v, d) {
                Ok(v) => v,
                Err(message) => {
                    return Err(RuntimeError::Value {
                        pipeline: p.name.clone(),
                        key: self.error_key(p, r, &row),
                        column: self.names[j].clone(),
                        message,
                    })
                }
            };
            row.push(v);
        }
        Ok(row)
    }
}

/// A 64-bit hash of key values (equal values of one dtype hash equally).
fn key_hash(values: &[&Value]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in values {
        std::mem::discriminant(*v).hash(&mut h);
        match v {
            Value::Int(i) => i.hash(&mut h),
            Value::Str(s) | Value::Uuid(s) => s.hash(&mut h),
            Value::Bool(b) => b.hash(&mut h),
            Value::Date(d) => d.hash(&mut h),
            Value::Datetime(t) => t.hash(&mut h),
            Value::Float(f) => f.to_bits().hash(&mut h),
            Value::Null => {}
            other => other.to_text().hash(&mut h),
        }
    }
    h.finish()
}

/// The sink key columns' values of alias rows, in `unique_key` order, for key staging.
pub fn key_rows(p: &Pipeline, rows: &[AliasRow]) -> Vec<Row> {
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .filter(|r| seen.insert(alias_key(p, r)))
        .map(|r| {
            p.key
                .iter()
                .map(|k| r.get(&k.source_alias).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_identity_separates_null_and_text() {
        let a = key_of(&[&Value::Str("ab".into()), &Value::Null]);
        let b = key_of(&[&Value::Str("a".into()), &Value::Str("b".into())]);
        let c = key_of(&[&Value::Str("None".into())]);
        let d = key_of(&[&Value::Null]);
        assert_ne!(a, b);
        assert_ne!(c, d);
        assert_eq!(key_of(&[&Value::Int(7)]), key_of(&[&Value::Int(7)]));
    }
}
