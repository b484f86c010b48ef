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

/// The longest wait a `Retry-After` answer is granted. A store asking for more (a quota
/// that resets in an hour) is not retried at all: retrying sooner than it asked would only
/// be refused again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What a `429 Too Many Requests` or `503 Service Unavailable` answer asked for in its
/// `Retry-After` header (delta-seconds, or an HTTP-date, which `now` turns into a wait; a
/// date in the past is no wait). `None` for other statuses, no header, or one that reads as
/// neither.
pub fn retry_after(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit is far beyond any cap.
        return Some(Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// When to try again after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// After this long: the policy's backoff, or the longer wait the store asked for.
    For(Duration),
    /// Not at all: the store asked for a wait beyond [`MAX_RETRY_AFTER`].
    TooLong(Duration),
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0 = the first) when the store asked for
    /// `asked` (its `Retry-After`): the longer of that and the backoff, or
    /// [`Wait::TooLong`] beyond [`MAX_RETRY_AFTER`]. An asked wait takes a retry like any
    /// other, so `retries` keeps bounding the attempts.
    ///
    /// `throttled` marks a `429 Too Many Requests` without a `Retry-After`: rate limits
    /// count per second or longer, so its waits start at [`THROTTLED_BACKOFF`] and double,
    /// up to [`MAX_THROTTLED_BACKOFF`], where the backoff's 100 ms would only be refused again.
    pub fn wait(&self, attempt: u32, asked: Option<Duration>, throttled: bool) -> Wait {
        match asked {
            Some(a) if a > MAX_RETRY_AFTER => Wait::TooLong(a),
            Some(a) => Wait::For(a.max(self.backoff(attempt))),
            None if throttled => {
                let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
                let slow = THROTTLED_BACKOFF
                    .saturating_mul(factor)
                    .min(MAX_THROTTLED_BACKOFF);
                Wait::For(slow.max(self.backoff(attempt)))
            }
            None => Wait::For(self.backoff(attempt)),
        }
    }
}

/// The first wait after a `429 Too Many Requests` that did not say how long to wait.
pub const THROTTLED_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait after a `429 Too Many Requests` that did not say how long to wait.
pub const MAX_THROTTLED_BACKOFF: Duration = Duration::from_secs(30);

/// What a failure's message adds when the store asked for a wait beyond [`MAX_RETRY_AFTER`].
pub fn too_long(asked: Duration) -> String {
    format!(
        "; the store asked to wait {} (Retry-After), longer than the {} a retry waits at most, so it was not retried",
        seconds(asked),
        seconds(MAX_RETRY_AFTER)
    )
}

/// A wait as a log or error message shows it: `1 s`, `0.5 s`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Whether an HTTP status is worth retrying: 5xx, 408 Request Timeout and 429 Too Many
/// Requests. Other 4xx mean the request itself is wrong and are never retried.
pub fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Whether a transport error is worth retrying: timeouts, connection failures, and an
/// answer's body that broke off in transfer (reqwest reports that as a decode error caused
/// by a body error; the clients here parse bodies themselves, so a body that is complete
/// but not what was expected never comes through here).
pub fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || broke_off(e)
}

/// Whether `e` was caused by an error reading a body (a reset or an early close).
fn broke_off(e: &reqwest::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_body())
        {
            return true;
        }
        src = s.source();
    }
    false
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
    fn retry_after_reads_seconds_and_dates_on_429_and_503_only() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(retry_after(429, &h("1"), now), Some(Duration::from_secs(1)));
        assert_eq!(
            retry_after(503, &h(" 120 "), now),
            Some(Duration::from_secs(120))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(503, &h(&date), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(429, &h(&past), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(429, &h("99999999999999999999999"), now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(retry_after(500, &h("1"), now), None);
        assert_eq!(retry_after(429, &h("soon"), now), None);
        assert_eq!(retry_after(429, &h("-1"), now), None);
        assert_eq!(retry_after(429, &HeaderMap::new(), now), None);

        let p = RetryPolicy::new(3);
        assert_eq!(
            p.wait(0, None, false),
            Wait::For(Duration::from_millis(100))
        );
        assert_eq!(
            p.wait(0, Some(Duration::from_secs(2)), false),
            Wait::For(Duration::from_secs(2))
        );
        assert_eq!(
            p.wait(3, Some(Duration::ZERO), false),
            Wait::For(Duration::from_millis(800))
        );
        assert_eq!(
            p.wait(0, Some(MAX_RETRY_AFTER), false),
            Wait::For(MAX_RETRY_AFTER)
        );
        assert_eq!(
            p.wait(0, Some(Duration::from_secs(61)), false),
            Wait::TooLong(Duration::from_secs(61))
        );
        // A 429 without Retry-After: 1 s, doubling, at most 30 s; an asked wait wins.
        assert_eq!(p.wait(0, None, true), Wait::For(Duration::from_secs(1)));
        assert_eq!(p.wait(2, None, true), Wait::For(Duration::from_secs(4)));
        assert_eq!(p.wait(9, None, true), Wait::For(MAX_THROTTLED_BACKOFF));
        assert_eq!(
            p.wait(0, Some(Duration::ZERO), true),
            Wait::For(Duration::from_millis(100))
        );
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_secs(60)), "60 s");
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
