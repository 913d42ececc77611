//! `pgseal seed`: synthetic patients (placeholder until the generator lands).

use std::process::ExitCode;

use clap::Args;

/// Arguments of `pgseal seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {}

/// Writes synthetic patients.
pub fn run(_args: SeedArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("seeding is not available yet")
}
