//! The keyring at run time: root key versions, ready to derive keys, and a cache of per-domain
//! [`Sealer`]s.
//!
//! A keyring holds root key versions numbered from 1. Exactly one is **active** (new values are
//! sealed, tokenized and pseudonymized under it); older ones are **decrypt-only** (values sealed
//! under them still open); **retired** ones have had their key material erased, and values that
//! name them are refused with [`Error::RetiredKeyVersion`]. Keyrings come from a 0600 TOML file
//! ([`Keyring::load`], written and edited through [`KeyringFile`]) or, for containers, from
//! `PGSEAL_ROOT_KEY` ([`Keyring::from_env`]).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::AuditKey;
use crate::derive::Deriver;
use crate::domain::Domain;
use crate::error::{Error, KeyringProblem, Result};
use crate::keyfile::KeyringFile;
use crate::sealer::Sealer;
use crate::secret::RootKey;

/// The environment variable [`Keyring::from_env`] reads.
pub const ROOT_KEY_ENV: &str = "PGSEAL_ROOT_KEY";

/// The state of a root key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Seals new values. Exactly one version is active.
    Active,
    /// Opens values sealed under it, seals nothing new.
    DecryptOnly,
    /// Key material erased; values that name it are refused.
    Retired,
}

impl KeyState {
    /// The state's name in keyring files and listings: `active`, `decrypt-only`, `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::DecryptOnly => "decrypt-only",
            KeyState::Retired => "retired",
        }
    }

    /// Parses a state name.
    pub fn parse(text: &str) -> Option<KeyState> {
        match text {
            "active" => Some(KeyState::Active),
            "decrypt-only" => Some(KeyState::DecryptOnly),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can be said about a root key version without its key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub(crate) number: u32,
    pub(crate) state: KeyState,
    pub(crate) created: Option<OffsetDateTime>,
    pub(crate) retired: Option<OffsetDateTime>,
}

impl VersionInfo {
    /// The version number (1, 2, …), recorded in every value sealed under it.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Active, decrypt-only or retired.
    pub fn state(&self) -> KeyState {
        self.state
    }

    /// When the version was created (unknown for a key given through the environment).
    pub fn created(&self) -> Option<OffsetDateTime> {
        self.created
    }

    /// When the version was retired, if it was.
    pub fn retired(&self) -> Option<OffsetDateTime> {
        self.retired
    }

    /// [`VersionInfo::created`] as RFC 3339 UTC text, or `-` when unknown.
    pub fn created_rfc3339(&self) -> String {
        format_time(self.created)
    }

    /// [`VersionInfo::retired`] as RFC 3339 UTC text, or `-` when not retired.
    pub fn retired_rfc3339(&self) -> String {
        format_time(self.retired)
    }
}

pub(crate) fn format_time(time: Option<OffsetDateTime>) -> String {
    time.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_string())
}

/// One readable root version, ready to derive keys.
pub(crate) struct RootVersion {
    pub(crate) number: u32,
    pub(crate) deriver: Deriver,
    pub(crate) key_check: [u8; 2],
}

/// A loaded keyring. Cheap to clone and shareable across threads; it hands out one cached
/// [`Sealer`] per domain.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    versions: Vec<VersionInfo>,
    /// Readable (active and decrypt-only) versions, newest first.
    pub(crate) readable: Vec<RootVersion>,
    pub(crate) retired: Vec<u32>,
    pub(crate) active: u32,
    /// The HSM the keyring was unwrapped with, when it came from a wrapped file.
    hsm: Option<crate::hsm::HsmOrigin>,
    sealers: RwLock<HashMap<Domain, Sealer>>,
}

impl Keyring {
    /// Loads a keyring file. Refuses, with the path and the fix, a file that its group or others
    /// can access, a malformed one, and one without exactly one active version.
    ///
    /// A keyring wrapped by an HSM is unwrapped once, here, with the PIN from
    /// [`crate::hsm::HSM_PIN_ENV`]; [`Keyring::load_with`] takes a PIN file or another module.
    pub fn load(path: impl AsRef<Path>) -> Result<Keyring> {
        Ok(KeyringFile::load(path)?.into_keyring())
    }

    /// Like [`Keyring::load`], reaching a wrapped keyring's HSM as `access` says.
    pub fn load_with(path: impl AsRef<Path>, access: &crate::hsm::HsmAccess) -> Result<Keyring> {
        Ok(KeyringFile::load_with(path, access)?.into_keyring())
    }

    /// Parses a keyring document (the file format, without the file's permission checks).
    pub fn from_toml_str(text: &str) -> Result<Keyring> {
        Ok(KeyringFile::from_toml_str(text)?.into_keyring())
    }

    /// A single-version keyring from `PGSEAL_ROOT_KEY`, for containers: base64 of 32 bytes,
    /// optionally preceded by the version number and a colon (`3:BASE64…`; version 1 if absent).
    /// Give each new root key the next number, so values sealed under older ones fail with
    /// [`Error::UnknownKeyVersion`] rather than [`Error::WrongKey`].
    pub fn from_env() -> Result<Keyring> {
        let value = std::env::var(ROOT_KEY_ENV).map_err(|err| Error::Keyring {
            source_name: ROOT_KEY_ENV,
            problem: match err {
                std::env::VarError::NotPresent => KeyringProblem::NotSet,
                std::env::VarError::NotUnicode(_) => {
                    KeyringProblem::BadRootKey("not valid base64".into())
                }
            },
        })?;
        let value = zeroize::Zeroizing::new(value);
        Self::from_root_key_str(&value)
    }

