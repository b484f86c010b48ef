//! Stage 2: resolve names and type-check the raw config, producing the [`crate::ir`].
//!
//! Every problem is reported as a [`Diagnostic`] with the YAML path and span of the offending
//! value; the checker keeps going after an error so that one run shows them all.

mod columns;
mod enrich;
mod fields;
mod hashing;
mod recon;
mod sink;
mod source;
mod stores;

use crate::config::RawConfig;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{self, Program};

pub use stores::Stores;

/// The result of checking: the IR plus warnings (e.g. seed-compatibility repairs).
#[derive(Debug, Clone)]
pub struct Checked {
    /// The program.
    pub program: Program,
    /// Non-fatal diagnostics.
    pub warnings: Vec<Diagnostic>,
}

/// Collects diagnostics while checking.
#[derive(Debug, Default)]
pub struct Diags {
    /// Errors and warnings, in discovery order.
    pub list: Vec<Diagnostic>,
}

impl Diags {
    /// Record a diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.is_error())
    }
}

/// Check a whole config. `only` restricts to the named pipelines (`-p`), in config order.
pub fn check(raw: &RawConfig, only: &[String]) -> Result<Checked, Vec<Diagnostic>> {
    let mut diags = Diags::default();
    let stores = Stores::resolve(raw, &mut diags);
    let mut names: Vec<&str> = Vec::new();
    for p in &raw.pipelines {
        if names.contains(&p.name.value.as_str()) {
            diags.push(
                p.name
                    .error(format!("duplicate pipeline name `{}`", p.name.value)),
            );
        }
        names.push(&p.name.value);
    }
    for want in only {
        if !names.contains(&want.as_str()) {
            let mut d = Diagnostic::error(format!("no pipeline named `{want}`"));
            d = match did_you_mean(want, names.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!(
                    "pipelines in this config: {}",
                    crate::diag::name_list(&names)
                )),
            };
            diags.push(d);
        }
    }
    shared_consumers(raw, &mut diags);
    let mut pipelines = Vec::new();
    for p in &raw.pipelines {
        if !only.is_empty() && !only.contains(&p.name.value) {
            continue;
        }
        if let Some(ir) = pipeline(p, &stores, &mut diags) {
            pipelines.push(ir);
        }
    }
    shared_deletes(raw, &pipelines, &mut diags);
    if diags.has_errors() {
        return Err(diags.list);
    }
    Ok(Checked {
        program: Program { pipelines },
        warnings: diags.list,
    })
}

/// Two pipelines with `allow_delete` writing one sink table, where sink `filters` do not
/// separate them (one has none, or both have the same): each run deletes the rows the other
/// wrote, as their keys are not in its source. A warning: the sources may well agree.
fn shared_deletes(raw: &RawConfig, pipelines: &[ir::Pipeline], diags: &mut Diags) {
    let deletes: Vec<&ir::Pipeline> = pipelines
        .iter()
        .filter(|p| p.sink.merge.allow_delete && p.sink.store.kind.dialect().is_some())
        .collect();
    for (i, b) in deletes.iter().enumerate() {
        let same = |a: &&&ir::Pipeline| {
            a.sink.store.name == b.sink.store.name
                && a.sink.table.schema == b.sink.table.schema
                && a.sink.table.name == b.sink.table.name
                && (a.sink.filters.is_empty()
                    || b.sink.filters.is_empty()
                    || a.sink.scope_digest() == b.sink.scope_digest())
        };
        let Some(a) = deletes[..i].iter().find(same) else {
            continue;
        };
        let Some(rb) = raw.pipelines.iter().find(|r| r.name.value == b.name) else {
            continue;
        };
        let at = rb
            .sink
            .as_ref()
            .and_then(|s| s.merge.as_ref())
            .and_then(|m| m.allow_delete.as_ref());
        let message = format!(
            "pipelines `{}` and `{}` both write sink table `{}` of datastore `{}` with allow_delete, and no sink `filters` separate their rows: each run deletes the rows the other wrote",
            a.name, b.name, b.sink.table.name, b.sink.store.name
        );
        let d = match at {
            Some(at) => Diagnostic::warning(message)
                .at_path(at.path.clone())
                .with_span(at.span),
            None => Diagnostic::warning(message),
        };
        diags.push(d.with_help(
            "give each pipeline sink `filters` that select the rows it owns (and matching source filters), or leave allow_delete to one of them",
        ));
    }
}

