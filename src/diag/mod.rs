//! Diagnostics: source spans, the shared `Diagnostic` record every stage reports errors
//! with, and a deterministic renderer that shows the offending source line.
//!
//! Each stage has its own typed error enum (thiserror); they all convert into
//! [`Diagnostic`] so the CLI renders one format, with the YAML path and `line:column`.

mod render;

pub use render::render;

use std::fmt;

/// A half-open byte range `[start, end)` into the configuration source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Span {
    /// First byte of the range.
    pub start: usize,
    /// One past the last byte of the range.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (clamped so that `end >= start`).
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }

    /// A sub-span, given offsets relative to this span's start (clamped to this span).
    pub fn sub(&self, rel_start: usize, rel_end: usize) -> Span {
        let s = (self.start + rel_start).min(self.end);
        let e = (self.start + rel_end).min(self.end).max(s);
        Span::new(s, e)
    }

    /// The smallest span covering both.
    pub fn join(&self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is rejected.
    Error,
    /// Accepted, but the user should look at it (e.g. a seed-compatibility repair).
    Warning,
}

/// One message about the configuration, located by YAML path and source span.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The main message, one line.
    pub message: String,
    /// YAML path of the offending node, e.g. `pipelines[0].sink.fields[3].source_column`.
    pub path: Option<String>,
    /// Where in the source text.
    pub span: Option<Span>,
    /// Short text printed under the caret line.
    pub label: Option<String>,
    /// A hint, e.g. "did you mean `table`?".
    pub help: Option<String>,
}

impl Diagnostic {
    /// A new error with a message and nothing else.
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            path: None,
            span: None,
            label: None,
            help: None,
        }
    }

    /// A new warning with a message and nothing else.
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Attach the YAML path.
    pub fn at_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Attach the source span.
    pub fn with_span(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    /// Attach an optional source span (no-op for `None`).
    pub fn with_opt_span(mut self, span: Option<Span>) -> Self {
        if span.is_some() {
            self.span = span;
        }
        self
    }

    /// Attach the caret label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Attach a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Help for a value that is not one of `choices`: "did you mean `x`?" when one is close,
    /// else the list of choices.
    pub fn with_choices(self, got: &str, choices: &[&str]) -> Self {
        match did_you_mean(got, choices.iter().copied()) {
            Some(x) => self.with_help(format!("did you mean `{x}`?")),
            None => self.with_help(format!("expected one of: {}", choices.join(", "))),
        }
    }

    /// True for errors (as opposed to warnings).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: {}", p, self.message)
        } else {
            write!(f, "{}", self.message)
        }
    }
}

/// A source file, kept to turn byte offsets into `line:column` and show lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name shown in diagnostics (the path given on the command line).
    pub name: String,
    /// The full text.
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Index a source text for line lookups.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Hide secret values: every character in the spans is shown as `*` in source lines
    /// (lengths are kept so that carets stay aligned).
    pub fn mask(&mut self, spans: &[Span]) {
        let mut bytes = self.text.clone().into_bytes();
        for s in spans {
            let (start, end) = (s.start.min(bytes.len()), s.end.min(bytes.len()));
            if is_plain_reference(&self.text[start..end]) {
                // `${PGPASSWORD}` names where the secret comes from; it is not the secret.
                continue;
            }
            let masked: String = self.text[start..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { '*' })
                .collect();
            // Keep byte length: pad multi-byte characters with extra stars.
            let mut m = masked.into_bytes();
            m.resize(end - start, b'*');
            bytes[start..end].copy_from_slice(&m);
        }
        self.text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text[start..floor_char_boundary(&self.text, offset)]
            .chars()
            .count();
        (line + 1, col + 1)
    }

    /// The text of a 1-based line, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .map(|e| e - 1)
            .unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches('\r')
    }
}

/// Whether a value's source text is only an environment reference without a default.
fn is_plain_reference(text: &str) -> bool {
    let t = text.trim_matches(|c| c == '\'' || c == '"');
    t.strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Names for a help line, comma-separated: the first [`LISTED_NAMES`], then how many more,
/// so that a config with thousands of fields does not print them all on one line.
pub fn name_list<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names.iter().take(LISTED_NAMES).map(AsRef::as_ref).collect();
    let mut out = shown.join(", ");
    if names.len() > LISTED_NAMES {
        out.push_str(&format!(", … ({} more)", names.len() - LISTED_NAMES));
    }
    out
}

/// How many names [`name_list`] shows.
pub const LISTED_NAMES: usize = 20;

/// Suggest the closest candidate to `got` (Jaro-Winkler ≥ 0.8 or a small edit distance).
pub fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(got, c);
        let close = strsim::levenshtein(got, c) <= 2 || score >= 0.8;
        if close && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_name_lists_are_cut() {
        assert_eq!(name_list(&["a", "b"]), "a, b");
        let many: Vec<String> = (0..25).map(|i| format!("f{i}")).collect();
        let l = name_list(&many);
        assert!(
            l.starts_with("f0, f1, ") && l.ends_with("f19, … (5 more)"),
            "{l}"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        let f = SourceFile::new("x", "ab\ncé d\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(6), (2, 3));
        assert_eq!(f.line_text(2), "cé d");
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            did_you_mean("tabel", ["table", "alias", "dbschema"]),
            Some("table")
        );
        assert_eq!(did_you_mean("zzzzzz", ["table", "alias"]), None);
    }
}
