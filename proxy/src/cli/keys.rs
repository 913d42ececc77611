//! `pgseal keys …`: keyring management — generate, rotate, list and retire root key versions.
//!
//! Every command that reads a keyring refuses one that its group or others can access, that is
//! malformed, or that does not have exactly one active version, and says why. Rewrites are
//! atomic (temporary 0600 file, fsync, rename). No command ever prints key material.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use pgseal_keys::{Error, KeyState, KeyringFile, KeyringProblem};

/// Keyring subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a fresh keyring (version 1, active) to a new file with mode 0600.
    ///
    /// Refuses to overwrite an existing file.
    Generate {
        /// Where to write the keyring.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add a new active key version; the previous active version becomes decrypt-only.
    ///
    /// Values sealed under older versions stay readable until those versions are retired.
    Rotate(KeyringArgs),
    /// List key versions with their states and dates (never key material).
    List(KeyringArgs),
    /// Retire a decrypt-only version: its key material is erased from the file, and values
    /// sealed under it can no longer be opened.
    ///
    /// Re-seal those values under the active version first. The active version cannot be
    /// retired: rotate first.
    #[command(disable_version_flag = true)]
    Retire {
        #[command(flatten)]
        keyring: KeyringArgs,
        /// The version number to retire.
        #[arg(long, value_name = "N")]
        version: u32,
    },
}

/// The keyring file a command works on.
#[derive(Debug, Args)]
pub struct KeyringArgs {
    /// The keyring file.
    #[arg(long, value_name = "FILE", env = "PGSEAL_KEYRING")]
    keyring: PathBuf,
}

/// Runs a keyring subcommand.
pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out } => generate(&out)?,
        KeysCommand::Rotate(args) => rotate(&args.keyring)?,
        KeysCommand::List(args) => list(&args.keyring)?,
        KeysCommand::Retire { keyring, version } => retire(&keyring.keyring, version)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(out: &Path) -> anyhow::Result<()> {
    let file = KeyringFile::generate()?;
    if let Err(err) = file.write_new(out) {
        if let Error::KeyringFile {
            problem: KeyringProblem::AlreadyExists,
            ..
        } = &err
        {
            anyhow::bail!(
                "{err}; to add a key version to it, run `pgseal keys rotate --keyring {}`",
                out.display()
            );
        }
        return Err(err.into());
    }
    println!(
        "{}: new keyring written (mode 0600); version {} is active.",
        out.display(),
        file.active_version()
    );
    println!(
        "Keep it secret and back it up apart from the database: without it, sealed data cannot \
         be read."
    );
    Ok(())
}

fn rotate(path: &Path) -> anyhow::Result<()> {
    let mut file = KeyringFile::load(path)?;
    let previous = file.active_version();
    let new = file.rotate()?;
    file.write_replace(path)?;
    println!(
        "{}: version {new} is now active; version {previous} is decrypt-only.",
        path.display()
    );
    println!(
        "Values sealed under older versions stay readable until you retire them \
         (`pgseal keys retire --keyring {} --version N`).",
        path.display()
    );
    Ok(())
}

fn list(path: &Path) -> anyhow::Result<()> {
    let file = KeyringFile::load(path)?;
    let width = KeyState::DecryptOnly.as_str().len();
    println!(
        "{:<7}  {:<width$}  {:<20}  RETIRED",
        "VERSION", "STATE", "CREATED"
    );
    for v in file.versions() {
        println!(
            "{:<7}  {:<width$}  {:<20}  {}",
            v.number(),
            v.state().as_str(),
            v.created_rfc3339(),
            v.retired_rfc3339()
        );
    }
    Ok(())
}

fn retire(path: &Path, version: u32) -> anyhow::Result<()> {
    let mut file = KeyringFile::load(path)?;
    file.retire(version)?;
    file.write_replace(path)?;
    println!(
        "{}: version {version} is retired and its key material erased; values sealed under it \
         can no longer be opened.",
        path.display()
    );
    Ok(())
}
