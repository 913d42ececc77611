//! Places: where a patient lives, where they were born, the phone prefixes and time zone of
//! their region, and a street address.
//!
//! Residences are drawn in proportion to each commune's weight (about its population). A
//! birthplace is, for three patients in four, a commune of the department they live in; one in
//! six was born elsewhere in France (moved since), and the rest abroad.

use std::sync::OnceLock;

use super::data::communes::{COMMUNES, Commune};
use super::data::names::BIRTH_COUNTRIES;
use super::data::streets::{COMPLEMENTS, STREET_NAMES, STREET_TYPES};
use super::random::{Dice, Weighted};

/// Where someone was born, as the NIR records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BirthPlace {
    /// A French commune.
    Commune(&'static Commune),
    /// Abroad: the INSEE country code (`350` is Morocco).
    Abroad(&'static str),
}

/// Per mille of patients born in the department they live in.
const BORN_IN_DEPARTMENT: u32 = 760;
/// Per mille of patients born elsewhere in France; the rest were born abroad.
const BORN_ELSEWHERE_IN_FRANCE: u32 = 170;

/// The department of a commune: the first two characters of its INSEE code, or three
/// overseas (`971`–`976`).
pub fn department(commune: &Commune) -> &'static str {
    let insee = commune.insee;
    let len = if insee.starts_with("97") { 3 } else { 2 };
    insee.get(..len).unwrap_or(insee)
}

/// Lookup tables built once over the embedded communes.
struct Tables {
    residence: Weighted,
    /// For each commune, the indexes of the communes of its department and their weights.
    same_department: Vec<(Vec<usize>, Weighted)>,
    countries: Weighted,
    street_types: Weighted,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let same_department = COMMUNES
            .iter()
            .map(|commune| {
                let members: Vec<usize> = COMMUNES
                    .iter()
                    .enumerate()
                    .filter(|(_, other)| department(other) == department(commune))
                    .map(|(i, _)| i)
                    .collect();
                let weights = Weighted::new(members.iter().map(|&i| COMMUNES[i].weight));
                (members, weights)
            })
            .collect();
        Tables {
            residence: Weighted::new(COMMUNES.iter().map(|c| c.weight)),
            same_department,
            countries: Weighted::new(BIRTH_COUNTRIES.iter().map(|&(_, _, w)| w)),
            street_types: Weighted::new(STREET_TYPES.iter().map(|&(_, w)| w)),
        }
    })
}

/// The index (into [`COMMUNES`]) of a commune to live in.
pub fn residence(dice: &mut Dice) -> usize {
    tables().residence.draw(dice).unwrap_or(0)
}

/// A birthplace for someone living in commune `home` (an index into [`COMMUNES`]).
pub fn birthplace(dice: &mut Dice, home: usize) -> BirthPlace {
    let tables = tables();
    let roll = dice.below(1000) as u32;
    if roll < BORN_IN_DEPARTMENT
        && let Some((members, weights)) = tables.same_department.get(home)
        && let Some(&index) = weights.draw(dice).and_then(|k| members.get(k))
    {
        return BirthPlace::Commune(&COMMUNES[index]);
    }
    if roll < BORN_IN_DEPARTMENT + BORN_ELSEWHERE_IN_FRANCE {
        let index = tables.residence.draw(dice).unwrap_or(0);
        return BirthPlace::Commune(&COMMUNES[index]);
    }
    let country = tables
        .countries
        .draw(dice)
        .and_then(|i| BIRTH_COUNTRIES.get(i))
        .map_or("350", |&(code, _, _)| code);
    BirthPlace::Abroad(country)
}

