//! Masking rules: what a role with the `masked` view sees of a sealed value.
//!
//! Every rule is a pure function from the plaintext's text form to a `String`. They never panic,
//! work on grapheme clusters (an accented initial stays whole, whether precomposed or not), and
//! fail closed: a value that does not have the expected shape (a malformed NIR, an address with
//! no `@`, a date that is not ISO) is fully starred, never passed through. Leading and trailing
//! white space is ignored (so `char(n)` padding reveals nothing). SQL `NULL` is not a value and
//! stays `NULL`: the proxy does not call a mask for it.
//!
//! A masked value is text: the proxy reports a masked column as `text` to the client, since
//! `1985-05` is no longer a `date`.

use std::fmt;

use unicode_segmentation::UnicodeSegmentation;

use crate::types::PlainType;

/// The largest count a `keep-first-N` / `keep-last-M` rule accepts.
pub const MAX_KEEP: u16 = 64;

/// What a fully starred NIR looks like.
pub const STARRED_NIR: &str = "* ** ** ** *** *** **";
/// What a redacted value looks like, whatever its length.
pub const REDACTED: &str = "***";
/// What a phone number that does not look like one becomes.
pub const STARRED_PHONE: &str = "** ** ** ** **";

/// A masking rule, as written after `mask =` in a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mask {
    /// `nir`: keeps sex, birth year and month: `1 85 05 ** *** *** **`.
    Nir,
    /// `email`: keeps the first character and the domain: `j***@exemple.fr`.
    Email,
    /// `phone`: keeps the first two and last two digits: `06 ** ** ** 12`.
    Phone,
    /// `initial`: keeps the first letter: `Élodie` → `É.`.
    Initial,
    /// `year`: keeps the year of an ISO date or timestamp: `1985`.
    Year,
    /// `year-month`: keeps year and month: `1985-05`.
    YearMonth,
    /// `redact`: replaces any value with `***`.
    Redact,
    /// `keep-first-N`, `keep-last-M`, `keep-first-N-last-M`: keeps that many characters at each
    /// end and stars the rest; a value no longer than `first + last` is starred whole.
    Keep {
        /// Characters kept at the start.
        first: u16,
        /// Characters kept at the end.
        last: u16,
    },
}

/// Why a written mask rule was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// Not one of the rule names.
    #[error(
        "unknown mask {0:?} (expected nir, email, phone, initial, year, year-month, redact, \
         keep-first-N, keep-last-M or keep-first-N-last-M)"
    )]
    Unknown(String),
    /// A keep rule that keeps nothing.
    #[error("mask {0:?} keeps nothing: use \"redact\"")]
    KeepsNothing(String),
    /// A keep rule with a count above [`MAX_KEEP`].
    #[error("mask {0:?} keeps more than 64 characters at one end")]
    TooMany(String),
}

impl Mask {
    /// Parses a rule as written in a policy.
    pub fn parse(written: &str) -> Result<Self, MaskError> {
        let mask = match written {
            "nir" => Mask::Nir,
            "email" => Mask::Email,
            "phone" => Mask::Phone,
            "initial" => Mask::Initial,
            "year" => Mask::Year,
            "year-month" => Mask::YearMonth,
            "redact" => Mask::Redact,
            _ => return Self::parse_keep(written),
        };
        Ok(mask)
    }

    fn parse_keep(written: &str) -> Result<Self, MaskError> {
        let unknown = || MaskError::Unknown(written.to_owned());
        let rest = written.strip_prefix("keep-").ok_or_else(unknown)?;
        let count = |digits: &str| -> Result<u16, MaskError> {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(unknown());
            }
            match digits.parse::<u16>() {
                Ok(n) if n <= MAX_KEEP => Ok(n),
                _ => Err(MaskError::TooMany(written.to_owned())),
            }
        };
        let (first, last) = if let Some(rest) = rest.strip_prefix("first-") {
            match rest.split_once("-last-") {
                Some((f, l)) => (count(f)?, count(l)?),
                None => (count(rest)?, 0),
            }
        } else if let Some(rest) = rest.strip_prefix("last-") {
            (0, count(rest)?)
        } else {
            return Err(unknown());
        };
        if first == 0 && last == 0 {
            return Err(MaskError::KeepsNothing(written.to_owned()));
        }
        Ok(Mask::Keep { first, last })
    }

    /// Whether the rule makes sense for values of this plaintext type.
    pub fn fits(&self, ty: &PlainType) -> bool {
        match self {
            Mask::Nir | Mask::Email | Mask::Phone | Mask::Initial => ty.is_character(),
            Mask::Year | Mask::YearMonth => ty.is_dated() || ty.is_character(),
            Mask::Redact => true,
            Mask::Keep { .. } => matches!(
                ty,
                PlainType::Text
                    | PlainType::Varchar(_)
                    | PlainType::Char(_)
                    | PlainType::Int2
                    | PlainType::Int4
                    | PlainType::Int8
                    | PlainType::Numeric(_)
                    | PlainType::Float4
                    | PlainType::Float8
                    | PlainType::Uuid
            ),
        }
    }

    /// Masks the text form of a value.
    pub fn apply(&self, value: &str) -> String {
        match *self {
            Mask::Nir => mask_nir(value),
            Mask::Email => mask_email(value),
            Mask::Phone => mask_phone(value),
            Mask::Initial => mask_initial(value),
            Mask::Year => mask_year(value),
            Mask::YearMonth => mask_year_month(value),
            Mask::Redact => redact(value),
            Mask::Keep { first, last } => keep(value, usize::from(first), usize::from(last)),
        }
    }
}

