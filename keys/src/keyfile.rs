//! The keyring file: its TOML format, its validation, and how it is read and written safely.
//!
//! ```toml
//! # pgseal keyring ...
//! format = 1
//!
//! [[version]]
//! number = 1
//! state = "decrypt-only"            # active | decrypt-only | retired
//! created = "2025-03-01T09:00:00Z"  # RFC 3339, UTC
//! key = "base64 of 32 bytes"        # absent once retired
//!
//! [[version]]
//! number = 2
//! state = "active"
//! created = "2025-09-01T09:00:00Z"
//! key = "..."
//! ```
//!
//! A keyring **wrapped** by an HSM (see [`crate::hsm`]) is `format = 2`, names its key-encryption
//! key in an `[hsm]` table, and holds each readable version's key only wrapped:
//!
//! ```toml
//! format = 2
//!
//! [hsm]
//! module = "/usr/lib/softhsm/libsofthsm2.so"  # PKCS#11 module (the loader may override it)
//! token = "pgseal"                            # token label
//! key = "pgseal-kek"                          # KEK label: AES-256, non-extractable, sensitive
//! mechanism = "aes-256-gcm"
//! keyring_id = "32 hex digits"                # bound into every wrapped value
//!
//! [[version]]
//! number = 1
//! state = "active"
//! created = "2025-09-01T09:00:00Z"
//! wrapped = "base64 of IV ‖ ciphertext ‖ tag"
//! ```
//!
//! Loading it logs in to the token (PIN from [`crate::hsm::HSM_PIN_ENV`] or a PIN file) and
//! unwraps every version once; the document then edits like a plain one, and a rotation wraps
//! its new key through the same KEK before anything is written. [`KeyringFile::rewrap`] moves
//! the whole keyring to another KEK (same id, same versions): the KEK's own rotation.
//!
//! Reading refuses a file that its group or others can access (the message says to run
//! `chmod 600 FILE`), that is not a regular file or is implausibly large, that does not parse,
//! has unknown fields, duplicate or zero version numbers, a key that is not base64 of 32 bytes,
//! a retired version that still holds key material, or not exactly one active version.
//! Parse errors give the line and column but never quote a `key` line.
//!
//! Writing never leaves a half-written keyring in place: a new file is created exclusively with
//! mode 0600 (refusing to overwrite), and a rewrite goes to a 0600 temporary file in the same
//! directory that is fsynced and then renamed over the old one. Two operators editing the same
//! file at the same moment are not serialized: the last rename wins.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, KeyringProblem, Result};
use crate::hsm::{HsmAccess, HsmBinding, HsmOrigin, KEYRING_ID_LEN, Kek, MECHANISM_AES_GCM};
use crate::keyring::{KeyState, Keyring, VersionInfo, format_time};
use crate::secret::RootKey;

/// The keyring file format this crate reads and writes.
pub const KEYRING_FORMAT: u32 = 1;
/// The format of keyring files wrapped by an HSM.
pub const WRAPPED_KEYRING_FORMAT: u32 = 2;
/// Largest file accepted as a keyring.
const MAX_FILE_LEN: u64 = 1 << 20;

/// An editable keyring document: what `pgseal keys` generates, rotates, retires and lists.
/// Turn it into a runtime [`Keyring`] with [`KeyringFile::into_keyring`].
pub struct KeyringFile {
    versions: Vec<(VersionInfo, Option<RootKey>)>,
    wrapping: Option<Wrapping>,
}

/// A wrapped keyring's KEK, open for the document's lifetime, and each readable version's
/// wrapped key as written.
struct Wrapping {
    binding: HsmBinding,
    /// The module actually loaded (the file's, or the loader's override).
    module_loaded: PathBuf,
    keyring_id: [u8; KEYRING_ID_LEN],
    kek: Kek,
    wrapped: Vec<(u32, String)>,
}

