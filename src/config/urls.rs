//! Joining a store's URL with a path: an HTTP lookup's rendered `path` onto the external
//! store's `url`, a webhook sink's `url_path` onto the datastore's `base_url`.
//!
//! The path is appended to the base URL's *path* with one slash between, and the base URL's
//! query string is kept (`http://h/base?api_key=K` + `/zip/1` is
//! `http://h/base/zip/1?api_key=K`); a query string in the path itself is added after the
//! base's, and a fragment is dropped (it is never sent). The result always has the base URL's
//! scheme, host and port.

use reqwest::Url;

/// Why a path cannot be joined onto a base URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlJoinError {
    /// The path has a `.` or `..` segment, which would be resolved away and so reach
    /// another path of the server than the one written.
    #[error("the path `{path}` has a `.` or `..` segment")]
    DotSegment {
        /// The path (without its query string).
        path: String,
    },
    /// The base URL has no hierarchical path to append to (e.g. `mailto:x`).
    #[error("the base URL cannot take a path")]
    NotABase,
}

/// `base` with `rel` appended: `rel` is a path, optionally followed by `?query` (and
/// `#fragment`, dropped). Its path goes after the base URL's path with exactly one `/`
/// between them; the query is the base URL's query, then `rel`'s, joined by `&`. An empty
/// path leaves the base URL's path as it is. The path is taken as written (characters a
/// path cannot hold are percent-encoded, existing `%XX` escapes are kept); a `.` or `..`
/// segment is refused rather than resolved.
pub fn join_path(base: &Url, rel: &str) -> Result<Url, UrlJoinError> {
    if base.cannot_be_a_base() {
        return Err(UrlJoinError::NotABase);
    }
    let rel = rel.split_once('#').map_or(rel, |(r, _)| r);
    let (path, query) = match rel.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rel, None),
    };
    if has_dot_segment(path) {
        return Err(UrlJoinError::DotSegment {
            path: path.to_string(),
        });
    }
    let mut url = base.clone();
    url.set_fragment(None);
    let tail = path.trim_start_matches(['/', '\\']);
    if !tail.is_empty() {
        let joined = format!("{}/{tail}", base.path().trim_end_matches('/'));
        url.set_path(&joined);
    }
    let query = match (base.query().filter(|q| !q.is_empty()), query) {
        (b, None | Some("")) => b.map(str::to_string),
        (None, Some(q)) => Some(q.to_string()),
        (Some(b), Some(q)) => Some(format!("{b}&{q}")),
    };
    url.set_query(query.as_deref());
    Ok(url)
}

/// Whether `path` has a segment that URL parsing resolves (`.`, `..`, or their
/// percent-encoded forms `%2e`, `.%2E`, …); `\` separates segments too, as in `http` URLs.
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|seg| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    })
}

/// Whether `a` and `b` have the same scheme, host and port (the default port counting as
/// given).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// True for a NATS server URL that asks for TLS (`tls://host:port`).
pub fn is_tls_url(url: &str) -> bool {
    url.trim_start().to_ascii_lowercase().starts_with("tls://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(base: &str, rel: &str) -> String {
        join_path(&Url::parse(base).unwrap(), rel).unwrap().into()
    }

    #[test]
    fn the_path_goes_into_the_path_and_the_query_is_kept() {
        assert_eq!(
            join("http://h/base?api_key=K1", "/zip/10115"),
            "http://h/base/zip/10115?api_key=K1"
        );
        assert_eq!(
            join("http://h:1/api?token=T", "/v1/signups"),
            "http://h:1/api/v1/signups?token=T"
        );
        assert_eq!(
            join("http://h:1/api/?token=T", "v1/signups"),
            "http://h:1/api/v1/signups?token=T"
        );
    }

    #[test]
    fn one_slash_between() {
        for (base, rel) in [
            ("http://h/api", "/x"),
            ("http://h/api/", "/x"),
            ("http://h/api/", "x"),
            ("http://h/api", "x"),
            ("http://h/api//", "//x"),
        ] {
            assert_eq!(join(base, rel), "http://h/api/x", "{base} + {rel}");
        }
        assert_eq!(join("http://h", "/x"), "http://h/x");
        assert_eq!(join("http://h/", "x/y/"), "http://h/x/y/");
    }

    #[test]
    fn an_empty_path_leaves_the_base() {
        assert_eq!(join("http://h/api?k=1", ""), "http://h/api?k=1");
        assert_eq!(join("http://h/api/", ""), "http://h/api/");
        assert_eq!(join("http://h/api", "?a=2"), "http://h/api?a=2");
    }

    #[test]
    fn queries_merge_base_first_and_fragments_go() {
        assert_eq!(
            join("http://h/api?k=1#top", "/s?user_id=7#frag"),
            "http://h/api/s?k=1&user_id=7"
        );
        assert_eq!(join("http://h/api?", "/s?"), "http://h/api/s");
    }

    #[test]
    fn percent_escapes_are_kept_and_raw_characters_encoded() {
        assert_eq!(
            join("http://h/api", "/zip/a%20b%2Fc%3Fd"),
            "http://h/api/zip/a%20b%2Fc%3Fd"
        );
        assert_eq!(join("http://h/api", "/a b"), "http://h/api/a%20b");
    }

    #[test]
    fn the_host_never_changes() {
        for rel in [
            "//other:1/steal",
            "http://other:1/steal",
            "/http://other:1/steal",
            "\\\\other/x",
        ] {
            let u = join_path(&Url::parse("https://h:8443/api?k=1").unwrap(), rel).unwrap();
            assert_eq!(u.host_str(), Some("h"), "{rel}: {u}");
            assert_eq!(u.port(), Some(8443), "{rel}: {u}");
            assert_eq!(u.scheme(), "https", "{rel}: {u}");
            assert!(u.path().starts_with("/api/"), "{rel}: {u}");
        }
    }

    #[test]
    fn dot_segments_are_refused() {
        let base = Url::parse("http://h/api/v1").unwrap();
        for rel in [
            "/..",
            "/zip/../../admin",
            "./x",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "a\\..\\b",
        ] {
            assert!(
                matches!(join_path(&base, rel), Err(UrlJoinError::DotSegment { .. })),
                "{rel}"
            );
        }
        assert_eq!(join("http://h/api", "/a..b/.c/"), "http://h/api/a..b/.c/");
    }

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(&u("http://h/a"), &u("http://h:80/b?x")));
        assert!(!same_origin(&u("http://h/a"), &u("https://h/a")));
        assert!(!same_origin(&u("http://h/a"), &u("http://h:81/a")));
        assert!(!same_origin(&u("http://h/a"), &u("http://other/a")));
    }

    #[test]
    fn a_base_without_a_path_is_refused() {
        let base = Url::parse("mailto:x@example.com").unwrap();
        assert_eq!(join_path(&base, "/a"), Err(UrlJoinError::NotABase));
    }
}
