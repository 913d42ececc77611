//! FF1 format-preserving encryption (NIST SP 800-38G) over digits and alphanumerics.
//!
//! The Feistel rounds are the `fpe` crate's `FF1<Aes256>`; this module only adapts numeral
//! strings to it. Strings whose whole domain fits below 2¹²⁰ (up to 36 digits, 23 upper-case or
//! 20 mixed-case alphanumerics) are carried as one integer (`SmallNumerals`), so each round is a
//! few machine-integer operations instead of big-integer arithmetic; longer ones use `fpe`'s own
//! `FlexibleNumeralString`. Both give identical results (checked against NIST's samples and
//! against each other).
//!
//! FF1 needs a domain of at least a million values, so digit strings need at least 6 characters
//! and alphanumeric ones at least 4.
//!
//! `fpe` clones its block cipher for every Feistel round; with `aes::Aes256` that copies (and on
//! drop zeroizes) the whole key schedule eleven times per token. [`SharedAes`] hands it a
//! reference-counted, encryption-only AES-256 instead, so a clone is a counter increment and
//! the one key schedule is zeroized once, when the last holder drops it.

use std::sync::Arc;

use aes::Aes256Enc;
use aes::cipher::consts::{U16, U32};
use aes::cipher::{
    BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, Key, KeyInit, KeySizeUser,
};
use fpe::ff1::{FF1, FlexibleNumeralString, NumeralString, Operations};

use crate::error::{Error, Result};
use crate::secret::KEY_LEN;

/// Longest string that can be tokenized, in characters.
pub const MAX_TOKEN_LEN: usize = 256;

/// Upper bound (exclusive) on `radix^len` for the integer fast path: a round's modular
/// arithmetic then fits in `u128`, even folding a 20-byte PRF output byte by byte.
const SMALL_LIMIT: u128 = 1 << 120;

/// The characters a token is made of. A token uses the same alphabet as its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// `0-9` (radix 10): card numbers, RPPS or ADELI numbers, phone numbers. At least 6
    /// characters.
    Digits,
    /// `0-9 A-Z` (radix 36): upper-case identifiers. At least 4 characters.
    UpperAlphanumeric,
    /// `0-9 A-Z a-z` (radix 62): case-sensitive identifiers. At least 4 characters.
    Alphanumeric,
}

impl Alphabet {
    /// Number of distinct characters.
    pub fn radix(self) -> u32 {
        match self {
            Alphabet::Digits => 10,
            Alphabet::UpperAlphanumeric => 36,
            Alphabet::Alphanumeric => 62,
        }
    }

    /// Shortest string FF1 accepts in this alphabet (its domain must reach a million values).
    pub fn min_len(self) -> usize {
        match self {
            Alphabet::Digits => 6,
            Alphabet::UpperAlphanumeric | Alphabet::Alphanumeric => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alphabet::Digits => "digits (0-9)",
            Alphabet::UpperAlphanumeric => "upper-case alphanumerics (0-9, A-Z)",
            Alphabet::Alphanumeric => "alphanumerics (0-9, A-Z, a-z)",
        }
    }

    /// The FF1 tweak that keeps each alphabet's permutation separate.
    fn tweak(self) -> &'static [u8] {
        match self {
            Alphabet::Digits => b"d",
            Alphabet::UpperAlphanumeric => b"u",
            Alphabet::Alphanumeric => b"a",
        }
    }

    fn numeral(self, c: u8) -> Option<u16> {
        let n = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' if self != Alphabet::Digits => c - b'A' + 10,
            b'a'..=b'z' if self == Alphabet::Alphanumeric => c - b'a' + 36,
            _ => return None,
        };
        Some(u16::from(n))
    }

    fn char(self, numeral: u16) -> char {
        let n = numeral as u8;
        char::from(match n {
            0..=9 => b'0' + n,
            10..=35 => b'A' + n - 10,
            _ => b'a' + n - 36,
        })
    }
}