/// The phone numbering of a department: the landline prefix (`01`–`05`, or four digits
/// overseas) and the mobile prefixes.
pub fn phone_prefixes(department: &str) -> (&'static str, &'static [&'static str]) {
    const METROPOLITAN_MOBILE: &[&str] = &["06", "07"];
    let landline = match department {
        "971" => return ("0590", &["0690", "0691"]),
        "972" => return ("0596", &["0696", "0697"]),
        "973" => return ("0594", &["0694"]),
        "974" => return ("0262", &["0692", "0693"]),
        "976" => return ("0269", &["0639"]),
        "75" | "77" | "78" | "91" | "92" | "93" | "94" | "95" => "01",
        "14" | "18" | "22" | "27" | "28" | "29" | "35" | "36" | "37" | "41" | "44" | "45"
        | "49" | "50" | "53" | "56" | "61" | "72" | "76" | "85" => "02",
        "02" | "08" | "10" | "21" | "25" | "39" | "51" | "52" | "54" | "55" | "57" | "58"
        | "59" | "60" | "62" | "67" | "68" | "70" | "71" | "80" | "88" | "89" | "90" => "03",
        "09" | "12" | "16" | "17" | "19" | "23" | "24" | "31" | "32" | "33" | "40" | "46"
        | "47" | "64" | "65" | "79" | "81" | "82" | "86" | "87" => "05",
        // Auvergne-Rhône-Alpes, Provence, Corsica and eastern Occitanie.
        _ => "04",
    };
    (landline, METROPOLITAN_MOBILE)
}

/// Minutes east of UTC of the local time of an overseas department; `None` for metropolitan
/// France and Corsica (Europe/Paris, with summer time).
pub fn overseas_offset_minutes(department: &str) -> Option<i32> {
    match department {
        "971" | "972" => Some(-240),
        "973" => Some(-180),
        "974" => Some(240),
        "976" => Some(180),
        _ => None,
    }
}

/// A street address: `12 rue Victor Hugo`, `3 bis allée des Roses`, or with a building or
/// flat before it, `Résidence du Parc, 4 avenue Jean Jaurès`.
pub fn street_address(dice: &mut Dice) -> String {
    let tables = tables();
    let number = if dice.percent(85) {
        dice.between(1, 60)
    } else {
        dice.between(61, 200)
    };
    let suffix = match dice.below(100) {
        0..=4 => " bis",
        5 => " ter",
        _ => "",
    };
    let street_type = tables
        .street_types
        .draw(dice)
        .and_then(|i| STREET_TYPES.get(i))
        .map_or("rue", |&(t, _)| t);
    let name = dice
        .pick(STREET_NAMES)
        .copied()
        .unwrap_or("de la République");
    let street = format!("{number}{suffix} {street_type} {name}");
    if !dice.percent(15) {
        return street;
    }
    match dice.pick(COMPLEMENTS).copied() {
        Some("Appartement") => format!("Appartement {}, {street}", dice.between(1, 80)),
        Some(complement) => format!("{complement}, {street}"),
        None => street,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departments_read_from_insee_codes() {
        let find = |insee: &str| COMMUNES.iter().find(|c| c.insee == insee).unwrap();
        assert_eq!(department(find("75115")), "75");
        assert_eq!(department(find("2A004")), "2A");
        assert_eq!(department(find("97411")), "974");
    }

    #[test]
    fn most_patients_are_born_in_their_department() {
        let mut dice = Dice::new(9, 0);
        let (mut same, mut abroad) = (0, 0);
        for _ in 0..2000 {
            let home = residence(&mut dice);
            match birthplace(&mut dice, home) {
                BirthPlace::Commune(c) if department(c) == department(&COMMUNES[home]) => same += 1,
                BirthPlace::Commune(_) => {}
                BirthPlace::Abroad(_) => abroad += 1,
            }
        }
        assert!((1450..1750).contains(&same), "{same}");
        assert!((80..220).contains(&abroad), "{abroad}");
    }

    #[test]
    fn phone_prefixes_cover_every_department() {
        assert_eq!(phone_prefixes("75").0, "01");
        assert_eq!(phone_prefixes("29").0, "02");
        assert_eq!(phone_prefixes("67").0, "03");
        assert_eq!(phone_prefixes("13").0, "04");
        assert_eq!(phone_prefixes("2B").0, "04");
        assert_eq!(phone_prefixes("33").0, "05");
        assert_eq!(phone_prefixes("974"), ("0262", &["0692", "0693"][..]));
    }

    #[test]
    fn addresses_read_as_addresses() {
        let mut dice = Dice::new(4, 0);
        for _ in 0..500 {
            let address = street_address(&mut dice);
            assert!(!address.contains("  "), "{address}");
            let street = address.rsplit(", ").next().unwrap();
            assert!(
                street.starts_with(|c: char| c.is_ascii_digit()),
                "{address}"
            );
        }
    }
}