impl fmt::Display for Mask {
    /// The rule as a policy writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Nir => f.write_str("nir"),
            Mask::Email => f.write_str("email"),
            Mask::Phone => f.write_str("phone"),
            Mask::Initial => f.write_str("initial"),
            Mask::Year => f.write_str("year"),
            Mask::YearMonth => f.write_str("year-month"),
            Mask::Redact => f.write_str("redact"),
            Mask::Keep { first, last: 0 } => write!(f, "keep-first-{first}"),
            Mask::Keep { first: 0, last } => write!(f, "keep-last-{last}"),
            Mask::Keep { first, last } => write!(f, "keep-first-{first}-last-{last}"),
        }
    }
}

/// Checks the shape and control key of a NIR (French social security number) written with or
/// without spaces, and returns its 15 characters without spaces.
///
/// Accepted: sex digit 1, 2, 3, 4, 7 or 8; two digits of birth year, two of month; the
/// department (two digits, or `2A`/`2B` for Corsica, either case); eight more digits; the key,
/// 97 minus the 13-digit body modulo 97, where `2A` counts as `19` and `2B` as `18`.
pub fn normalize_nir(value: &str) -> Option<String> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = compact.as_bytes();
    if bytes.len() != 15 || !compact.is_ascii() {
        return None;
    }
    if !matches!(bytes[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
        return None;
    }
    let mut body = compact[..13].to_ascii_uppercase();
    let corsica = match &body[5..7] {
        "2A" => Some("19"),
        "2B" => Some("18"),
        _ => None,
    };
    if let Some(digits) = corsica {
        body.replace_range(5..7, digits);
    }
    if !body.bytes().all(|b| b.is_ascii_digit()) || !bytes[13..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let body: u64 = body.parse().ok()?;
    let key: u64 = compact[13..].parse().ok()?;
    if key != 97 - body % 97 {
        return None;
    }
    Some(compact.to_ascii_uppercase())
}

/// `nir`: `1 85 05 78 006 084 36` → `1 85 05 ** *** *** **`; anything that is not a valid NIR
/// (wrong length, letters, bad key) → `* ** ** ** *** *** **`.
pub fn mask_nir(value: &str) -> String {
    match normalize_nir(value) {
        Some(nir) => format!("{} {} {} ** *** *** **", &nir[0..1], &nir[1..3], &nir[3..5]),
        None => STARRED_NIR.to_owned(),
    }
}

/// `email`: `jean.dupont@exemple.fr` → `j***@exemple.fr`; no `@`, an empty local part or
/// domain, or white space inside → `***`.
pub fn mask_email(value: &str) -> String {
    let value = value.trim();
    let Some((local, domain)) = value.rsplit_once('@') else {
        return REDACTED.to_owned();
    };
    if local.is_empty()
        || domain.is_empty()
        || value.chars().any(char::is_whitespace)
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return REDACTED.to_owned();
    }
    let first = local.graphemes(true).next().unwrap_or_default();
    format!("{first}***@{domain}")
}

