//! `pgseal-keys`: turns a root secret into everything pgseal needs to seal a value and open it
//! again — keyring, HKDF derivation, AES-256-GCM-SIV envelopes, FF1 tokens and pseudonyms.
//!
//! It knows nothing of SQL or of the PostgreSQL wire protocol.
//!
//! # Using it
//!
//! ```
//! use pgseal_keys::{Domain, Keyring, KeyringFile};
//!
//! # fn main() -> pgseal_keys::Result<()> {
//! // In production: Keyring::load("/etc/pgseal/keyring.toml")? or Keyring::from_env()?
//! let keyring = KeyringFile::generate()?.into_keyring();
//! let nir_column = keyring.sealer(&Domain::column("public", "patients", "nir")?);
//!
//! // Deterministic envelopes support equality lookups; randomized ones do not.
//! let sealed = nir_column.seal_deterministic(b"255081416802538")?;
//! let text = sealed.to_armored(); // "pgs1:…", for a text column
//! assert!(pgseal_keys::is_sealed_text(&text));
//! assert_eq!(&*nir_column.open_armored(&text)?, b"255081416802538");
//!
//! // A format-preserving token: still a valid NIR, control key included.
//! let token = nir_column.tokenize_nir("255081416802538")?;
//! assert!(pgseal_keys::validate_nir(&token).is_ok());
//! assert_eq!(nir_column.detokenize_nir(&token)?, "255081416802538");
//!
//! // Pseudonyms: irreversible, stable within a domain.
//! let patient = keyring.sealer(&Domain::shared("patient")?);
//! assert_eq!(patient.pseudonym(b"42"), patient.pseudonym(b"42"));
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! - **Keyring** ([`keyring`], [`keyfile`]): root key versions of 256 bits, one active, older ones
//!   decrypt-only, retired ones erased. Key material lives in zeroize-on-drop types whose
//!   `Debug` says `[redacted]`; nothing in this crate formats a key or a plaintext into an error.
//! - **Derivation** (see [below](#derivation)): HKDF-SHA256 with
//!   `info = "pgseal/v1/" ‖ purpose ‖ "/" ‖ domain label`, purposes `randomized`,
//!   `deterministic`, `deterministic-nonce`, `tokenization`, `pseudonym`, `domain-check`,
//!   `search`; and
//!   one domain-less key per root version for the audit chain ([`audit`], `audit-chain`). Every
//!   key of a domain is derived once, when [`Keyring::sealer`] first hands out its [`Sealer`];
//!   the keyring caches sealers behind a `RwLock<HashMap>`, and a sealer itself needs no lock.
//! - **Envelopes** ([`envelope`], [`armor`]): `"pgs" ‖ 0x01 ‖ mode ‖ key version (u32 BE) ‖ key
//!   check (2) ‖ domain check (2) ‖ nonce (12) ‖ AES-256-GCM-SIV ciphertext ‖ tag (16)`; 41
//!   bytes of overhead. The associated data is the header and SHA-256 of the domain label. The
//!   deterministic nonce is HMAC-SHA256 of the plaintext under a separate derived key, truncated
//!   to 96 bits — the SIV construction; AES-GCM-SIV is in addition nonce-misuse resistant, so
//!   even a repeated random nonce reveals only equality. Text columns store `pgs1:` + URL-safe
//!   base64 without padding.
//! - **Tokens** ([`ff1`], [`nir`]): FF1 from the `fpe` crate over digits, upper-case or mixed-case
//!   alphanumerics; NIR tokens by rank, FF1, cycle walking and unrank.
//! - **Pseudonyms** ([`pseudonym`]): HMAC-SHA256 truncated to 128 bits, 22 characters.
//! - **Search tokens** ([`search`]): HMAC-SHA256 of a kind tag and an item (prefix, trigram,
//!   whole value, year, month), truncated to a policy's `bits` (a few base64url characters), so
//!   that the database can narrow a search over sealed values without learning them.
//!
//! # Derivation
//!
//! See the `derive` module: `PRK = HKDF-Extract("pgseal/v1/hkdf-salt", root)`, then one
//! `HKDF-Expand(PRK, info, 32)` per (purpose, domain). Domain labels are `column:schema.table.column`
//! or `shared:name` ([`Domain`]).
//!
//! # What it does not protect against
//!
//! Whoever holds the keyring can open everything. Deterministic envelopes, tokens and pseudonyms
//! reveal equality within a domain (that is what makes lookups and joins work), and so are open
//! to frequency analysis. The 16-bit key and domain checks in envelope headers reveal which
//! values share a key version and a domain, which their column already tells.

#![forbid(unsafe_code)]

pub mod armor;
pub mod audit;
mod derive;
mod domain;
pub mod envelope;
mod error;
pub mod ff1;
pub mod hsm;
pub mod keyfile;
pub mod keyring;
pub mod nir;
pub mod pseudonym;
mod sealer;
pub mod search;
mod secret;
mod siv;

pub use armor::is_sealed_text;
pub use audit::{AUDIT_MAC_LEN, AuditKey};
pub use domain::Domain;
pub use envelope::{Mode, is_sealed};
pub use error::{Error, KeyringProblem, NirError, Result};
pub use ff1::Alphabet;
pub use hsm::{HSM_PIN_ENV, HsmAccess, HsmBinding, HsmError, HsmOrigin};
pub use keyfile::KeyringFile;
pub use keyring::{KeyState, Keyring, ROOT_KEY_ENV, VersionInfo};
pub use nir::validate_nir;
pub use sealer::{Sealed, Sealer};
pub use search::{SearchKey, TokenKind};
pub use secret::{KEY_LEN, RootKey};
