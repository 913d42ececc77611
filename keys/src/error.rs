//! The one error type of the crate.
//!
//! Every variant says what was wrong without repeating the input: a value that failed to open or
//! tokenize may be patient data, and error messages end up in logs. Sealed values that cannot be
//! opened get one variant per cause the crate can tell apart honestly (see [`Error::Tampered`]).

use std::fmt;
use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `pgseal-keys`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A keyring file could not be used; the problem says why and, where there is one, the fix.
    #[error("keyring {}: {problem}", path.display())]
    KeyringFile {
        /// The keyring file.
        path: PathBuf,
        /// What is wrong with it.
        problem: KeyringProblem,
    },

    /// A keyring given as text or through the environment could not be used.
    #[error("keyring from {source_name}: {problem}")]
    Keyring {
        /// Where the keyring came from (`PGSEAL_ROOT_KEY`, `TOML text`, …).
        source_name: &'static str,
        /// What is wrong with it.
        problem: KeyringProblem,
    },

    /// A keyring operation was asked for something the keyring's rules forbid.
    #[error("{0}")]
    KeyringOperation(String),

    /// A domain name or column reference is not usable as a key-derivation domain.
    #[error("invalid domain: {0}")]
    InvalidDomain(&'static str),

    /// The value is not a pgseal envelope at all (wrong magic, bad armor, unknown mode).
    #[error("not a well-formed sealed value: {0}")]
    Malformed(&'static str),

    /// The value starts like an envelope but is shorter than the smallest possible one.
    #[error("sealed value is truncated: {len} bytes, an envelope has at least {min}")]
    Truncated {
        /// The length that was given.
        len: usize,
        /// The smallest possible envelope length.
        min: usize,
    },

    /// The envelope was written by a newer format this version of pgseal does not read.
    #[error("sealed value uses envelope format {0}, which this version of pgseal cannot read")]
    UnsupportedFormat(u8),

    /// The envelope names a key version the keyring has never had.
    #[error("sealed value names key version {0}, which is not in the keyring")]
    UnknownKeyVersion(u32),

    /// The envelope names a key version that was retired: its key material is gone.
    #[error("sealed value names key version {0}, which is retired; it can no longer be opened")]
    RetiredKeyVersion(u32),

    /// The envelope's key check does not match the keyring's key of that version: it was sealed
    /// with another keyring (or the header was altered).
    #[error("sealed value was sealed under a different root key for version {0} (another keyring)")]
    WrongKey(u32),

    /// The envelope's domain check does not match the domain it is opened in: the value was
    /// moved from another column or domain (or the header was altered).
    #[error("sealed value belongs to another domain than {0}")]
    WrongDomain(String),

    /// Authentication failed: the value was altered or truncated after its header, or — with
    /// probability 2⁻¹⁶ per check — comes from another keyring or domain whose short header
    /// checks happened to collide. AEAD alone cannot tell these apart; the header checks above
    /// catch the last two first in all but those rare cases.
    #[error("sealed value failed authentication: it was altered or truncated")]
    Tampered,

    /// The input is not a well-formed NIR; nothing was tokenized.
    #[error("not a well-formed NIR: {0}")]
    InvalidNir(NirError),

    /// The input cannot be tokenized with the requested alphabet.
    #[error("cannot tokenize: {0}")]
    InvalidTokenInput(String),

    /// A key version was requested that cannot serve: unknown, or retired.
    #[error("key version {version} cannot be used: {reason}")]
    UnusableKeyVersion {
        /// The version asked for.
        version: u32,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// The HSM holding a keyring's key-encryption key could not be used.
    #[error("HSM: {0}")]
    Hsm(Box<crate::hsm::HsmError>),

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// Why a keyring was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringProblem {
    /// The file could not be read or written.
    Io(String),
    /// The environment variable is not set.
    NotSet,
    /// The file already exists and the operation refuses to overwrite it.
    AlreadyExists,
    /// The file can be read (or written) by its group or by others.
    InsecurePermissions {
        /// The file's permission bits.
        mode: u32,
        /// The file's path, to spell out the fix.
        path: PathBuf,
    },
    /// The file is not a regular file.
    NotAFile,
    /// The file is too large to be a keyring.
    TooLarge(u64),
    /// The text is not a valid keyring document; the string says where and what.
    Malformed(String),
    /// No version is active.
    NoActiveVersion,
    /// Several versions are active.
    SeveralActiveVersions(Vec<u32>),
    /// A root key is not base64 of exactly 32 bytes.
    BadRootKey(String),
    /// The keyring is wrapped and its HSM could not unwrap it (boxed: errors stay small).
    Hsm(Box<crate::hsm::HsmError>),
}

impl fmt::Display for KeyringProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(reason) => write!(f, "{reason}"),
            Self::NotSet => write!(f, "is not set"),
            Self::AlreadyExists => write!(f, "already exists; refusing to overwrite a keyring"),
            Self::InsecurePermissions { mode, path } => write!(
                f,
                "is accessible by group or others (mode {:04o}); a keyring must be private to its \
                 owner: run `chmod 600 {}`",
                mode & 0o7777,
                path.display()
            ),
            Self::NotAFile => write!(f, "is not a regular file"),
            Self::TooLarge(len) => write!(f, "is {len} bytes, too large to be a keyring"),
            Self::Malformed(reason) => write!(f, "malformed: {reason}"),
            Self::NoActiveVersion => write!(
                f,
                "no active key version; exactly one version must have state = \"active\""
            ),
            Self::SeveralActiveVersions(versions) => write!(
                f,
                "versions {versions:?} are all active; exactly one version must have \
                 state = \"active\""
            ),
            Self::BadRootKey(reason) => write!(f, "bad root key: {reason}"),
            Self::Hsm(err) => write!(f, "wrapped by an HSM, which cannot unwrap it: {err}"),
        }
    }
}