/// `phone`: keeps the separators, the first two digits (the country code and the next digit
/// after `+`, `00` and the next three after `00`) and the last two; stars the others.
/// `06 12 34 56 12` → `06 ** ** ** 12`, `+33 6 12 34 56 12` → `+33 6 ** ** ** 12`. Fewer than
/// four hidden digits, or characters other than digits, spaces, `.`, `-`, `/`, `(`, `)` and a
/// leading `+` → `** ** ** ** **`.
pub fn mask_phone(value: &str) -> String {
    let value = value.trim();
    let allowed = |(i, c): (usize, char)| {
        c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '/' | '(' | ')') || (c == '+' && i == 0)
    };
    if !value.char_indices().all(allowed) {
        return STARRED_PHONE.to_owned();
    }
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let keep_first = if value.starts_with('+') {
        3
    } else if value.starts_with("00") {
        5
    } else {
        2
    };
    let keep_last = 2;
    if digits < keep_first + keep_last + 4 {
        return STARRED_PHONE.to_owned();
    }
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen <= keep_first || seen > digits - keep_last {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// `initial`: the first character (grapheme) followed by a dot: `Élodie` → `É.`; an empty value
/// stays empty.
pub fn mask_initial(value: &str) -> String {
    match value.trim().graphemes(true).next() {
        Some(first) => format!("{first}."),
        None => String::new(),
    }
}

/// The year and month of a value whose text form starts with an ISO date (`date`, `timestamp`,
/// `timestamptz` in PostgreSQL's ISO DateStyle), with ` BC` when it ends so.
fn iso_year_month(value: &str) -> Option<(&str, &str, bool)> {
    let value = value.trim();
    let year_len = value.bytes().take_while(u8::is_ascii_digit).count();
    if year_len < 4 {
        return None;
    }
    let rest = &value[year_len..];
    let b = rest.as_bytes();
    if b.len() < 6 || b[0] != b'-' || b[3] != b'-' {
        return None;
    }
    // `get` rather than indexing: a multi-byte character may sit where a digit should.
    let month = rest.get(1..3)?;
    let day = rest.get(4..6)?;
    let after = rest.get(6..)?;
    let in_range = |s: &str, max: u8| {
        s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u8>().is_ok_and(|n| (1..=max).contains(&n))
    };
    if !in_range(month, 12) || !in_range(day, 31) {
        return None;
    }
    if !(after.is_empty() || after.starts_with(' ') || after.starts_with('T')) {
        return None;
    }
    Some((&value[..year_len], month, value.ends_with(" BC")))
}

/// `year`: `1985-05-17` (or `1985-05-17 10:00:00+02`) → `1985`; `infinity` and `-infinity` stay;
/// anything else → `****`.
pub fn mask_year(value: &str) -> String {
    if let Some(inf) = infinity(value) {
        return inf.to_owned();
    }
    match iso_year_month(value) {
        Some((year, _, bc)) => format!("{year}{}", if bc { " BC" } else { "" }),
        None => "****".to_owned(),
    }
}

/// `year-month`: `1985-05-17` → `1985-05`; `infinity` and `-infinity` stay; anything else →
/// `****-**`.
pub fn mask_year_month(value: &str) -> String {
    if let Some(inf) = infinity(value) {
        return inf.to_owned();
    }
    match iso_year_month(value) {
        Some((year, month, bc)) => format!("{year}-{month}{}", if bc { " BC" } else { "" }),
        None => "****-**".to_owned(),
    }
}

fn infinity(value: &str) -> Option<&'static str> {
    match value.trim() {
        "infinity" => Some("infinity"),
        "-infinity" => Some("-infinity"),
        _ => None,
    }
}

/// `redact`: any value → `***` (its length is not revealed).
pub fn redact(_value: &str) -> String {
    REDACTED.to_owned()
}

/// `keep-first-N-last-M`: keeps `first` characters at the start and `last` at the end, one `*`
/// per other character; a value of `first + last` characters or fewer is starred whole.
pub fn keep(value: &str, first: usize, last: usize) -> String {
    let graphemes: Vec<&str> = value.trim().graphemes(true).collect();
    let n = graphemes.len();
    if n <= first.saturating_add(last) {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(value.len());
    out.extend(graphemes[..first].iter().copied());
    out.extend(std::iter::repeat_n('*', n - first - last));
    out.extend(graphemes[n - last..].iter().copied());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for written in [
            "nir",
            "email",
            "phone",
            "initial",
            "year",
            "year-month",
            "redact",
            "keep-first-2",
            "keep-last-4",
            "keep-first-1-last-2",
            "keep-first-64",
        ] {
            let mask = Mask::parse(written).unwrap();
            assert_eq!(mask.to_string(), written);
        }
        assert_eq!(
            Mask::parse("keep-first-1-last-2"),
            Ok(Mask::Keep { first: 1, last: 2 })
        );
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "NIR",
            "keep",
            "keep-first-",
            "keep-first-x",
            "keep-2",
            "keep-first-1-last-",
            "keep-first--1",
            "keep-last-1-first-1",
        ] {
            assert_eq!(
                Mask::parse(bad),
                Err(MaskError::Unknown(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(
            Mask::parse("keep-first-0"),
            Err(MaskError::KeepsNothing("keep-first-0".into()))
        );
        assert_eq!(
            Mask::parse("keep-last-65"),
            Err(MaskError::TooMany("keep-last-65".into()))
        );
        assert_eq!(
            Mask::parse("keep-last-99999999999"),
            Err(MaskError::TooMany("keep-last-99999999999".into()))
        );
    }

    #[test]
    fn rules_fit_types() {
        assert!(Mask::Nir.fits(&PlainType::Varchar(Some(15))));
        assert!(!Mask::Nir.fits(&PlainType::Date));
        assert!(Mask::Year.fits(&PlainType::Timestamptz));
        assert!(Mask::Year.fits(&PlainType::Text));
        assert!(!Mask::Year.fits(&PlainType::Int4));
        assert!(Mask::Redact.fits(&PlainType::Bytea));
        assert!(Mask::Keep { first: 0, last: 2 }.fits(&PlainType::Int8));
        assert!(!Mask::Keep { first: 0, last: 2 }.fits(&PlainType::Bool));
        assert!(!Mask::Email.fits(&PlainType::Int8));
    }
}