    /// Parses a value in `PGSEAL_ROOT_KEY`'s syntax (see [`Keyring::from_env`]).
    pub fn from_root_key_str(value: &str) -> Result<Keyring> {
        let bad = |reason: String| Error::Keyring {
            source_name: ROOT_KEY_ENV,
            problem: KeyringProblem::BadRootKey(reason),
        };
        let (number, key) = match value.split_once(':') {
            Some((number, key)) => {
                let number = number
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| bad("the version before ':' must be a number from 1".into()))?;
                (number, key)
            }
            None => (1, value),
        };
        let key = RootKey::from_base64(key).map_err(bad)?;
        let info = VersionInfo {
            number,
            state: KeyState::Active,
            created: None,
            retired: None,
        };
        Ok(Keyring::from_versions(vec![(info, Some(key))], None))
    }

    /// Builds the runtime keyring from validated versions (exactly one active, keys present
    /// for every non-retired version).
    pub(crate) fn from_versions(
        versions: Vec<(VersionInfo, Option<RootKey>)>,
        hsm: Option<crate::hsm::HsmOrigin>,
    ) -> Keyring {
        let mut infos = Vec::with_capacity(versions.len());
        let mut readable = Vec::new();
        let mut retired = Vec::new();
        let mut active = 0;
        for (info, key) in versions {
            match (info.state, key) {
                (KeyState::Retired, _) => retired.push(info.number),
                (state, Some(key)) => {
                    if state == KeyState::Active {
                        active = info.number;
                    }
                    let deriver = Deriver::new(&key);
                    readable.push(RootVersion {
                        number: info.number,
                        key_check: deriver.key_check(),
                        deriver,
                    });
                }
                (_, None) => unreachable!("validated: readable versions have keys"),
            }
            infos.push(info);
        }
        infos.sort_by_key(|v| v.number);
        readable.sort_by_key(|v| std::cmp::Reverse(v.number));
        debug_assert!(active != 0, "validated: one active version");
        Keyring {
            inner: Arc::new(Inner {
                versions: infos,
                readable,
                retired,
                active,
                hsm,
                sealers: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Every version, oldest first, without key material.
    pub fn versions(&self) -> &[VersionInfo] {
        &self.inner.versions
    }

    /// The number of the active version.
    pub fn active_version(&self) -> u32 {
        self.inner.active
    }

    /// For a keyring loaded from a wrapped file: the module, token and KEK labels it was
    /// unwrapped with, and its keyring id (never key material).
    pub fn hsm_origin(&self) -> Option<&crate::hsm::HsmOrigin> {
        self.inner.hsm.as_ref()
    }

    /// The audit-chain key of the active version (see [`crate::audit`]).
    pub fn audit_key(&self) -> AuditKey {
        let active = self
            .inner
            .readable
            .iter()
            .find(|v| v.number == self.inner.active)
            .expect("validated: the active version is readable");
        AuditKey::new(active.number, active.deriver.audit_key())
    }

    /// The audit-chain key of a given version, to verify an audit log written under it; fails
    /// with [`Error::UnusableKeyVersion`] when the version is retired or unknown.
    pub fn audit_key_version(&self, version: u32) -> Result<AuditKey> {
        match self.inner.readable.iter().find(|v| v.number == version) {
            Some(v) => Ok(AuditKey::new(v.number, v.deriver.audit_key())),
            None => Err(Error::UnusableKeyVersion {
                version,
                reason: if self.inner.retired.contains(&version) {
                    "it is retired"
                } else {
                    "it is not in the keyring"
                },
            }),
        }
    }

    /// The sealer for `domain`, deriving its keys on first use and caching it. The proxy may
    /// hold on to the returned handle: it is cheap to clone and needs no lock to use.
    pub fn sealer(&self, domain: &Domain) -> Sealer {
        if let Some(sealer) = self
            .inner
            .sealers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(domain)
        {
            return sealer.clone();
        }
        let sealer = Sealer::new(&self.inner, domain.clone());
        self.inner
            .sealers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(domain.clone())
            .or_insert(sealer)
            .clone()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for v in &self.inner.versions {
            list.entry(&format_args!(
                "{} {} created {}",
                v.number,
                v.state,
                v.created_rfc3339()
            ));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_key_syntax() {
        let key = RootKey::from_bytes([9; 32]).to_base64();
        let ring = Keyring::from_root_key_str(&key).unwrap();
        assert_eq!(ring.active_version(), 1);
        let ring = Keyring::from_root_key_str(&format!("4:{}", &*key)).unwrap();
        assert_eq!(ring.active_version(), 4);
        assert_eq!(ring.versions().len(), 1);
        assert_eq!(ring.versions()[0].created_rfc3339(), "-");
        for bad in ["", "0:AAAA", "x:AAAA", "AAAA", "3:%%%"] {
            let err = Keyring::from_root_key_str(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Keyring {
                        problem: KeyringProblem::BadRootKey(_),
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
        let debug = format!("{ring:?}");
        assert!(debug.contains("4 active"), "{debug}");
        assert!(!debug.contains(&key[..10]));
    }

    #[test]
    fn sealers_are_cached_per_domain() {
        let ring = Keyring::from_root_key_str(&RootKey::from_bytes([1; 32]).to_base64()).unwrap();
        let a = Domain::parse("public.t.c").unwrap();
        let b = Domain::parse("shared:x").unwrap();
        assert!(ring.sealer(&a).ptr_eq(&ring.sealer(&a)));
        assert!(!ring.sealer(&a).ptr_eq(&ring.sealer(&b)));
    }
}
