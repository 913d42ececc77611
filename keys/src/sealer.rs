//! The per-domain handle: seals, opens, tokenizes and pseudonymizes values of one domain.
//!
//! A [`Sealer`] derives all of its domain's keys, for every readable root version, once when
//! the keyring first hands it out; after that every operation is lock-free and allocation-light.
//!
//! **Which version is used.** Envelopes record their key version, so sealing always uses the
//! active version and opening accepts any readable one. Tokens, pseudonyms and search tokens
//! cannot record a version: they use the sealer's *token version*, the active one unless pinned with
//! [`Sealer::with_token_version`]. After a rotation, a tokenized or pseudonymized column keeps
//! working only if the caller pins the version it was written with (or re-tokenizes it).

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::armor;
use crate::derive::Purpose;
use crate::domain::Domain;
use crate::envelope::{self, HEADER_LEN, Mode, NONCE_LEN, OVERHEAD};
use crate::error::{Error, Result};
use crate::ff1::{Alphabet, Ff1};
use crate::keyring::Inner;
use crate::nir::NirCipher;
use crate::pseudonym::Pseudonymizer;
use crate::search::SearchKey;
use crate::siv::Siv;

/// Associated data: the 13-byte header, then SHA-256 of the domain label.
const AAD_LEN: usize = HEADER_LEN + 32;

/// Where an envelope's ciphertext starts: after the header and the nonce.
const BODY_AT: usize = HEADER_LEN + NONCE_LEN;

/// A sealed value: a binary envelope (see [`crate::envelope`] for the layout).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// The binary envelope, as stored in a `bytea` column.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The binary envelope, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The armored text form (`pgs1:…`), as stored in a `text` column.
    pub fn to_armored(&self) -> String {
        armor::encode(&self.0)
    }

    /// The root key version it was sealed under.
    pub fn key_version(&self) -> u32 {
        u32::from_be_bytes(self.0[5..9].try_into().expect("envelope header"))
    }

    /// How it was sealed.
    pub fn mode(&self) -> Mode {
        Mode::from_byte(self.0[4]).expect("envelope header")
    }
}

impl From<Sealed> for Vec<u8> {
    fn from(sealed: Sealed) -> Vec<u8> {
        sealed.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed({:?}, version {}, {} bytes)",
            self.mode(),
            self.key_version(),
            self.0.len()
        )
    }
}

/// Every key one domain needs under one root version.
struct VersionKeys {
    version: u32,
    key_check: [u8; 2],
    domain_check: [u8; 2],
    randomized: Siv,
    deterministic: Siv,
    nonce_prf: Hmac<Sha256>,
    digits: Ff1,
    upper_alnum: Ff1,
    alnum: Ff1,
    nir: NirCipher,
    pseudonym: Pseudonymizer,
    search: SearchKey,
}

impl VersionKeys {
    fn ff1(&self, alphabet: Alphabet) -> &Ff1 {
        match alphabet {
            Alphabet::Digits => &self.digits,
            Alphabet::UpperAlphanumeric => &self.upper_alnum,
            Alphabet::Alphanumeric => &self.alnum,
        }
    }
}

/// Seals and opens the values of one domain; tokenizes and pseudonymizes them. Get one from
/// [`crate::Keyring::sealer`]; clones share the same derived keys, and using one takes no lock.
///
/// Envelopes record their key version, so sealing uses the active version and opening accepts
/// any readable one. Tokens and pseudonyms cannot record a version: they use the *token
/// version*, the active one unless pinned with [`Sealer::with_token_version`]. After a rotation,
/// a tokenized or pseudonymized column keeps its meaning only if the caller pins the version it
/// was written with (or re-tokenizes the column).
#[derive(Clone)]
pub struct Sealer {
    shared: Arc<Shared>,
    token: usize,
}

struct Shared {
    domain: Domain,
    domain_digest: [u8; 32],
    /// Readable versions, newest first; index 0 is not necessarily the active one.
    versions: Vec<VersionKeys>,
    active: usize,
    retired: Vec<u32>,
}