impl Wrapping {
    /// The wrapping under `kek`, which `binding` names and `access` loaded.
    fn new(
        binding: HsmBinding,
        access: &HsmAccess,
        keyring_id: [u8; KEYRING_ID_LEN],
        kek: Kek,
        wrapped: Vec<(u32, String)>,
    ) -> Wrapping {
        Wrapping {
            module_loaded: access.module_for(&binding).to_path_buf(),
            binding,
            keyring_id,
            kek,
            wrapped,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: u32,
    #[serde(default)]
    hsm: Option<RawHsm>,
    #[serde(default)]
    version: Vec<RawVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHsm {
    module: String,
    token: String,
    key: String,
    mechanism: String,
    keyring_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    number: u32,
    state: String,
    created: String,
    #[serde(default)]
    retired: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    wrapped: Option<String>,
}

impl Drop for RawVersion {
    fn drop(&mut self) {
        if let Some(key) = &mut self.key {
            key.zeroize();
        }
    }
}

fn malformed(reason: impl Into<String>) -> KeyringProblem {
    KeyringProblem::Malformed(reason.into())
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
}

fn parse_time(number: u32, field: &str, text: &str) -> Result<OffsetDateTime, KeyringProblem> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| {
            malformed(format!(
                "version {number}: {field} is not an RFC 3339 date such as 2025-01-31T09:00:00Z"
            ))
        })
}

impl KeyringFile {
    /// A fresh keyring: version 1, active, created now, from the system's random generator.
    pub fn generate() -> Result<KeyringFile> {
        let info = VersionInfo {
            number: 1,
            state: KeyState::Active,
            created: Some(now()),
            retired: None,
        };
        Ok(KeyringFile {
            versions: vec![(info, Some(RootKey::generate()?))],
            wrapping: None,
        })
    }

    /// Reads and validates a keyring file (see the module documentation for what is refused).
    /// A wrapped keyring is unwrapped through its HSM with the PIN from
    /// [`crate::hsm::HSM_PIN_ENV`]; see [`KeyringFile::load_with`].
    pub fn load(path: impl AsRef<Path>) -> Result<KeyringFile> {
        Self::load_with(path, &HsmAccess::default())
    }

    /// Like [`KeyringFile::load`], reaching the HSM of a wrapped keyring as `access` says
    /// (module override, PIN file). A plain keyring ignores `access`.
    pub fn load_with(path: impl AsRef<Path>, access: &HsmAccess) -> Result<KeyringFile> {
        let path = path.as_ref();
        let at = |problem| Error::KeyringFile {
            path: path.to_path_buf(),
            problem,
        };
        let text = read_private(path).map_err(at)?;
        Self::parse(&text, access).map_err(at)
    }

    /// Parses and validates a keyring document.
    pub fn from_toml_str(text: &str) -> Result<KeyringFile> {
        Self::parse(text, &HsmAccess::default()).map_err(|problem| Error::Keyring {
            source_name: "TOML text",
            problem,
        })
    }

