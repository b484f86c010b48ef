//! HTTP lookups: `GET <store url><path>?<params>` (the path appended to the store URL's
//! path, its values percent-encoded, the store URL's query string kept) with the store's
//! headers, bounded concurrency, a per-request timeout and retries with exponential backoff
//! on timeouts, connection errors, bodies broken off in transfer, 5xx, 408 and 429 (no
//! sooner than a 429's or 503's `Retry-After` asks). Other 4xx are final (the request is
//! wrong, another attempt would not help). An answer's body is read up to the store's
//! `max_response_bytes`.

use super::{
    timeout_of, AliasRow, LookupError, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_RETRIES, DEFAULT_TIMEOUT,
};
use crate::config::raw::RawExternalStore;
use crate::config::urls::{join_path, same_origin};
use crate::expr::Value;
use crate::runtime::retry::{
    error_text, no_redirects, redact_url, redirect_text, retry_after, retryable_error,
    retryable_status, seconds, too_long, RetryPolicy, Wait,
};
use crate::runtime::RuntimeError;
use crate::template::Template;
use futures_util::stream::{self, StreamExt};
use indexmap::IndexMap;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use std::time::{Duration, SystemTime};

/// Build a header map from configured `(name, value)` pairs. Values are marked sensitive so
/// that they never show in debug output; errors name the header, never its value.
pub(crate) fn header_map(
    store: &str,
    headers: &[(String, String)],
) -> Result<HeaderMap, RuntimeError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            RuntimeError::Config(format!("store `{store}`: `{k}` is not a valid header name"))
        })?;
        let mut value = HeaderValue::from_str(v).map_err(|_| {
            RuntimeError::Config(format!(
                "store `{store}`: the value of header `{k}` is not valid header text"
            ))
        })?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// An HTTP external store.
#[derive(Clone)]
pub struct HttpLookup {
    store: String,
    base: Url,
    client: reqwest::Client,
    max_concurrency: usize,
    retry: RetryPolicy,
    max_response_bytes: usize,
}

