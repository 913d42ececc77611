//! Root keys wrapped by a key-encryption key (KEK) held in an HSM, reached through PKCS#11.
//!
//! A wrapped keyring file (see [`crate::keyfile`]) holds, for each readable version, its root
//! key encrypted under an AES-256 KEK that lives on a PKCS#11 token and cannot leave it
//! (`CKA_EXTRACTABLE` false, `CKA_SENSITIVE` true). The mechanism is AES-GCM (`CKM_AES_GCM`)
//! run by the token, over the 32-byte root key, with a random 96-bit IV and a 128-bit tag; the
//! associated data binds each wrapped value to its keyring and version number:
//!
//! ```text
//! AAD     = "pgseal/v1/keyring-wrap" ‖ keyring id (16 bytes) ‖ version (u32 big-endian)
//! wrapped = base64(IV (12) ‖ ciphertext (32) ‖ tag (16))
//! ```
//!
//! so a value moved to another version or keyring, or altered, fails authentication
//! ([`HsmError::Tampered`]). AES key wrap with padding (RFC 5649) was the alternative; the token
//! would then have had to hold each root key as an extractable object while it is wrapped and
//! unwrapped, and the wrap would not bind the version number.
//!
//! The KEK is used once when a keyring is loaded: every version is unwrapped into zeroized
//! memory, the session is closed and the module finalized (once no other [`Kek`] of this
//! process uses it: a rewrap holds the old and the new KEK at once, possibly on one token).
//! Rotating the KEK itself ([`crate::KeyringFile::rewrap`]) wraps every version again under
//! another key, keeping the keyring id. Nothing here falls back to anything:
//! a module that does not load, a token or key that is not there, a wrong PIN, a KEK whose
//! attributes would let it leave the token, a mechanism the token refuses and a value that fails
//! authentication are each an error that names the cause. Errors never carry a PIN or a key.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::secret::{KEY_LEN, RootKey};

/// The environment variable holding the token's user PIN.
pub const HSM_PIN_ENV: &str = "PGSEAL_HSM_PIN";
/// The wrapping mechanism's name in keyring files.
pub const MECHANISM_AES_GCM: &str = "aes-256-gcm";
/// Length of a keyring id, in bytes.
pub const KEYRING_ID_LEN: usize = 16;

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = IV_LEN + KEY_LEN + TAG_LEN;
const AAD_LABEL: &[u8] = b"pgseal/v1/keyring-wrap";
/// Longest PIN accepted from a file or the environment.
const MAX_PIN_LEN: usize = 256;

/// Why the HSM could not wrap or unwrap a keyring. Never carries a PIN or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded or initialized.
    #[error("PKCS#11 module {}: cannot be loaded: {reason}", module.display())]
    Module {
        /// The module's path.
        module: PathBuf,
        /// What the loader or the module said.
        reason: String,
    },
    /// No slot holds a token with this label.
    #[error("no token labelled {label:?} in PKCS#11 module {} (tokens present: {present})",
            module.display())]
    TokenNotFound {
        /// The label looked for.
        label: String,
        /// The module searched.
        module: PathBuf,
        /// The labels that were found, comma-separated, or `none`.
        present: String,
    },
    /// No PIN was given.
    #[error("token {token:?} needs its user PIN: set {HSM_PIN_ENV} or give --hsm-pin-file FILE")]
    PinMissing {
        /// The token.
        token: String,
    },
    /// The PIN file could not be used.
    #[error("HSM PIN file {}: {reason}", path.display())]
    PinFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The token refused the PIN.
    #[error("token {token:?} refused the user PIN: {reason}")]
    Login {
        /// The token.
        token: String,
        /// Incorrect, locked, expired…
        reason: String,
    },
    /// No secret key with this label on the token.
    #[error(
        "no key labelled {key:?} on token {token:?}; create it with `pgseal keys wrap … \
             --create-key` or with the HSM's own tools (AES-256, non-extractable, sensitive)"
    )]
    KeyNotFound {
        /// The token.
        token: String,
        /// The key label.
        key: String,
    },
    /// Several secret keys share the label.
    #[error("{count} keys labelled {key:?} on token {token:?}; the KEK's label must be unique")]
    KeyAmbiguous {
        /// The token.
        token: String,
        /// The key label.
        key: String,
        /// How many.
        count: usize,
    },
    /// `--create-key` was asked for but the key exists.
    #[error(
        "a key labelled {key:?} already exists on token {token:?}; drop --create-key to use it"
    )]
    KeyExists {
        /// The token.
        token: String,
        /// The key label.
        key: String,
    },
    /// The key is not fit to be a KEK (not AES-256, extractable, not sensitive, or not allowed
    /// to encrypt or decrypt).
    #[error("key {key:?} on token {token:?} cannot serve as the keyring's KEK: {reason}")]
    KeyUnfit {
        /// The token.
        token: String,
        /// The key label.
        key: String,
        /// Which attribute is wrong.
        reason: String,
    },
    /// The token does not offer, or refused, the wrapping mechanism.
    #[error("token {token:?} refuses {mechanism} with key {key:?}: {reason}")]
    Mechanism {
        /// The token.
        token: String,
        /// The key label.
        key: String,
        /// The mechanism.
        mechanism: &'static str,
        /// What the token said.
        reason: String,
    },
    /// A wrapped value is malformed or failed authentication.
    #[error(
        "wrapped key of version {version} failed authentication: it was altered, moved from \
             another version or keyring, or wrapped under another KEK ({detail})"
    )]
    Tampered {
        /// The key version.
        version: u32,
        /// Malformed base64, wrong length, or the token's verdict.
        detail: String,
    },
    /// Any other PKCS#11 failure.
    #[error("token {token:?}: {operation} failed: {reason}")]
    Pkcs11 {
        /// The token (or the module path when no token was chosen yet).
        token: String,
        /// The PKCS#11 function.
        operation: &'static str,
        /// What the module said.
        reason: String,
    },
}

