//! Plain-text rendering of diagnostics with the offending source line and a caret marker.
//! Deterministic (no colours, no terminal-width logic) so that it can be snapshot-tested.

use super::{Diagnostic, Severity, SourceFile};
use std::fmt::Write;

/// Render one diagnostic against its source file.
pub fn render(d: &Diagnostic, src: Option<&SourceFile>) -> String {
    let mut out = String::new();
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(out, "{sev}: {}", d.message);
    match (src, d.span) {
        (Some(src), Some(span)) => {
            let (line, col) = src.line_col(span.start);
            let path = d
                .path
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| format!(" at {p}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  --> {}:{line}:{col}{path}", src.name);
            let text = src.line_text(line);
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{line} | {text}");
            // Caret width: the span's characters on this line, at least one.
            let (end_line, end_col) = src.line_col(span.end);
            let width = if end_line == line && end_col > col {
                end_col - col
            } else if end_line > line {
                text.chars().count().saturating_sub(col - 1).max(1)
            } else {
                1
            };
            let lead: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let label = d
                .label
                .as_deref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{pad} | {lead}{}{label}", "^".repeat(width));
        }
        (src, _) => {
            if let Some(p) = &d.path {
                let file = src.map(|s| format!("{}: ", s.name)).unwrap_or_default();
                let _ = writeln!(out, "  --> {file}{p}");
            }
            if let Some(l) = &d.label {
                let _ = writeln!(out, "   = {l}");
            }
        }
    }
    if let Some(h) = &d.help {
        let _ = writeln!(out, "   = help: {h}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Span;

    #[test]
    fn renders_snippet_with_caret() {
        let src = SourceFile::new("c.yaml", "a: 1\nsource:\n  tabel: users\n");
        let d = Diagnostic::error("unknown key `tabel`")
            .at_path("source.tabel")
            .with_span(Span::new(15, 20))
            .with_label("not a key of source")
            .with_help("did you mean `table`?");
        let r = render(&d, Some(&src));
        assert_eq!(
            r,
            "error: unknown key `tabel`\n  --> c.yaml:3:3 at source.tabel\n  |\n3 |   tabel: users\n  |   ^^^^^ not a key of source\n   = help: did you mean `table`?\n"
        );
    }
}
