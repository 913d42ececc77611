//! Search tokens: keyed, truncated fingerprints of pieces of a sealed value (a prefix, a
//! trigram, the whole value, a year or a month), stored beside its envelope so that the database
//! can return a small superset of the rows a search can match. pgseal re-checks every candidate
//! exactly; a token only narrows.
//!
//! **Key.** One [`SearchKey`] per domain and root version, derived with HKDF-SHA256 like every
//! other key of a domain (`info = "pgseal/v1/search/" ‖ domain label`, purpose `search`, see
//! the `derive` module), from the root version the [`crate::Sealer`] uses for tokens and
//! pseudonyms (its *token version*, [`crate::Sealer::token_version`]): search tokens record no
//! version either, so after a rotation the index keeps matching only while the caller pins the
//! version it was built with (or rebuilds it).
//!
//! **Token.** `tag ‖ base64url(first bits of HMAC-SHA256(key, tag ‖ item))`: the one-letter
//! tag of its [`TokenKind`] (`p t e y m`), then ⌈bits/6⌉ characters of `A–Z a–z 0–9 - _`
//! holding the first `bits` bits of the MAC, big-endian, the unused low bits of the last
//! character zero (so each token has exactly one spelling). The tag is also the MAC's first
//! input byte, so the same item gives unrelated tokens of different kinds. Tokens never hold
//! `.` or `~`: the caller joins them with `.` after a `~`.
//!
//! **What they reveal.** Truncation is the point: with `bits` bits, about 2^bits distinct tokens
//! exist per kind, so each token is shared by many values, and the database learns only which
//! rows share a truncated fingerprint (of a prefix, a trigram, a value or a date bucket) — the
//! leakage `policy check` states per index. Without the key nothing links a token to its item;
//! with it, short items (prefixes, trigrams, years) are enumerable, like any keyed hash.

use std::fmt;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::secret::KEY_LEN;

/// The URL-safe base64 alphabet, by 6-bit value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The most bits a token keeps (larger `bits` are clamped to it).
pub const MAX_TOKEN_BITS: u8 = 32;

/// What a token fingerprints. Each kind has its own one-letter tag, which starts the token and
/// is the first byte the MAC reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenKind {
    /// A prefix of the folded value (`p`).
    Prefix,
    /// Three consecutive characters of the folded value (`t`).
    Trigram,
    /// The whole (folded) value (`e`).
    Exact,
    /// The year of a dated value (`y`).
    Year,
    /// The year and month of a dated value (`m`).
    Month,
}

impl TokenKind {
    /// Every kind, in tag order of the documentation.
    pub const ALL: [TokenKind; 5] = [
        TokenKind::Prefix,
        TokenKind::Trigram,
        TokenKind::Exact,
        TokenKind::Year,
        TokenKind::Month,
    ];

    /// The kind's tag: `p`, `t`, `e`, `y` or `m`.
    pub fn tag(self) -> char {
        match self {
            TokenKind::Prefix => 'p',
            TokenKind::Trigram => 't',
            TokenKind::Exact => 'e',
            TokenKind::Year => 'y',
            TokenKind::Month => 'm',
        }
    }

    /// The kind a tag names.
    pub fn from_tag(tag: char) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }

    fn tag_byte(self) -> u8 {
        // Every tag is ASCII.
        self.tag() as u8
    }
}

/// The key of one domain's search tokens under one root version: HMAC-SHA256, keyed once.
///
/// Its state is key material: the inner and outer SHA-256 states of the keyed HMAC, which
/// `sha2` zeroizes when they are dropped (its `zeroize` feature, enabled by this crate); the raw
/// derived key is zeroized as soon as the HMAC is keyed. `Debug` prints only the version; it is
/// never displayed or logged.
#[derive(Clone)]
pub struct SearchKey {
    version: u32,
    mac: Hmac<Sha256>,
}

impl SearchKey {
    /// Keys the HMAC with a derived key (the caller's copy is zeroizing).
    pub(crate) fn new(version: u32, key: &[u8; KEY_LEN]) -> SearchKey {
        SearchKey {
            version,
            mac: Hmac::new_from_slice(key).expect("HMAC takes any key length"),
        }
    }