/// Where the KEK is: recorded in a wrapped keyring file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmBinding {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The KEK's label (`CKA_LABEL`).
    pub key: String,
}

/// What a keyring loaded from a wrapped file was unwrapped with: the module actually loaded,
/// the token and key labels, and the keyring's id. Labels and ids only, never key material or
/// PIN: what the health endpoint and the audit trail may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmOrigin {
    /// The module, token and KEK labels (the module is the one loaded, after any override).
    pub binding: HsmBinding,
    /// The keyring's id, bound into every wrapped value.
    pub keyring_id: [u8; KEYRING_ID_LEN],
}

impl HsmOrigin {
    /// The keyring id in lower-case hexadecimal (as in the keyring file).
    pub fn keyring_id_hex(&self) -> String {
        self.keyring_id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How to reach the HSM at load time: an optional module path overriding the file's, and the
/// PIN's source (a file, else [`HSM_PIN_ENV`]).
#[derive(Debug, Clone, Default)]
pub struct HsmAccess {
    /// Replaces the module path the keyring file names (same token and key).
    pub module: Option<PathBuf>,
    /// A file holding the PIN (one line; must be private to its owner).
    pub pin_file: Option<PathBuf>,
}

/// A token user PIN, zeroized on drop, never printed.
pub struct Pin(Zeroizing<String>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin([redacted])")
    }
}

impl Pin {
    /// A PIN from its text.
    pub fn new(text: impl Into<String>) -> Pin {
        Pin(Zeroizing::new(text.into()))
    }
}

impl HsmAccess {
    /// The module to load for `binding`: the override if any, else the file's.
    pub fn module_for<'a>(&'a self, binding: &'a HsmBinding) -> &'a Path {
        self.module.as_deref().unwrap_or(&binding.module)
    }

    /// The PIN: from the file if one was given, else from [`HSM_PIN_ENV`].
    pub fn pin(&self, token: &str) -> Result<Pin, HsmError> {
        let pin = match &self.pin_file {
            Some(path) => read_pin_file(path)?,
            None => match std::env::var(HSM_PIN_ENV) {
                Ok(value) => Zeroizing::new(value),
                Err(_) => {
                    return Err(HsmError::PinMissing {
                        token: token.to_string(),
                    });
                }
            },
        };
        let text = pin.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Err(match &self.pin_file {
                Some(path) => HsmError::PinFile {
                    path: path.clone(),
                    reason: "is empty".into(),
                },
                None => HsmError::PinMissing {
                    token: token.to_string(),
                },
            });
        }
        Ok(Pin::new(text))
    }
}

fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, HsmError> {
    let bad = |reason: String| HsmError::PinFile {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !metadata.is_file() {
        return Err(bad("is not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "is accessible by group or others (mode {:04o}); run `chmod 600 {}`",
                mode & 0o7777,
                path.display()
            )));
        }
    }
    if metadata.len() > MAX_PIN_LEN as u64 {
        return Err(bad("is too large to hold a PIN".into()));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| bad(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("is not UTF-8 text".into()))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// An open, logged-in session holding the KEK. Closing it (drop) logs out and finalizes the
/// module.
pub struct Kek {
    session: Option<Session>,
    pkcs11: Option<Pkcs11>,
    key: Option<ObjectHandle>,
    /// The module loaded (canonical path: the key of [`MODULES`]).
    module: PathBuf,
    token: String,
    label: String,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("token", &self.token)
            .field("key", &self.label)
            .finish()
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        // Closing the session is enough: the token logs the application out when its last
        // session closes. An explicit C_Logout would log out every other session this process
        // has on the token (another Kek's, during a rewrap).
        drop(self.session.take());
        if let Some(pkcs11) = self.pkcs11.take()
            && release_module(&self.module)
        {
            let _ = pkcs11.finalize();
        }
    }
}

/// Modules this process has initialized, with the number of open [`Kek`]s on each: C_Finalize
/// ends every session of the module, so it waits for the last one.
static MODULES: std::sync::Mutex<Vec<(PathBuf, usize)>> = std::sync::Mutex::new(Vec::new());

fn hold_module(module: &Path) {
    let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
    match modules.iter_mut().find(|(m, _)| m == module) {
        Some((_, count)) => *count += 1,
        None => modules.push((module.to_path_buf(), 1)),
    }
}

/// Forgets one holder of `module`; true when it was the last (the module may be finalized).
fn release_module(module: &Path) -> bool {
    let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(at) = modules.iter().position(|(m, _)| m == module) else {
        return true;
    };
    modules[at].1 -= 1;
    if modules[at].1 == 0 {
        modules.swap_remove(at);
        true
    } else {
        false
    }
}

fn reason(err: &CkError) -> String {
    match err {
        CkError::Pkcs11(rv, _) => rv_name(*rv),
        other => other.to_string(),
    }
}

