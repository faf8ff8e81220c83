//! The `karmem-bridge` command line tool.
//!
//! Owns: argument parsing and the exit-code contract — `0` on success, `1` when a
//! command fails (printed as `error: ...` plus its `Caused by:` chain), `2` for
//! usage errors (clap's default).
//!
//! Each subcommand lives in `commands/<name>.rs` as a clap `Opts` struct and a
//! `run(opts) -> anyhow::Result<()>`. To add one: write that file, declare it in
//! `commands/mod.rs`, and add one variant to [`Command`] plus its match arm below.

// `print!` panics when stdout is closed or full; commands write through
// `commands::write_output`, which reports that as an error.
#![warn(clippy::print_stdout)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// Bridges WebAssembly components and Karmem.
#[derive(Debug, Parser)]
#[command(name = "karmem-bridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and resolve a KarmemIDL file, reporting every error.
    Check(commands::check::Opts),
    /// Print a KarmemIDL file in canonical form.
    Fmt(commands::fmt::Opts),
    /// List the changes between two versions of a schema; fail on breaking ones.
    Compat(commands::compat::Opts),
    /// Flatten a component into one core module.
    Lower(commands::lower::Opts),
    /// Show a component's instance graph or a lowered module's interfaces.
    Inspect(commands::inspect::Opts),
    /// Map a WIT world (file, package directory or component) to KarmemIDL.
    Idl(commands::idl::Opts),
    /// Generate typed zero-copy views and builders (`gen rust FILE.km -o out.rs`).
    Gen(commands::r#gen::Opts),
    /// Run a lowered module: `--invoke 'fn(args)'` (WAVE in, WAVE out) or its `_start`.
    Run(commands::run::Opts),
    /// Print a Karmem message as WAVE text, after validating it (`decode app.km -t T msg.bin`).
    Decode(commands::message::DecodeOpts),
    /// Write a WAVE value as a Karmem message (`encode app.km -t T 'value' -o msg.bin`).
    Encode(commands::message::EncodeOpts),
}

fn main() -> ExitCode {
    quiet_caught_parser_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(opts) => commands::check::run(opts),
        Command::Fmt(opts) => commands::fmt::run(opts),
        Command::Compat(opts) => commands::compat::run(opts),
        Command::Lower(opts) => commands::lower::run(opts),
        Command::Inspect(opts) => commands::inspect::run(opts),
        Command::Idl(opts) => commands::idl::run(opts),
        Command::Gen(opts) => commands::r#gen::run(opts),
        Command::Run(opts) => commands::run::run(opts),
        Command::Decode(opts) => commands::message::decode(opts),
        Command::Encode(opts) => commands::message::encode(opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", commands::render_error(&error));
            ExitCode::FAILURE
        }
    }
}

/// wit-parser can panic on malformed WIT; wit-import catches that and returns
/// an error, which is all the user should see. Every other panic is a bug and
/// keeps the default report.
fn quiet_caught_parser_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !karmem_wit_import::in_guarded_parse() {
            default(info);
        }
    }));
}
