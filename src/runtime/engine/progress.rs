//! Progress bars on stderr (indicatif), only when stderr is a terminal: rows and rows/s
//! while streaming, blocks done/total and an ETA while reconciling. On a pipe every call
//! is a no-op.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether and where progress is drawn.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Draws only when stderr is a terminal and `allowed` (false under `-q`).
    pub fn auto(allowed: bool) -> Progress {
        Progress {
            enabled: allowed && std::io::stderr().is_terminal(),
        }
    }

    /// Never draws.
    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    fn bar(&self, b: ProgressBar, template: &str) -> Bar {
        if !self.enabled {
            return Bar(None);
        }
        b.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            // Whole rows per second (indicatif's `{per_sec}` prints four decimals).
            b.set_style(style.with_key(
                "rows_per_sec",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} rows/s", s.per_sec());
                },
            ));
        }
        Bar(Some(b))
    }

    /// A row counter with throughput (the total is unknown while streaming).
    pub fn rows(&self, label: &str) -> Bar {
        let b = self.bar(
            ProgressBar::no_length(),
            "{spinner} {prefix}: {human_pos} rows ({rows_per_sec}) {elapsed_precise} {msg}",
        );
        b.prefix(label);
        b
    }

    /// A block counter with a total and an ETA (the total grows as blocks split).
    pub fn blocks(&self, label: &str) -> Bar {
        let b = self.bar(
            ProgressBar::new(0),
            "{prefix}: [{bar:30}] {pos}/{len} blocks, ETA {eta} {msg}",
        );
        b.prefix(label);
        b
    }
}

/// One bar; a no-op when progress is hidden.
#[derive(Debug)]
pub struct Bar(Option<ProgressBar>);

impl Bar {
    fn prefix(&self, s: &str) {
        if let Some(b) = &self.0 {
            b.set_prefix(s.to_string());
        }
    }

    /// Advances by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Grows the total by `n`.
    pub fn add_total(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc_length(n);
        }
    }

    /// Sets the trailing message.
    pub fn message(&self, m: &str) {
        if let Some(b) = &self.0 {
            b.set_message(m.to_string());
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