/// Why a string is not a well-formed NIR. The variants never carry the input itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NirError {
    /// Not 15 characters long.
    Length(usize),
    /// A character that cannot appear at that position (1-based).
    Character(usize),
    /// The first digit is not 1, 2, 3, 4, 7 or 8.
    Sex,
    /// The month is not 01–12, 20, 30–42 or 50–99.
    Month,
    /// The department of birth is not one of the accepted codes.
    Department,
    /// The commune (or country) code is out of range for the department.
    Commune,
    /// The order number is 000.
    Order,
    /// The control key is not 97 − (body mod 97).
    ControlKey,
}

impl fmt::Display for NirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(len) => write!(f, "{len} characters, a NIR has 15 (no spaces)"),
            Self::Character(pos) => write!(f, "unexpected character at position {pos}"),
            Self::Sex => write!(f, "first digit must be 1, 2, 3, 4, 7 or 8"),
            Self::Month => write!(f, "month must be 01-12, 20, 30-42 or 50-99"),
            Self::Department => write!(
                f,
                "department of birth must be 01-96, 2A, 2B, 99, or 970-989 (upper case)"
            ),
            Self::Commune => write!(
                f,
                "commune code must be 001-990 (or 01-90 after a 97x/98x department)"
            ),
            Self::Order => write!(f, "order number must be 001-999"),
            Self::ControlKey => write!(f, "control key does not match 97 - (body mod 97)"),
        }
    }
}

// Not `#[from]`: that would also make the HSM error this one's source, and error chains
// (anyhow's `{:#}`) would print its message twice.
impl From<crate::hsm::HsmError> for Error {
    fn from(err: crate::hsm::HsmError) -> Self {
        Error::Hsm(Box::new(err))
    }
}

impl From<NirError> for Error {
    fn from(err: NirError) -> Self {
        Error::InvalidNir(err)
    }
}
