//! Webhook sink (SPEC §5): each batch is POSTed as a JSON array of row objects to the
//! datastore's `base_url` + the sink's `url_path` (appended to the URL's path, its query
//! string kept: [`crate::config::urls::join_path`]), with the datastore's headers, a timeout,
//! retries with exponential backoff on timeouts, connection errors, 5xx, 408 and 429 (no
//! sooner than a 429's or 503's `Retry-After` asks, up to
//! [`super::retry::MAX_RETRY_AFTER`]), and an
//! `Idempotency-Key` header derived from the batch content alone — so a retried or re-run
//! batch carries the same key, and the receiver can drop duplicates.

use super::enrich::http::header_map;
use super::enrich::{timeout_of, DEFAULT_RETRIES, DEFAULT_TIMEOUT};
use super::retry::{
    body_excerpt, error_text, no_redirects, redact_url, redirect_text, retry_after,
    retryable_error, retryable_status, seconds, too_long, RetryPolicy, Wait,
};
use super::transform::write_row_json;
use super::{Row, RuntimeError};
use crate::config::raw::RawConfig;
use crate::config::urls::join_path;
use crate::ir::Pipeline;
use reqwest::Url;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// The header carrying the batch's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A webhook sink of one pipeline.
#[derive(Clone)]
pub struct WebhookSink {
    pipeline: String,
    store: String,
    url: Url,
    url_path: String,
    columns: Vec<String>,
    client: reqwest::Client,
    retry: RetryPolicy,
    /// Header values, kept out of error messages should a receiver echo them.
    secrets: Vec<String>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("pipeline", &self.pipeline)
            .field("store", &self.store)
            .field("url", &redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

/// What happened to one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReceipt {
    /// The batch's `Idempotency-Key`.
    pub idempotency_key: String,
    /// The final HTTP status (0 when the batch was empty and nothing was sent).
    pub status: u16,
    /// Attempts made (0 for an empty batch).
    pub attempts: u32,
}

impl WebhookSink {
    /// The sink of `pipeline` (a webhook datastore), with settings from `cfg`: `base_url`,
    /// `headers`, `timeout` (default 10 s), `retries` (default 3).
    pub fn new(pipeline: &Pipeline, cfg: &RawConfig) -> Result<WebhookSink, RuntimeError> {
        let store = pipeline.sink.store.name.clone();
        let raw = cfg
            .datastores
            .iter()
            .find(|d| d.name.value == store)
            .ok_or_else(|| {
                RuntimeError::Config(format!("datastore `{store}` is not configured"))
            })?;
        let base = raw.base_url.as_ref().ok_or_else(|| {
            RuntimeError::Config(format!("webhook datastore `{store}` has no `base_url`"))
        })?;
        let url_path = pipeline.sink.url_path.clone().unwrap_or_default();
        // `url_path` goes after the path of `base_url`, whose query string is kept.
        let url = Url::parse(&base.value)
            .map_err(|e| {
                RuntimeError::Config(format!(
                    "webhook datastore `{store}`: `base_url` is not a URL: {e}"
                ))
            })
            .and_then(|b| {
                join_path(&b, &url_path).map_err(|e| {
                    RuntimeError::Config(format!(
                        "pipeline `{}`: webhook datastore `{store}`: `url_path`: {e}",
                        pipeline.name
                    ))
                })
            })?;
        let headers: Vec<(String, String)> = raw
            .headers
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.clone()))
            .collect();
        let timeout = timeout_of(raw.timeout.as_ref().map(|t| t.value), DEFAULT_TIMEOUT);
        let client = reqwest::Client::builder()
            .redirect(no_redirects())
            .default_headers(header_map(&store, &headers)?)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| RuntimeError::Config(format!("store `{store}`: {}", error_text(e))))?;
        let secrets = headers
            .into_iter()
            .map(|(_, v)| v)
            .chain(url.password().map(String::from))
            .collect();
        Ok(WebhookSink {
            pipeline: pipeline.name.clone(),
            store,
            url,
            url_path,
            columns: pipeline
                .sink
                .fields
                .iter()
                .map(|f| f.column.clone())
                .collect(),
            client,
            retry: RetryPolicy::new(raw.retries.as_ref().map_or(DEFAULT_RETRIES, |r| r.value)),
            secrets,
        })
    }

    /// Override the retry policy (e.g. shorter backoff).
    pub fn with_retry(mut self, retry: RetryPolicy) -> WebhookSink {
        self.retry = retry;
        self
    }

    /// The request body of a batch: a JSON array of objects keyed by sink column, values in
    /// the wire encoding of [`crate::runtime::transform::value_to_json`].
    pub fn body(&self, rows: &[Row]) -> Vec<u8> {
        let mut out = vec![b'['];
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_row_json(&mut out, &self.columns, r);
        }
        out.push(b']');
        out
    }

    /// The idempotency key of a body: hex SHA-256 of the pipeline name, the URL path and the
    /// body. Deterministic: the same batch always gets the same key.
    pub fn idempotency_key(&self, body: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(self.pipeline.as_bytes());
        h.update([0u8]);
        h.update(self.url_path.as_bytes());
        h.update([0u8]);
        h.update(body);
        hex::encode(h.finalize())
    }

    /// POST one batch; done when the receiver answers 2xx. An empty batch sends nothing.
    /// Fails with [`RuntimeError::External`] after the last retry, or at once on a 4xx
    /// other than 408 / 429; the message shows the start of the receiver's answer (never
    /// the request's headers) and leaves naming the pipeline to the caller.
    pub async fn send_batch(&self, rows: &[Row]) -> Result<WebhookReceipt, RuntimeError> {
        let body = self.body(rows);
        let key = self.idempotency_key(&body);
        if rows.is_empty() {
            return Ok(WebhookReceipt {
                idempotency_key: key,
                status: 0,
                attempts: 0,
            });
        }
        let mut attempt: u32 = 0;
        loop {
            let res = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_HEADER, &key)
                .body(body.clone())
                .send()
                .await;
            let mut asked = None;
            let mut throttled = false;
            let (retryable, mut message) = match res {
                Ok(resp) if resp.status().is_success() => {
                    return Ok(WebhookReceipt {
                        idempotency_key: key,
                        status: resp.status().as_u16(),
                        attempts: attempt + 1,
                    })
                }
                Ok(resp) if resp.status().is_redirection() => {
                    (false, redirect_text(&resp).unwrap_or_default())
                }
                Ok(resp) => {
                    let status = resp.status();
                    asked = retry_after(status.as_u16(), resp.headers(), SystemTime::now());
                    throttled = status.as_u16() == 429;
                    let message = match body_excerpt(resp, &self.secrets).await {
                        Some(body) => format!("HTTP {status}: {body}"),
                        None => format!("HTTP {status}"),
                    };
                    (retryable_status(status.as_u16()), message)
                }
                Err(e) => (retryable_error(&e), error_text(e)),
            };
            if retryable && attempt < self.retry.retries {
                match self.retry.wait(attempt, asked, throttled) {
                    Wait::For(d) => {
                        match asked {
                            Some(a) => tracing::warn!(
                                pipeline = %self.pipeline,
                                store = %self.store,
                                attempt = attempt + 1,
                                "webhook POST failed: {message}; the receiver asked to wait {} (Retry-After), retrying in {}",
                                seconds(a),
                                seconds(d)
                            ),
                            None => tracing::warn!(
                                pipeline = %self.pipeline,
                                store = %self.store,
                                attempt = attempt + 1,
                                "webhook POST failed, retrying: {message}"
                            ),
                        }
                        tokio::time::sleep(d).await;
                        attempt += 1;
                        continue;
                    }
                    Wait::TooLong(a) => message.push_str(&too_long(a)),
                }
            }
            // The caller names the pipeline.
            return Err(RuntimeError::External {
                store: self.store.clone(),
                message: format!(
                    "POST {} ({} rows, {IDEMPOTENCY_HEADER} {key}): {message} (after {} attempt{})",
                    redact_url(&self.url),
                    rows.len(),
                    attempt + 1,
                    if attempt == 0 { "" } else { "s" }
                ),
            });
        }
    }
}
