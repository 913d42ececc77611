//! Matchers of the kinds beyond identity and contact details: health professionals' RPPS
//! numbers, blood groups, the answers of health-status columns (serologies, pregnancy), French
//! postcodes and towns, sex codes and dates in general.
//!
//! Like [`super::detectors`]'s own matchers, each takes one value's text and answers yes or no;
//! none keeps or returns a value.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::detectors::fold;
use crate::seed::data::communes::COMMUNES;

/// Whether `value` is an RPPS number: 11 digits starting with `10`, the last a Luhn key.
pub fn is_rpps(value: &str) -> bool {
    let b = value.trim().as_bytes();
    b.len() == 11 && b.iter().all(u8::is_ascii_digit) && b.starts_with(b"10") && luhn(b)
}

/// The Luhn check over ASCII digits (the last one the key).
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                twice / 10 + twice % 10
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Whether `value` is an ABO group with its rhesus: `A+`, `AB -`, `O Rh+`, `B pos`, `0 négatif`.
pub fn is_blood_group(value: &str) -> bool {
    if value.len() > 24 {
        return false;
    }
    let folded: String = fold(value).chars().filter(|c| !c.is_whitespace()).collect();
    let rest = ["ab", "a", "b", "o", "0"]
        .iter()
        .find_map(|group| folded.strip_prefix(group));
    let Some(rest) = rest else {
        return false;
    };
    let rest = rest.strip_prefix("rh").unwrap_or(rest);
    matches!(
        rest,
        "+" | "-" | "pos" | "neg" | "positif" | "negatif" | "positive" | "negative"
    )
}

/// Whether `value` is one of the usual answers of a health-status column: a test result
/// (`positif`, `négatif`, `détecté`, `indétectable`, `douteux`, `non fait`), a yes or no
/// (`oui`, `non`, `true`, `false`, `t`, `f`, `0`, `1`, `+`, `-`).
pub fn is_status_answer(value: &str) -> bool {
    if value.len() > 32 {
        return false;
    }
    let folded = fold(value.trim());
    matches!(
        folded.as_str(),
        "positif"
            | "negatif"
            | "positive"
            | "negative"
            | "pos"
            | "neg"
            | "detecte"
            | "non detecte"
            | "indetectable"
            | "douteux"
            | "equivoque"
            | "non fait"
            | "en cours"
            | "oui"
            | "non"
            | "yes"
            | "no"
            | "true"
            | "false"
            | "t"
            | "f"
            | "0"
            | "1"
            | "+"
            | "-"
    )
}

/// Whether `value` is a French postcode: five digits, from a metropolitan department
/// (`01`–`95`, Corsica's `20`) or overseas (`97`, `98`).
pub fn is_postcode(value: &str) -> bool {
    let b = value.trim().as_bytes();
    if b.len() != 5 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let department = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    (1..=98).contains(&department) && department != 96
}

/// The folded names of the communes `pgseal seed` draws from.
fn towns() -> &'static HashSet<String> {
    static TOWNS: OnceLock<HashSet<String>> = OnceLock::new();
    TOWNS.get_or_init(|| COMMUNES.iter().map(|c| fold(c.name)).collect())
}

/// Whether `value` is a French town of the seed's list (any case, accents or not).
pub fn is_town(value: &str) -> bool {
    value.len() <= 128 && towns().contains(&fold(value.trim()))
}

/// Whether `value` is a sex code: `M`, `F`, `H`, `1`, `2`, `U`, `X`, or a word for one.
pub fn is_sex(value: &str) -> bool {
    if value.len() > 16 {
        return false;
    }
    matches!(
        fold(value.trim()).as_str(),
        "m" | "f"
            | "h"
            | "1"
            | "2"
            | "u"
            | "x"
            | "i"
            | "homme"
            | "femme"
            | "male"
            | "female"
            | "masculin"
            | "feminin"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RPPS body (10 digits) with its Luhn key.
    fn rpps(body: &str) -> String {
        (0..10)
            .map(|k| format!("{body}{k}"))
            .find(|n| luhn(n.as_bytes()))
            .expect("one key fits")
    }

    #[test]
    fn rpps_numbers_need_their_luhn_key() {
        let number = rpps("1000123456");
        assert!(is_rpps(&number), "{number}");
        let last = number.as_bytes()[10] - b'0';
        let wrong = format!("{}{}", &number[..10], (last + 1) % 10);
        assert!(!is_rpps(&wrong));
        assert!(!is_rpps("2000123456"));
        assert!(!is_rpps(""));
        assert!(!is_rpps("10001234567a"));
    }

    #[test]
    fn blood_groups_status_answers_postcodes_towns_and_sexes() {
        for group in ["A+", "AB-", "O Rh+", "b pos", "0 négatif", "AB+"] {
            assert!(is_blood_group(group), "{group}");
        }
        for not in ["A", "ABO", "C+", "Martin", "", "+"] {
            assert!(!is_blood_group(not), "{not}");
        }
        for answer in ["Négatif", "positif", "true", "f", "Non fait", "oui"] {
            assert!(is_status_answer(answer), "{answer}");
        }
        assert!(!is_status_answer("Bonne observance"));
        assert!(is_postcode("75015"));
        assert!(is_postcode("20000"));
        assert!(is_postcode("97400"));
        for not in ["7501", "00100", "96000", "99000", "750150", "7501a"] {
            assert!(!is_postcode(not), "{not}");
        }
        assert!(is_town("Bourg-en-Bresse"));
        assert!(is_town("AMBERIEU-EN-BUGEY"));
        assert!(!is_town("Atlantis"));
        assert!(is_sex("F") && is_sex("homme") && !is_sex("FF"));
    }
}