/// A reconciled PostgreSQL collapse sink hashing a `json` field from its columns: the
/// table keeps it as `jsonb` (grouping versions needs its equality), which re-serialises a
/// document, so its row hash differs from the source's wherever the texts differ, and
/// every reconciliation writes those rows again. A warning: a PostgreSQL `jsonb` source
/// prints documents the same way.
fn jsonb_collapse_drift(
    raw: &crate::config::raw::RawSink,
    sink: &ir::Sink,
    row_hash: &ir::RowHash,
    reconciled: bool,
    diags: &mut Diags,
) {
    let ir::SinkHash::Columns(inputs) = &row_hash.sink else {
        return;
    };
    if !reconciled
        || sink.merge.kind != ir::MergeKind::Collapse
        || sink.store.kind.dialect() != Some(crate::sql::DialectKind::Postgres)
    {
        return;
    }
    let Some(json) = inputs.iter().find(|i| i.dtype == crate::types::Dtype::Json) else {
        return;
    };
    let field = raw.fields.iter().find(|f| f.column.value == json.name);
    let message = format!(
        "sink field `{}` is json, which a PostgreSQL collapse table keeps as jsonb: jsonb re-serialises each document (`{{\"a\":1}}` reads back as `{{\"a\": 1}}`), so unless the source prints its documents as jsonb does, their row hashes differ and every reconciliation writes those rows again",
        json.name
    );
    let d = match (field, &raw.merge) {
        (Some(f), _) => Diagnostic::warning(message)
            .at_path(f.column.path.clone())
            .with_span(f.column.span),
        (None, Some(m)) => match &m.strategy {
            Some(k) => Diagnostic::warning(message)
                .at_path(k.path.clone())
                .with_span(k.span),
            None => Diagnostic::warning(message).at_path(m.path.clone()),
        },
        (None, None) => Diagnostic::warning(message).at_path(raw.path.clone()),
    };
    diags.push(d.with_help(format!(
        "keep the row hash in the sink (`meta_columns: {{hash_column: _synctool_hash}}`), or give `{}` `track: false`",
        json.name
    )));
}

/// Two pipelines reading one NATS datastore with a `durable` consumer or a `queue` group
/// would split its messages between them, each sink getting part: refused.
fn shared_consumers(raw: &RawConfig, diags: &mut Diags) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for p in &raw.pipelines {
        let Some(src) = &p.source else { continue };
        let Some(d) = raw
            .datastores
            .iter()
            .find(|d| d.name.value == src.datastore.value)
        else {
            continue;
        };
        if !d.kind.value.eq_ignore_ascii_case("nats") {
            continue;
        }
        let shared = match (&d.stream, &d.durable, &d.queue) {
            (Some(_), Some(durable), _) => format!("durable consumer `{}`", durable.value),
            (None, _, Some(q)) => format!("queue group `{}`", q.value),
            _ => continue,
        };
        match seen.iter().find(|(ds, _)| *ds == d.name.value) {
            Some((_, first)) => diags.push(
                src.datastore
                    .error(format!(
                        "pipelines `{first}` and `{}` both read NATS datastore `{}` through its {shared}, which would split the messages between them",
                        p.name.value, d.name.value
                    ))
                    .with_help("give each pipeline its own datastore entry with its own `durable` (or `queue`) name"),
            ),
            None => seen.push((&d.name.value, &p.name.value)),
        }
    }
}

fn pipeline(
    p: &crate::config::raw::RawPipeline,
    stores: &Stores,
    diags: &mut Diags,
) -> Option<ir::Pipeline> {
    let (Some(raw_source), Some(raw_sink)) = (&p.source, &p.sink) else {
        return None;
    };
    let implied;
    let raw_source = match source::implied_fields(raw_source, raw_sink, diags) {
        Some(with_fields) => {
            implied = with_fields;
            &implied
        }
        None => raw_source,
    };
    let mut declared = Vec::new();
    let mut source = source::source(raw_source, stores, &mut declared, diags)?;
    if source.store.kind == ir::StoreKind::Nats {
        source::nats_sink_limits(raw_sink, diags);
    }
    let enrichments = enrich::enrichments(&p.enrichment, &source, stores, diags);
    // Names declared but refused by their own checks (a bad dtype, a bad output
    // expression): the sink fields naming them are not reported a second time.
    // `declared`: every name a source field was declared under (its column, as written and
    // resolved, its alias or default alias); those no field kept are broken.
    let mut broken: Vec<String> = declared
        .into_iter()
        .filter(|n| {
            !source
                .fields
                .iter()
                .any(|f| &f.alias == n || &f.column.to_string() == n)
        })
        .collect();
    broken.extend(
        p.enrichment
            .iter()
            .map(|e| e.name.value.clone())
            .filter(|n| !enrichments.iter().any(|e| &e.name == n)),
    );
    let sink = sink::sink(raw_sink, stores, &mut source, &enrichments, &broken, diags)?;
    let key = sink::key_pairs(raw_sink, &sink, diags);
    let row_hash = hashing::row_hash(&source, &sink, &enrichments);
    let reconciliations = recon::reconciliations(p, &source, &sink, &row_hash, diags);
    jsonb_collapse_drift(
        raw_sink,
        &sink,
        &row_hash,
        !reconciliations.is_empty(),
        diags,
    );
    let source_state = stores.state(p.sourcestate.as_ref(), diags);
    let sink_state = stores.state(p.sinkstate.as_ref(), diags);
    if let (Some(_), Some(raw)) = (&sink_state, &p.sinkstate) {
        if !reconciliations.is_empty() {
            diags.push(
                Diagnostic::warning(
                    "synctool reads the `sinkstate` table and never writes it: unless something else keeps it current with the sink (each sink row's key, partition value and row hash), every run finds the rows it wrote as drift and writes them again",
                )
                .at_path(raw.path.clone())
                .with_help("to keep the row hash beside the data, drop `sinkstate` and give the sink `meta_columns: {hash_column: _synctool_hash}`"),
            );
        }
    }
    Some(ir::Pipeline {
        name: p.name.value.clone(),
        source,
        sink,
        enrichments,
        reconciliations,
        row_hash,
        source_state,
        sink_state,
        key,
    })
}

#[cfg(test)]
mod tests;
