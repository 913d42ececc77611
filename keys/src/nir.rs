//! NIR (French social security number) validation and format-preserving NIR tokens.
//!
//! # Well-formed NIRs
//!
//! A NIR here is exactly 15 characters, no spaces, upper case:
//!
//! | positions | field | accepted values |
//! |---|---|---|
//! | 1 | sex / kind | `1` `2` (men, women), `3` `4` (foreigners being registered), `7` `8` (provisional NIA) |
//! | 2–3 | year of birth | `00`–`99` |
//! | 4–5 | month of birth | `01`–`12`, or INSEE's pseudo-months `20`, `30`–`42`, `50`–`99` |
//! | 6–10 | place of birth | department `01`–`96`, `2A`, `2B` or `99` (abroad) then commune (or country) `001`–`990`; or department `970`–`989` then commune `01`–`90` |
//! | 11–13 | order number | `001`–`999` |
//! | 14–15 | control key | `97 − (body mod 97)`, the 13-character body read as a number with `2A` → `19` and `2B` → `18` |
//!
//! Department `20` (Corsica before 1976) and `96` are accepted as historical codes. Anything
//! else — wrong length, lower-case `2a`, month `13`, department `00`, commune `000`, order `000`,
//! a wrong key — is refused with a [`NirError`] naming the field, never the value.
//!
//! # Tokens
//!
//! A token is another well-formed NIR, with a correct control key, that only the key holder can
//! map back. It is built by *rank, encipher, cycle-walk, unrank*:
//!
//! 1. **Preserved in clear:** the first digit (sex / kind, which applications often check
//!    against other fields) and whether the month is a calendar month (`01`–`12`) or a
//!    pseudo-month, so a token of an ordinary NIR passes validators that only allow `01`–`12`.
//! 2. **Encrypted:** year, month within its class, place of birth (department and commune
//!    together, so Corsican `2A`/`2B`, overseas `97x` and foreign-born `99` codes mix with all the
//!    others and the token reveals none of them), and order number. These are ranked into one
//!    integer: 100 years × 12 months (or 64 pseudo-months) × 99 810 places × 999 orders, about
//!    1.2 × 10¹¹ (6.4 × 10¹¹).
//! 3. That integer is written as 4 numerals in radix 589 (894 for pseudo-months), the smallest
//!    radix whose 4th power covers it, and enciphered with FF1 under the domain's tokenization
//!    key, with the preserved fields in the tweak. A result outside the ranked range (under 0.6 %
//!    of the time) is enciphered again until it falls inside (*cycle walking*), so the mapping is
//!    a permutation of well-formed NIRs with the same preserved fields.
//! 4. The integer is unranked into fields and the control key is recomputed.
//!
//! What a token does not preserve: the year and month (so it will not match a separately stored
//! birth date), the department (so it will not match a separately stored birth place), and
//! consistency rules between fields (e.g. `2A` only after 1976).

use crate::error::{NirError, Result};
use crate::ff1::Ff1;

/// Length of a NIR with its control key.
pub const NIR_LEN: usize = 15;

/// Number of two-character departments: `01`–`96`, `2A`, `2B`, `99`.
const DEPT2_COUNT: u64 = 99;
/// Communes (or countries) after a two-character department: `001`–`990`.
const COMMUNE3_COUNT: u64 = 990;
/// Number of three-digit departments: `970`–`989`.
const DEPT3_COUNT: u64 = 20;
/// Communes after a three-digit department: `01`–`90`.
const COMMUNE2_COUNT: u64 = 90;
/// Number of places of birth.
const PLACES: u64 = DEPT2_COUNT * COMMUNE3_COUNT + DEPT3_COUNT * COMMUNE2_COUNT;
/// Order numbers `001`–`999`.
const ORDERS: u64 = 999;
/// Calendar months `01`–`12`.
const CALENDAR_MONTHS: u64 = 12;
/// Pseudo-months `20`, `30`–`42`, `50`–`99`.
const PSEUDO_MONTHS: u64 = 1 + 13 + 50;
/// Numerals in the FF1 representation of a ranked NIR.
pub(crate) const FF1_LEN: usize = 4;

/// The two month classes, each tokenized within itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MonthClass {
    Calendar,
    Pseudo,
}

impl MonthClass {
    const fn months(self) -> u64 {
        match self {
            MonthClass::Calendar => CALENDAR_MONTHS,
            MonthClass::Pseudo => PSEUDO_MONTHS,
        }
    }

