//! `pgseal keys …`: keyring management — generate, rotate, list and retire root key versions,
//! wrap a keyring under a key held by an HSM (or unwrap it back to plain), and rotate that
//! key-encryption key (`rewrap`).
//!
//! The commands that change a keyring or write a copy of it (rotate, retire, wrap, unwrap,
//! rewrap) take `--audit FILE` (or `PGSEAL_AUDIT`): the operation then leaves a `keys` record in
//! that HMAC-chained audit trail, naming the keyring, its versions and the HSM's labels. The
//! trail's lock is taken before the operation, so an operation whose line could not be written
//! is not run; a trail a running `serve` holds is refused (give the commands their own trail).
//!
//! Every command that reads a keyring refuses one that its group or others can access, that is
//! malformed, or that does not have exactly one active version, and says why. A wrapped keyring
//! is unwrapped through its HSM (PIN from `PGSEAL_HSM_PIN` or `--hsm-pin-file`, never from a
//! flag's value), and a rotation wraps its new version there. Rewrites are atomic (temporary
//! 0600 file, fsync, rename). No command ever prints key material.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pgseal_keys::{Error, HsmAccess, HsmBinding, KeyState, KeyringFile, KeyringProblem};

use crate::audit::{AuditAppend, AuditHsm, KeyEvent};

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
    Rotate {
        #[command(flatten)]
        keyring: KeyringArgs,
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// List key versions with their states and dates (never key material).
    List {
        #[command(flatten)]
        keyring: KeyringArgs,
        #[command(flatten)]
        audit: AuditArgs,
    },
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
        #[command(flatten)]
        audit: AuditArgs,
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
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// Write a plain copy of a wrapped keyring, its keys in clear (to leave the HSM, or to
    /// move to another one).
    Unwrap {
        #[command(flatten)]
        keyring: KeyringArgs,
        /// Where to write the plain keyring (a new file, mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// Rotate the key-encryption key: wrap every key version of a wrapped keyring again, under
    /// another key held by an HSM, and replace the file atomically.
    ///
    /// The keys are unwrapped with the current key (PIN from PGSEAL_HSM_PIN or
    /// --hsm-pin-file), wrapped under the new one and read back through it before the file is
    /// replaced (temporary 0600 file, fsync, rename); no key is ever written in clear. The new
    /// key must exist on the token unless --create-key is given. The keyring's id and versions
    /// do not change, so sealed data is untouched. Once every pgseal runs with the rewrapped
    /// file, the old key can be destroyed on the token.
    Rewrap {
        #[command(flatten)]
        keyring: KeyringArgs,
        /// The label of the new key-encryption key (AES-256, non-extractable, sensitive).
        #[arg(long, value_name = "LABEL")]
        new_key: String,
        /// The label of the token holding the new key [default: the current token].
        #[arg(long, value_name = "LABEL")]
        new_token: Option<String>,
        /// The PKCS#11 module of the new token [default: the current module].
        #[arg(long, value_name = "FILE")]
        new_module: Option<PathBuf>,
        /// File (0600) holding the new token's user PIN [default: the current token's PIN
        /// source].
        #[arg(long, value_name = "FILE")]
        new_hsm_pin_file: Option<PathBuf>,
        /// Generate the new key on the token (refused if one has that label); without it, the
        /// key must exist.
        #[arg(long)]
        create_key: bool,
        #[command(flatten)]
        audit: AuditArgs,
    },
}

/// Where a keyring operation's audit line goes.
#[derive(Debug, Clone, Default, Args)]
pub struct AuditArgs {
    /// Audit trail to append this operation's `keys` record to (HMAC-chained with the
    /// keyring's audit key; checked by `pgseal audit verify`)
    #[arg(long, env = "PGSEAL_AUDIT", value_name = "FILE")]
    audit: Option<PathBuf>,
}

impl AuditArgs {
    /// Takes the trail's lock, before the operation.
    fn open(&self) -> anyhow::Result<Option<AuditAppend>> {
        let Some(path) = &self.audit else {
            return Ok(None);
        };
        if path.as_os_str() == "-" {
            anyhow::bail!("--audit for a keys command needs a file, not standard output");
        }
        Ok(Some(AuditAppend::open(path)?))
    }
}

/// Appends `event` to the trail (when one was given), chained with `file`'s audit key.
fn record(audit: Option<AuditAppend>, file: KeyringFile, event: KeyEvent) -> anyhow::Result<()> {
    let key = file.into_keyring().audit_key();
    append(audit, key, event)
}

/// Appends `event` to the trail (when one was given), chained with `key`.
fn append(
    audit: Option<AuditAppend>,
    key: pgseal_keys::AuditKey,
    event: KeyEvent,
) -> anyhow::Result<()> {
    let Some(audit) = audit else {
        return Ok(());
    };
    let seq = audit
        .append(key, std::slice::from_ref(&event))
        .context("the keyring operation was done, but its audit line could not be written")?;
    println!("audit: {} recorded as record {seq}.", event.operation);
    Ok(())
}

/// Where a command that reads a keyring to do other work (`migrate`, `audit verify`) records
/// that it unwrapped it through its HSM. No environment variable: a `PGSEAL_AUDIT` set for
/// `pgseal serve` must not send a migration to the trail the proxy holds.
#[derive(Debug, Clone, Default, Args)]
pub struct UnwrapAudit {
    /// Audit trail to record the unwrap of a wrapped keyring in (a `keys` record, chained
    /// with the keyring's audit key); a plain keyring records nothing
    #[arg(long = "audit", value_name = "FILE")]
    audit: Option<PathBuf>,
}

impl UnwrapAudit {
    /// Records `command`'s unwrap of `keyring` (read from `path`), when it is wrapped and a
    /// trail was given.
    pub fn record(
        &self,
        command: &str,
        path: &Path,
        keyring: &pgseal_keys::Keyring,
    ) -> anyhow::Result<()> {
        let Some(origin) = keyring.hsm_origin() else {
            return Ok(());
        };
        let trail = AuditArgs {
            audit: self.audit.clone(),
        }
        .open()?;
        let event = KeyEvent::new(
            command,
            "unwrap",
            Some(path),
            keyring.versions(),
            Some(origin),
        );
        append(trail, keyring.audit_key(), event)
    }
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
        KeysCommand::Rotate { keyring, audit } => rotate(&keyring, &audit)?,
        KeysCommand::List { keyring, audit } => list(&keyring, &audit)?,
        KeysCommand::Retire {
            keyring,
            version,
            audit,
        } => retire(&keyring, version, &audit)?,
        KeysCommand::Wrap {
            keyring,
            out,
            module,
            token,
            key,
            create_key,
            hsm_pin_file,
            audit,
        } => {
            let binding = HsmBinding { module, token, key };
            let access = HsmAccess {
                module: None,
                pin_file: hsm_pin_file,
            };
            wrap(&keyring, &out, binding, &access, create_key, &audit)?
        }
        KeysCommand::Unwrap {
            keyring,
            out,
            audit,
        } => unwrap(&keyring, &out, &audit)?,
        KeysCommand::Rewrap {
            keyring,
            new_key,
            new_token,
            new_module,
            new_hsm_pin_file,
            create_key,
            audit,
        } => rewrap(
            &keyring,
            NewKek {
                key: new_key,
                token: new_token,
                module: new_module,
                pin_file: new_hsm_pin_file,
                create: create_key,
            },
            &audit,
        )?,
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

fn rotate(args: &KeyringArgs, audit: &AuditArgs) -> anyhow::Result<()> {
    let path = &args.keyring;
    let trail = audit.open()?;
    let mut file = load(args)?;
    let previous = file.active_version();
    let new = file.rotate()?;
    file.write_replace(path)?;
    let mut event = KeyEvent::new(
        "keys rotate",
        "rotate",
        Some(path),
        file.versions(),
        file.hsm_origin().as_ref(),
    );
    event.version = Some(new);
    println!(
        "{}: version {new} is now active; version {previous} is decrypt-only.",
        path.display()
    );
    println!(
        "Values sealed under older versions stay readable until you retire them \
         (`pgseal keys retire --keyring {} --version N`).",
        path.display()
    );
    record(trail, file, event)
}

fn list(args: &KeyringArgs, audit: &AuditArgs) -> anyhow::Result<()> {
    let trail = audit.open()?;
    let file = load(args)?;
    if let Some(hsm) = file.hsm_binding() {
        println!(
            "wrapped by key {:?} on token {:?} ({})",
            hsm.key,
            hsm.token,
            hsm.module.display()
        );
    }
    if let Some(origin) = file.hsm_origin() {
        println!("keyring id {}", origin.keyring_id_hex());
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
    // A wrapped keyring was unwrapped through its HSM to be listed: on record.
    if let Some(origin) = file.hsm_origin() {
        let event = KeyEvent::new(
            "keys list",
            "unwrap",
            Some(&args.keyring),
            file.versions(),
            Some(&origin),
        );
        record(trail, file, event)?;
    }
    Ok(())
}

fn retire(args: &KeyringArgs, version: u32, audit: &AuditArgs) -> anyhow::Result<()> {
    let path = &args.keyring;
    let trail = audit.open()?;
    let mut file = load(args)?;
    file.retire(version)?;
    file.write_replace(path)?;
    println!(
        "{}: version {version} is retired and its key material erased; values sealed under it \
         can no longer be opened.",
        path.display()
    );
    let mut event = KeyEvent::new(
        "keys retire",
        "retire",
        Some(path),
        file.versions(),
        file.hsm_origin().as_ref(),
    );
    event.version = Some(version);
    record(trail, file, event)
}

fn wrap(
    source: &Path,
    out: &Path,
    binding: HsmBinding,
    access: &HsmAccess,
    create_key: bool,
    audit: &AuditArgs,
) -> anyhow::Result<()> {
    let trail = audit.open()?;
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
    let mut event = KeyEvent::new(
        "keys wrap",
        "wrap",
        Some(source),
        file.versions(),
        file.hsm_origin().as_ref(),
    );
    event.out = Some(out.display().to_string());
    event.key_created = create_key;
    record(trail, file, event)
}

fn unwrap(args: &KeyringArgs, out: &Path, audit: &AuditArgs) -> anyhow::Result<()> {
    let trail = audit.open()?;
    let mut file = load(args)?;
    let origin = file.hsm_origin();
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
    let mut event = KeyEvent::new(
        "keys unwrap",
        "unwrap-to-plain",
        Some(&args.keyring),
        file.versions(),
        origin.as_ref(),
    );
    event.out = Some(out.display().to_string());
    record(trail, file, event)
}

/// The key-encryption key `keys rewrap` moves to.
struct NewKek {
    key: String,
    token: Option<String>,
    module: Option<PathBuf>,
    pin_file: Option<PathBuf>,
    create: bool,
}

fn rewrap(args: &KeyringArgs, new: NewKek, audit: &AuditArgs) -> anyhow::Result<()> {
    let path = &args.keyring;
    let trail = audit.open()?;
    let current_access = args.hsm.access();
    let mut file = load(args)?;
    let Some(current) = file.hsm_binding().cloned() else {
        anyhow::bail!(
            "{} is not wrapped by an HSM: wrap it first with `pgseal keys wrap`",
            path.display()
        );
    };
    // The new key's module: the one named, else the one the current key was reached through
    // (recording the file's path, and keeping a --hsm-module override for this run).
    let (module, module_override) = match new.module {
        Some(module) => (module, None),
        None => (current.module.clone(), current_access.module.clone()),
    };
    let binding = HsmBinding {
        module,
        token: new.token.unwrap_or_else(|| current.token.clone()),
        key: new.key,
    };
    let access = HsmAccess {
        module: module_override,
        pin_file: new.pin_file.or(current_access.pin_file),
    };
    let (token, key) = (binding.token.clone(), binding.key.clone());
    let previous_origin = file.hsm_origin();
    let previous = file.rewrap(binding, &access, new.create)?;
    file.write_replace(path)?;
    println!(
        "{}: {} version(s) rewrapped from key {:?} on token {:?} to key {key:?} on token \
         {token:?}{}; the keyring id and versions are unchanged.",
        path.display(),
        file.versions()
            .filter(|v| v.state() != KeyState::Retired)
            .count(),
        previous.key,
        previous.token,
        if new.create { " (key created)" } else { "" }
    );
    println!(
        "Once every pgseal runs with this file (and its backups are replaced), key {:?} can be \
         destroyed on token {:?}.",
        previous.key, previous.token
    );
    let mut event = KeyEvent::new(
        "keys rewrap",
        "rewrap",
        Some(path),
        file.versions(),
        file.hsm_origin().as_ref(),
    );
    event.previous_hsm = previous_origin.as_ref().map(|o| AuditHsm::from(&o.binding));
    event.key_created = new.create;
    record(trail, file, event)
}