impl Sealer {
    /// Derives every key of `domain` under every readable version of the keyring.
    pub(crate) fn new(ring: &Inner, domain: Domain) -> Sealer {
        let versions: Vec<VersionKeys> = ring
            .readable
            .iter()
            .map(|root| {
                let key = |purpose| root.deriver.key(purpose, &domain);
                let check = key(Purpose::DomainCheck);
                let tokens = key(Purpose::Tokenization);
                VersionKeys {
                    version: root.number,
                    key_check: root.key_check,
                    domain_check: [check[0], check[1]],
                    randomized: Siv::new(&key(Purpose::Randomized)),
                    deterministic: Siv::new(&key(Purpose::Deterministic)),
                    nonce_prf: Hmac::new_from_slice(key(Purpose::DeterministicNonce).as_ref())
                        .expect("HMAC takes any key length"),
                    digits: Ff1::new(&tokens, Alphabet::Digits.radix()),
                    upper_alnum: Ff1::new(&tokens, Alphabet::UpperAlphanumeric.radix()),
                    alnum: Ff1::new(&tokens, Alphabet::Alphanumeric.radix()),
                    nir: NirCipher::new(&tokens),
                    pseudonym: Pseudonymizer::new(&key(Purpose::Pseudonym)),
                    search: SearchKey::new(root.number, &key(Purpose::Search)),
                }
            })
            .collect();
        let active = versions
            .iter()
            .position(|v| v.version == ring.active)
            .expect("the active version is readable");
        Sealer {
            shared: Arc::new(Shared {
                domain_digest: Sha256::digest(domain.label().as_bytes()).into(),
                domain,
                versions,
                active,
                retired: ring.retired.clone(),
            }),
            token: active,
        }
    }

    /// The domain this sealer serves.
    pub fn domain(&self) -> &Domain {
        &self.shared.domain
    }

    /// The version new envelopes are sealed under.
    pub fn active_version(&self) -> u32 {
        self.shared.versions[self.shared.active].version
    }

    /// The version tokens and pseudonyms use (see [`Sealer`]).
    pub fn token_version(&self) -> u32 {
        self.shared.versions[self.token].version
    }

