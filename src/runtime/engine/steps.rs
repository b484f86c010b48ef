//! Generated steps as executable statements: the SQL text of each statement, its parameter
//! names and types, and the values bound to them by name.

use crate::expr::Value;
use crate::ir::{KeyPair, Pipeline};
use crate::runtime::connect::Stmt;
use crate::runtime::RuntimeError;
use crate::sql::{self, Side, SqlStep};
use crate::types::Dtype;
use std::collections::HashMap;

/// One generated step, printed once.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The step.
    pub step: SqlStep,
    /// Each statement's text.
    pub sql: Vec<String>,
    names: Vec<String>,
    types: Vec<Dtype>,
    /// The result columns of the first statement (for errors).
    columns: Vec<String>,
    /// Where the pipeline's key is among those columns, for errors naming a row (empty
    /// when the result does not hold the whole key).
    key: Vec<(usize, String)>,
}

impl Prepared {
    /// Prints `step`. A step binding parameters must have a single statement (placeholders
    /// are numbered across the whole step).
    pub fn new(step: SqlStep) -> Result<Prepared, RuntimeError> {
        if step.statements.len() > 1 && !step.params.is_empty() {
            return Err(RuntimeError::Config(format!(
                "step {} binds parameters across {} statements, which the engine cannot split",
                step.id,
                step.statements.len()
            )));
        }
        Ok(Prepared {
            sql: step.sql(),
            names: step.params.iter().map(|p| p.name.clone()).collect(),
            types: step.params.iter().map(|p| p.dtype).collect(),
            columns: step
                .statements
                .first()
                .map(sql::Stmt::result_columns)
                .unwrap_or_default(),
            key: Vec::new(),
            step,
        })
    }

    /// Finds `key` among the result columns: by source alias, or on the sink side by sink
    /// column. Messages name each part by its sink column.
    fn locate_key(&mut self, key: &[KeyPair]) {
        let sink = matches!(self.step.side, Side::Sink | Side::SinkState);
        let found: Option<Vec<(usize, String)>> = key
            .iter()
            .map(|k| {
                self.columns
                    .iter()
                    .position(|c| *c == k.source_alias || (sink && *c == k.sink_column))
                    .map(|i| (i, k.sink_column.clone()))
            })
            .collect();
        self.key = found.unwrap_or_default();
    }

    /// Statement `i` with its parameter list.
    pub fn stmt(&self, i: usize) -> Stmt<'_> {
        Stmt {
            step: &self.step.id,
            sql: &self.sql[i],
            param_names: &self.names,
            param_types: &self.types,
            columns: if i == 0 { &self.columns } else { &[] },
            key: if i == 0 { &self.key } else { &[] },
        }
    }

    /// Whether statement `i` is a ClickHouse mutation (`ALTER TABLE … DELETE`).
    pub fn is_mutation(&self, i: usize) -> bool {
        matches!(
            self.step.statements.get(i),
            Some(sql::Stmt::ClickhouseAlterDelete { .. })
        )
    }

    /// The values of the step's parameters, by name: `extra` first, then `base`.
    pub fn values(
        &self,
        base: &Binds,
        extra: &[(&str, Value)],
    ) -> Result<Vec<Value>, RuntimeError> {
        self.step
            .params
            .iter()
            .map(|p| {
                extra
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| base.get(self.step.side, &p.name))
                    .ok_or_else(|| {
                        RuntimeError::Config(format!(
                            "step {}: no value for parameter `{}`",
                            self.step.id, p.name
                        ))
                    })
            })
            .collect()
    }
}

/// Values bound by name, per side (source filters and sink filters may share names).
#[derive(Debug, Clone, Default)]
pub struct Binds {
    source: HashMap<String, Value>,
    sink: HashMap<String, Value>,
}

impl Binds {
    /// Binds `name` for steps on the source side (`Source`, `SourceState`) or the sink side.
    pub fn set(&mut self, source: bool, name: &str, v: Value) {
        let m = if source {
            &mut self.source
        } else {
            &mut self.sink
        };
        m.insert(name.to_string(), v);
    }

    fn get(&self, side: Side, name: &str) -> Option<Value> {
        match side {
            Side::Source | Side::SourceState => self.source.get(name),
            Side::Sink | Side::SinkState => self.sink.get(name),
        }
        .cloned()
    }
}

/// Every step of a pipeline, by id.
#[derive(Debug)]
pub struct Steps {
    by_id: HashMap<String, Prepared>,
}

impl Steps {
    /// Generates and prints the steps of `p`.
    pub fn generate(p: &Pipeline) -> Result<Steps, RuntimeError> {
        let steps = sql::generate(p).map_err(|e| {
            RuntimeError::Config(format!("pipeline `{}`: cannot generate SQL: {e}", p.name))
        })?;
        let mut by_id = HashMap::new();
        for s in steps {
            let mut prepared = Prepared::new(s)?;
            prepared.locate_key(&p.key);
            by_id.insert(prepared.step.id.clone(), prepared);
        }
        Ok(Steps { by_id })
    }

    /// The step `id`, if generated.
    pub fn get(&self, id: &str) -> Option<&Prepared> {
        self.by_id.get(id)
    }

    /// The step `id`; its absence is an error naming it.
    pub fn need(&self, id: &str) -> Result<&Prepared, RuntimeError> {
        self.get(id).ok_or_else(|| {
            RuntimeError::Config(format!("the SQL generator produced no step `{id}`"))
        })
    }
}