    /// How many NIR bodies share one (sex, class): the size of the permuted set.
    const fn domain(self) -> u64 {
        100 * self.months() * PLACES * ORDERS
    }

    /// The FF1 radix for this class: the smallest `r` with `r⁴ ≥ domain`.
    pub(crate) const fn radix(self) -> u32 {
        let domain = self.domain() as u128;
        let mut r: u128 = 2;
        while r * r * r * r < domain {
            r += 1;
        }
        r as u32
    }

    fn tag(self) -> u8 {
        match self {
            MonthClass::Calendar => b'c',
            MonthClass::Pseudo => b'p',
        }
    }
}

/// A parsed, well-formed NIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nir {
    /// The first character, kept as is.
    sex: u8,
    year: u64,
    class: MonthClass,
    /// Index of the month within its class.
    month: u64,
    /// Index of the place of birth in `0..PLACES`.
    place: u64,
    /// Order number minus one.
    order: u64,
}

fn digit(bytes: &[u8], pos: usize) -> Result<u64, NirError> {
    match bytes[pos] {
        c @ b'0'..=b'9' => Ok(u64::from(c - b'0')),
        _ => Err(NirError::Character(pos + 1)),
    }
}

fn number(bytes: &[u8], from: usize, len: usize) -> Result<u64, NirError> {
    (from..from + len).try_fold(0, |acc, pos| Ok(acc * 10 + digit(bytes, pos)?))
}

impl Nir {
    fn parse(text: &str) -> Result<Nir, NirError> {
        let b = text.as_bytes();
        if b.len() != NIR_LEN {
            return Err(NirError::Length(text.chars().count()));
        }
        let sex = b[0];
        digit(b, 0)?;
        if !matches!(sex, b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
            return Err(NirError::Sex);
        }
        let year = number(b, 1, 2)?;
        let (class, month) = match number(b, 3, 2)? {
            m @ 1..=12 => (MonthClass::Calendar, m - 1),
            20 => (MonthClass::Pseudo, 0),
            m @ 30..=42 => (MonthClass::Pseudo, m - 29),
            m @ 50..=99 => (MonthClass::Pseudo, m - 36),
            _ => return Err(NirError::Month),
        };
        let place = parse_place(b)?;
        let order = number(b, 10, 3)?;
        if order == 0 {
            return Err(NirError::Order);
        }
        let key = number(b, 13, 2)?;
        if key != control_key(b) {
            return Err(NirError::ControlKey);
        }
        Ok(Nir {
            sex,
            year,
            class,
            month,
            place,
            order: order - 1,
        })
    }

    /// The rank of the encrypted fields, in `0..class.domain()`.
    fn rank(&self) -> u64 {
        ((self.year * self.class.months() + self.month) * PLACES + self.place) * ORDERS + self.order
    }

    fn unrank(sex: u8, class: MonthClass, mut rank: u64) -> Nir {
        let order = rank % ORDERS;
        rank /= ORDERS;
        let place = rank % PLACES;
        rank /= PLACES;
        let month = rank % class.months();
        let year = rank / class.months();
        Nir {
            sex,
            year,
            class,
            month,
            place,
            order,
        }
    }

    fn format(&self) -> String {
        let month = match self.class {
            MonthClass::Calendar => self.month + 1,
            MonthClass::Pseudo => match self.month {
                0 => 20,
                m @ 1..=13 => m + 29,
                m => m + 36,
            },
        };
        let mut out = String::with_capacity(NIR_LEN);
        out.push(char::from(self.sex));
        push_number(&mut out, self.year, 2);
        push_number(&mut out, month, 2);
        format_place(&mut out, self.place);
        push_number(&mut out, self.order + 1, 3);
        let key = control_key(out.as_bytes());
        push_number(&mut out, key, 2);
        out
    }
}

/// Appends `value` in decimal, zero-padded to `width` digits (every field of a NIR has a fixed
/// width its values fit in). Written by hand: `format!` was a sixth of a token's cost.
fn push_number(out: &mut String, mut value: u64, width: usize) {
    if width > 3 || value >= 10u64.pow(width as u32) {
        // Not reached (the rank and control-key ranges fit every field), but never cut a value.
        use std::fmt::Write as _;
        let _ = write!(out, "{value:0width$}");
        return;
    }
    let mut digits = [b'0'; 3];
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    for &digit in &digits[..width] {
        out.push(char::from(digit));
    }
}

