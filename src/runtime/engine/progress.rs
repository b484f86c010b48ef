//! Progress bars on stderr (indicatif), only when stderr is a terminal: rows and rows/s
//! while streaming, blocks done/total, rows compared, rows/s and an ETA while reconciling.
//! On a pipe every call is a no-op.
//!
//! A stream's exact total is not known beforehand (it would cost a count scan). A full sync
//! that has the database's own estimate of its table's row count (`source.row_estimate`)
//! shows it as an approximate total, with a bar and an ETA (`1.2M/~10M rows (450k rows/s)
//! ETA 20s`); when the count passes the estimate, the bar goes back to the plain counter,
//! as a stream without an estimate shows from the start.

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
            estimated: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Whether bars are drawn (stderr is a terminal and progress is allowed): what is
    /// only read to be shown, such as a row-count estimate, need not be read otherwise.
    pub fn is_drawn(&self) -> bool {
        self.enabled
    }

    /// A row counter with throughput. With `estimate` (a positive, approximate total), a
    /// bar towards it with an ETA, until the count passes it; without, the count alone.
    pub fn rows(&self, label: &str, estimate: Option<u64>) -> Bar {
        let b = match estimate.filter(|n| *n > 0) {
            Some(n) => {
                let b = self.bar(ProgressBar::new(n), ESTIMATED_TEMPLATE, true);
                if let Some(inner) = &b.0 {
                    inner.estimated.store(true, Ordering::Relaxed);
                }
                b
            }
            None => self.bar(ProgressBar::no_length(), ROWS_TEMPLATE, true),
        };
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

/// The streaming bar towards an estimated total: rows so far of about how many, their rate
/// and the time left, the counts in short form (`1.2M/~10M rows (450k rows/s) ETA 20s`).
const ESTIMATED_TEMPLATE: &str =
    "{prefix}: [{bar:30}] {short_pos}/~{short_len} rows ({short_rate}) ETA {rows_eta} {msg}";

/// The reconciliation bar: blocks done of the total known so far, the rows they hold and
/// their rate, and the time left.
const BLOCKS_TEMPLATE: &str =
    "{prefix}: [{bar:30}] {pos}/{len} blocks, {rows} rows ({rows_rate}), ETA {eta} {msg}";

/// A count in short form, at most three digits and a unit: `999`, `1.2k`, `450k`, `10M`, `3.4G`
/// (one decimal below ten, whole above).
fn short(n: u64) -> String {
    if n < 1000 {
        return n.to_string();
    }
    let mut v = n as f64;
    for unit in ["k", "M", "G", "T", "P"] {
        v /= 1000.0;
        if v < 9.95 {
            return format!("{v:.1}{unit}");
        }
        if v < 999.5 {
            return format!("{v:.0}{unit}");
        }
    }
    format!("{:.0}E", v / 1000.0)
}

/// A bar style from `template` with synctool's keys: `rows_per_sec` (the bar's position
/// per second, whole), `rows` and `rows_rate` (the row count kept beside a block bar, and
/// its rate over the bar's elapsed time), and `short_pos`, `short_len` and `short_rate`
/// (the position, length and position per second in [`short`] form), and `rows_eta`
/// (indicatif's `{eta}`, `?` before the first rows give a rate).
fn style(template: &str, rows: Arc<AtomicU64>) -> Option<ProgressStyle> {
    let rate = rows.clone();
    Some(
        ProgressStyle::with_template(template)
            .ok()?
            .with_key(
                "short_pos",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", short(s.pos()));
                },
            )
            .with_key(
                "short_len",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = match s.len() {
                        Some(n) => write!(w, "{}", short(n)),
                        None => write!(w, "?"),
                    };
                },
            )
            .with_key(
                "rows_eta",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = if s.pos() == 0 {
                        write!(w, "?")
                    } else {
                        write!(w, "{:#}", indicatif::HumanDuration(s.eta()))
                    };
                },
            )
            .with_key(
                "short_rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{} rows/s", short(s.per_sec().max(0.0).round() as u64));
                },
            )
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
    /// Whether the bar runs towards an estimated total the count has not passed yet.
    estimated: std::sync::atomic::AtomicBool,
}

impl Bar {
    fn prefix(&self, s: &str) {
        if let Some(b) = &self.0 {
            b.bar.set_prefix(s.to_string());
        }
    }

