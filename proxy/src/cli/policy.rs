//! `pgseal policy …`: policy validation (placeholder until the policies crate lands).

use std::process::ExitCode;

use clap::Subcommand;

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file.
    Check,
}

/// Runs a policy subcommand.
pub fn run(_cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("policy checking is not available yet")
}