/// AES-256 (encryption only) behind an `Arc`: the block cipher `fpe` runs its rounds with.
/// Cloning it shares the key schedule instead of copying it; the `aes` crate zeroizes the round
/// keys when the last clone drops.
#[derive(Clone)]
pub(crate) struct SharedAes(Arc<Padded>);

/// The key schedule on cache lines of its own: every clone bumps the `Arc`'s counters, and
/// threads tokenizing in one domain at once would otherwise evict each other's round keys.
#[repr(align(128))]
struct Padded(Aes256Enc);

impl KeySizeUser for SharedAes {
    type KeySize = U32;
}

impl KeyInit for SharedAes {
    fn new(key: &Key<Self>) -> Self {
        SharedAes(Arc::new(Padded(Aes256Enc::new(key))))
    }
}

impl BlockSizeUser for SharedAes {
    type BlockSize = U16;
}

impl BlockCipherEncrypt for SharedAes {
    #[inline]
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = U16>) {
        self.0.0.encrypt_with_backend(f);
    }
}

/// FF1 under one 256-bit key, for one radix.
pub(crate) struct Ff1 {
    cipher: FF1<SharedAes>,
    radix: u32,
}

impl Ff1 {
    /// Schedules `key` for FF1 in `radix` (2..=65536).
    pub(crate) fn new(key: &[u8; KEY_LEN], radix: u32) -> Self {
        Ff1 {
            cipher: FF1::<SharedAes>::new(key, radix).expect("radix is in 2..=65536"),
            radix,
        }
    }

    /// Encrypts the `len`-numeral string whose value is `value` (`value < radix^len`, and
    /// `radix^len` below 2¹²⁰).
    pub(crate) fn encrypt_int(&self, tweak: &[u8], value: u128, len: usize) -> u128 {
        let ns = SmallNumerals::new(value, len, self.radix);
        self.cipher
            .encrypt(tweak, &ns)
            .expect("numeral string validated by the caller")
            .value
    }

    /// Inverse of [`Ff1::encrypt_int`].
    pub(crate) fn decrypt_int(&self, tweak: &[u8], value: u128, len: usize) -> u128 {
        let ns = SmallNumerals::new(value, len, self.radix);
        self.cipher
            .decrypt(tweak, &ns)
            .expect("numeral string validated by the caller")
            .value
    }

    /// Encrypts (or decrypts) a string of `alphabet` characters into one of the same length.
    /// The error names the offending position, never the input.
    pub(crate) fn crypt_str(
        &self,
        alphabet: Alphabet,
        input: &str,
        decrypt: bool,
    ) -> Result<String> {
        debug_assert_eq!(alphabet.radix(), self.radix);
        let len = input.len();
        if len < alphabet.min_len() {
            return Err(Error::InvalidTokenInput(format!(
                "{} characters; FF1 over {} needs at least {}",
                input.chars().count(),
                alphabet.name(),
                alphabet.min_len()
            )));
        }
        if len > MAX_TOKEN_LEN {
            return Err(Error::InvalidTokenInput(format!(
                "longer than {MAX_TOKEN_LEN} characters"
            )));
        }
        let numerals = input
            .bytes()
            .enumerate()
            .map(|(i, c)| {
                alphabet.numeral(c).ok_or_else(|| {
                    Error::InvalidTokenInput(format!(
                        "character at position {} is not one of the {}",
                        input[..i].chars().count() + 1,
                        alphabet.name()
                    ))
                })
            })
            .collect::<Result<Vec<u16>>>()?;
        let tweak = alphabet.tweak();
        let out: Vec<u16> = match small_domain(self.radix, len) {
            Some(_) => {
                let value = numerals.iter().fold(0u128, |acc, &n| {
                    acc * u128::from(self.radix) + u128::from(n)
                });
                let value = if decrypt {
                    self.decrypt_int(tweak, value, len)
                } else {
                    self.encrypt_int(tweak, value, len)
                };
                to_numerals(value, len, self.radix)
            }
            None => {
                let ns = FlexibleNumeralString::from(numerals);
                let result = if decrypt {
                    self.cipher.decrypt(tweak, &ns)
                } else {
                    self.cipher.encrypt(tweak, &ns)
                };
                result.expect("numerals validated above").into()
            }
        };
        Ok(out.into_iter().map(|n| alphabet.char(n)).collect())
    }
}

