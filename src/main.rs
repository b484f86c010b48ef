//! The `synctool` command line.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use synctool::config::interpolate::ProcessEnv;
use synctool::driver::{frontend, Frontend};
use synctool::plan;

/// Exit code for an invalid config or usage.
const EXIT_INVALID: u8 = 2;
/// Exit code for a runtime failure.
const EXIT_FAILURE: u8 = 1;

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
    #[command(subcommand)]
    command: Command,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.config.display().to_string();
    let text = match std::fs::read_to_string(&cli.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read config file {name}: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let fe = match frontend(&name, &text, &ProcessEnv, &cli.pipelines) {
        Ok(f) => f,
        Err(failed) => {
            eprint!("{}", failed.render());
            let n = failed.error_count();
            eprintln!("\n{name}: {n} error{}", if n == 1 { "" } else { "s" });
            return ExitCode::from(EXIT_INVALID);
        }
    };
    for w in &fe.checked.warnings {
        eprint!("{}", synctool::diag::render(w, Some(&fe.loaded.source)));
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
            println!(
                "{name}: ok ({} pipeline{}: {})",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Command::Compile { format } => compile(&fe, format),
    }
}

fn compile(fe: &Frontend, format: Format) -> ExitCode {
    let plan = match plan::build(&fe.checked.program) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match format {
        Format::Text => print!("{}", plan::render_text(&plan)),
        Format::Sql => print!("{}", plan::render_sql(&plan)),
        Format::Json => match serde_json::to_string_pretty(&plan::render_json(&plan)) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
    }
    ExitCode::SUCCESS
}