    /// The readable versions (active and decrypt-only), newest first.
    pub fn readable_versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.shared.versions.iter().map(|v| v.version)
    }

    /// A sealer that tokenizes and pseudonymizes under `version` instead of the active one, so
    /// tokens written before a rotation keep their meaning. Refuses unknown and retired versions.
    pub fn with_token_version(&self, version: u32) -> Result<Sealer> {
        let token = self
            .shared
            .versions
            .iter()
            .position(|v| v.version == version)
            .ok_or_else(|| Error::UnusableKeyVersion {
                version,
                reason: if self.shared.retired.contains(&version) {
                    "it is retired"
                } else {
                    "it is not in the keyring"
                },
            })?;
        Ok(Sealer {
            shared: Arc::clone(&self.shared),
            token,
        })
    }

    /// Whether two handles share the same derived keys (the keyring's cache hands out one).
    pub fn ptr_eq(&self, other: &Sealer) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn aad(&self, header: &[u8]) -> [u8; AAD_LEN] {
        let mut aad = [0u8; AAD_LEN];
        aad[..HEADER_LEN].copy_from_slice(header);
        aad[HEADER_LEN..].copy_from_slice(&self.shared.domain_digest);
        aad
    }

    fn seal_with(&self, keys: &VersionKeys, mode: Mode, plaintext: &[u8]) -> Result<Sealed> {
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        envelope::write_header(
            &mut out,
            mode,
            keys.version,
            keys.key_check,
            keys.domain_check,
        );
        let mut nonce = [0u8; NONCE_LEN];
        let siv = match mode {
            Mode::Randomized => {
                rand::rng().fill_bytes(&mut nonce);
                &keys.randomized
            }
            Mode::Deterministic => {
                let mut prf = keys.nonce_prf.clone();
                prf.update(plaintext);
                nonce.copy_from_slice(&prf.finalize().into_bytes()[..NONCE_LEN]);
                &keys.deterministic
            }
        };
        out.extend_from_slice(&nonce);
        let at = out.len();
        out.extend_from_slice(plaintext);
        let aad = self.aad(&out[..HEADER_LEN]);
        siv.seal_tail(&nonce, &aad, &mut out, at)?;
        Ok(Sealed(out))
    }

    /// Seals `plaintext` under the active version in `mode`.
    pub fn seal(&self, mode: Mode, plaintext: &[u8]) -> Result<Sealed> {
        self.seal_with(&self.shared.versions[self.shared.active], mode, plaintext)
    }

    /// Seals with a random nonce: the same plaintext seals differently every time.
    pub fn seal_randomized(&self, plaintext: &[u8]) -> Result<Sealed> {
        self.seal(Mode::Randomized, plaintext)
    }

    /// Seals with a nonce derived from the plaintext: equal plaintexts give equal envelopes
    /// within this domain and key version, so the column supports equality lookups.
    pub fn seal_deterministic(&self, plaintext: &[u8]) -> Result<Sealed> {
        self.seal(Mode::Deterministic, plaintext)
    }

    /// The deterministic envelope of `plaintext` under every readable version, active first:
    /// after a rotation, a lookup matches a column holding values sealed under any of them
    /// (`WHERE col IN (…)`).
    pub fn sealed_forms_all_versions(&self, plaintext: &[u8]) -> Result<Vec<Sealed>> {
        let shared = &self.shared;
        let mut forms = Vec::with_capacity(shared.versions.len());
        forms.push(self.seal_with(
            &shared.versions[shared.active],
            Mode::Deterministic,
            plaintext,
        )?);
        for (i, keys) in shared.versions.iter().enumerate() {
            if i != shared.active {
                forms.push(self.seal_with(keys, Mode::Deterministic, plaintext)?);
            }
        }
        Ok(forms)
    }

    /// Opens a binary envelope sealed in this domain under any readable version. The errors
    /// are distinct: not an envelope or unknown mode ([`Error::Malformed`]), too short
    /// ([`Error::Truncated`]), newer format ([`Error::UnsupportedFormat`]), version never in the
    /// keyring ([`Error::UnknownKeyVersion`]) or retired ([`Error::RetiredKeyVersion`]), sealed by
    /// another keyring ([`Error::WrongKey`]), moved from another domain ([`Error::WrongDomain`]),
    /// altered ([`Error::Tampered`]).
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let parsed = envelope::parse(sealed)?;
        let siv = self.siv_for(&parsed)?;
        let mut plaintext = Zeroizing::new(sealed[BODY_AT..].to_vec());
        let len = siv.open_in_place(parsed.nonce, &self.aad(parsed.header), &mut plaintext)?;
        plaintext.truncate(len);
        Ok(plaintext)
    }

    /// Opens an armored envelope (`pgs1:…`); same errors as [`Sealer::open`].
    pub fn open_armored(&self, text: &str) -> Result<Zeroizing<Vec<u8>>> {
        self.open_armored_bytes(text.as_bytes())
    }

    /// Opens an armored envelope given as bytes, as a `text` column's value arrives from the
    /// server (no UTF-8 check needed: the armor is ASCII or it is refused). Decoded and opened
    /// in one buffer: one allocation per value.
    pub fn open_armored_bytes(&self, text: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(armor::decode_bytes(text)?);
        let parsed = envelope::parse(&buf)?;
        let siv = self.siv_for(&parsed)?;
        let (aad, nonce) = (self.aad(parsed.header), *parsed.nonce);
        let len = siv.open_in_place(&nonce, &aad, &mut buf[BODY_AT..])?;
        buf.copy_within(BODY_AT..BODY_AT + len, 0);
        buf.truncate(len);
        Ok(buf)
    }

    /// The cipher that opens `parsed`, once its key version, keyring and domain are checked.
    fn siv_for(&self, parsed: &envelope::Parsed<'_>) -> Result<&Siv> {
        let shared = &self.shared;
        let Some(keys) = shared
            .versions
            .iter()
            .find(|v| v.version == parsed.key_version)
        else {
            return Err(if shared.retired.contains(&parsed.key_version) {
                Error::RetiredKeyVersion(parsed.key_version)
            } else {
                Error::UnknownKeyVersion(parsed.key_version)
            });
        };
        if !bool::from(parsed.key_check.ct_eq(&keys.key_check)) {
            return Err(Error::WrongKey(parsed.key_version));
        }
        if !bool::from(parsed.domain_check.ct_eq(&keys.domain_check)) {
            return Err(Error::WrongDomain(shared.domain.to_string()));
        }
        Ok(match parsed.mode {
            Mode::Randomized => &keys.randomized,
            Mode::Deterministic => &keys.deterministic,
        })
    }

    fn token_keys(&self) -> &VersionKeys {
        &self.shared.versions[self.token]
    }

    /// A format-preserving FF1 token of `input` over `alphabet`: same length, same alphabet.
    pub fn tokenize(&self, alphabet: Alphabet, input: &str) -> Result<String> {
        self.token_keys()
            .ff1(alphabet)
            .crypt_str(alphabet, input, false)
    }

    /// The value a [`Sealer::tokenize`] token came from.
    pub fn detokenize(&self, alphabet: Alphabet, token: &str) -> Result<String> {
        self.token_keys()
            .ff1(alphabet)
            .crypt_str(alphabet, token, true)
    }

    /// A token of a digit string (at least 6 digits): another digit string of the same length.
    /// Tokens may start with `0`: tokenize an integer column's zero-padded decimal form.
    pub fn tokenize_digits(&self, input: &str) -> Result<String> {
        self.tokenize(Alphabet::Digits, input)
    }

    /// Inverse of [`Sealer::tokenize_digits`].
    pub fn detokenize_digits(&self, token: &str) -> Result<String> {
        self.detokenize(Alphabet::Digits, token)
    }

    /// A token of a `0-9A-Za-z` string (at least 4 characters), in the same alphabet and length.
    pub fn tokenize_alnum(&self, input: &str) -> Result<String> {
        self.tokenize(Alphabet::Alphanumeric, input)
    }

    /// Inverse of [`Sealer::tokenize_alnum`].
    pub fn detokenize_alnum(&self, token: &str) -> Result<String> {
        self.detokenize(Alphabet::Alphanumeric, token)
    }

    /// The NIR token of a well-formed NIR: another well-formed NIR with a correct control key
    /// (see [`crate::nir`] for what is preserved). Anything else is refused with
    /// [`Error::InvalidNir`].
    pub fn tokenize_nir(&self, nir: &str) -> Result<String> {
        self.token_keys().nir.crypt(nir, false)
    }

    /// The NIR a [`Sealer::tokenize_nir`] token came from.
    pub fn detokenize_nir(&self, token: &str) -> Result<String> {
        self.token_keys().nir.crypt(token, true)
    }

    /// The pseudonym of `value` in this domain (see [`crate::pseudonym`]).
    pub fn pseudonym(&self, value: &[u8]) -> String {
        self.token_keys().pseudonym.pseudonym(value)
    }

    /// The key of this domain's search tokens (see [`crate::search`]), under the token version:
    /// like tokens and pseudonyms, search tokens record no key version.
    ///
    /// It never fails with an in-memory keyring (the key is derived with the others when the
    /// sealer is made); the `Result` leaves room for keyrings whose keys live elsewhere.
    pub fn search_key(&self) -> Result<SearchKey> {
        Ok(self.token_keys().search.clone())
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("domain", &self.shared.domain)
            .field("active_version", &self.active_version())
            .field("token_version", &self.token_version())
            .field("keys", &"[redacted]")
            .finish()
    }
}