/// The CKR_ name of a return value (the crate's `Display` is a paragraph of the standard).
fn rv_name(rv: RvError) -> String {
    let name = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl Kek {
    /// Opens the module, finds the token, logs in, and finds the KEK by label (it must exist).
    pub fn open(binding: &HsmBinding, access: &HsmAccess) -> Result<Kek, HsmError> {
        Self::connect(binding, access, false)
    }

    /// Like [`Kek::open`], but generates the KEK on the token first (AES-256, non-extractable,
    /// sensitive, encrypt and decrypt only); refuses if a key with that label exists.
    pub fn create(binding: &HsmBinding, access: &HsmAccess) -> Result<Kek, HsmError> {
        Self::connect(binding, access, true)
    }

    fn connect(binding: &HsmBinding, access: &HsmAccess, create: bool) -> Result<Kek, HsmError> {
        let module = access.module_for(binding).to_path_buf();
        let token = binding.token.clone();
        let label = binding.key.clone();
        // The PIN first: a missing PIN is reported without touching the module.
        let pin = access.pin(&token)?;
        let module_err = |reason: String| HsmError::Module {
            module: module.clone(),
            reason,
        };
        if !module.is_file() {
            return Err(module_err("no such file".into()));
        }
        let pkcs11 = Pkcs11::new(&module).map_err(|e| module_err(e.to_string()))?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(module_err(format!("C_Initialize: {}", reason(&e)))),
        }
        let canonical = std::fs::canonicalize(&module).unwrap_or_else(|_| module.clone());
        hold_module(&canonical);
        let mut kek = Kek {
            session: None,
            pkcs11: Some(pkcs11),
            key: None,
            module: canonical,
            token: token.clone(),
            label: label.clone(),
        };
        let pkcs11 = kek.pkcs11.as_ref().expect("just set");
        let p11 = |operation: &'static str, e: CkError| HsmError::Pkcs11 {
            token: token.clone(),
            operation,
            reason: reason(&e),
        };
        let slots = pkcs11
            .get_slots_with_initialized_token()
            .map_err(|e| module_err(format!("C_GetSlotList: {}", reason(&e))))?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in slots {
            let info = pkcs11
                .get_token_info(slot)
                .map_err(|e| module_err(format!("C_GetTokenInfo: {}", reason(&e))))?;
            let name = info.label().trim_end().to_string();
            if name == token && found.is_none() {
                found = Some(slot);
            }
            present.push(format!("{name:?}"));
        }
        let Some(slot) = found else {
            return Err(HsmError::TokenNotFound {
                label: token,
                module,
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            });
        };
        let mechanisms = pkcs11
            .get_mechanism_list(slot)
            .map_err(|e| p11("C_GetMechanismList", e))?;
        if !mechanisms.contains(&MechanismType::AES_GCM) {
            return Err(HsmError::Mechanism {
                token,
                key: label,
                mechanism: "CKM_AES_GCM",
                reason: "not in the token's mechanism list".into(),
            });
        }
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(|e| p11("C_OpenSession", e))?;
        let auth = AuthPin::from(pin.0.as_str());
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(rv, _)) => {
                return Err(HsmError::Login {
                    token,
                    reason: match rv {
                        RvError::PinIncorrect => "wrong PIN (CKR_PIN_INCORRECT)".into(),
                        RvError::PinLocked => "the PIN is locked (CKR_PIN_LOCKED)".into(),
                        other => rv_name(other),
                    },
                });
            }
            Err(e) => return Err(p11("C_Login", e)),
        }
        drop(auth);
        kek.session = Some(session);
        let session = kek.session.as_ref().expect("just set");
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let existing = session
            .find_objects(&template)
            .map_err(|e| p11("C_FindObjects", e))?;
        let key = match (existing.len(), create) {
            (0, true) => session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen((KEY_LEN as u64).into()),
                        Attribute::Label(label.as_bytes().to_vec()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Modifiable(false),
                    ],
                )
                .map_err(|e| p11("C_GenerateKey", e))?,
            (0, false) => return Err(HsmError::KeyNotFound { token, key: label }),
            (_, true) => return Err(HsmError::KeyExists { token, key: label }),
            (1, false) => existing[0],
            (count, false) => {
                return Err(HsmError::KeyAmbiguous {
                    token,
                    key: label,
                    count,
                });
            }
        };
        kek.key = Some(key);
        kek.check_fit()?;
        Ok(kek)
    }

    /// Refuses a KEK that is not AES-256, could leave the token, or may not encrypt and decrypt.
    fn check_fit(&self) -> Result<(), HsmError> {
        let session = self.session.as_ref().expect("logged in");
        let attributes = session
            .get_attributes(
                self.handle(),
                &[
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                ],
            )
            .map_err(|e| HsmError::Pkcs11 {
                token: self.token.clone(),
                operation: "C_GetAttributeValue",
                reason: reason(&e),
            })?;
        let unfit = |reason: &str| HsmError::KeyUnfit {
            token: self.token.clone(),
            key: self.label.clone(),
            reason: reason.to_string(),
        };
        let (mut aes, mut len, mut sensitive, mut extractable, mut encrypt, mut decrypt) =
            (false, 0u64, false, true, false, false);
        for attribute in attributes {
            match attribute {
                Attribute::KeyType(t) => aes = t == KeyType::AES,
                Attribute::ValueLen(l) => len = l.into(),
                Attribute::Sensitive(b) => sensitive = b,
                Attribute::Extractable(b) => extractable = b,
                Attribute::Encrypt(b) => encrypt = b,
                Attribute::Decrypt(b) => decrypt = b,
                _ => {}
            }
        }
        if !aes {
            return Err(unfit("it is not an AES key"));
        }
        if len != KEY_LEN as u64 {
            return Err(unfit(&format!("it is {} bits, not 256", len * 8)));
        }
        if extractable {
            return Err(unfit(
                "CKA_EXTRACTABLE is true: the key could leave the token",
            ));
        }
        if !sensitive {
            return Err(unfit(
                "CKA_SENSITIVE is false: the key could be read in clear",
            ));
        }
        if !encrypt || !decrypt {
            return Err(unfit(
                "it may not both encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)",
            ));
        }
        Ok(())
    }

    fn handle(&self) -> ObjectHandle {
        self.key.expect("found or generated in connect")
    }

    /// The token's label.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn mechanism_err(&self, e: &CkError) -> HsmError {
        let reason = match e {
            CkError::Pkcs11(
                rv @ (RvError::MechanismInvalid | RvError::KeyFunctionNotPermitted),
                _,
            ) => format!(
                "{} (the key's attributes, such as CKA_ALLOWED_MECHANISMS, do not allow \
                 CKM_AES_GCM: give the KEK a key that may use it)",
                rv_name(*rv)
            ),
            other => reason(other),
        };
        HsmError::Mechanism {
            token: self.token.clone(),
            key: self.label.clone(),
            mechanism: "CKM_AES_GCM",
            reason,
        }
    }

    /// The KEK's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Wraps one root key version: the returned text goes into the keyring file.
    pub fn wrap(
        &self,
        keyring_id: &[u8; KEYRING_ID_LEN],
        version: u32,
        key: &RootKey,
    ) -> Result<String, HsmError> {
        let session = self.session.as_ref().expect("logged in");
        let mut iv = [0u8; IV_LEN];
        session
            .generate_random_slice(&mut iv)
            .map_err(|e| HsmError::Pkcs11 {
                token: self.token.clone(),
                operation: "C_GenerateRandom",
                reason: reason(&e),
            })?;
        let aad = aad(keyring_id, version);
        let mut iv_param = iv;
        let params =
            GcmParams::new(&mut iv_param, &aad, ((TAG_LEN * 8) as u64).into()).map_err(|e| {
                HsmError::Mechanism {
                    token: self.token.clone(),
                    key: self.label.clone(),
                    mechanism: "CKM_AES_GCM",
                    reason: e.to_string(),
                }
            })?;
        let sealed = session
            .encrypt(&Mechanism::AesGcm(params), self.handle(), key.as_bytes())
            .map_err(|e| self.mechanism_err(&e))?;
        if sealed.len() != KEY_LEN + TAG_LEN {
            return Err(HsmError::Mechanism {
                token: self.token.clone(),
                key: self.label.clone(),
                mechanism: "CKM_AES_GCM",
                reason: format!(
                    "returned {} bytes for a 32-byte key, expected {}",
                    sealed.len(),
                    KEY_LEN + TAG_LEN
                ),
            });
        }
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Unwraps one root key version, checking it belongs to this keyring and version.
    pub fn unwrap(
        &self,
        keyring_id: &[u8; KEYRING_ID_LEN],
        version: u32,
        wrapped: &str,
    ) -> Result<RootKey, HsmError> {
        let tampered = |detail: String| HsmError::Tampered { version, detail };
        let bytes = STANDARD
            .decode(wrapped.trim())
            .map_err(|_| tampered("not valid base64".into()))?;
        if bytes.len() != WRAPPED_LEN {
            return Err(tampered(format!(
                "{} bytes, a wrapped key is {WRAPPED_LEN}",
                bytes.len()
            )));
        }
        let session = self.session.as_ref().expect("logged in");
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&bytes[..IV_LEN]);
        let aad = aad(keyring_id, version);
        let params = GcmParams::new(&mut iv, &aad, ((TAG_LEN * 8) as u64).into())
            .map_err(|e| self.mechanism_err(&e))?;
        let plain = session
            .decrypt(&Mechanism::AesGcm(params), self.handle(), &bytes[IV_LEN..])
            .map_err(|e| match e {
                CkError::Pkcs11(
                    rv @ (RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError),
                    _,
                ) => tampered(rv_name(rv)),
                other => self.mechanism_err(&other),
            })?;
        let plain = Zeroizing::new(plain);
        if plain.len() != KEY_LEN {
            return Err(tampered(format!("unwraps to {} bytes", plain.len())));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&plain);
        Ok(RootKey::from_bytes(*key))
    }
}