    /// Advances by `n`. A count that passes its estimated total turns the bar into the
    /// plain counter: the estimate was wrong, and its ETA would say nothing.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            // Switched before the count moves, so that no line shows it past its total.
            if b.estimated.load(Ordering::Relaxed)
                && b.bar
                    .length()
                    .is_some_and(|len| b.bar.position().saturating_add(n) > len)
                && b.estimated.swap(false, Ordering::Relaxed)
            {
                if let Some(style) = style(ROWS_TEMPLATE, b.rows.clone()) {
                    b.bar.set_style(style);
                }
                b.bar.unset_length();
            }
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
    fn counts_are_short() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1000, "1.0k"),
            (1_234, "1.2k"),
            (9_949, "9.9k"),
            (9_951, "10k"),
            (450_000, "450k"),
            (999_499, "999k"),
            (999_500, "1.0M"),
            (1_200_000, "1.2M"),
            (10_000_000, "10M"),
            (123_456_789, "123M"),
            (3_400_000_000, "3.4G"),
            (u64::MAX, "18E"),
        ] {
            assert_eq!(short(n), text, "{n}");
        }
    }

    #[test]
    fn estimated_bar_shows_an_approximate_total_and_an_eta() {
        let rows = Arc::new(AtomicU64::new(0));
        let bar = ProgressBar::with_draw_target(Some(10_000_000), ProgressDrawTarget::hidden());
        bar.set_style(style(ESTIMATED_TEMPLATE, rows).expect("template"));
        bar.set_prefix("orders");
        // No rate yet: no time left is known either.
        let line = render(&bar);
        assert!(line.contains("] 0/~10M rows (0 rows/s) ETA ? "), "{line}");
        bar.inc(1_200_000);
        let line = render(&bar);
        assert!(line.contains("orders: ["), "{line}");
        assert!(line.contains("] 1.2M/~10M rows ("), "{line}");
        assert!(line.contains(" rows/s) ETA "), "{line}");
        assert!(!line.contains("ETA ?"), "{line}");
    }

    #[test]
    fn a_count_past_its_estimate_goes_back_to_the_plain_counter() {
        let p = Progress { enabled: true };
        let b = p.rows("orders", Some(100));
        let inner = b.0.as_ref().expect("enabled");
        // Keep the test's stderr clean.
        inner.bar.set_draw_target(ProgressDrawTarget::hidden());
        b.inc(60);
        b.inc(40);
        assert_eq!(inner.bar.length(), Some(100));
        let line = render(&inner.bar);
        assert!(line.contains("] 100/~100 rows ("), "{line}");
        // Every line drawn while the count passes the estimate: none shows it past.
        let screen = Screen::default();
        inner
            .bar
            .set_draw_target(ProgressDrawTarget::term_like(Box::new(screen.clone())));
        b.inc(10);
        let drawn = screen.0.lock().expect("screen").clone();
        inner.bar.set_draw_target(ProgressDrawTarget::hidden());
        assert!(drawn.contains("orders: 110 rows ("), "{drawn}");
        assert!(!drawn.contains('~') && !drawn.contains("ETA"), "{drawn}");
        assert_eq!(inner.bar.length(), None, "still a bar past its estimate");
        b.inc(5_000);
        let line = render(&inner.bar);
        assert!(line.contains("orders: 5,110 rows ("), "{line}");
        assert!(!line.contains('~') && !line.contains("ETA"), "{line}");
    }

    #[test]
    fn a_stream_without_a_usable_estimate_shows_the_count_alone() {
        let p = Progress { enabled: true };
        for estimate in [None, Some(0)] {
            let b = p.rows("orders", estimate);
            let inner = b.0.as_ref().expect("enabled");
            inner.bar.set_draw_target(ProgressDrawTarget::hidden());
            b.inc(1_234);
            assert_eq!(inner.bar.length(), None);
            let line = render(&inner.bar);
            assert!(line.contains("orders: 1,234 rows ("), "{line}");
            assert!(!line.contains('~') && !line.contains("ETA"), "{line}");
        }
    }

    #[test]
    fn hidden_progress_draws_nothing() {
        let r = Progress::hidden().rows("orders", Some(10));
        assert!(r.0.is_none());
        r.inc(20);
        let b = Progress::hidden().blocks("orders");
        assert!(b.0.is_none());
        b.add_total(3);
        b.rows(5);
        b.inc(1);
    }
}
