//! What counts as a secret, and how it is hidden: names of keys, headers and parameters whose
//! values are secret, and the credentials (`user:password@`, `token@`) of URLs. Shared by the
//! source masking of diagnostics, the plan description and the runtime's messages.

/// Fragments of a name that mark its value as secret (matched case-insensitively, with `-`
/// and `_` ignored, anywhere in the name: `X-Api-Key`, `api_key`, `Cookie`, `X-Session-Id`).
const SECRET_NAME_PARTS: &[&str] = &[
    "key",
    "token",
    "secret",
    "pass",
    "pw",
    "auth",
    "cookie",
    "session",
    "signature",
    "credential",
];

/// Whether a key, header or parameter name suggests a secret value: it contains `key`,
/// `token`, `secret`, `password` (or `pass`, `passwd`), `pw` (`pwd`), `auth`, `cookie`, `session`,
/// `signature` or `credential`, ignoring case, `-` and `_`.
pub fn is_secret_name(name: &str) -> bool {
    if NOT_SECRET_KEYS.contains(&name) {
        return false;
    }
    let n: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAME_PARTS.iter().any(|p| n.contains(p))
}

/// The byte range of the credentials (`user:password` or `token`, without the `@`) in one
/// URL, which may lack a scheme (`user:pw@host:4222`, as NATS accepts it).
pub fn userinfo_range(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    authority_userinfo(url, start)
}

/// A URL for messages and `compile`: scheme, host, port and path, without credentials,
/// query string or fragment (which may carry API keys).
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// `url` with its credentials replaced by `***` (`nats://***@host:4222`); anything else
/// unchanged.
pub fn redact_userinfo(url: &str) -> String {
    match userinfo_range(url) {
        Some((s, e)) => format!("{}***{}", &url[..s], &url[e..]),
        None => url.to_string(),
    }
}

/// The secret parts of a URL's credentials, to scrub from messages that might repeat them:
/// the password of `user:password@`, or the whole of a `token@` (and the user name too when
/// `with_user`).
pub fn userinfo_secrets(url: &str, with_user: bool) -> Vec<String> {
    let Some((s, e)) = userinfo_range(url) else {
        return Vec::new();
    };
    match url[s..e].split_once(':') {
        Some((user, pw)) => {
            let mut out = vec![pw.to_string()];
            if with_user {
                out.push(user.to_string());
            }
            out.retain(|x| !x.is_empty());
            out
        }
        None => vec![url[s..e].to_string()],
    }
}

/// Byte ranges of URL credentials anywhere in a text (`scheme://user:pw@host`), for masking
/// shown source lines. Credentials written only as `${VAR}` references are not secrets and
/// are left out.
pub fn userinfo_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let start = from + i + 3;
        if let Some((s, e)) = authority_userinfo(text, start) {
            if !only_references(&text[s..e]) {
                out.push((s, e));
            }
        }
        from = start;
    }
    out
}

/// Byte ranges of the values of secret-named query parameters anywhere in a text
/// (`?api_key=…`, `&access_token=…`), for masking shown source lines. A value written only
/// as `${VAR}` references is not a secret and is left out.
pub fn query_secret_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for (i, c) in b.iter().enumerate() {
        if !matches!(c, b'?' | b'&') {
            continue;
        }
        let name_end = i
            + 1
            + b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
                .count();
        if name_end == i + 1 || b.get(name_end) != Some(&b'=') {
            continue;
        }
        let start = name_end + 1;
        let end = start
            + b[start..]
                .iter()
                .take_while(|c| {
                    !matches!(
                        c,
                        b'&' | b'#'
                            | b'"'
                            | b'\''
                            | b' '
                            | b'\t'
                            | b'\n'
                            | b'\r'
                            | b','
                            | b'}'
                            | b']'
                    )
                })
                .count();
        if end > start
            && is_secret_name(&text[i + 1..name_end])
            && !only_references(&text[start..end])
        {
            out.push((start, end));
        }
    }
    out
}

/// Config keys whose names look secret but whose values are not (`key_template`,
/// `unique_key`): [`is_secret_name`] and the line scan of [`secret_value_spans`] leave
/// them shown.
const NOT_SECRET_KEYS: &[&str] = &["key_template", "unique_key"];

