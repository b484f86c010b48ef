//! What the row hash covers on each side.
//!
//! When every tracked sink field is a straight copy of a source field (or an expression the
//! source computes in the extract query) with the same dtype, both sides can compute the same
//! canonical hash from their own columns. Otherwise the sink cannot recompute the source's
//! hash and keeps it in `meta_columns.hash_column`, written at load time.

use crate::ir::{
    Enrichment, FieldValue, HashInput, Lookup, RowHash, Sink, SinkField, SinkHash, Source,
    StoreKind,
};
use crate::sql::DialectKind;
use crate::template::Template;

/// Derive the row hash description of a pipeline.
///
/// The source side covers every source field a written value depends on: copies, the
/// fields an expression or template reads, and the fields an enrichment's lookup is built
/// from (its Redis key, HTTP path and parameters), so that a row whose lookup input
/// changed is found changed and looked up again.
pub fn row_hash(src: &Source, sink: &Sink, enrichments: &[Enrichment]) -> RowHash {
    let sink_fields = &sink.fields;
    let mut source = Vec::new();
    let mut sink_cols = Vec::new();
    let mut transformed = false;
    for f in sink.fields.iter().filter(|f| f.track) {
        match &f.value {
            FieldValue::Column { alias } => {
                let same_type = src
                    .fields
                    .iter()
                    .any(|s| &s.alias == alias && s.dtype == f.dtype);
                transformed |= !same_type;
                source.push(HashInput {
                    name: alias.clone(),
                    dtype: f.dtype,
                });
                sink_cols.push(HashInput {
                    name: f.column.clone(),
                    dtype: f.dtype,
                });
            }
            FieldValue::Pushed { alias } => {
                source.push(HashInput {
                    name: alias.clone(),
                    dtype: f.dtype,
                });
                sink_cols.push(HashInput {
                    name: f.column.clone(),
                    dtype: f.dtype,
                });
            }
            FieldValue::Expr(e) => {
                transformed = true;
                add_source_refs(src, &mut source, enrichments, e.columns());
            }
            FieldValue::Template(t) => {
                transformed = true;
                add_source_refs(src, &mut source, enrichments, t.vars.clone());
            }
            FieldValue::Enrichment { name, .. } => {
                transformed = true;
                if let Some(e) = enrichments.iter().find(|e| &e.name == name) {
                    add_source_refs(src, &mut source, &[], lookup_inputs(e));
                }
            }
        }
    }
    let seconds_precision = [&src.store.kind, &sink.store.kind]
        .iter()
        .any(|k| matches!(k, StoreKind::Sql(DialectKind::Clickhouse)));
    let sink = match (&sink.meta.hash_column, transformed) {
        (Some(h), _) => SinkHash::Stored(h.clone()),
        (None, false) => SinkHash::Columns(sink_cols),
        // Reconciliation reports the missing hash column; full syncs do not need one.
        (None, true) => SinkHash::Stored(String::new()),
    };
    let definitions = match &sink {
        SinkHash::Stored(_) if transformed && src.meta.hash_column.is_none() => {
            Some(definitions(sink_fields, enrichments))
        }
        _ => None,
    };
    RowHash {
        source,
        sink,
        seconds_precision,
        definitions,
    }
}

/// A fingerprint (16 hex digits of SHA-256) of the tracked sink fields the runtime
/// computes and of the enrichments: their columns, dtypes and definitions as the checker
/// parsed them (so reformatting the YAML changes nothing). A template whose text is secret
/// (an `api_key` parameter) is left out, so that rotating a key rewrites no row.
fn definitions(fields: &[SinkField], enrichments: &[Enrichment]) -> String {
    use sha2::{Digest, Sha256};
    let template = |t: &Template| {
        if t.secret {
            "(secret)".to_string()
        } else {
            format!("{:?}:{}", t.escape, t.source)
        }
    };
    let mut text = String::new();
    for f in fields.iter().filter(|f| f.track) {
        let def = match &f.value {
            FieldValue::Column { .. } | FieldValue::Pushed { .. } => continue,
            FieldValue::Expr(e) => format!("expr:{e}"),
            FieldValue::Template(t) => format!("template:{}", template(t)),
            FieldValue::Enrichment { name, output } => format!("enrichment:{name}.{output}"),
        };
        text.push_str(&format!("{}\u{1f}{}\u{1f}{def}\u{1e}", f.column, f.dtype));
    }
    for e in enrichments {
        let lookup = match &e.lookup {
            Lookup::Redis { key } => format!("redis:{}", template(key)),
            Lookup::Http { path, params } => {
                let params: Vec<String> = params
                    .iter()
                    .map(|(k, t)| format!("{k}={}", template(t)))
                    .collect();
                format!("http:{}?{}", template(path), params.join("&"))
            }
        };
        let output = e.output.as_ref().map(|o| o.to_string()).unwrap_or_default();
        let outputs: Vec<String> = e.outputs.iter().map(|(k, d)| format!("{k} {d}")).collect();
        text.push_str(&format!(
            "{}\u{1f}{}\u{1f}{lookup}\u{1f}{output}\u{1f}{}\u{1e}",
            e.name,
            e.store.name,
            outputs.join(",")
        ));
    }
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The row names an enrichment's lookup reads.
fn lookup_inputs(e: &Enrichment) -> Vec<String> {
    match &e.lookup {
        Lookup::Redis { key } => key.vars.clone(),
        Lookup::Http { path, params } => path
            .vars
            .iter()
            .chain(params.values().flat_map(|t| t.vars.iter()))
            .cloned()
            .collect(),
    }
}

/// Adds the source fields among `names` to `out`; a name that is an enrichment's output
/// adds the fields its lookup reads.
fn add_source_refs(
    src: &Source,
    out: &mut Vec<HashInput>,
    enrichments: &[Enrichment],
    names: Vec<String>,
) {
    for n in names {
        if let Some(e) = enrichments.iter().find(|e| e.outputs.contains_key(&n)) {
            if !src.fields.iter().any(|f| f.alias == n) {
                add_source_refs(src, out, &[], lookup_inputs(e));
                continue;
            }
        }
        if let Some(f) = src.fields.iter().find(|f| f.alias == n) {
            if !out.iter().any(|h| h.name == f.alias) {
                out.push(HashInput {
                    name: f.alias.clone(),
                    dtype: f.dtype,
                });
            }
        }
    }
}
