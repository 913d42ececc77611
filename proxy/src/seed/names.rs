//! Names: a first name fitting the patient's sex and birth year, a last name, and the general
//! practitioners of each commune.
//!
//! First names follow fashion: a woman born in 1938 is more likely a Jeanne or a Simone, one
//! born in 2012 a Jade or a Louise. Within each list the most common names come up most.

use super::data::names::{COHORT_STARTS, FEMALE, LAST, MALE};
use super::nir::Sex;
use super::random::Dice;

/// A first name for someone of `sex` born in `birth_year`.
pub fn first_name(dice: &mut Dice, sex: Sex, birth_year: i32) -> &'static str {
    let cohort = COHORT_STARTS
        .iter()
        .rposition(|&start| birth_year >= start)
        .unwrap_or(0);
    let lists = match sex {
        Sex::Female => &FEMALE,
        Sex::Male => &MALE,
    };
    let list = lists.get(cohort).copied().unwrap_or(&[]);
    list.get(dice.skewed_index(list.len()))
        .copied()
        .unwrap_or("Camille")
}

/// A last name.
pub fn last_name(dice: &mut Dice) -> &'static str {
    LAST.get(dice.skewed_index(LAST.len()))
        .copied()
        .unwrap_or("Martin")
}

/// A general practitioner's name as written in a record: `Dr Claire Martin`.
pub fn doctor(dice: &mut Dice) -> String {
    let sex = if dice.percent(52) {
        Sex::Female
    } else {
        Sex::Male
    };
    // Practising GPs were born between about 1958 and 1995.
    let birth_year = dice.between(1958, 1995) as i32;
    let first = first_name(dice, sex, birth_year);
    let last = last_name(dice);
    format!("Dr {first} {last}")
}

/// A name as it can appear in an e-mail address: lower case ASCII, accents dropped, spaces
/// and apostrophes removed, hyphens kept (`Le Gall` → `legall`, `Jean-Éric` → `jean-eric`).
pub fn email_part(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            c => out.push_str(unaccented(c).unwrap_or_default()),
        }
    }
    out
}

/// The ASCII letters of a lower-case accented Latin letter of French names (`é` → `e`,
/// `œ` → `oe`); `None` for any other character.
pub(crate) fn unaccented(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'â' | 'ä' | 'á' | 'ã' => "a",
        'é' | 'è' | 'ê' | 'ë' => "e",
        'î' | 'ï' | 'í' => "i",
        'ô' | 'ö' | 'ó' | 'õ' => "o",
        'ù' | 'û' | 'ü' | 'ú' => "u",
        'ç' => "c",
        'ÿ' => "y",
        'ñ' => "n",
        'œ' => "oe",
        'æ' => "ae",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_non_empty_and_without_duplicates() {
        for list in FEMALE.iter().chain(MALE.iter()).chain([&LAST]) {
            assert!(list.len() >= 30);
            let mut sorted = list.to_vec();
            sorted.sort();
            let len = sorted.len();
            sorted.dedup();
            assert_eq!(sorted.len(), len, "duplicate in {list:?}");
        }
        assert!(LAST.len() >= 300);
    }

    #[test]
    fn first_names_follow_the_cohort() {
        let mut dice = Dice::new(1, 0);
        for _ in 0..200 {
            assert!(FEMALE[0].contains(&first_name(&mut dice, Sex::Female, 1930)));
            assert!(MALE[4].contains(&first_name(&mut dice, Sex::Male, 2020)));
            assert!(MALE[2].contains(&first_name(&mut dice, Sex::Male, 1970)));
        }
    }

    #[test]
    fn email_parts_are_plain_ascii() {
        assert_eq!(email_part("Le Gall"), "legall");
        assert_eq!(email_part("Jean-Éric"), "jean-eric");
        assert_eq!(email_part("Lefèvre"), "lefevre");
        assert_eq!(email_part("Gonçalves"), "goncalves");
        assert_eq!(email_part("Saïd"), "said");
        assert_eq!(email_part("Chloé"), "chloe");
        for name in LAST.iter().chain(FEMALE.iter().flat_map(|l| l.iter())) {
            let part = email_part(name);
            assert!(!part.is_empty(), "{name}");
            assert!(
                part.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}"
            );
        }
    }

    #[test]
    fn doctors_are_titled() {
        let mut dice = Dice::new(2, 0);
        let name = doctor(&mut dice);
        assert!(
            name.starts_with("Dr ") && name.split(' ').count() >= 3,
            "{name}"
        );
    }
}
