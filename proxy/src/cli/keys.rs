//! `pgseal keys …`: keyring management (placeholder until the keys crate lands).

use std::process::ExitCode;

use clap::Subcommand;

/// Keyring subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a fresh keyring.
    Generate,
}

/// Runs a keyring subcommand.
pub fn run(_cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("keyring management is not available yet")
}