impl std::fmt::Debug for HttpLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLookup")
            .field("store", &self.store)
            .field("base", &redact_url(&self.base))
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl HttpLookup {
    /// A client for the store: its `url`, `headers`, `timeout` (default 10 s),
    /// `max_concurrency` (default 8), `retries` (default 3) and `max_response_bytes`
    /// (default 16 MiB).
    pub fn new(raw: &RawExternalStore) -> Result<HttpLookup, RuntimeError> {
        let store = raw.name.value.clone();
        let url = raw.url.as_ref().ok_or_else(|| {
            RuntimeError::Config(format!("http external store `{store}` has no `url`"))
        })?;
        let base = Url::parse(&url.value).map_err(|e| {
            RuntimeError::Config(format!("http external store `{store}`: bad `url`: {e}"))
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
        Ok(HttpLookup {
            store,
            base,
            client,
            max_concurrency: raw
                .max_concurrency
                .as_ref()
                .map_or(DEFAULT_MAX_CONCURRENCY, |m| m.value.max(1) as usize),
            retry: RetryPolicy::new(raw.retries.as_ref().map_or(DEFAULT_RETRIES, |r| r.value)),
            max_response_bytes: raw
                .max_response_bytes
                .as_ref()
                .map_or(DEFAULT_MAX_RESPONSE_BYTES, |m| m.value as usize),
        })
    }

    /// The request URL of one row. The rendered path (its values percent-encoded as path
    /// segments by the template) is appended to the store URL's path, and the store URL's
    /// query string kept ([`join_path`]); a rendered path that is a whole `http(s)://` URL
    /// is taken as it is, but only on the store's own scheme, host and port, so that the
    /// store's headers never go to another server. The rendered query parameters are added
    /// last, encoded as query values. Identical URLs are one request per batch.
    pub fn request_url(
        &self,
        path: &Template,
        params: &IndexMap<String, Template>,
        row: &AliasRow,
    ) -> Result<String, String> {
        let p = path.render(row).map_err(|e| e.to_string())?;
        let mut url = if is_absolute(&p) {
            let url = Url::parse(&p).map_err(|e| format!("bad lookup URL: {e}"))?;
            if !same_origin(&url, &self.base) {
                return Err(format!(
                    "lookup URL {} is not on the store's {}",
                    redact_url(&url),
                    redact_url(&self.base)
                ));
            }
            url
        } else {
            join_path(&self.base, &p).map_err(|e| format!("bad lookup path: {e}"))?
        };
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, t) in params {
                q.append_pair(k, &t.render(row).map_err(|e| e.to_string())?);
            }
        }
        Ok(url.into())
    }

    /// GET every URL, at most `max_concurrency` at a time; results in input order. With
    /// `stop_on_error`, the first request that fails for good (after its retries) stops
    /// the others: those in flight are cancelled, the rest never sent, and their places
    /// hold `None`.
    pub async fn get_many(
        &self,
        urls: &[String],
        stop_on_error: bool,
    ) -> Vec<Option<Result<Value, LookupError>>> {
        let mut out: Vec<Option<Result<Value, LookupError>>> = vec![None; urls.len()];
        let mut pending = stream::iter(urls.iter().enumerate())
            .map(|(i, u)| async move { (i, self.get(u).await) })
            .buffer_unordered(self.max_concurrency);
        while let Some((i, r)) = pending.next().await {
            let failed = r.is_err();
            out[i] = Some(r);
            if failed && stop_on_error {
                break;
            }
        }
        out
    }

    /// One GET with retries. The body is parsed as JSON ([`Value::Json`], JSON `null` →
    /// [`Value::Null`]); a body that is not JSON is returned as [`Value::Str`]. A body
    /// larger than the store's `max_response_bytes` fails the lookup (not retried: the
    /// answer would be as large again); one that breaks off in transfer is retried like a
    /// connection reset. A 429 or 503 with a `Retry-After` is retried no sooner than it asks
    /// (up to [`crate::runtime::retry::MAX_RETRY_AFTER`]; a longer wait is not retried).
    pub async fn get(&self, url: &str) -> Result<Value, LookupError> {
        let parsed = Url::parse(url).map_err(|e| LookupError(format!("bad lookup URL: {e}")))?;
        let shown = redact_url(&parsed);
        let mut attempt: u32 = 0;
        loop {
            // A 429 Too Many Requests (see [`RetryPolicy::wait`]).
            let mut throttled = false;
            // Err((retryable, message, the wait the store asked for))
            let outcome: Result<Value, (bool, String, Option<Duration>)> =
                match self.client.get(parsed.clone()).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        if status.is_success() {
                            self.read_body(resp)
                                .await
                                .map(|body| parse_body(&body))
                                .map_err(|(retry, m)| (retry, m, None))
                        } else if let Some(m) = redirect_text(&resp) {
                            Err((false, m, None))
                        } else {
                            let asked =
                                retry_after(status.as_u16(), resp.headers(), SystemTime::now());
                            throttled = status.as_u16() == 429;
                            Err((
                                retryable_status(status.as_u16()),
                                format!("HTTP {status}"),
                                asked,
                            ))
                        }
                    }
                    Err(e) => Err((retryable_error(&e), error_text(e), None)),
                };
            let (retryable, m, asked) = match outcome {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let mut m = m;
            if retryable && attempt < self.retry.retries {
                match self.retry.wait(attempt, asked, throttled) {
                    Wait::For(d) => {
                        if let Some(a) = asked {
                            tracing::warn!(
                                store = %self.store,
                                attempt = attempt + 1,
                                "GET {shown}: {m}; the store asked to wait {} (Retry-After), retrying in {}",
                                seconds(a),
                                seconds(d)
                            );
                        } else if throttled {
                            tracing::warn!(
                                store = %self.store,
                                attempt = attempt + 1,
                                "GET {shown}: {m} without Retry-After; retrying in {}",
                                seconds(d)
                            );
                        }
                        tokio::time::sleep(d).await;
                        attempt += 1;
                        continue;
                    }
                    Wait::TooLong(a) => m.push_str(&too_long(a)),
                }
            }
            return Err(LookupError(format!(
                "GET {shown}: {m} (after {} attempt{})",
                attempt + 1,
                if attempt == 0 { "" } else { "s" }
            )));
        }
    }

    /// The body of a 2xx answer, read chunk by chunk and given up as soon as it is larger
    /// than `max_response_bytes` (at once when its `Content-Length` says so).
    /// Err((retryable, message)).
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, (bool, String)> {
        let limit = self.max_response_bytes;
        let too_large = |size: String| {
            (
                false,
                format!(
                    "the answer is {size}, more than the {limit} bytes store `{}` accepts (its `max_response_bytes`)",
                    self.store
                ),
            )
        };
        let announced = resp.content_length();
        if let Some(len) = announced.filter(|&l| l > limit as u64) {
            return Err(too_large(format!("{len} bytes (Content-Length)")));
        }
        let mut body: Vec<u8> = Vec::with_capacity(announced.unwrap_or(0) as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > limit {
                        // Not read further.
                        return Err(too_large(format!(
                            "larger ({} bytes read)",
                            body.len() + c.len()
                        )));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => return Ok(body),
                Err(e) => return Err((retryable_error(&e), error_text(e))),
            }
        }
    }

    /// The configured concurrency bound.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }
}

/// Whether a rendered path is a whole `http://` or `https://` URL.
fn is_absolute(p: &str) -> bool {
    let starts = |prefix: &str| {
        p.as_bytes()
            .get(..prefix.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    starts("http://") || starts("https://")
}

fn parse_body(body: &[u8]) -> Value {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(j) => Value::from_json(j),
        Err(_) => Value::Str(String::from_utf8_lossy(body).into_owned()),
    }
}