    fn parse(text: &str, access: &HsmAccess) -> Result<KeyringFile, KeyringProblem> {
        let mut raw: RawFile =
            toml::from_str(text).map_err(|err| malformed(describe_toml_error(text, &err)))?;
        match (raw.format, &raw.hsm) {
            (KEYRING_FORMAT, None) | (WRAPPED_KEYRING_FORMAT, Some(_)) => {}
            (KEYRING_FORMAT, Some(_)) => {
                return Err(malformed(format!(
                    "an [hsm] table needs format = {WRAPPED_KEYRING_FORMAT}"
                )));
            }
            (WRAPPED_KEYRING_FORMAT, None) => {
                return Err(malformed(format!(
                    "format = {WRAPPED_KEYRING_FORMAT} is a wrapped keyring and needs an [hsm] \
                     table naming its module, token and key"
                )));
            }
            (other, _) => {
                return Err(malformed(format!(
                    "format = {other} is not supported; this pgseal reads formats \
                     {KEYRING_FORMAT} (plain) and {WRAPPED_KEYRING_FORMAT} (wrapped by an HSM)"
                )));
            }
        }
        let hsm = match raw.hsm.take() {
            Some(h) => Some(parse_hsm(h)?),
            None => None,
        };
        let wrapped_file = hsm.is_some();
        let mut wrapped_keys: Vec<(u32, String)> = Vec::new();
        if raw.version.is_empty() {
            return Err(malformed("no [[version]] entries"));
        }
        let mut versions = Vec::with_capacity(raw.version.len());
        for rv in &mut raw.version {
            let number = rv.number;
            if number == 0 {
                return Err(malformed("version numbers start at 1"));
            }
            if versions
                .iter()
                .any(|(v, _): &(VersionInfo, _)| v.number == number)
            {
                return Err(malformed(format!("version {number} appears twice")));
            }
            let state = KeyState::parse(&rv.state).ok_or_else(|| {
                malformed(format!(
                    "version {number}: state must be \"active\", \"decrypt-only\" or \"retired\""
                ))
            })?;
            let created = parse_time(number, "created", &rv.created)?;
            let retired = match (&rv.retired, state) {
                (Some(text), KeyState::Retired) => Some(parse_time(number, "retired", text)?),
                (Some(_), _) => {
                    return Err(malformed(format!(
                        "version {number} has a retired date but its state is {state}"
                    )));
                }
                (None, _) => None,
            };
            if wrapped_file {
                if rv.key.is_some() {
                    return Err(malformed(format!(
                        "version {number} holds a clear key in a wrapped keyring"
                    )));
                }
                match (rv.wrapped.take(), state) {
                    (Some(_), KeyState::Retired) => {
                        return Err(malformed(format!(
                            "version {number} is retired but still holds key material; delete \
                             its wrapped line"
                        )));
                    }
                    (None, KeyState::Retired) => {}
                    (None, _) => {
                        return Err(malformed(format!(
                            "version {number} ({state}) has no wrapped key"
                        )));
                    }
                    (Some(w), _) => wrapped_keys.push((number, w)),
                }
            } else if rv.wrapped.is_some() {
                return Err(malformed(format!(
                    "version {number} has a wrapped key but the keyring has no [hsm] table"
                )));
            }
            let key = match (rv.key.take().map(Zeroizing::new), state) {
                _ if wrapped_file => None,
                (Some(_), KeyState::Retired) => {
                    return Err(malformed(format!(
                        "version {number} is retired but still holds key material; delete its \
                         key line"
                    )));
                }
                (None, KeyState::Retired) => None,
                (None, _) => {
                    return Err(malformed(format!("version {number} ({state}) has no key")));
                }
                (Some(text), _) => Some(RootKey::from_base64(&text).map_err(|reason| {
                    KeyringProblem::BadRootKey(format!("version {number}: {reason}"))
                })?),
            };
            let info = VersionInfo {
                number,
                state,
                created: Some(created),
                retired,
            };
            versions.push((info, key));
        }
        let active: Vec<u32> = versions
            .iter()
            .filter(|(v, _)| v.state == KeyState::Active)
            .map(|(v, _)| v.number)
            .collect();
        match active.len() {
            0 => return Err(KeyringProblem::NoActiveVersion),
            1 => {}
            _ => return Err(KeyringProblem::SeveralActiveVersions(active)),
        }
        versions.sort_by_key(|(v, _)| v.number);
        let wrapping = match hsm {
            None => None,
            Some((binding, keyring_id)) => {
                // Unwrap every readable version now, once, and keep the KEK open for edits.
                let kek =
                    Kek::open(&binding, access).map_err(|e| KeyringProblem::Hsm(Box::new(e)))?;
                for (number, wrapped) in &wrapped_keys {
                    let key = kek
                        .unwrap(&keyring_id, *number, wrapped)
                        .map_err(|e| KeyringProblem::Hsm(Box::new(e)))?;
                    if let Some((_, slot)) = versions.iter_mut().find(|(v, _)| v.number == *number)
                    {
                        *slot = Some(key);
                    }
                }
                Some(Wrapping::new(
                    binding,
                    access,
                    keyring_id,
                    kek,
                    wrapped_keys,
                ))
            }
        };
        Ok(KeyringFile { versions, wrapping })
    }

    /// The HSM holding this keyring's KEK, when the keyring is wrapped.
    pub fn hsm_binding(&self) -> Option<&HsmBinding> {
        self.wrapping.as_ref().map(|w| &w.binding)
    }

