//! Building NIRs (French social security numbers) for synthetic patients.
//!
//! A NIR is 15 characters: sex (`1` man, `2` woman) ‖ year of birth (2 digits) ‖ month of birth
//! (2) ‖ place of birth (5: the INSEE code of the commune — 2 characters of department and 3 of
//! commune, or 3 and 2 overseas — or `99` and a country code for someone born abroad) ‖ order
//! number (3, `001`–`999`) ‖ control key (2) = 97 − (the 13-digit body mod 97), with the
//! Corsican departments `2A` and `2B` read as `19` and `18` for the key.
//!
//! One historical rule is kept: people born in Corsica before 1976 (when it was split into
//! `2A` and `2B`) carry department `20`, as INSEE registered them.
//!
//! `pgseal_keys::validate_nir` accepts every NIR built here (the tests check it).

use super::calendar::Date;
use super::places::BirthPlace;

/// The body of a NIR: the 13 characters before the control key.
pub type NirBody = [u8; 13];

/// The sex digit of a NIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    /// A man: NIR digit `1`, `sex` column `M`.
    Male,
    /// A woman: NIR digit `2`, `sex` column `F`.
    Female,
}

impl Sex {
    /// The letter stored in the `sex` column.
    pub fn letter(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
        }
    }

    fn nir_digit(self) -> u8 {
        match self {
            Sex::Male => b'1',
            Sex::Female => b'2',
        }
    }
}

/// The body of the NIR of someone of `sex` born on `birth` at `place`, with order number
/// `order` (clamped to `1..=999`).
pub fn body(sex: Sex, birth: Date, place: BirthPlace, order: u16) -> NirBody {
    let mut body = [b'0'; 13];
    body[0] = sex.nir_digit();
    write_digits(&mut body[1..3], birth.year().rem_euclid(100) as u32);
    write_digits(&mut body[3..5], u32::from(birth.month()));
    match place {
        BirthPlace::Commune(commune) => {
            let insee = commune.insee.as_bytes();
            if insee.len() == 5 {
                body[5..10].copy_from_slice(insee);
            }
            if matches!(&body[5..7], b"2A" | b"2B") && birth.year() < 1976 {
                body[5..7].copy_from_slice(b"20");
            }
        }
        BirthPlace::Abroad(country) => {
            body[5..7].copy_from_slice(b"99");
            if country.len() == 3 {
                body[7..10].copy_from_slice(country.as_bytes());
            }
        }
    }
    write_digits(&mut body[10..13], u32::from(order.clamp(1, 999)));
    body
}

/// The control key of a NIR body: 97 − (body mod 97), `2A` read as `19` and `2B` as `18`.
pub fn control_key(body: &NirBody) -> u8 {
    let corsica = match &body[5..7] {
        b"2A" => Some(*b"19"),
        b"2B" => Some(*b"18"),
        _ => None,
    };
    let remainder = body.iter().enumerate().fold(0u32, |acc, (i, &c)| {
        let c = match (corsica, i) {
            (Some(digits), 5 | 6) => digits[i - 5],
            _ => c,
        };
        (acc * 10 + u32::from(c.wrapping_sub(b'0') % 10)) % 97
    });
    (97 - remainder) as u8
}

/// The full 15-character NIR of a body: the body and its control key.
pub fn format(body: &NirBody) -> String {
    let mut nir = String::with_capacity(15);
    nir.extend(body.iter().map(|&b| char::from(b)));
    let key = control_key(body);
    nir.push(char::from(b'0' + key / 10));
    nir.push(char::from(b'0' + key % 10));
    nir
}

/// The order number of a body.
pub fn order(body: &NirBody) -> u16 {
    body[10..13]
        .iter()
        .fold(0, |acc, &c| acc * 10 + u16::from(c - b'0'))
}

/// Sets the order number of a body (clamped to `1..=999`).
pub fn set_order(body: &mut NirBody, order: u16) {
    write_digits(&mut body[10..13], u32::from(order.clamp(1, 999)));
}

/// Writes `value` in decimal into `out`, zero-padded to its length.
fn write_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::data::communes::COMMUNES;

    fn commune(insee: &str) -> BirthPlace {
        BirthPlace::Commune(COMMUNES.iter().find(|c| c.insee == insee).unwrap())
    }

    #[test]
    fn a_known_nir_gets_its_key() {
        // The textbook example: a man born in May 1985 in commune 063 of department 75 (no
        // such commune exists: only the arithmetic matters here).
        let body: NirBody = *b"1850575063123";
        let expected = 97 - (1_850_575_063_123u64 % 97) as u8;
        assert_eq!(control_key(&body), expected);
        assert_eq!(format(&body), format!("1850575063123{expected:02}"));
    }

    #[test]
    fn corsica_is_read_as_19_and_18_for_the_key() {
        let birth = Date::new(1990, 7, 14).unwrap();
        let body = body(Sex::Female, birth, commune("2A004"), 42);
        assert_eq!(&body, b"290072A004042");
        let expected = 97 - (2_900_719_004_042u64 % 97) as u8;
        assert_eq!(control_key(&body), expected);
        let bastia = super::body(Sex::Male, birth, commune("2B033"), 7);
        let expected = 97 - (1_900_718_033_007u64 % 97) as u8;
        assert_eq!(control_key(&bastia), expected);
    }

    #[test]
    fn born_in_corsica_before_1976_is_department_20() {
        let birth = Date::new(1960, 1, 5).unwrap();
        assert_eq!(
            &body(Sex::Male, birth, commune("2B033"), 1),
            b"1600120033001"
        );
    }

    #[test]
    fn overseas_and_abroad_places() {
        let birth = Date::new(2001, 12, 1).unwrap();
        assert_eq!(
            &body(Sex::Male, birth, commune("97411"), 999),
            b"1011297411999"
        );
        assert_eq!(
            &body(Sex::Female, birth, BirthPlace::Abroad("350"), 0),
            b"2011299350001"
        );
    }

    #[test]
    fn every_built_nir_validates() {
        let mut count = 0;
        for (i, c) in COMMUNES.iter().enumerate() {
            for year in [1930, 1975, 1976, 1999, 2000, 2024] {
                let birth = Date::new(year, (i % 12) as u8 + 1, 1).unwrap();
                let sex = if i % 2 == 0 { Sex::Male } else { Sex::Female };
                let mut b = body(sex, birth, BirthPlace::Commune(c), (i % 999) as u16 + 1);
                let nir = format(&b);
                pgseal_keys::validate_nir(&nir).unwrap_or_else(|e| panic!("{nir}: {e}"));
                set_order(&mut b, 999);
                assert_eq!(order(&b), 999);
                pgseal_keys::validate_nir(&format(&b)).unwrap();
                count += 1;
            }
        }
        assert!(count > 2000);
    }
}