/// Parses positions 6–10 into a place index.
fn parse_place(b: &[u8]) -> Result<u64, NirError> {
    let dept2_index = match (b[5], b[6]) {
        (b'2', b'A') => Some(96),
        (b'2', b'B') => Some(97),
        _ => {
            let dept = number(b, 5, 2)?;
            match dept {
                1..=96 => Some(dept - 1),
                99 => Some(98),
                97 | 98 => None,
                _ => return Err(NirError::Department),
            }
        }
    };
    match dept2_index {
        Some(dept) => {
            let commune = number(b, 7, 3)?;
            if !(1..=COMMUNE3_COUNT).contains(&commune) {
                return Err(NirError::Commune);
            }
            Ok(dept * COMMUNE3_COUNT + commune - 1)
        }
        None => {
            let dept = number(b, 5, 3)?;
            let commune = number(b, 8, 2)?;
            if !(1..=COMMUNE2_COUNT).contains(&commune) {
                return Err(NirError::Commune);
            }
            Ok(DEPT2_COUNT * COMMUNE3_COUNT + (dept - 970) * COMMUNE2_COUNT + commune - 1)
        }
    }
}

fn format_place(out: &mut String, place: u64) {
    if place < DEPT2_COUNT * COMMUNE3_COUNT {
        let (dept, commune) = (place / COMMUNE3_COUNT, place % COMMUNE3_COUNT + 1);
        match dept {
            0..=95 => push_number(out, dept + 1, 2),
            96 => out.push_str("2A"),
            97 => out.push_str("2B"),
            _ => out.push_str("99"),
        }
        push_number(out, commune, 3);
    } else {
        let rest = place - DEPT2_COUNT * COMMUNE3_COUNT;
        push_number(out, 970 + rest / COMMUNE2_COUNT, 3);
        push_number(out, rest % COMMUNE2_COUNT + 1, 2);
    }
}

/// `97 − (body mod 97)` over the first 13 characters, with `2A` read as `19` and `2B` as `18`.
/// The body's characters must already be known to be digits or a Corsican department.
fn control_key(b: &[u8]) -> u64 {
    let body = b[..13].iter().enumerate().fold(0u64, |acc, (pos, &c)| {
        let d = match (pos, c) {
            (5, b'2') if matches!(b[6], b'A' | b'B') => 1,
            (6, b'A') => 9,
            (6, b'B') => 8,
            _ => u64::from(c - b'0'),
        };
        acc * 10 + d
    });
    97 - body % 97
}

/// Checks that `text` is a well-formed NIR (see the module documentation for the rules).
pub fn validate_nir(text: &str) -> Result<(), NirError> {
    Nir::parse(text).map(|_| ())
}

/// The FF1 instances a domain's NIR tokens use, one per month class.
pub(crate) struct NirCipher {
    calendar: Ff1,
    pseudo: Ff1,
}