/// `radix^len`, if it is below the fast path's limit.
pub(crate) fn small_domain(radix: u32, len: usize) -> Option<u128> {
    let len = u32::try_from(len).ok()?;
    u128::from(radix)
        .checked_pow(len)
        .filter(|&size| size < SMALL_LIMIT)
}

fn to_numerals(mut value: u128, len: usize, radix: u32) -> Vec<u16> {
    let mut out = vec![0u16; len];
    for slot in out.iter_mut().rev() {
        *slot = (value % u128::from(radix)) as u16;
        value /= u128::from(radix);
    }
    out
}

/// A numeral string held as its value in `radix`, for domains below 2¹²⁰. It implements the
/// `fpe` crate's numeral-string interface; the FF1 rounds themselves stay in `fpe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SmallNumerals {
    value: u128,
    len: usize,
    radix: u32,
}

impl SmallNumerals {
    pub(crate) fn new(value: u128, len: usize, radix: u32) -> Self {
        SmallNumerals { value, len, radix }
    }

    fn modulus(radix: u32, m: usize) -> u128 {
        u128::from(radix).pow(m as u32)
    }

    /// `NUM(bytes) mod modulus`; exact and fast when the PRF output fits 16 bytes. Folded
    /// rather than looped: `fpe` hands over a chain of iterators, whose internal iteration is
    /// much cheaper than calling `next` per byte.
    fn reduce(bytes: impl Iterator<Item = u8>, modulus: u128) -> u128 {
        let (acc, _) = bytes.fold((0u128, 0u32), |(mut acc, mut taken), byte| {
            if taken == 16 {
                acc %= modulus;
                taken = 0;
            }
            ((acc << 8) | u128::from(byte), taken + 1)
        });
        acc % modulus
    }
}

/// Big-endian bytes of a numeral string's value, at most 16.
pub(crate) struct BeBytes {
    buf: [u8; 16],
    len: usize,
}

impl AsRef<[u8]> for BeBytes {
    fn as_ref(&self) -> &[u8] {
        &self.buf[16 - self.len..]
    }
}

impl NumeralString for SmallNumerals {
    type Ops = Self;

    fn is_valid(&self, radix: u32) -> bool {
        radix == self.radix && small_domain(radix, self.len).is_some_and(|size| self.value < size)
    }

    fn numeral_count(&self) -> usize {
        self.len
    }

    fn split(&self) -> (Self, Self) {
        let u = self.len / 2;
        let v = self.len - u;
        let low = Self::modulus(self.radix, v);
        (
            SmallNumerals::new(self.value / low, u, self.radix),
            SmallNumerals::new(self.value % low, v, self.radix),
        )
    }

    fn concat(a: Self, b: Self) -> Self {
        SmallNumerals::new(
            a.value * Self::modulus(a.radix, b.len) + b.value,
            a.len + b.len,
            a.radix,
        )
    }
}

impl Operations for SmallNumerals {
    type Bytes = BeBytes;

    fn numeral_count(&self) -> usize {
        self.len
    }

    fn to_be_bytes(&self, _radix: u32, b: usize) -> BeBytes {
        debug_assert!(b <= 16);
        BeBytes {
            buf: self.value.to_be_bytes(),
            len: b,
        }
    }

    fn add_mod_exp(self, other: impl Iterator<Item = u8>, radix: u32, m: usize) -> Self {
        let modulus = Self::modulus(radix, m);
        let y = Self::reduce(other, modulus);
        SmallNumerals::new((self.value % modulus + y) % modulus, m, radix)
    }

