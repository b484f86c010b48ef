//! The `synctool` command line.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use synctool::config::interpolate::ProcessEnv;
use synctool::driver::{frontend, Failed, Frontend};
use synctool::plan;
use synctool::runtime::engine::{self, PipelineReport, Progress, RunOptions};

/// mimalloc: the runtime allocates a value per cell, and glibc's malloc was a fifth of a
/// full sync's CPU time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid config or usage.
const EXIT_INVALID: u8 = 2;
/// Exit code for a runtime failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code of `plan --exit-code` when apply would change a sink.
const EXIT_DRIFT: u8 = 3;
/// Exit code after SIGINT (Ctrl-C): 128 + the signal's number, as shells report it.
const EXIT_SIGINT: u8 = 130;
/// Exit code after SIGTERM.
const EXIT_SIGTERM: u8 = 143;
/// How long tasks still running after an interruption (a source reader, a connection
/// closing) get before the process exits anyway.
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A declarative compiler for data-synchronisation pipelines.
#[derive(Debug, Parser)]
#[command(name = "synctool", version, about)]
struct Cli {
    /// The config file.
    #[arg(short, long, global = true, default_value = "synctool.yaml")]
    config: PathBuf,
    /// Only this pipeline (repeatable; default: every pipeline).
    #[arg(short = 'p', long = "pipeline", global = true)]
    pipelines: Vec<String>,
    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace, with every statement
    /// sent).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options shared by `plan` and `apply`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Which reconciliation to run (default: the pipeline's first; a full sync when none).
    #[arg(short = 'r', long = "reconciliation", value_name = "NAME")]
    reconciliation: Option<String>,
    /// Lower bound of the reconciled range (an expression, e.g. `datetime.datetime(2024, 1, 1)`
    /// or `now() - datetime.timedelta(days=7)`).
    #[arg(long, value_name = "EXPR")]
    start: Option<String>,
    /// Upper bound (exclusive) of the reconciled range (an expression).
    #[arg(long, value_name = "EXPR")]
    end: Option<String>,
    /// Ignore reconciliation: copy every source row.
    #[arg(long)]
    full: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    format: RunFormat,
    /// Stop at the first pipeline that fails (default: run the others, then exit 1).
    #[arg(long)]
    fail_fast: bool,
    /// List up to N keys per pipeline of the rows the row-by-row comparison of changed
    /// blocks found added (`+`), modified (`~`) or deleted (`-`); JSON: `keys`.
    #[arg(long, value_name = "N")]
    show_keys: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RunFormat {
    /// A summary per pipeline.
    Text,
    /// `{"pipelines": [...]}`.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and type-check the config; print diagnostics.
    Validate,
    /// Print the plan and every SQL statement of each pipeline (no database is contacted).
    Compile {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Compare source and sink read-only and report what `apply` would change.
    Plan {
        #[command(flatten)]
        run: RunArgs,
        /// Exit with code 3 when `apply` would change a sink.
        #[arg(long)]
        exit_code: bool,
        /// Accepted for symmetry with `apply --dry-run`; `plan` never writes.
        #[arg(long)]
        dry_run: bool,
    },
    /// Sync: extract, enrich, merge and reconcile.
    Apply {
        #[command(flatten)]
        run: RunArgs,
        /// Only plan: report what would change, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Give up on a pipeline (exit 1, nothing written) when another run has held its
        /// sink's run lock this many seconds (default: wait as long as that run takes).
        #[arg(long, value_name = "SECONDS")]
        lock_timeout: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// The plan for review: description, then each step's SQL.
    Text,
    /// Machine-readable plan.
    Json,
    /// The SQL statements only.
    Sql,
}

fn init_logging(cli: &Cli) {
    init_logging_with(cli.quiet, cli.verbose, cli.log_format);
}

fn init_logging_with(quiet: bool, verbose: u8, log_format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::new(log_filter(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs redirected to a file or a pipe stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match log_format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// The log filter for synctool's own events at `level`: other crates' events pass at
/// `warn` and above only (their debug and trace lines may print connection URLs with
/// credentials), and the NATS client's not at all (it logs server addresses, which can
/// carry a token or password, and synctool reports its errors itself). There is no
/// environment override, so that nothing can lower those limits.
fn log_filter(level: &str) -> String {
    let others = if level == "error" { "error" } else { "warn" };
    format!("{others},synctool={level},async_nats=off")
}

/// Whether the command line asks for JSON log lines, read from the raw arguments: for a
/// usage error, which clap reports before any option is parsed.
fn asks_for_json_logs(args: &[std::ffi::OsString]) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        a == "--log-format=json"
            || (a == "--log-format" && args.get(i + 1).is_some_and(|n| n == "json"))
    })
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // `--help` and `--version` print as usual; a usage error is a JSON event when JSON
        // logs were asked for, so that every stderr line stays a JSON object.
        Err(e) if e.use_stderr() && asks_for_json_logs(&args) => {
            init_logging_with(false, 0, LogFormat::Json);
            let text = e.render().to_string();
            let t = text.trim_end();
            tracing::error!("{}", t.strip_prefix("error: ").unwrap_or(t));
            return ExitCode::from(EXIT_INVALID);
        }
        Err(e) => e.exit(),
    };
    init_logging(&cli);
    let name = cli.config.display().to_string();
    let text = match std::fs::read(&cli.config).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            // Where the text stops being UTF-8: line and column of the first bad byte.
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&valid[start..]).chars().count() + 1;
            report_error(
                cli.log_format,
                &format!("error: config file {name} is not UTF-8 text: byte {} (line {line}, column {column}) is not valid UTF-8", valid.len()),
            );
            return ExitCode::from(EXIT_INVALID);
        }
        Err(e) => {
            report_error(
                cli.log_format,
                &format!("error: cannot read config file {name}: {e}"),
            );
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let fe = match frontend(&name, &text, &ProcessEnv, &cli.pipelines) {
        Ok(f) => f,
        Err(failed) => return report_failed(cli.log_format, &name, &failed),
    };
    // Secrets whose variables are not set: `plan` and `apply` stop on those the selected
    // pipelines need; `validate` and `compile`, which connect nowhere, only warn.
    let connects = matches!(cli.command, Command::Plan { .. } | Command::Apply { .. });
    let unset_warnings = if connects {
        let missing = fe.unset_secrets();
        if !missing.is_empty() {
            let failed = Failed {
                source: fe.loaded.source.clone(),
                diagnostics: missing,
            };
            return report_failed(cli.log_format, &name, &failed);
        }
        Vec::new()
    } else {
        fe.unset_secret_warnings()
    };
    // `-q`: only errors on stderr.
    for w in fe
        .checked
        .warnings
        .iter()
        .chain(&unset_warnings)
        .filter(|_| !cli.quiet)
    {
        match cli.log_format {
            LogFormat::Text => eprint!("{}", synctool::diag::render(w, Some(&fe.loaded.source))),
            LogFormat::Json => report_diagnostic(w, &fe.loaded.source),
        }
    }
    match cli.command {
        Command::Validate => {
            let names: Vec<&str> = fe
                .checked
                .program
                .pipelines
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            emit(
                cli.log_format,
                &match names.len() {
                    0 => format!("{name}: ok (no pipelines)\n"),
                    n => format!(
                        "{name}: ok ({n} pipeline{}: {})\n",
                        if n == 1 { "" } else { "s" },
                        names.join(", ")
                    ),
                },
            )
        }
        Command::Compile { format } => compile(&fe, format, cli.log_format),
        Command::Plan {
            ref run,
            exit_code,
            dry_run: _,
        } => execute(&cli, &fe, run, true, exit_code, None),
        Command::Apply {
            ref run,
            dry_run,
            lock_timeout,
        } => execute(&cli, &fe, run, dry_run, false, lock_timeout),
    }
}

/// Prints a config's errors (rendered against the file, or as JSON log lines) and their
/// count; exit 2.
fn report_failed(format: LogFormat, name: &str, failed: &Failed) -> ExitCode {
    let n = failed.error_count();
    let summary = format!("{name}: {n} error{}", if n == 1 { "" } else { "s" });
    match format {
        LogFormat::Text => eprint!("{}\n{summary}\n", failed.render()),
        LogFormat::Json => {
            for d in &failed.diagnostics {
                report_diagnostic(d, &failed.source);
            }
            tracing::error!("{summary}");
        }
    }
    ExitCode::from(EXIT_INVALID)
}

/// Runs `plan` (`dry_run`) or `apply` over the selected pipelines.
fn execute(
    cli: &Cli,
    fe: &Frontend,
    args: &RunArgs,
    dry_run: bool,
    exit_code: bool,
    lock_timeout: Option<u64>,
) -> ExitCode {
    let bound = |what: &str, text: &Option<String>| match text {
        None => Ok(None),
        Some(t) => engine::parse_bound(t)
            .map(Some)
            .map_err(|e| format!("error: --{what} `{t}`: {e}")),
    };
    let (start, end) = match (bound("start", &args.start), bound("end", &args.end)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(m), _) | (_, Err(m)) => {
            report_error(cli.log_format, &m);
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let now = chrono::Utc::now().naive_utc();
    let opts = RunOptions {
        reconciliation: args.reconciliation.clone(),
        start,
        end,
        full: args.full,
        dry_run,
        now,
        lock_timeout: lock_timeout.map(std::time::Duration::from_secs),
        show_keys: args.show_keys.unwrap_or(0),
    };
    let pipelines = &fe.checked.program.pipelines;
    for p in pipelines {
        if let Err(e) = engine::select_mode(p, &opts) {
            report_error(cli.log_format, &format!("error: {e}"));
            return ExitCode::from(EXIT_INVALID);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report_error(
                cli.log_format,
                &format!("error: cannot start the async runtime: {e}"),
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // No bars under `-q`, nor with JSON logs, where every stderr line is a JSON object.
    let progress = Progress::auto(!cli.quiet && matches!(cli.log_format, LogFormat::Text));
    // SIGINT / SIGTERM stop the run: the pipeline running is dropped (its open sink
    // transaction dies with its connection and is rolled back by the database; what was
    // committed stays, and a rerun goes on from there), its progress bar is cleared, and
    // the process exits with 130 / 143.
    let mut signals = match runtime.block_on(async { Signals::new() }) {
        Ok(s) => s,
        Err(e) => {
            report_error(
                cli.log_format,
                &format!("error: cannot install the signal handlers: {e}"),
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut interrupted: Option<(u8, &str)> = None;
    let raw = &fe.loaded.raw;
    let mut reports: Vec<PipelineReport> = Vec::new();
    let mut failures: Vec<Failure> = Vec::new();
    let mut not_run: Vec<&str> = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        let outcome = runtime.block_on(async {
            tokio::select! {
                r = engine::run_pipeline(p, raw, &opts, &progress) => Ok(r),
                code = signals.next() => Err(code),
            }
        });
        let outcome = match outcome {
            Ok(r) => r,
            Err(code) => {
                interrupted = Some((code, p.name.as_str()));
                not_run = pipelines[i + 1..].iter().map(|p| p.name.as_str()).collect();
                break;
            }
        };
        match outcome {
            Ok(r) => reports.push(r),
            Err(e) => {
                // Most errors name their pipeline already; name it once. The error is shown
                // when it happens: the pipelines after it may run for a long time.
                let (message, named) = (e.to_string(), format!("pipeline `{}`", p.name));
                let error = if message.starts_with(&named) {
                    message
                } else {
                    format!("{named}: {message}")
                };
                report_error(cli.log_format, &format!("error: {error}"));
                failures.push(Failure {
                    name: p.name.clone(),
                    error,
                });
                if args.fail_fast {
                    not_run = pipelines[i + 1..].iter().map(|p| p.name.as_str()).collect();
                    if !not_run.is_empty() {
                        report_error(
                            cli.log_format,
                            &format!("not run (--fail-fast): {}", not_run.join(", ")),
                        );
                    }
                    break;
                }
            }
        }
    }
    if let Some((_, name)) = interrupted {
        // The dropped pipeline's run lock is given back (a ClickHouse claim left behind
        // would make the next run wait for it to go stale); then the other tasks it
        // spawned (a source reader, connections closing) get a short grace, not the time a
        // long statement would take.
        runtime.block_on(engine::settle_dropped(INTERRUPT_GRACE));
        runtime.shutdown_timeout(INTERRUPT_GRACE);
        let mut m = format!("interrupted: pipeline `{name}` stopped before it finished (the sink keeps the batches committed before; a rerun goes on from there)");
        if !not_run.is_empty() {
            m.push_str(&format!("; not run: {}", not_run.join(", ")));
        }
        report_error(cli.log_format, &m);
    }
    let failed: Vec<&str> = failures.iter().map(|f| f.name.as_str()).collect();
    let written = match args.format {
        RunFormat::Json => {
            let mut out = engine::render_json(&reports);
            // Failed pipelines are listed apart, so that every entry of `pipelines` keeps
            // SPEC §1's shape; the key is absent when every pipeline ran.
            if !failures.is_empty() {
                out["errors"] = serde_json::json!(failures);
            }
            // The pipelines `--fail-fast` or an interruption left out, by name (absent when
            // none was).
            if !not_run.is_empty() {
                out["not_run"] = serde_json::json!(not_run);
            }
            // The pipeline a signal stopped (absent when none was).
            if let Some((_, name)) = interrupted {
                out["interrupted"] = serde_json::json!(name);
            }
            match serde_json::to_string_pretty(&out) {
                Ok(s) => emit(cli.log_format, &format!("{s}\n")),
                Err(e) => {
                    report_error(cli.log_format, &format!("error: {e}"));
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        RunFormat::Text => emit(
            cli.log_format,
            &engine::render_text(&reports, dry_run, &failed),
        ),
    };
    if let Some((code, _)) = interrupted {
        return ExitCode::from(code);
    }
    if written != ExitCode::SUCCESS {
        return written;
    }
    if !failures.is_empty() {
        return ExitCode::from(EXIT_FAILURE);
    }
    if exit_code && reports.iter().any(|r| r.has_drift()) {
        return ExitCode::from(EXIT_DRIFT);
    }
    ExitCode::SUCCESS
}

/// A pipeline that failed, in `--format json`'s `errors`.
#[derive(Debug, serde::Serialize)]
struct Failure {
    /// The pipeline.
    name: String,
    /// What went wrong (the message printed on stderr).
    error: String,
}

/// Writes an error to stderr: as it is, or with `--log-format json` as one JSON log event
/// (so that every stderr line stays a JSON object). `text` may span lines (a rendered
/// diagnostic); a leading `error: ` is dropped from the event.
fn report_error(format: LogFormat, text: &str) {
    match format {
        LogFormat::Text => eprint!("{text}{}", if text.ends_with('\n') { "" } else { "\n" }),
        LogFormat::Json => {
            let t = text.trim_end();
            tracing::error!("{}", t.strip_prefix("error: ").unwrap_or(t));
        }
    }
}

/// A config diagnostic as one JSON log event: the message, with the file, `line`,
/// `column`, YAML `path`, `label` and `help` as fields of their own (each when known), so
/// that tools can point at the place without parsing the rendered text.
fn report_diagnostic(d: &synctool::diag::Diagnostic, src: &synctool::diag::SourceFile) {
    let at = d.span.map(|s| src.line_col(s.start));
    let (line, column) = (at.map(|a| a.0 as u64), at.map(|a| a.1 as u64));
    let (file, path) = (src.name.as_str(), d.path.as_deref());
    let (label, help) = (d.label.as_deref(), d.help.as_deref());
    if d.is_error() {
        tracing::error!(file, line, column, path, label, help, "{}", d.message);
    } else {
        tracing::warn!(file, line, column, path, label, help, "{}", d.message);
    }
}

/// Writes `text` to stdout. A reader that went away (`synctool compile | head`) is not an
/// error: the command's work and exit code stand (an `apply` has already written its rows).
/// Any other write error (a full disk, a closed descriptor) is reported on stderr and
/// makes the exit code 1: the output the caller asked for is not there.
fn emit(log_format: LogFormat, text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            report_error(log_format, &format!("error: cannot write the output: {e}"));
            ExitCode::from(EXIT_FAILURE)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn compile(fe: &Frontend, format: Format, log_format: LogFormat) -> ExitCode {
    let plan = match plan::build(&fe.checked.program) {
        Ok(p) => p,
        Err(e) => {
            report_error(log_format, &format!("error: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match format {
        Format::Text => emit(log_format, &plan::render_text(&plan)),
        Format::Sql => emit(log_format, &plan::render_sql(&plan)),
        Format::Json => match serde_json::to_string_pretty(&plan::render_json(&plan)) {
            Ok(s) => emit(log_format, &format!("{s}\n")),
            Err(e) => {
                report_error(log_format, &format!("error: {e}"));
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}

/// SIGINT and SIGTERM, once their handlers are installed (inside the async runtime).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal; returns the exit code it calls for.
    async fn next(&mut self) -> u8 {
        tokio::select! {
            _ = self.int.recv() => EXIT_SIGINT,
            _ = self.term.recv() => EXIT_SIGTERM,
        }
    }
}
