//! Retry policy shared by the HTTP clients (enrichment lookups, webhook sink): exponential
//! backoff, and which failures are worth another attempt.

use std::time::Duration;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `retries + 1` attempts at most).
    pub retries: u32,
    /// Delay before the first retry; each later retry doubles it.
    pub initial_backoff: Duration,
    /// Upper bound of one delay.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// `retries` retries starting at 100 ms, doubling, at most 5 s apart.
    pub fn new(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The delay before retry number `attempt` (0 = the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Whether an HTTP status is worth retrying: 5xx, 408 Request Timeout and 429 Too Many
/// Requests. Other 4xx mean the request itself is wrong and are never retried.
pub fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Whether a transport error is worth retrying: timeouts and connection failures.
pub fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
}

/// The redirect policy of every HTTP client (webhooks, lookups, ClickHouse): none is
/// followed. A redirect would carry the store's headers (API keys) and query string to
/// another host, and a POST followed as a GET would drop its rows while the run reported
/// them written; a 3xx answer is an error that says where it pointed.
pub fn no_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::none()
}

/// The message for a redirect answer `resp` (`None` for any other status): its status and
/// target (resolved against the request URL, without credentials or query string).
pub fn redirect_text(resp: &reqwest::Response) -> Option<String> {
    let status = resp.status();
    if !status.is_redirection() {
        return None;
    }
    let target = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| resp.url().join(l).ok())
        .map(|u| format!(" to {}", redact_url(&u)))
        .unwrap_or_default();
    Some(format!(
        "HTTP {status}{target}: redirects are not followed (they would carry the store's headers, and a POST's rows, to another address); set the store's URL to the final address"
    ))
}

pub use crate::config::redact::redact_url;

/// How many characters of a response body an error message shows.
pub const BODY_EXCERPT_CHARS: usize = 200;

/// The start of an error response's body for a message: at most [`BODY_EXCERPT_CHARS`]
/// characters (`…` when cut), whitespace runs as one space, control characters dropped, and
/// every text of `secrets` (e.g. request header values a receiver might echo) replaced by
/// `***`. At most a few KB are read. `None` when the body is empty or unreadable.
pub async fn body_excerpt(mut resp: reqwest::Response, secrets: &[String]) -> Option<String> {
    let mut raw: Vec<u8> = Vec::new();
    while raw.len() < 4 * BODY_EXCERPT_CHARS {
        match resp.chunk().await {
            Ok(Some(c)) => raw.extend_from_slice(&c),
            _ => break,
        }
    }
    excerpt(&raw, secrets)
}

fn excerpt(raw: &[u8], secrets: &[String]) -> Option<String> {
    let mut text = String::from_utf8_lossy(raw).into_owned();
    for s in secrets.iter().filter(|s| s.chars().count() >= 4) {
        text = text.replace(s.as_str(), "***");
    }
    let mut out = String::new();
    let mut chars = 0;
    for word in text.split_whitespace() {
        let word: String = word.chars().filter(|c| !c.is_control()).collect();
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars == BODY_EXCERPT_CHARS {
                out.push('…');
                return Some(out);
            }
            out.push(c);
            chars += 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A transport error's message without the URL it carries.
pub fn error_text(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if timeout && !msg.contains("timed out") {
        msg.push_str(" (timed out)");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::new(5);
        assert_eq!(p.backoff(0), Duration::from_millis(100));
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(800));
        assert_eq!(p.backoff(10), Duration::from_secs(5));
        assert_eq!(p.backoff(64), Duration::from_secs(5));
    }

    #[test]
    fn statuses() {
        assert!(retryable_status(503));
        assert!(retryable_status(429));
        assert!(!retryable_status(404));
        assert!(!retryable_status(400));
    }

    #[test]
    fn body_excerpts_are_short_single_line_and_scrubbed() {
        assert_eq!(
            excerpt(b"{\"error\":\n  \"bad row\"}\r\n", &[]).as_deref(),
            Some("{\"error\": \"bad row\"}")
        );
        assert_eq!(excerpt(b"  \n", &[]), None);
        let long = "x".repeat(500);
        let e = excerpt(long.as_bytes(), &[]).unwrap();
        assert_eq!(e.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(
            excerpt(b"echo: key=KeySecret6", &["KeySecret6".into()]).as_deref(),
            Some("echo: key=***")
        );
    }

    #[test]
    fn urls_lose_secrets() {
        let u = reqwest::Url::parse("http://u:p@127.0.0.1:80/a/b?key=secret#x").unwrap();
        assert_eq!(redact_url(&u), "http://127.0.0.1/a/b");
    }
}
