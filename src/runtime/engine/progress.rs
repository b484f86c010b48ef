//! Progress bars on stderr (indicatif), only when stderr is a terminal: rows and rows/s
//! while streaming (a stream's total is not known beforehand), blocks done/total, rows
//! compared, rows/s and an ETA while reconciling. On a pipe every call is a no-op.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

    fn bar(&self, b: ProgressBar, template: &str, shown: bool) -> Bar {
        if !self.enabled {
            return Bar(None);
        }
        let rows = Arc::new(AtomicU64::new(0));
        if let Some(style) = style(template, rows.clone()) {
            b.set_style(style);
        }
        if shown {
            b.set_draw_target(ProgressDrawTarget::stderr());
        }
        Bar(Some(Inner {
            bar: b,
            rows,
            shown: std::sync::atomic::AtomicBool::new(shown),
        }))
    }

    /// A row counter with throughput (the total is unknown while streaming).
    pub fn rows(&self, label: &str) -> Bar {
        let b = self.bar(ProgressBar::no_length(), ROWS_TEMPLATE, true);
        b.prefix(label);
        b
    }

    /// A block counter with a total, the rows compared, rows/s and an ETA (the total grows
    /// as blocks split). Drawn from the first total on: a bar of `0/0 blocks` says nothing.
    pub fn blocks(&self, label: &str) -> Bar {
        let b = self.bar(
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()),
            BLOCKS_TEMPLATE,
            false,
        );
        b.prefix(label);
        b
    }
}

/// The streaming bar: rows so far, their rate, the time taken.
const ROWS_TEMPLATE: &str =
    "{spinner} {prefix}: {human_pos} rows ({rows_per_sec}) {elapsed_precise} {msg}";

/// The reconciliation bar: blocks done of the total known so far, the rows they hold and
/// their rate, and the time left.
const BLOCKS_TEMPLATE: &str =
    "{prefix}: [{bar:30}] {pos}/{len} blocks, {rows} rows ({rows_rate}), ETA {eta} {msg}";

/// A bar style from `template` with synctool's keys: `rows_per_sec` (the bar's position
/// per second, whole), `rows` and `rows_rate` (the row count kept beside a block bar, and
/// its rate over the bar's elapsed time).
fn style(template: &str, rows: Arc<AtomicU64>) -> Option<ProgressStyle> {
    let rate = rows.clone();
    Some(
        ProgressStyle::with_template(template)
            .ok()?
            // Whole rows per second (indicatif's `{per_sec}` prints four decimals).
            .with_key(
                "rows_per_sec",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} rows/s", s.per_sec());
                },
            )
            .with_key(
                "rows",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", indicatif::HumanCount(rows.load(Ordering::Relaxed)));
                },
            )
            .with_key(
                "rows_rate",
                move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let secs = s.elapsed().as_secs_f64();
                    let n = rate.load(Ordering::Relaxed) as f64;
                    let per_sec = if secs > 0.0 { n / secs } else { 0.0 };
                    let _ = write!(w, "{per_sec:.0} rows/s");
                },
            ),
    )
}

/// One bar; a no-op when progress is hidden.
#[derive(Debug)]
pub struct Bar(Option<Inner>);

/// A drawn bar and what it shows beside its position.
#[derive(Debug)]
struct Inner {
    bar: ProgressBar,
    /// Rows covered (a block bar's position counts blocks).
    rows: Arc<AtomicU64>,
    /// Whether the bar is drawn yet.
    shown: std::sync::atomic::AtomicBool,
}

impl Bar {
    fn prefix(&self, s: &str) {
        if let Some(b) = &self.0 {
            b.bar.set_prefix(s.to_string());
        }
    }

    /// Advances by `n`.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.bar.inc(n);
        }
    }

    /// Grows the total by `n`; the first non-zero total shows a bar that waited for one.
    pub fn add_total(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.bar.inc_length(n);
            if n > 0 && !b.shown.swap(true, Ordering::Relaxed) {
                b.bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
    }

    /// Counts `n` more rows compared (the rows of a block bar).
    pub fn rows(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.rows.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sets the trailing message.
    pub fn message(&self, m: &str) {
        if let Some(b) = &self.0 {
            b.bar.set_message(m.to_string());
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().expect("screen").push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What drawing `bar` once writes.
    fn render(bar: &ProgressBar) -> String {
        let screen = Screen::default();
        bar.set_draw_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        bar.tick();
        let out = screen.0.lock().expect("screen").clone();
        bar.set_draw_target(ProgressDrawTarget::hidden());
        out
    }

    #[test]
    fn block_bar_shows_rows_and_rate_beside_blocks() {
        let rows = Arc::new(AtomicU64::new(0));
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        bar.set_style(style(BLOCKS_TEMPLATE, rows.clone()).expect("template"));
        bar.set_prefix("orders");
        bar.inc_length(8);
        bar.inc(2);
        rows.fetch_add(12_345, Ordering::Relaxed);
        let line = render(&bar);
        assert!(line.contains("orders: ["), "{line}");
        assert!(line.contains("2/8 blocks"), "{line}");
        assert!(line.contains("12,345 rows ("), "{line}");
        assert!(line.contains(" rows/s), ETA "), "{line}");
    }

    #[test]
    fn block_bar_waits_for_a_total() {
        // Enabled as on a terminal, but the bar must not be drawn before a total is known.
        let p = Progress { enabled: true };
        let b = p.blocks("orders");
        let inner = b.0.as_ref().expect("enabled");
        assert!(inner.bar.is_hidden(), "drawn at 0/0 blocks");
        b.add_total(0);
        assert!(inner.bar.is_hidden(), "drawn at 0/0 blocks");
        assert!(!inner.shown.load(Ordering::Relaxed));
        b.add_total(3);
        assert!(
            inner.shown.load(Ordering::Relaxed),
            "not drawn once a total is known"
        );
        b.rows(5);
        assert_eq!(inner.rows.load(Ordering::Relaxed), 5);
        // Keep the test's stderr clean.
        inner.bar.set_draw_target(ProgressDrawTarget::hidden());
    }

    #[test]
    fn hidden_progress_draws_nothing() {
        let b = Progress::hidden().blocks("orders");
        assert!(b.0.is_none());
        b.add_total(3);
        b.rows(5);
        b.inc(1);
    }
}
