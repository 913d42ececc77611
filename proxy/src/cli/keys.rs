//! `pgseal keys …`: keyring management — generate, rotate, list and retire root key versions,
//! and wrap a keyring under a key held by an HSM (or unwrap it back to plain).
//!
//! Every command that reads a keyring refuses one that its group or others can access, that is
//! malformed, or that does not have exactly one active version, and says why. A wrapped keyring
//! is unwrapped through its HSM (PIN from `PGSEAL_HSM_PIN` or `--hsm-pin-file`, never from a
//! flag's value), and a rotation wraps its new version there. Rewrites are atomic (temporary
//! 0600 file, fsync, rename). No command ever prints key material.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use pgseal_keys::{Error, HsmAccess, HsmBinding, KeyState, KeyringFile, KeyringProblem};

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
    /// Write a copy of a keyring whose keys are wrapped by an AES-256 key that never leaves an
    /// HSM (PKCS#11): the new file holds no usable key without that token and its PIN.
    ///
    /// The PIN comes from PGSEAL_HSM_PIN or --hsm-pin-file. The source keyring is left as it
    /// is: once the wrapped copy works, destroy it (or keep it offline as the escrow copy).
    Wrap {
        /// The plain keyring to wrap.
        #[arg(long, value_name = "FILE")]
        keyring: PathBuf,
        /// Where to write the wrapped keyring (a new file, mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
        #[arg(long, value_name = "FILE")]
        module: PathBuf,
        /// The label of the token holding the key-encryption key.
        #[arg(long, value_name = "LABEL")]
        token: String,
        /// The label of the key-encryption key (AES-256, non-extractable, sensitive).
        #[arg(long, value_name = "LABEL")]
        key: String,
        /// Generate the key-encryption key on the token (refused if one has that label);
        /// without it, the key must exist.
        #[arg(long)]
        create_key: bool,
        /// File (0600) holding the token's user PIN; else PGSEAL_HSM_PIN.
        #[arg(long, env = "PGSEAL_HSM_PIN_FILE", value_name = "FILE")]
        hsm_pin_file: Option<PathBuf>,
    },
    /// Write a plain copy of a wrapped keyring, its keys in clear (to leave the HSM, or to
    /// move to another one).
    Unwrap {
        #[command(flatten)]
        keyring: KeyringArgs,
        /// Where to write the plain keyring (a new file, mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// The keyring file a command works on.
#[derive(Debug, Args)]
pub struct KeyringArgs {
    /// The keyring file.
    #[arg(long, value_name = "FILE", env = "PGSEAL_KEYRING")]
    keyring: PathBuf,
    #[command(flatten)]
    hsm: HsmArgs,
}

/// How to reach the HSM of a keyring wrapped by one: every command that loads a keyring takes
/// these.
#[derive(Debug, Clone, Default, Args)]
pub struct HsmArgs {
    /// PKCS#11 module to load for a wrapped keyring, in place of the one the keyring names
    #[arg(long, env = "PGSEAL_HSM_MODULE", value_name = "FILE")]
    hsm_module: Option<PathBuf>,
    /// File (0600) holding the HSM token's user PIN for a wrapped keyring; else PGSEAL_HSM_PIN
    #[arg(long, env = "PGSEAL_HSM_PIN_FILE", value_name = "FILE")]
    hsm_pin_file: Option<PathBuf>,
}

impl HsmArgs {
    /// The keys crate's view of these flags.
    pub fn access(&self) -> HsmAccess {
        HsmAccess {
            module: self.hsm_module.clone(),
            pin_file: self.hsm_pin_file.clone(),
        }
    }
}

/// Runs a keyring subcommand.
pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out } => generate(&out)?,
        KeysCommand::Rotate(args) => rotate(&args)?,
        KeysCommand::List(args) => list(&args)?,
        KeysCommand::Retire { keyring, version } => retire(&keyring, version)?,
        KeysCommand::Wrap {
            keyring,
            out,
            module,
            token,
            key,
            create_key,
            hsm_pin_file,
        } => {
            let binding = HsmBinding { module, token, key };
            let access = HsmAccess {
                module: None,
                pin_file: hsm_pin_file,
            };
            wrap(&keyring, &out, binding, &access, create_key)?
        }
        KeysCommand::Unwrap { keyring, out } => unwrap(&keyring, &out)?,
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

fn load(args: &KeyringArgs) -> anyhow::Result<KeyringFile> {
    Ok(KeyringFile::load_with(&args.keyring, &args.hsm.access())?)
}

fn rotate(args: &KeyringArgs) -> anyhow::Result<()> {
    let path = &args.keyring;
    let mut file = load(args)?;
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

fn list(args: &KeyringArgs) -> anyhow::Result<()> {
    let file = load(args)?;
    if let Some(hsm) = file.hsm_binding() {
        println!(
            "wrapped by key {:?} on token {:?} ({})",
            hsm.key,
            hsm.token,
            hsm.module.display()
        );
    }
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

fn retire(args: &KeyringArgs, version: u32) -> anyhow::Result<()> {
    let path = &args.keyring;
    let mut file = load(args)?;
    file.retire(version)?;
    file.write_replace(path)?;
    println!(
        "{}: version {version} is retired and its key material erased; values sealed under it \
         can no longer be opened.",
        path.display()
    );
    Ok(())
}

fn wrap(
    source: &Path,
    out: &Path,
    binding: HsmBinding,
    access: &HsmAccess,
    create_key: bool,
) -> anyhow::Result<()> {
    let mut file = KeyringFile::load(source)?;
    let (token, key) = (binding.token.clone(), binding.key.clone());
    file.wrap(binding, access, create_key)?;
    file.write_new(out)?;
    println!(
        "{}: wrapped keyring written (mode 0600): {} version(s) under key {key:?} on token \
         {token:?}{}.",
        out.display(),
        file.versions()
            .filter(|v| v.state() != KeyState::Retired)
            .count(),
        if create_key { " (key created)" } else { "" }
    );
    println!(
        "{} still holds the keys in clear: once the wrapped keyring works, destroy it or keep \
         it offline as the escrow copy.",
        source.display()
    );
    Ok(())
}

fn unwrap(args: &KeyringArgs, out: &Path) -> anyhow::Result<()> {
    let mut file = load(args)?;
    let Some(binding) = file.unwrap_to_plain() else {
        anyhow::bail!(
            "{} is not wrapped by an HSM; nothing to unwrap",
            args.keyring.display()
        );
    };
    file.write_new(out)?;
    println!(
        "{}: plain keyring written (mode 0600), unwrapped through key {:?} on token {:?}. It \
         holds the keys in clear: keep it as private as the HSM.",
        out.display(),
        binding.key,
        binding.token
    );
    Ok(())
}