fn aad(keyring_id: &[u8; KEYRING_ID_LEN], version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + KEYRING_ID_LEN + 4);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(keyring_id);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_value_names() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(RvError::EncryptedDataInvalid),
            "CKR_ENCRYPTED_DATA_INVALID"
        );
    }

    #[test]
    fn absent_module_and_pin_are_named() {
        let binding = HsmBinding {
            module: "/nonexistent/libpkcs11.so".into(),
            token: "t".into(),
            key: "k".into(),
        };
        let access = HsmAccess::default();
        // No PIN source at all is reported first (the variable is not set in tests).
        if std::env::var_os(HSM_PIN_ENV).is_none() {
            let err = Kek::open(&binding, &access).unwrap_err();
            assert!(matches!(err, HsmError::PinMissing { .. }), "{err}");
            assert!(err.to_string().contains(HSM_PIN_ENV), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "1234\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
            let access = HsmAccess {
                module: None,
                pin_file: Some(pin.clone()),
            };
            let err = Kek::open(&binding, &access).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
            std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let access = HsmAccess {
            module: None,
            pin_file: Some(pin),
        };
        assert_eq!(access.pin("t").unwrap().0.as_str(), "1234");
        let err = Kek::open(&binding, &access).unwrap_err();
        assert!(
            matches!(&err, HsmError::Module { reason, .. } if reason == "no such file"),
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/libpkcs11.so"));
    }
}
