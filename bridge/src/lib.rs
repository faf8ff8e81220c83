//! The karmem-bridge facade: what the CLI does, callable from a build script.
//!
//! Owns: one entry point per subcommand's job, returning `anyhow::Result`.
//! Does not own: argument parsing (`main.rs` and `commands/`).
