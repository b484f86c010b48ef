//! The human description of a pipeline, shared by the text and JSON renderers.

use crate::ir::{Bound, FieldValue, Lookup, Pipeline, Reconciliation, SinkHash, TableName};

/// `schema.table` or `table`.
pub fn table(t: &TableName) -> String {
    match &t.schema {
        Some(s) => format!("{s}.{}", t.name),
        None => t.name.clone(),
    }
}

/// Where one sink field's value comes from, in words.
pub fn field_origin(p: &Pipeline, v: &FieldValue) -> String {
    match v {
        FieldValue::Column { alias } => {
            let col = p
                .source
                .fields
                .iter()
                .find(|f| &f.alias == alias)
                .map(|f| f.column.to_string())
                .unwrap_or_else(|| alias.clone());
            format!("{col} (copied)")
        }
        FieldValue::Pushed { alias } => {
            let px = p.source.pushed.iter().find(|x| &x.alias == alias);
            let e = px.map(|x| x.expr.to_string()).unwrap_or_default();
            let rounded = match px.and_then(|x| x.round_to) {
                Some(s) => format!(", rounded to {s} digits after the point"),
                None => String::new(),
            };
            format!("{e} (pushed down into the source query as {alias}{rounded})")
        }
        FieldValue::Expr(e) => format!("{e} (evaluated by the runtime)"),
        FieldValue::Template(t) => format!("TMPL({}) (rendered by the runtime)", t.source),
        FieldValue::Enrichment { name, output } => format!("enrichment {name}.{output}"),
    }
}

