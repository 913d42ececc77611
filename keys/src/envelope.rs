//! The binary envelope: how a sealed value is laid out, and how to tell one from plaintext.
//!
//! ```text
//! offset  size  field
//!      0     3  magic "pgs"
//!      3     1  format version, 0x01
//!      4     1  mode: 0x01 randomized, 0x02 deterministic
//!      5     4  root key version, u32 big-endian
//!      9     2  key check: 16-bit fingerprint of that root key version
//!     11     2  domain check: 16-bit keyed fingerprint of the domain under that version
//!     13    12  nonce
//!     25   n+16 AES-256-GCM-SIV ciphertext of the n-byte plaintext, then its 16-byte tag
//! ```
//!
//! The associated data is the 13-byte header followed by SHA-256 of the domain label, so the
//! domain, the mode and the key version are all authenticated. The two 16-bit checks are read
//! *before* decryption, only to give honest, distinct errors: "sealed by another keyring" and
//! "moved from another domain" instead of a bare authentication failure. Overhead: 41 bytes.

use crate::error::{Error, Result};

/// First three bytes of every binary envelope.
pub const MAGIC: [u8; 3] = *b"pgs";
/// The envelope format this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the header (magic through domain check).
pub const HEADER_LEN: usize = 13;
/// Length of the nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM-SIV tag.
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// How a value was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A random nonce: sealing the same plaintext twice gives two different values.
    Randomized,
    /// A nonce derived from the plaintext by a keyed PRF: equal plaintexts seal to equal values
    /// within one domain and key version, so equality lookups work on the sealed column.
    Deterministic,
}

impl Mode {
    /// The mode's byte in the header.
    pub fn to_byte(self) -> u8 {
        match self {
            Mode::Randomized => 1,
            Mode::Deterministic => 2,
        }
    }

    /// The mode of a header byte, if it is one.
    pub fn from_byte(byte: u8) -> Option<Mode> {
        match byte {
            1 => Some(Mode::Randomized),
            2 => Some(Mode::Deterministic),
            _ => None,
        }
    }
}

/// The parsed header of an envelope, with a view of its nonce (the ciphertext and tag follow).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parsed<'a> {
    /// The raw 13 header bytes, for associated data.
    pub header: &'a [u8; HEADER_LEN],
    pub mode: Mode,
    pub key_version: u32,
    pub key_check: [u8; 2],
    pub domain_check: [u8; 2],
    pub nonce: &'a [u8; NONCE_LEN],
}

/// Writes a header into the first [`HEADER_LEN`] bytes of `out`.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    mode: Mode,
    key_version: u32,
    key_check: [u8; 2],
    domain_check: [u8; 2],
) {
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(mode.to_byte());
    out.extend_from_slice(&key_version.to_be_bytes());
    out.extend_from_slice(&key_check);
    out.extend_from_slice(&domain_check);
}

/// Splits an envelope into its fields, checking only its shape (no keys involved).
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>> {
    if bytes.len() < MAGIC.len() + 1 || bytes[..3] != MAGIC {
        return Err(Error::Malformed(
            "does not start with the pgseal envelope magic",
        ));
    }
    if bytes[3] != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat(bytes[3]));
    }
    if bytes.len() < OVERHEAD {
        return Err(Error::Truncated {
            len: bytes.len(),
            min: OVERHEAD,
        });
    }
    let mode = Mode::from_byte(bytes[4]).ok_or(Error::Malformed("unknown sealing mode"))?;
    let (header, rest) = bytes.split_at(HEADER_LEN);
    let nonce = &rest[..NONCE_LEN];
    Ok(Parsed {
        header: header.try_into().expect("split at HEADER_LEN"),
        mode,
        key_version: u32::from_be_bytes(bytes[5..9].try_into().expect("4 bytes")),
        key_check: [bytes[9], bytes[10]],
        domain_check: [bytes[11], bytes[12]],
        nonce: nonce.try_into().expect("NONCE_LEN bytes"),
    })
}

/// Whether `bytes` is a binary envelope this crate can read: magic, format and mode are right
/// and it is long enough. It does not need keys, so it cannot tell a valid envelope from a
/// damaged one; it tells sealed values from plaintext (for a `bytea` column's migration).
pub fn is_sealed(bytes: &[u8]) -> bool {
    parse(bytes).is_ok()
}

/// The key version a binary envelope names, without opening it (for re-sealing after
/// rotation: the migrator picks values whose version is not the active one).
pub fn key_version(bytes: &[u8]) -> Result<u32> {
    parse(bytes).map(|p| p.key_version)
}

/// The mode a binary envelope was sealed in, without opening it (for the migrator, which must
/// not take an envelope of another mode than its column's as sealed).
pub fn mode(bytes: &[u8]) -> Result<Mode> {
    parse(bytes).map(|p| p.mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, Mode::Deterministic, 0x0102_0304, [5, 6], [7, 8]);
        out.extend_from_slice(&[9; NONCE_LEN]);
        out.extend_from_slice(&[10; TAG_LEN + 3]);
        out
    }

    #[test]
    fn header_round_trip() {
        let bytes = sample();
        assert_eq!(&bytes[..5], b"pgs\x01\x02");
        let p = parse(&bytes).unwrap();
        assert_eq!(p.mode, Mode::Deterministic);
        assert_eq!(p.key_version, 0x0102_0304);
        assert_eq!(p.key_check, [5, 6]);
        assert_eq!(p.domain_check, [7, 8]);
        assert_eq!(p.nonce, &[9; NONCE_LEN]);
        assert!(is_sealed(&bytes));
        assert_eq!(key_version(&bytes).unwrap(), 0x0102_0304);
    }

    #[test]
    fn shape_errors_are_distinct() {
        let bytes = sample();
        assert!(matches!(parse(b"hello world"), Err(Error::Malformed(_))));
        assert!(matches!(parse(b""), Err(Error::Malformed(_))));
        let mut future = bytes.clone();
        future[3] = 2;
        assert!(matches!(parse(&future), Err(Error::UnsupportedFormat(2))));
        assert!(matches!(
            parse(&bytes[..OVERHEAD - 1]),
            Err(Error::Truncated { len, min: OVERHEAD }) if len == OVERHEAD - 1
        ));
        let mut bad_mode = bytes.clone();
        bad_mode[4] = 9;
        assert!(matches!(parse(&bad_mode), Err(Error::Malformed(_))));
        assert!(!is_sealed(b"pgs"));
        assert!(!is_sealed(
            b"plain bytes that are long enough to be an envelope"
        ));
    }
}