    /// Wraps every readable version under the KEK `binding` names (generating it on the token
    /// first when `create_key`), under a fresh keyring id. What [`KeyringFile::to_toml`] then
    /// writes holds no usable key. Refuses a keyring that is already wrapped.
    pub fn wrap(
        &mut self,
        binding: HsmBinding,
        access: &HsmAccess,
        create_key: bool,
    ) -> Result<()> {
        if let Some(w) = &self.wrapping {
            return Err(Error::KeyringOperation(format!(
                "the keyring is already wrapped by key {:?} on token {:?}",
                w.binding.key, w.binding.token
            )));
        }
        let kek = if create_key {
            Kek::create(&binding, access)?
        } else {
            Kek::open(&binding, access)?
        };
        let mut keyring_id = [0u8; KEYRING_ID_LEN];
        getrandom::fill(&mut keyring_id).map_err(|err| Error::Random(err.to_string()))?;
        let mut wrapped = Vec::new();
        for (info, key) in &self.versions {
            if let Some(key) = key {
                wrapped.push((info.number, kek.wrap(&keyring_id, info.number, key)?));
            }
        }
        self.wrapping = Some(Wrapping::new(binding, access, keyring_id, kek, wrapped));
        Ok(())
    }

    /// Rotates the key-encryption key: wraps every readable version again under the KEK
    /// `binding` names (generating it on the token first when `create_key`; else it must
    /// exist), keeping the keyring id, and checks each new value unwraps to the same key before
    /// the document changes. Returns the binding it replaces; the caller writes the file
    /// ([`KeyringFile::write_replace`]), after which the old KEK is no longer needed.
    ///
    /// Refuses a keyring that is not wrapped, and a `binding` naming the KEK it already has.
    /// On any failure the document is left as it was (still wrapped by the old KEK).
    pub fn rewrap(
        &mut self,
        binding: HsmBinding,
        access: &HsmAccess,
        create_key: bool,
    ) -> Result<HsmBinding> {
        let Some(current) = &self.wrapping else {
            return Err(Error::KeyringOperation(
                "the keyring is not wrapped by an HSM; wrap it first with `pgseal keys wrap`"
                    .into(),
            ));
        };
        if binding.token == current.binding.token
            && binding.key == current.binding.key
            && access.module_for(&binding) == current.module_loaded
        {
            return Err(Error::KeyringOperation(format!(
                "the keyring is already wrapped by key {:?} on token {:?}; name another key to \
                 rewrap under",
                binding.key, binding.token
            )));
        }
        let keyring_id = current.keyring_id;
        let previous = current.binding.clone();
        let kek = if create_key {
            Kek::create(&binding, access)?
        } else {
            Kek::open(&binding, access)?
        };
        let mut wrapped = Vec::new();
        for (info, key) in &self.versions {
            if let Some(key) = key {
                let value = kek.wrap(&keyring_id, info.number, key)?;
                // Read it back before trusting it: the old KEK is about to be given up.
                let back = kek.unwrap(&keyring_id, info.number, &value)?;
                if !bool::from(subtle::ConstantTimeEq::ct_eq(
                    back.as_bytes().as_slice(),
                    key.as_bytes().as_slice(),
                )) {
                    return Err(Error::KeyringOperation(format!(
                        "version {}: the key unwrapped under the new KEK differs from the \
                         original; nothing was changed",
                        info.number
                    )));
                }
                wrapped.push((info.number, value));
            }
        }
        // The old KEK's session closes here.
        self.wrapping = Some(Wrapping::new(binding, access, keyring_id, kek, wrapped));
        Ok(previous)
    }

    /// For a wrapped keyring: the module loaded, the token and KEK labels, and the keyring id.
    pub fn hsm_origin(&self) -> Option<HsmOrigin> {
        self.wrapping.as_ref().map(|w| HsmOrigin {
            binding: HsmBinding {
                module: w.module_loaded.clone(),
                token: w.binding.token.clone(),
                key: w.binding.key.clone(),
            },
            keyring_id: w.keyring_id,
        })
    }

    /// Forgets the wrapping: what [`KeyringFile::to_toml`] then writes holds the keys in clear
    /// (format 1). Returns the HSM binding it had, or `None` when it was not wrapped.
    pub fn unwrap_to_plain(&mut self) -> Option<HsmBinding> {
        self.wrapping.take().map(|w| w.binding.clone())
    }

    /// Every version, oldest first, without key material.
    pub fn versions(&self) -> impl Iterator<Item = &VersionInfo> {
        self.versions.iter().map(|(v, _)| v)
    }

    /// The number of the active version.
    pub fn active_version(&self) -> u32 {
        self.versions()
            .find(|v| v.state == KeyState::Active)
            .map(|v| v.number)
            .expect("validated: one active version")
    }