/// A constant as written in a plan.
fn value(v: &crate::expr::Value) -> String {
    use crate::expr::Value as V;
    match v {
        V::Null => "NULL".into(),
        V::Int(i) => i.to_string(),
        V::Float(x) => x.to_string(),
        V::Decimal(d) => d.to_string(),
        V::Str(s) | V::Uuid(s) => format!("{s:?}"),
        V::Bool(b) => b.to_string(),
        V::Date(d) => d.format("%Y-%m-%d").to_string(),
        V::Datetime(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
        V::Interval(us) => format!("{us} µs"),
        other => format!("{other:?}"),
    }
}

fn bound(b: &Option<Bound>, default: &str) -> String {
    match b {
        None => default.to_string(),
        Some(Bound::Const(v)) => value(v),
        Some(Bound::Runtime(e)) => format!("{e} (evaluated once at run start)"),
    }
}

/// Description lines of a pipeline.
pub fn describe(p: &Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    let s = &p.source;
    let alias = s
        .table
        .alias
        .as_deref()
        .map(|a| format!(" AS {a}"))
        .unwrap_or_default();
    out.push(format!(
        "source: {} ({}) {}{alias}, batch {} rows",
        s.store.name,
        s.store.kind.name(),
        table(&s.table.table),
        s.batch_size
    ));
    for j in &s.joins {
        let alias = j
            .table
            .alias
            .as_deref()
            .map(|a| format!(" AS {a}"))
            .unwrap_or_default();
        out.push(
            format!(
                "  {:?} join {}{alias} ON {}",
                j.kind,
                table(&j.table.table),
                j.on
            )
            .to_lowercase(),
        );
    }
    let k = &p.sink;
    let merge = match k.merge.kind {
        crate::ir::MergeKind::DeleteInsert => "delete_insert".into(),
        crate::ir::MergeKind::Upsert => "upsert".into(),
        crate::ir::MergeKind::Collapse => format!("collapse (sign column {})", k.merge.sign_column),
    };
    // Webhooks and NATS get every row as it comes: no table, no merge, no key.
    let how = if k.store.kind.dialect().is_some() {
        format!(
            " {}, merge {merge}{}, key ({})",
            table(&k.table),
            if k.merge.allow_delete {
                " with deletes"
            } else {
                ""
            },
            k.unique_key.join(", "),
        )
    } else {
        sink_target(p).map(|t| format!(" {t}")).unwrap_or_default()
    };
    // A write never spans source batches: a larger sink batch_size is capped by the
    // source's (a NATS source hands each batch over to be acknowledged once written).
    let batch = if k.batch_size > p.source.batch_size {
        format!(
            "batch {} rows (sink batch_size {}, capped by the source's)",
            p.source.batch_size, k.batch_size
        )
    } else {
        format!("batch {} rows", k.batch_size)
    };
    out.push(format!(
        "sink: {} ({}){how}, {batch}",
        k.store.name,
        k.store.kind.name(),
    ));
    out.push("fields:".into());
    for f in &k.fields {
        let track = if f.track { "" } else { " [not tracked]" };
        out.push(format!(
            "  {} {} <- {}{track}",
            f.column,
            f.dtype,
            field_origin(p, &f.value)
        ));
    }
    for e in &p.enrichments {
        let lookup = match &e.lookup {
            Lookup::Redis { key } => format!("redis GET {}", key.source),
            Lookup::Http { path, params } => {
                // Secrets stay out of plans: the text of parameters named like one
                // (`api_key`, `token`, …) and the credentials of a URL.
                let ps: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.shown()))
                    .collect();
                if ps.is_empty() {
                    format!("http GET {}", path.shown())
                } else {
                    format!("http GET {} ? {}", path.shown(), ps.join("&"))
                }
            }
        };
        let outputs: Vec<String> = e.outputs.iter().map(|(k, d)| format!("{k} {d}")).collect();
        let output = e
            .output
            .as_ref()
            .map(|o| format!(", output {o}"))
            .unwrap_or_default();
        out.push(
            format!(
                "enrichment {} from {}: {lookup}{output} -> ({}), on error {:?}",
                e.name,
                e.store.name,
                outputs.join(", "),
                e.on_error
            )
            .replace("Fail", "fail")
            .replace("Null", "null")
            .replace("Skip", "skip"),
        );
    }
    for r in &p.reconciliations {
        if r.strategy == crate::ir::ReconStrategy::Timestamp {
            out.push(timestamp_line(p, r));
            continue;
        }
        out.push(format!(
            "reconciliation {}: {} on {} -> {} ({}), from {} to {}, level-1 interval {}, max block {} rows, reduction factor {}",
            r.name,
            serde_json::to_value(r.strategy).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            r.source_partition,
            r.sink_partition,
            serde_json::to_value(r.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            bound(&r.start, "the minimum on either side"),
            bound(&r.end, "past the maximum on either side"),
            r.initial_interval,
            r.max_block_size,
            r.reduction_factor
        ));
    }
    if !p.reconciliations.is_empty() {
        let mut src: Vec<String> = p
            .row_hash
            .source
            .iter()
            .map(|h| format!("{} {}", h.name, h.dtype))
            .collect();
        if let Some(f) = &p.row_hash.definitions {
            src.push(format!("computed fields' definitions {f}"));
        }
        let sink = match &p.row_hash.sink {
            SinkHash::Columns(c) => c
                .iter()
                .map(|h| format!("{} {}", h.name, h.dtype))
                .collect::<Vec<_>>()
                .join(", "),
            SinkHash::Stored(h) => format!("stored in column {h}, written at load"),
        };
        let has_datetime = p
            .row_hash
            .source
            .iter()
            .any(|h| h.dtype == crate::types::Dtype::Datetime);
        let prec = if p.row_hash.seconds_precision && has_datetime {
            ", datetimes at whole seconds"
        } else {
            ""
        };
        out.push(format!(
            "row hash: source ({}); sink ({sink}){prec}",
            src.join(", ")
        ));
    }
    out
}

