//! The three `compile` output formats: text (for review), JSON (SPEC §1 shape), SQL only.

use super::describe::table;
use super::Plan;
use crate::sql::SqlStep;
use serde_json::{json, Value};
use std::fmt::Write;

fn dialect_of_store(kind: &crate::ir::StoreKind) -> &'static str {
    kind.name()
}

/// The `kind` of a step: its id without the side prefix (`source.extract` → `extract`).
fn step_kind(id: &str) -> &str {
    id.rsplit('.').next().unwrap_or(id)
}

fn step_header(s: &SqlStep) -> String {
    format!("-- step {} [{} · {}]", s.id, s.store, s.dialect.name())
}

fn params_line(s: &SqlStep) -> Option<String> {
    if s.params.is_empty() {
        return None;
    }
    let ps: Vec<String> = s
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| match s.dialect {
            crate::sql::DialectKind::Postgres => format!("${} {} {}", i + 1, p.name, p.dtype),
            crate::sql::DialectKind::Mysql => format!("?{} {} {}", i + 1, p.name, p.dtype),
            crate::sql::DialectKind::Clickhouse => format!("{} {}", p.name, p.dtype),
        })
        .collect();
    Some(format!("-- params: {}", ps.join(", ")))
}

/// Human-readable plan: the description of each pipeline, then each step with its SQL.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    for (i, p) in plan.pipelines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "pipeline {}", p.ir.name);
        for line in &p.description {
            let _ = writeln!(out, "  {line}");
        }
        for s in &p.steps {
            out.push('\n');
            let _ = writeln!(out, "{}", step_header(s));
            let _ = writeln!(out, "-- {}", s.purpose);
            if let Some(l) = params_line(s) {
                let _ = writeln!(out, "{l}");
            }
            for st in &s.statements {
                let _ = writeln!(out, "{st:#};");
            }
        }
    }
    out
}

/// Only the SQL, each statement preceded by a comment naming its step.
pub fn render_sql(plan: &Plan) -> String {
    let mut out = String::new();
    for p in &plan.pipelines {
        let _ = writeln!(out, "-- pipeline {}", p.ir.name);
        for s in &p.steps {
            let _ = writeln!(out, "{}", step_header(s));
            if let Some(l) = params_line(s) {
                let _ = writeln!(out, "{l}");
            }
            for st in &s.statements {
                let _ = writeln!(out, "{st:#};");
            }
            out.push('\n');
        }
    }
    out
}

/// The machine-readable plan (SPEC §1): pipelines with source, sink and steps.
pub fn render_json(plan: &Plan) -> Value {
    let pipelines: Vec<Value> = plan
        .pipelines
        .iter()
        .map(|p| {
            let steps: Vec<Value> = p
                .steps
                .iter()
                .map(|s| {
                    let sql: Vec<String> = s.statements.iter().map(|st| st.to_string()).collect();
                    let sql = if sql.len() == 1 { json!(sql[0]) } else { json!(sql) };
                    json!({
                        "id": s.id,
                        "kind": step_kind(&s.id),
                        "datastore": s.store,
                        "dialect": s.dialect.name(),
                        "purpose": s.purpose,
                        "sql": sql,
                        "params": s.params.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
                        "param_types": s.params.iter().map(|x| x.dtype.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "name": p.ir.name,
                "source": {
                    "datastore": p.ir.source.store.name,
                    "dialect": dialect_of_store(&p.ir.source.store.kind),
                    "table": table(&p.ir.source.table.table),
                },
                "sink": {
                    "datastore": p.ir.sink.store.name,
                    "dialect": dialect_of_store(&p.ir.sink.store.kind),
                    "table": p.ir.sink.store.kind.dialect().map(|_| table(&p.ir.sink.table)),
                    "target": crate::plan::describe::sink_target(&p.ir),
                },
                "description": p.description,
                "steps": steps,
            })
        })
        .collect();
    json!({ "pipelines": pipelines })
}