impl NirCipher {
    /// Schedules the tokenization key for both classes.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        NirCipher {
            calendar: Ff1::new(key, MonthClass::Calendar.radix()),
            pseudo: Ff1::new(key, MonthClass::Pseudo.radix()),
        }
    }

    /// Maps a well-formed NIR to its token (`decrypt = false`) or a token back to its NIR.
    pub(crate) fn crypt(&self, text: &str, decrypt: bool) -> Result<String> {
        let nir = Nir::parse(text)?;
        let ff1 = match nir.class {
            MonthClass::Calendar => &self.calendar,
            MonthClass::Pseudo => &self.pseudo,
        };
        let tweak = [b'n', nir.sex, nir.class.tag()];
        let domain = u128::from(nir.class.domain());
        // Cycle walking: the rank is below `domain`, so iterating the permutation from it
        // reaches another value below `domain` before coming back to it.
        let mut x = u128::from(nir.rank());
        loop {
            x = if decrypt {
                ff1.decrypt_int(&tweak, x, FF1_LEN)
            } else {
                ff1.encrypt_int(&tweak, x, FF1_LEN)
            };
            if x < domain {
                break;
            }
        }
        Ok(Nir::unrank(nir.sex, nir.class, x as u64).format())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ff1::small_domain;

    #[test]
    fn radices_are_tight() {
        for class in [MonthClass::Calendar, MonthClass::Pseudo] {
            let r = u128::from(class.radix());
            let domain = u128::from(class.domain());
            assert!(r.pow(4) >= domain && (r - 1).pow(4) < domain);
            assert!(small_domain(class.radix(), FF1_LEN).is_some());
            // FF1's minimum domain size.
            assert!(r.pow(4) >= 1_000_000);
        }
        assert_eq!(MonthClass::Calendar.radix(), 589);
        assert_eq!(MonthClass::Pseudo.radix(), 894);
    }

    #[test]
    fn known_valid_nirs() {
        // The textbook example: 2 55 08 14 168 025, key 97 - (2550814168025 mod 97) = 38.
        assert_eq!(validate_nir("255081416802538"), Ok(()));
        // Corsica: 2A counts as 19, 2B as 18.
        let body_2a = "184012A123456";
        let key_2a = 97 - 1840119123456u64 % 97;
        assert_eq!(validate_nir(&format!("{body_2a}{key_2a:02}")), Ok(()));
        let body_2b = "299112B001001";
        let key_2b = 97 - 2991118001001u64 % 97;
        assert_eq!(validate_nir(&format!("{body_2b}{key_2b:02}")), Ok(()));
        // Overseas department, 2-digit commune.
        let body = "1920397411012";
        assert_eq!(
            validate_nir(&format!("{body}{:02}", 97 - 1920397411012u64 % 97)),
            Ok(())
        );
    }

    #[test]
    fn malformed_nirs_name_the_field() {
        let with_key = |body: &str| {
            let n: u64 = body
                .replace("2A", "19")
                .replace("2B", "18")
                .parse()
                .unwrap();
            format!("{body}{:02}", 97 - n % 97)
        };
        let cases = [
            ("25508141680253", NirError::Length(14)),
            ("2550814168025 38", NirError::Length(16)),
            (&with_key("5550814168025")[..], NirError::Sex),
            (&with_key("2551314168025"), NirError::Month),
            (&with_key("2550014168025"), NirError::Month),
            (&with_key("2551914168025"), NirError::Month),
            (&with_key("2550800168025"), NirError::Department),
            (&with_key("2550814000025"), NirError::Commune),
            (&with_key("2550814991025"), NirError::Commune),
            (&with_key("2550897400025"), NirError::Commune),
            (&with_key("2550897191025"), NirError::Commune),
            (&with_key("2550814168000"), NirError::Order),
            ("255081416802539", NirError::ControlKey),
            ("255081416802500", NirError::ControlKey),
            ("2550814168025x8", NirError::Character(14)),
            ("25508 416802538", NirError::Character(6)),
        ];
        for (input, want) in cases {
            assert_eq!(validate_nir(input), Err(want), "{input}");
        }
        // Lower-case Corsica codes are refused, not silently normalised.
        let upper = with_key("184012A123456");
        assert_eq!(validate_nir(&upper), Ok(()));
        assert_eq!(
            validate_nir(&upper.replace('A', "a")),
            Err(NirError::Character(7))
        );
    }

    #[test]
    fn rank_unrank_round_trip_at_the_edges() {
        for class in [MonthClass::Calendar, MonthClass::Pseudo] {
            for rank in [0, 1, 998, 999, PLACES * ORDERS - 1, class.domain() - 1] {
                let nir = Nir::unrank(b'1', class, rank);
                let text = nir.format();
                let parsed = Nir::parse(&text).unwrap();
                assert_eq!(parsed, nir, "{text}");
                assert_eq!(parsed.rank(), rank);
            }
        }
        // Every place index formats to a place that parses back to it.
        for place in 0..PLACES {
            let mut s = String::from("18001");
            format_place(&mut s, place);
            s.push_str("001");
            let key = control_key(s.as_bytes());
            push_number(&mut s, key, 2);
            assert_eq!(Nir::parse(&s).unwrap().place, place, "{s}");
        }
    }

    #[test]
    fn tokens_preserve_sex_and_month_class() {
        let cipher = NirCipher::new(&[3; 32]);
        let nir = "255081416802538";
        let token = cipher.crypt(nir, false).unwrap();
        assert_ne!(token, nir);
        assert_eq!(validate_nir(&token), Ok(()));
        assert_eq!(&token[..1], "2");
        let month: u32 = token[3..5].parse().unwrap();
        assert!((1..=12).contains(&month));
        assert_eq!(cipher.crypt(&token, true).unwrap(), nir);
        assert!(cipher.crypt("255081416802539", false).is_err());
    }
}