/// A timestamp reconciliation in words: where it starts (the sink's watermark minus the
/// lookback), how the window is compared, and what follows it.
fn timestamp_line(p: &Pipeline, r: &Reconciliation) -> String {
    use crate::ir::PartitionKind as K;
    let n = r.lookback_seconds;
    let lookback = match r.kind {
        K::Date => {
            let days = n / 86_400 + i64::from(n % 86_400 != 0);
            format!("{n} s ({days} whole day(s))")
        }
        K::Datetime => format!("{n} s"),
        _ => n.to_string(),
    };
    let unit = match r.kind {
        K::Date => "day",
        K::Datetime => "second",
        _ => "value",
    };
    let head = format!(
        "reconciliation {}: timestamp on {} -> {} ({}), from the sink's watermark (its newest {})",
        r.name,
        r.source_partition,
        r.sink_partition,
        serde_json::to_value(r.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        r.sink_partition,
    );
    let body = if crate::sql::compares_window(p) {
        let window = if n == 0 {
            format!("the window, the watermark's own {unit} (no lookback),")
        } else {
            format!("the lookback window, from the watermark minus {lookback} up to it,")
        };
        format!(
            "{window} compared block by block (level-1 interval {}, max block {} rows, reduction factor {}), rows that differ written, none deleted; then the source rows newer than the watermark copied",
            r.initial_interval, r.max_block_size, r.reduction_factor
        )
    } else if n == 0 {
        format!("the source rows from the watermark's own {unit} on merged whole (the sink keeps no row hash to compare them by)")
    } else {
        format!("the source rows from the watermark minus {lookback} on merged whole (the sink keeps no row hash to compare them by)")
    };
    format!("{head}: {body}; a full sync while the sink is empty")
}

/// Where a webhook or NATS sink sends, for review: `POST <url>` (the base URL without
/// credentials or query string, joined with `url_path`) or `subject S (JetStream stream T)`.
pub fn sink_target(p: &Pipeline) -> Option<String> {
    let k = &p.sink;
    let t = &k.store.target;
    match k.store.kind {
        crate::ir::StoreKind::Webhook => {
            // Joined as the runtime joins it, shown without credentials or query string.
            let base = reqwest::Url::parse(t.url.as_deref()?).ok()?;
            let path = k.url_path.as_deref().unwrap_or("");
            let url = crate::config::urls::join_path(&base, path).ok()?;
            Some(format!("POST {}", crate::config::redact::redact_url(&url)))
        }
        crate::ir::StoreKind::Nats => {
            let subject = k.subject.as_deref().or(t.subject.as_deref())?;
            Some(match &t.stream {
                Some(st) => format!("subject {subject} (JetStream stream {st})"),
                None => format!("subject {subject}"),
            })
        }
        crate::ir::StoreKind::Sql(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::describe;
    use std::collections::HashMap;

    /// The description lines of the first pipeline of the timestamp example, with `from`
    /// replaced by `to` in its text.
    fn lines(from: &str, to: &str) -> Vec<String> {
        let base = include_str!("../../examples/timestamp_incremental.yaml");
        assert!(base.contains(from));
        let text = base.replace(from, to);
        let env: HashMap<String, String> = HashMap::new();
        let fe = crate::driver::frontend("t.yaml", &text, &env, &[])
            .unwrap_or_else(|e| panic!("{}", e.render()));
        describe(&fe.checked.program.pipelines[0])
    }

    fn recon_line(lines: &[String]) -> String {
        lines
            .iter()
            .find(|l| l.starts_with("reconciliation "))
            .cloned()
            .expect("a reconciliation line")
    }

    #[test]
    fn a_timestamp_reconciliation_is_described_by_its_watermark_and_lookback() {
        let l = recon_line(&lines("lookback: 10*60", "lookback: 10*60"));
        assert!(
            l.contains("from the sink's watermark (its newest updated_at): the lookback window, from the watermark minus 600 s up to it, compared block by block"),
            "{l}"
        );
        assert!(!l.contains("minimum on either side"), "{l}");
        let l = recon_line(&lines("lookback: 10*60", "lookback: 0"));
        assert!(
            l.contains(
                "the window, the watermark's own second (no lookback), compared block by block"
            ),
            "{l}"
        );
        // A transformed sink without a stored hash merges the window whole.
        let l = recon_line(&lines(
            "{column: subject, source_column: subject}",
            r#"{column: subject, source_column: "TMPL(#{{ subject }})"}"#,
        ));
        assert!(
            l.contains("the source rows from the watermark minus 600 s on merged whole (the sink keeps no row hash to compare them by)"),
            "{l}"
        );
    }
}