    /// The root key version the key is derived from.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The token of `item` as a `kind`: its tag, then the first `bits` bits of
    /// HMAC-SHA256(key, tag ‖ item) in ⌈bits/6⌉ URL-safe base64 characters, the unused low bits
    /// of the last one zero. `bits` is clamped to `1..=32`. Never panics.
    pub fn token(&self, kind: TokenKind, item: &[u8], bits: u8) -> String {
        let bits = u32::from(bits.clamp(1, MAX_TOKEN_BITS));
        let mut mac = self.mac.clone();
        mac.update(&[kind.tag_byte()]);
        mac.update(item);
        let digest = mac.finalize().into_bytes();
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // The kept bits, left-aligned in 64 so that 6-bit groups read from the top; the bits
        // after them (up to the last character's boundary) are zero.
        let kept = u64::from(first & (u32::MAX << (32 - bits))) << 32;
        let chars = bits.div_ceil(6);
        let mut token = String::with_capacity(1 + chars as usize);
        token.push(kind.tag());
        for i in 0..chars {
            let index = (kept >> (58 - 6 * i)) & 63;
            token.push(char::from(ALPHABET[index as usize]));
        }
        token
    }
}

impl fmt::Debug for SearchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SearchKey(version {}, [redacted])", self.version)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{Domain, Keyring, RootKey};

    /// A keyring of fixed root keys: (version, state, the byte the key repeats).
    fn keyring(versions: &[(u32, &str, u8)]) -> Keyring {
        let mut text = String::from("format = 1\n");
        for (number, state, byte) in versions {
            let key = RootKey::from_bytes([*byte; 32]).to_base64();
            text.push_str(&format!(
                "[[version]]\nnumber = {number}\nstate = \"{state}\"\n\
                 created = \"2025-01-01T00:00:00Z\"\nkey = \"{}\"\n",
                &*key
            ));
        }
        Keyring::from_toml_str(&text).unwrap()
    }

    fn last_name() -> Domain {
        Domain::column("public", "patients", "last_name").unwrap()
    }

    fn key() -> SearchKey {
        keyring(&[(1, "active", 0x5e)])
            .sealer(&last_name())
            .search_key()
            .unwrap()
    }

    /// base64url decoding of one character (the test's own, independent of the encoder).
    fn sextet(c: char) -> u64 {
        match c {
            'A'..='Z' => c as u64 - 'A' as u64,
            'a'..='z' => c as u64 - 'a' as u64 + 26,
            '0'..='9' => c as u64 - '0' as u64 + 52,
            '-' => 62,
            '_' => 63,
            _ => panic!("{c:?} is not base64url"),
        }
    }

    #[test]
    fn tokens_are_the_documented_construction() {
        // HKDF as documented: info = "pgseal/v1/search/" ‖ domain label.
        let mut derived = [0u8; 32];
        crate::derive::hkdf_sha256(
            b"pgseal/v1/hkdf-salt",
            &[0x5e; 32],
            b"pgseal/v1/search/column:public.patients.last_name",
            &mut derived,
        );
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&derived).unwrap();
        mac.update(b"tdup");
        let digest = mac.finalize().into_bytes();
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let key = key();
        for bits in 1..=32u8 {
            let token = key.token(TokenKind::Trigram, b"dup", bits);
            let mut chars = token.chars();
            assert_eq!(chars.next(), Some('t'));
            let body: Vec<char> = chars.collect();
            assert_eq!(body.len(), usize::from(bits).div_ceil(6), "bits {bits}");
            let mut value = 0u64;
            for c in &body {
                value = (value << 6) | sextet(*c);
            }
            let spare = 6 * body.len() as u32 - u32::from(bits);
            // The unused low bits of the last character are zero: one spelling per token.
            assert_eq!(value & ((1 << spare) - 1), 0, "bits {bits}");
            assert_eq!(
                value >> spare,
                u64::from(first >> (32 - u32::from(bits))),
                "bits {bits}"
            );
        }
    }

    #[test]
    fn known_answers_stay_the_same() {
        // Deployed indexes hold these: any change to the construction must leave them as they
        // are, or every search would silently miss the rows written before.
        let key = key();
        assert_eq!(key.version(), 1);
        let got: Vec<String> = [
            (TokenKind::Prefix, &b"m"[..], 12),
            (TokenKind::Prefix, b"mar", 12),
            (TokenKind::Trigram, b"art", 12),
            (TokenKind::Exact, b"martin", 24),
            (TokenKind::Year, b"1985", 8),
            (TokenKind::Month, b"1985-05", 32),
        ]
        .into_iter()
        .map(|(kind, item, bits)| key.token(kind, item, bits))
        .collect();
        assert_eq!(got, KNOWN);
    }

    /// The tokens of [`known_answers_stay_the_same`], as the first implementation wrote them
    /// (and as `tokens_are_the_documented_construction` recomputes them from HKDF and HMAC).
    const KNOWN: [&str; 6] = ["pz_", "puv", "tqm", "eA8e5", "yJg", "myTvUYA"];

    #[test]
    fn the_token_version_decides_and_other_versions_do_not_matter() {
        let alone = keyring(&[(1, "active", 0x5e)]).sealer(&last_name());
        // After a rotation, pinned to the version the index was built with: same tokens.
        let rotated =
            keyring(&[(1, "decrypt-only", 0x5e), (2, "active", 0x77)]).sealer(&last_name());
        let pinned = rotated.with_token_version(1).unwrap();
        let a = alone.search_key().unwrap();
        let p = pinned.search_key().unwrap();
        assert_eq!(p.version(), 1);
        // Unpinned, the active version's key: other tokens.
        let new = rotated.search_key().unwrap();
        assert_eq!(new.version(), 2);
        for kind in TokenKind::ALL {
            for item in [&b"martin"[..], b"1985", b"", b"\xff\x00"] {
                assert_eq!(a.token(kind, item, 24), p.token(kind, item, 24));
                assert_ne!(a.token(kind, item, 24), new.token(kind, item, 24));
            }
        }
    }

    #[test]
    fn kinds_domains_and_items_give_distinct_tokens() {
        let ring = keyring(&[(1, "active", 0x5e)]);
        let keys = [
            ring.sealer(&last_name()).search_key().unwrap(),
            ring.sealer(&Domain::column("public", "patients", "first_name").unwrap())
                .search_key()
                .unwrap(),
            ring.sealer(&Domain::shared("last_name").unwrap())
                .search_key()
                .unwrap(),
        ];
        let mut seen = HashSet::new();
        for key in &keys {
            for kind in TokenKind::ALL {
                for item in [&b"mar"[..], b"martin", b"1985", b""] {
                    // 32 bits: a collision among these 60 would be a 2^-20 accident.
                    let token = key.token(kind, item, 32);
                    assert!(seen.insert(token[1..].to_owned()), "{kind:?} {item:?}");
                }
            }
        }
        // The search key is no other purpose's key: the pseudonym of an item is not its token.
        let sealer = ring.sealer(&last_name());
        let token = keys[0].token(TokenKind::Exact, b"martin", 32);
        assert!(!sealer.pseudonym(b"emartin").starts_with(&token[1..]));
    }

    #[test]
    fn bits_are_clamped_and_tags_spell_the_kind() {
        let key = key();
        for (bits, len) in [
            (0, 1),
            (1, 1),
            (6, 1),
            (7, 2),
            (12, 2),
            (13, 3),
            (24, 4),
            (32, 6),
        ] {
            assert_eq!(
                key.token(TokenKind::Exact, b"x", bits).len(),
                1 + len,
                "{bits}"
            );
        }
        for bits in [33, 64, u8::MAX] {
            assert_eq!(
                key.token(TokenKind::Exact, b"x", bits),
                key.token(TokenKind::Exact, b"x", 32)
            );
        }
        assert_eq!(
            key.token(TokenKind::Exact, b"x", 0),
            key.token(TokenKind::Exact, b"x", 1)
        );
        // A shorter token is a prefix of the longer one's bits.
        let long = key.token(TokenKind::Exact, b"x", 24);
        assert!(long.starts_with(&key.token(TokenKind::Exact, b"x", 18)));
        for kind in TokenKind::ALL {
            assert_eq!(TokenKind::from_tag(kind.tag()), Some(kind));
            let token = key.token(kind, b"anything", 12);
            assert!(token.starts_with(kind.tag()));
            assert!(
                token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
        }
        assert_eq!(TokenKind::from_tag('x'), None);
        let debug = format!("{key:?}");
        assert_eq!(debug, "SearchKey(version 1, [redacted])");
    }

    #[test]
    fn tokens_never_hold_the_separators() {
        let key = key();
        for i in 0..2000u32 {
            let token = key.token(TokenKind::Trigram, &i.to_be_bytes(), (i % 33) as u8);
            assert!(!token.contains(['.', '~']), "{token}");
        }
    }
}
