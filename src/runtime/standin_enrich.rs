//! Minimal stand-ins for the transform, enrichment, webhook and NATS modules, with the
//! signatures the engine calls, so that the engine runs end to end until the real modules
//! replace this file. The transform copies source and pushed fields by alias; every other
//! field kind, every enrichment and NATS are reported as unavailable.

/// Row transform: source row (by alias) → sink row.
pub mod transform {
    use crate::expr::{Decimal, Value};
    use crate::ir::{FieldValue, Pipeline};
    use crate::runtime::{Row, RuntimeError};
    use crate::types::Dtype;
    use chrono::NaiveDateTime;
    use indexmap::IndexMap;

    /// The sink row (one value per sink field, in order) of a source row keyed by alias.
    pub fn sink_row(
        pipeline: &Pipeline,
        row: &IndexMap<String, Value>,
        now: NaiveDateTime,
    ) -> Result<Row, RuntimeError> {
        let _ = now;
        let mut out = Vec::with_capacity(pipeline.sink.fields.len());
        for f in &pipeline.sink.fields {
            let fail = |message: String| RuntimeError::Value {
                pipeline: pipeline.name.clone(),
                key: String::new(),
                column: f.column.clone(),
                message,
            };
            let v =
                match &f.value {
                    FieldValue::Column { alias } | FieldValue::Pushed { alias } => row
                        .get(alias)
                        .cloned()
                        .ok_or_else(|| fail(format!("the row has no field `{alias}`")))?,
                    _ => return Err(fail(
                        "computed, template and enrichment fields are not available in this build"
                            .into(),
                    )),
                };
            out.push(coerce(v, f.dtype).map_err(fail)?);
        }
        Ok(out)
    }

    fn coerce(v: Value, t: Dtype) -> Result<Value, String> {
        Ok(match (v, t) {
            (Value::Int(i), Dtype::Float) => Value::Float(i as f64),
            (Value::Int(i), Dtype::Decimal { .. }) => Value::Decimal(Decimal::from_i64(i)),
            (Value::Int(i), Dtype::Bool) => Value::Bool(i != 0),
            (Value::Bool(b), Dtype::Int) => Value::Int(b as i64),
            (Value::Uuid(s), Dtype::Str) => Value::Str(s),
            (Value::Str(s), Dtype::Uuid) => Value::Uuid(s.to_ascii_lowercase()),
            (v, _) => v,
        })
    }
}

/// Enrichment lookups.
pub mod enrich {
    use crate::config::raw::RawConfig;
    use crate::expr::Value;
    use crate::ir::Pipeline;
    use crate::runtime::RuntimeError;
    use chrono::NaiveDateTime;
    use indexmap::IndexMap;

    /// Runs a pipeline's enrichments on each batch.
    #[derive(Debug)]
    pub struct Enricher {
        empty: bool,
        pipeline: String,
    }

    impl Enricher {
        /// Prepares the enrichments of `pipeline`.
        pub async fn connect(
            pipeline: &Pipeline,
            cfg: &RawConfig,
        ) -> Result<Enricher, RuntimeError> {
            let _ = cfg;
            Ok(Enricher {
                empty: pipeline.enrichments.is_empty(),
                pipeline: pipeline.name.clone(),
            })
        }

        /// Uses the run's fixed "now".
        pub fn with_now(self, now: NaiveDateTime) -> Enricher {
            let _ = now;
            self
        }

        /// True when the pipeline has no enrichment.
        pub fn is_empty(&self) -> bool {
            self.empty
        }

        /// Adds the enrichment outputs to each row of a batch (rows may be dropped, hence
        /// the `Vec`).
        #[allow(clippy::ptr_arg)]
        pub async fn run(
            &self,
            rows: &mut Vec<IndexMap<String, Value>>,
        ) -> Result<(), RuntimeError> {
            if self.empty || rows.is_empty() {
                return Ok(());
            }
            Err(RuntimeError::Config(format!(
                "pipeline `{}`: enrichments are not available in this build",
                self.pipeline
            )))
        }
    }
}

/// Webhook sink.
pub mod webhook {
    use crate::config::raw::RawConfig;
    use crate::ir::Pipeline;
    use crate::runtime::{Row, RuntimeError};

    /// POSTs batches of sink rows as JSON arrays.
    #[derive(Debug)]
    pub struct WebhookSink {
        store: String,
        url: String,
        columns: Vec<String>,
        client: reqwest::Client,
    }

    impl WebhookSink {
        /// The webhook sink of `pipeline`.
        pub fn new(pipeline: &Pipeline, cfg: &RawConfig) -> Result<WebhookSink, RuntimeError> {
            let store = pipeline.sink.store.name.clone();
            let base = cfg
                .datastores
                .iter()
                .find(|d| d.name.value == store)
                .and_then(|d| d.base_url.as_ref())
                .map(|b| b.value.clone())
                .ok_or_else(|| {
                    RuntimeError::Config(format!("datastore `{store}` has no base_url"))
                })?;
            let path = pipeline.sink.url_path.clone().unwrap_or_default();
            let url = if path.is_empty() {
                base
            } else {
                format!(
                    "{}/{}",
                    base.trim_end_matches('/'),
                    path.trim_start_matches('/')
                )
            };
            Ok(WebhookSink {
                store,
                url,
                columns: pipeline
                    .sink
                    .fields
                    .iter()
                    .map(|f| f.column.clone())
                    .collect(),
                client: reqwest::Client::new(),
            })
        }

        /// POSTs one batch.
        pub async fn send_batch(&self, rows: &[Row]) -> Result<(), RuntimeError> {
            if rows.is_empty() {
                return Ok(());
            }
            let arr: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        self.columns
                            .iter()
                            .zip(r)
                            .map(|(c, v)| (c.clone(), v.to_json()))
                            .collect(),
                    )
                })
                .collect();
            let err = |m: String| RuntimeError::External {
                store: self.store.clone(),
                message: m,
            };
            let res = self
                .client
                .post(&self.url)
                .json(&arr)
                .send()
                .await
                .map_err(|e| err(e.without_url().to_string()))?;
            if !res.status().is_success() {
                return Err(err(format!("HTTP {}", res.status())));
            }
            Ok(())
        }
    }
}

/// NATS sink.
pub mod nats {
    use crate::config::raw::RawConfig;
    use crate::ir::Pipeline;
    use crate::runtime::{Row, RuntimeError};

    /// Publishes sink rows to a NATS subject.
    #[derive(Debug)]
    pub struct NatsSink {
        store: String,
    }

    impl NatsSink {
        /// The NATS sink of `pipeline`.
        pub async fn connect(
            pipeline: &Pipeline,
            cfg: &RawConfig,
        ) -> Result<NatsSink, RuntimeError> {
            let _ = cfg;
            Err(RuntimeError::External {
                store: pipeline.sink.store.name.clone(),
                message: "the NATS sink is not available in this build".into(),
            })
        }

        /// Publishes one batch.
        pub async fn publish_batch(&self, rows: &[Row]) -> Result<(), RuntimeError> {
            let _ = rows;
            Err(RuntimeError::External {
                store: self.store.clone(),
                message: "the NATS sink is not available in this build".into(),
            })
        }
    }
}