/// Byte ranges of the values of `name: value` pairs with a secret name, found line by line
/// in text that is not valid YAML (so that it has no tree to take them from): a value runs to
/// the end of the line, or in a flow mapping (`{a: b, password: c}`) to the next `,` or `}`
/// outside quotes.
pub fn secret_value_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let b = line.as_bytes();
        let mut i = 0;
        let mut flow = 0usize;
        let mut key_start = Some(line.len() - line.trim_start_matches([' ', '\t', '-']).len());
        while i < b.len() {
            match b[i] {
                b'{' => {
                    flow += 1;
                    key_start = Some(i + 1);
                }
                b',' if flow > 0 => key_start = Some(i + 1),
                b'}' => flow = flow.saturating_sub(1),
                b':' if key_start.is_some()
                    && matches!(b.get(i + 1), None | Some(b' ' | b'\t' | b'\n' | b'\r')) =>
                {
                    let key = line[key_start.unwrap_or(i)..i]
                        .trim()
                        .trim_matches(|c| c == '"' || c == '\'');
                    key_start = None;
                    if is_secret_name(key) && !NOT_SECRET_KEYS.contains(&key) {
                        let v_start =
                            i + 1 + (line[i + 1..].len() - line[i + 1..].trim_start().len());
                        let v_end = value_end(line, v_start, flow > 0);
                        if v_end > v_start {
                            out.push((line_start + v_start, line_start + v_end));
                        }
                        i = v_end;
                        continue;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        line_start += line.len();
    }
    out
}

/// Where a value that starts at `start` of `line` ends: at the end of the line (before its
/// newline), or in flow context at the first `,` or `}` outside quotes.
fn value_end(line: &str, start: usize, flow: bool) -> usize {
    let end = line.trim_end_matches(['\n', '\r']).len();
    if !flow {
        return end.max(start);
    }
    let mut quote: Option<u8> = None;
    for (i, c) in line.bytes().enumerate().take(end).skip(start) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b',' | b'}') => return i,
            _ => {}
        }
    }
    end.max(start)
}

/// The userinfo of the authority that begins at byte `start` of `text`: up to the last `@`
/// before the end of the authority (a `/`, `?`, `#`, whitespace, a quote or a YAML flow
/// delimiter).
fn authority_userinfo(text: &str, start: usize) -> Option<(usize, usize)> {
    let rest = &text[start..];
    let mut end = rest.len();
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with("${") {
            // An environment reference is part of the authority, braces and all.
            match rest[i..].find('}') {
                Some(close) => {
                    i += close + 1;
                    continue;
                }
                None => {
                    end = i;
                    break;
                }
            }
        }
        let c = rest[i..].chars().next().expect("in bounds");
        if matches!(
            c,
            '/' | '?' | '#' | '"' | '\'' | ',' | ']' | '}' | '[' | '{'
        ) || c.is_whitespace()
        {
            end = i;
            break;
        }
        i += c.len_utf8();
    }
    let at = rest[..end.min(rest.len())].rfind('@')?;
    (at > 0).then_some((start, start + at))
}

/// Whether a text consists only of `${VAR}` references and `:` (nothing secret in itself).
fn only_references(s: &str) -> bool {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if !rest[..i].chars().all(|c| c == ':') {
            return false;
        }
        let Some(close) = rest[i..].find('}') else {
            return false;
        };
        if rest[i + 2..i + close].contains(":-") {
            // `${PW:-default}` carries a value of its own.
            return false;
        }
        rest = &rest[i + close + 1..];
    }
    s.contains("${") && rest.chars().all(|c| c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_parameters_are_found_in_urls() {
        let t = r#"url: "http://h/api?apikey=QS&page=2&access_token=AT#x", sig: "u?sig=${SIG}""#;
        let shown: Vec<&str> = query_secret_spans(t)
            .iter()
            .map(|(s, e)| &t[*s..*e])
            .collect();
        assert_eq!(shown, vec!["QS", "AT"]);
    }

    #[test]
    fn secret_names() {
        for n in [
            "password",
            "PASSWD",
            "pwd",
            "api_key",
            "apikey",
            "X-Api-Key",
            "x_api_key",
            "Authorization",
            "X-Auth",
            "Cookie",
            "Set-Cookie",
            "X-Session-Id",
            "X-Signature",
            "client_secret",
            "token",
            "X-Credentials",
            "Session_Token",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "country",
            "Accept",
            "Content-Type",
            "User-Agent",
            "zip",
            "q",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_userinfo("nats://natsuser:NatsPwSecret@127.0.0.1:4299"),
            "nats://***@127.0.0.1:4299"
        );
        assert_eq!(redact_userinfo("nats://Tok@h:1"), "nats://***@h:1");
        assert_eq!(redact_userinfo("u:p@h:4222"), "***@h:4222");
        assert_eq!(redact_userinfo("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_userinfo("nats://h:4222"), "nats://h:4222");
        assert_eq!(
            userinfo_secrets("nats://u:pw@h", false),
            vec!["pw".to_string()]
        );
        assert_eq!(userinfo_secrets("nats://tok@h", false), vec!["tok"]);
        assert!(userinfo_secrets("nats://h", true).is_empty());
    }

    #[test]
    fn secret_values_are_found_line_by_line() {
        let t = "- {name: a, password: 'p,w', port: 1}\n  token: Tok1\n  key_template: k:{{ id }}\n  X-Api-Key: \"K, 2\"\n  passwd:\n";
        let got: Vec<&str> = secret_value_spans(t)
            .iter()
            .map(|(s, e)| &t[*s..*e])
            .collect();
        assert_eq!(got, vec!["'p,w'", "Tok1", "\"K, 2\""]);
    }

    #[test]
    fn credentials_are_found_in_text() {
        let t = "base_url: http://u:pw@h/x\nservers: [\"nats://T@h:1\", nats://h:2]\nx: http://${U}:${P}@h\n";
        let got: Vec<&str> = userinfo_spans(t).iter().map(|(s, e)| &t[*s..*e]).collect();
        assert_eq!(got, vec!["u:pw", "T"]);
        assert_eq!(userinfo_spans("a: http://${P:-dflt}@h").len(), 1);
    }
}