    fn sub_mod_exp(self, other: impl Iterator<Item = u8>, radix: u32, m: usize) -> Self {
        let modulus = Self::modulus(radix, m);
        let y = Self::reduce(other, modulus);
        SmallNumerals::new((self.value % modulus + modulus - y) % modulus, m, radix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::{Aes128, Aes192, Aes256};
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const KEY_128: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const KEY_192: &str = "2b7e151628aed2a6abf7158809cf4f3cef4359d8d580aa4f";
    const KEY_256: &str = "2b7e151628aed2a6abf7158809cf4f3cef4359d8d580aa4f7f036d6f04fc6a94";
    const TWEAK_2: &str = "39383736353433323130";
    const TWEAK_3: &str = "3737373770717273373737";

    /// NIST SP 800-38G FF1 samples 1–9: key, tweak, radix, plaintext, ciphertext
    /// (radix-36 numerals written with 0-9a-z).
    const SAMPLES: [(&str, &str, u32, &str, &str); 9] = [
        (KEY_128, "", 10, "0123456789", "2433477484"),
        (KEY_128, TWEAK_2, 10, "0123456789", "6124200773"),
        (
            KEY_128,
            TWEAK_3,
            36,
            "0123456789abcdefghi",
            "a9tv40mll9kdu509eum",
        ),
        (KEY_192, "", 10, "0123456789", "2830668132"),
        (KEY_192, TWEAK_2, 10, "0123456789", "2496655549"),
        (
            KEY_192,
            TWEAK_3,
            36,
            "0123456789abcdefghi",
            "xbj3kv35jrawxv32ysr",
        ),
        (KEY_256, "", 10, "0123456789", "6657667009"),
        (KEY_256, TWEAK_2, 10, "0123456789", "1001623463"),
        (
            KEY_256,
            TWEAK_3,
            36,
            "0123456789abcdefghi",
            "xs8a0azh2avyalyzuwd",
        ),
    ];

    fn numerals(s: &str) -> Vec<u16> {
        s.chars().map(|c| c.to_digit(36).unwrap() as u16).collect()
    }

    fn value(ns: &[u16], radix: u32) -> u128 {
        ns.iter()
            .fold(0, |acc, &n| acc * u128::from(radix) + u128::from(n))
    }

    /// Every sample through the integer adapter, whatever the AES key size.
    #[test]
    fn nist_samples_small_numerals() {
        fn run<C>(key: &[u8], tweak: &[u8], radix: u32, pt: &[u16], ct: &[u16])
        where
            C: cipher_trait::Cipher,
        {
            let ff1 = FF1::<C>::new(key, radix).unwrap();
            let x = SmallNumerals::new(value(pt, radix), pt.len(), radix);
            let y = ff1.encrypt(tweak, &x).unwrap();
            assert_eq!(y, SmallNumerals::new(value(ct, radix), ct.len(), radix));
            assert_eq!(ff1.decrypt(tweak, &y).unwrap(), x);
        }
        for (key, tweak, radix, pt, ct) in SAMPLES {
            let (key, tweak, pt, ct) = (hex(key), hex(tweak), numerals(pt), numerals(ct));
            match key.len() {
                16 => run::<Aes128>(&key, &tweak, radix, &pt, &ct),
                24 => run::<Aes192>(&key, &tweak, radix, &pt, &ct),
                _ => {
                    run::<Aes256>(&key, &tweak, radix, &pt, &ct);
                    run::<SharedAes>(&key, &tweak, radix, &pt, &ct);
                }
            }
        }
    }

    /// Samples 7–9 (AES-256) through the crate's own `Ff1`, both paths.
    #[test]
    fn nist_samples_aes256_through_ff1() {
        for (key, tweak, radix, pt, ct) in &SAMPLES[6..] {
            let ff1 = Ff1::new(&hex(key).try_into().unwrap(), *radix);
            let (tweak, pt, ct) = (hex(tweak), numerals(pt), numerals(ct));
            let got = ff1.encrypt_int(&tweak, value(&pt, *radix), pt.len());
            assert_eq!(got, value(&ct, *radix));
            assert_eq!(ff1.decrypt_int(&tweak, got, pt.len()), value(&pt, *radix));
            let flexible: Vec<u16> = ff1
                .cipher
                .encrypt(&tweak, &FlexibleNumeralString::from(pt.clone()))
                .unwrap()
                .into();
            assert_eq!(flexible, ct);
        }
    }

    /// Lets the sample test name "an AES of any key size".
    mod cipher_trait {
        pub trait Cipher: aes::cipher::KeyInit + aes::cipher::BlockCipherEncrypt + Clone {}
        impl<T: aes::cipher::KeyInit + aes::cipher::BlockCipherEncrypt + Clone> Cipher for T {}
    }

    #[test]
    fn alphabets_keep_their_characters_and_lengths() {
        let key = [42u8; 32];
        for (alphabet, input) in [
            (Alphabet::Digits, "4970101234567890"),
            (Alphabet::UpperAlphanumeric, "AB12CD34"),
            (Alphabet::Alphanumeric, "aZ09xY"),
            (Alphabet::Digits, &"1234567890".repeat(10)[..]),
            (Alphabet::Alphanumeric, &"aZ09xY".repeat(10)[..]),
        ] {
            let ff1 = Ff1::new(&key, alphabet.radix());
            let token = ff1.crypt_str(alphabet, input, false).unwrap();
            assert_eq!(token.len(), input.len());
            assert_ne!(token, input);
            assert!(token.bytes().all(|c| alphabet.numeral(c).is_some()));
            assert_eq!(ff1.crypt_str(alphabet, &token, true).unwrap(), input);
        }
    }

    #[test]
    fn bad_token_inputs_are_refused_without_echo() {
        let ff1 = Ff1::new(&[1; 32], 10);
        let err = ff1.crypt_str(Alphabet::Digits, "12345", false).unwrap_err();
        assert!(err.to_string().contains("at least 6"), "{err}");
        let err = ff1
            .crypt_str(Alphabet::Digits, "1234567a9", false)
            .unwrap_err();
        assert!(err.to_string().contains("position 8"), "{err}");
        assert!(!err.to_string().contains("1234567"));
        let err = ff1
            .crypt_str(Alphabet::Digits, &"1".repeat(MAX_TOKEN_LEN + 1), false)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTokenInput(_)));
        let upper = Ff1::new(&[1; 32], 36);
        assert!(
            upper
                .crypt_str(Alphabet::UpperAlphanumeric, "abcd", false)
                .is_err()
        );
    }

    proptest! {
        /// The integer adapter and `fpe`'s big-integer numeral strings agree.
        #[test]
        fn small_and_flexible_paths_agree(
            radix in prop::sample::select(vec![10u32, 36, 62, 589, 894, 65536]),
            seed in any::<u64>(),
            extra in 0usize..10,
            key in any::<[u8; 32]>(),
        ) {
            let min = (1..).find(|&n| u128::from(radix).pow(n) >= 1_000_000).unwrap() as usize;
            let len = min + extra;
            prop_assume!(small_domain(radix, len).is_some());
            let ff1 = Ff1::new(&key, radix);
            let mut state = seed;
            let ns: Vec<u16> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 33) % u64::from(radix)) as u16
                })
                .collect();
            let small = ff1.encrypt_int(b"t", value(&ns, radix), len);
            let flexible: Vec<u16> = ff1
                .cipher
                .encrypt(b"t", &FlexibleNumeralString::from(ns.clone()))
                .unwrap()
                .into();
            prop_assert_eq!(small, value(&flexible, radix));
        }
    }
}