    /// Adds a new active version (numbered after every existing one, retired ones included)
    /// and makes the previous active version decrypt-only. Returns the new number.
    pub fn rotate(&mut self) -> Result<u32> {
        let key = RootKey::generate()?;
        let number = self
            .versions()
            .map(|v| v.number)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| Error::KeyringOperation("no version numbers left".into()))?;
        // Wrap first: if the HSM refuses, the document is left as it was.
        if let Some(w) = &mut self.wrapping {
            let wrapped = w.kek.wrap(&w.keyring_id, number, &key)?;
            w.wrapped.push((number, wrapped));
        }
        for (info, _) in &mut self.versions {
            if info.state == KeyState::Active {
                info.state = KeyState::DecryptOnly;
            }
        }
        let info = VersionInfo {
            number,
            state: KeyState::Active,
            created: Some(now()),
            retired: None,
        };
        self.versions.push((info, Some(key)));
        Ok(number)
    }

    /// Retires a decrypt-only version: its key material is erased, and values sealed under it
    /// can no longer be opened. The active version cannot be retired (rotate first).
    pub fn retire(&mut self, number: u32) -> Result<()> {
        let (info, key) = self
            .versions
            .iter_mut()
            .find(|(v, _)| v.number == number)
            .ok_or_else(|| {
                Error::KeyringOperation(format!("version {number} is not in the keyring"))
            })?;
        match info.state {
            KeyState::Active => Err(Error::KeyringOperation(format!(
                "version {number} is the active version; rotate first so that another version \
                 is active, then retire it"
            ))),
            KeyState::Retired => Err(Error::KeyringOperation(format!(
                "version {number} is already retired"
            ))),
            KeyState::DecryptOnly => {
                info.state = KeyState::Retired;
                info.retired = Some(now());
                *key = None;
                if let Some(w) = &mut self.wrapping {
                    w.wrapped.retain(|(n, _)| *n != number);
                }
                Ok(())
            }
        }
    }

    /// The document as TOML, in a string that is zeroized when dropped.
    pub fn to_toml(&self) -> Zeroizing<String> {
        // Reserve once so the buffer holding key material never reallocates (and leaves copies).
        let mut out = Zeroizing::new(String::with_capacity(256 + 200 * self.versions.len()));
        match &self.wrapping {
            None => {
                out.push_str(
                    "# pgseal keyring: root key versions. This file holds secret key material.\n\
                     # Keep it mode 0600 and out of the database's backups; manage it with \
                     `pgseal keys`.\n",
                );
                out.push_str(&format!("format = {KEYRING_FORMAT}\n"));
            }
            Some(w) => {
                out.push_str(
                    "# pgseal keyring wrapped by an HSM: each key is encrypted under a key that \
                     never leaves\n# the token below. Useless without that token and its PIN; \
                     manage it with `pgseal keys`.\n",
                );
                out.push_str(&format!("format = {WRAPPED_KEYRING_FORMAT}\n\n[hsm]\n"));
                out.push_str(&format!(
                    "module = {}\n",
                    toml_string(&w.binding.module.to_string_lossy())
                ));
                out.push_str(&format!("token = {}\n", toml_string(&w.binding.token)));
                out.push_str(&format!("key = {}\n", toml_string(&w.binding.key)));
                out.push_str(&format!("mechanism = \"{MECHANISM_AES_GCM}\"\n"));
                out.push_str(&format!("keyring_id = \"{}\"\n", hex(&w.keyring_id)));
            }
        }
        for (info, key) in &self.versions {
            out.push_str("\n[[version]]\n");
            out.push_str(&format!("number = {}\n", info.number));
            out.push_str(&format!("state = \"{}\"\n", info.state));
            out.push_str(&format!("created = \"{}\"\n", format_time(info.created)));
            if info.retired.is_some() {
                out.push_str(&format!("retired = \"{}\"\n", format_time(info.retired)));
            }
            if let Some(w) = &self.wrapping {
                if let Some((_, wrapped)) = w.wrapped.iter().find(|(n, _)| *n == info.number) {
                    out.push_str(&format!("wrapped = \"{wrapped}\"\n"));
                }
            } else if let Some(key) = key {
                out.push_str("key = \"");
                out.push_str(&key.to_base64());
                out.push_str("\"\n");
            }
        }
        out
    }

    /// Writes the keyring to a new file with mode 0600; refuses if `path` exists.
    pub fn write_new(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        write_new(path, self.to_toml().as_bytes()).map_err(|problem| Error::KeyringFile {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Atomically replaces the keyring file at `path` (temporary 0600 file, fsync, rename).
    pub fn write_replace(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        write_replace(path, self.to_toml().as_bytes()).map_err(|problem| Error::KeyringFile {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// The runtime keyring.
    pub fn into_keyring(mut self) -> Keyring {
        let origin = self.hsm_origin();
        // The KEK's session closes here: the runtime keyring never reaches the HSM again.
        self.wrapping = None;
        Keyring::from_versions(std::mem::take(&mut self.versions), origin)
    }
}

impl std::fmt::Debug for KeyringFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringFile")
            .field("versions", &self.versions().collect::<Vec<_>>())
            .field("keys", &"[redacted]")
            .finish()
    }
}

fn parse_hsm(raw: RawHsm) -> Result<(HsmBinding, [u8; KEYRING_ID_LEN]), KeyringProblem> {
    if raw.mechanism != MECHANISM_AES_GCM {
        return Err(malformed(format!(
            "[hsm] mechanism = {:?} is not supported; this pgseal wraps with \"{MECHANISM_AES_GCM}\"",
            raw.mechanism
        )));
    }
    for (field, value) in [
        ("module", &raw.module),
        ("token", &raw.token),
        ("key", &raw.key),
    ] {
        if value.trim().is_empty() {
            return Err(malformed(format!("[hsm] {field} is empty")));
        }
    }
    let id = unhex(&raw.keyring_id)
        .ok_or_else(|| malformed("[hsm] keyring_id is not 32 hexadecimal digits"))?;
    Ok((
        HsmBinding {
            module: PathBuf::from(raw.module),
            token: raw.token,
            key: raw.key,
        },
        id,
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; KEYRING_ID_LEN]> {
    let text = text.as_bytes();
    if text.len() != 2 * KEYRING_ID_LEN {
        return None;
    }
    let mut out = [0u8; KEYRING_ID_LEN];
    for (i, pair) in text.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A TOML basic string (module paths and labels are chosen by the operator).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Line and column of a TOML error, and its message unless the line holds key material.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return err.message().to_string();
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    if line.trim_start().starts_with("key") {
        format!("line {line_no}, column {column}: invalid key entry (details withheld)")
    } else {
        format!(
            "line {line_no}, column {column}: {}",
            err.message().trim_end()
        )
    }
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), KeyringProblem> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyringProblem::InsecurePermissions {
            mode,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &fs::Metadata) -> Result<(), KeyringProblem> {
    Ok(())
}

fn io(err: std::io::Error) -> KeyringProblem {
    KeyringProblem::Io(err.to_string())
}

/// Reads a keyring file after checking it is a private, regular, reasonably sized file.
fn read_private(path: &Path) -> Result<Zeroizing<String>, KeyringProblem> {
    let file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(KeyringProblem::NotAFile);
    }
    check_private(path, &metadata)?;
    if metadata.len() > MAX_FILE_LEN {
        return Err(KeyringProblem::TooLarge(metadata.len()));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(metadata.len() as usize + 1));
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(KeyringProblem::TooLarge(bytes.len() as u64));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn open_private_new(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn write_new(path: &Path, content: &[u8]) -> Result<(), KeyringProblem> {
    let mut file = open_private_new(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::AlreadyExists => KeyringProblem::AlreadyExists,
        _ => io(err),
    })?;
    let written = file.write_all(content).and_then(|()| file.sync_all());
    if let Err(err) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(io(err));
    }
    sync_dir(path);
    Ok(())
}

fn write_replace(path: &Path, content: &[u8]) -> Result<(), KeyringProblem> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = open_private_new(&temp)?;
        file.write_all(content)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&temp);
        return Err(io(err));
    }
    sync_dir(path);
    Ok(())
}

/// A temporary name beside `path`, unique to this process and moment.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyring".into());
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

/// Makes a create or rename durable. Best effort: some filesystems refuse to fsync directories.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const KEY_B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

    fn doc(v1_state: &str, v2_state: &str) -> String {
        format!(
            "format = 1\n\
             [[version]]\nnumber = 1\nstate = \"{v1_state}\"\ncreated = \"2025-01-01T00:00:00Z\"\nkey = \"{KEY_A}\"\n\
             [[version]]\nnumber = 2\nstate = \"{v2_state}\"\ncreated = \"2025-06-01T12:30:00+02:00\"\nkey = \"{KEY_B}\"\n"
        )
    }

    fn problem(text: &str) -> KeyringProblem {
        match KeyringFile::from_toml_str(text) {
            Err(Error::Keyring { problem, .. }) => problem,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn parses_and_round_trips() {
        let file = KeyringFile::from_toml_str(&doc("decrypt-only", "active")).unwrap();
        assert_eq!(file.active_version(), 2);
        let infos: Vec<_> = file.versions().cloned().collect();
        assert_eq!(infos[1].created_rfc3339(), "2025-06-01T10:30:00Z");
        let text = file.to_toml();
        let debug = format!("{file:?}");
        assert!(
            debug.contains("[redacted]") && !debug.contains(&KEY_A[..8]),
            "{debug}"
        );
        let again = KeyringFile::from_toml_str(&text).unwrap();
        assert_eq!(again.versions().cloned().collect::<Vec<_>>(), infos);
        assert_eq!(*again.to_toml(), *text);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            problem(&doc("decrypt-only", "decrypt-only")),
            KeyringProblem::NoActiveVersion
        );
        assert_eq!(
            problem(&doc("active", "active")),
            KeyringProblem::SeveralActiveVersions(vec![1, 2])
        );
        for (text, needle) in [
            ("format = 1\n", "no [[version]]"),
            ("format = 2\n", "format = 2"),
            ("this is not toml", "line 1"),
            (
                &doc("active", "decrypt-only").replace("number = 2", "number = 1"),
                "twice",
            ),
            (&doc("active", "asleep"), "state must be"),
            (
                &doc("active", "decrypt-only").replace("2025-01-01T00:00:00Z", "yesterday"),
                "RFC 3339",
            ),
            (&doc("active", "retired"), "still holds key material"),
            (
                &format!("{}colour = 1\n", doc("active", "decrypt-only")),
                "unknown field",
            ),
        ] {
            let p = problem(text);
            assert!(p.to_string().contains(needle), "{p} lacks {needle}");
        }
        let short = doc("active", "decrypt-only").replace(KEY_B, "AAAA");
        assert!(
            matches!(problem(&short), KeyringProblem::BadRootKey(r) if r.contains("version 2"))
        );
    }

    #[test]
    fn toml_errors_on_key_lines_do_not_quote_them() {
        let text = doc("active", "decrypt-only").replace(&format!("\"{KEY_B}\""), &KEY_B[..20]);
        let p = problem(&text).to_string();
        assert!(p.contains("details withheld"), "{p}");
        assert!(!p.contains(&KEY_B[..8]), "{p}");
    }

    #[test]
    fn rotate_and_retire() {
        let mut file = KeyringFile::from_toml_str(&doc("decrypt-only", "active")).unwrap();
        assert!(
            matches!(file.retire(2), Err(Error::KeyringOperation(m)) if m.contains("rotate first"))
        );
        assert_eq!(file.rotate().unwrap(), 3);
        file.retire(1).unwrap();
        assert!(matches!(file.retire(1), Err(Error::KeyringOperation(m)) if m.contains("already")));
        assert!(matches!(file.retire(9), Err(Error::KeyringOperation(m)) if m.contains("not in")));
        let states: Vec<_> = file.versions().map(|v| (v.number(), v.state())).collect();
        assert_eq!(
            states,
            [
                (1, KeyState::Retired),
                (2, KeyState::DecryptOnly),
                (3, KeyState::Active)
            ]
        );
        let text = file.to_toml();
        assert!(!text.contains(KEY_A), "retired key material must be erased");
        assert!(text.contains(KEY_B));
        // Retired versions keep their number reserved.
        let mut again = KeyringFile::from_toml_str(&text).unwrap();
        again.retire(2).unwrap();
        assert_eq!(again.rotate().unwrap(), 4);
    }
}
