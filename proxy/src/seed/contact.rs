//! Contact details: e-mail addresses and phone numbers.
//!
//! E-mail addresses use reserved example domains only (`exemple.fr`, `example.org`,
//! `example.com`, `example.net`), so no message can ever reach anyone. Phone numbers are
//! written the way French records show them, in pairs: `06 12 34 56 78`. Mobiles start `06` or
//! `07` in metropolitan France (`0690`, `0696`, `0694`, `0692`/`0693` and `0639` overseas);
//! landlines carry their region's prefix (`01` Île-de-France, `02` north-west, `03` north-east,
//! `04` south-east and Corsica, `05` south-west; `0590`, `0596`, `0594`, `0262`, `0269`
//! overseas). Numbers are random: any resemblance to an assigned line is chance.

use super::names::email_part;
use super::places::phone_prefixes;
use super::random::{Dice, Weighted};

/// E-mail domains with a relative weight.
const DOMAINS: [(&str, u32); 4] = [
    ("exemple.fr", 50),
    ("example.org", 20),
    ("example.com", 20),
    ("example.net", 10),
];

/// An e-mail address for `first last`, or `None` for a patient without one (most children,
/// half the very old, a few others).
pub fn email(
    dice: &mut Dice,
    first: &str,
    last: &str,
    age: u32,
    birth_year: i32,
) -> Option<String> {
    let without = match age {
        0..=14 => 85,
        15..=79 => 8,
        _ => 55,
    };
    if dice.percent(without) {
        return None;
    }
    let first = email_part(first);
    let last = email_part(last);
    let local = match dice.below(100) {
        0..=49 => format!("{first}.{last}{}", dice.between(1, 99)),
        50..=74 => format!("{first}.{last}"),
        75..=89 => {
            let initial = first.chars().next().unwrap_or('x');
            format!("{initial}{last}{}", dice.between(1, 999))
        }
        _ => format!("{first}.{last}{:02}", birth_year.rem_euclid(100)),
    };
    let domains = Weighted::new(DOMAINS.iter().map(|&(_, w)| w));
    let domain = domains
        .draw(dice)
        .and_then(|i| DOMAINS.get(i))
        .map_or("exemple.fr", |&(d, _)| d);
    Some(format!("{local}@{domain}"))
}

/// A phone number for someone living in `department`, or `None` for the few without one.
pub fn phone(dice: &mut Dice, department: &str, age: u32) -> Option<String> {
    if dice.percent(3) {
        return None;
    }
    let mobile_percent = if age >= 75 { 45 } else { 85 };
    let (landline, mobiles) = phone_prefixes(department);
    let mut digits = String::with_capacity(10);
    if dice.percent(mobile_percent) {
        let prefix = dice.pick(mobiles).copied().unwrap_or("06");
        digits.push_str(prefix);
        if prefix == "07" {
            // Mobile numbers starting 07 are 073 to 079.
            digits.push(char::from(b'0' + dice.between(3, 9) as u8));
        }
    } else {
        digits.push_str(landline);
        if landline.len() == 2 {
            // The first subscriber digit is not 0.
            digits.push(char::from(b'0' + dice.between(1, 9) as u8));
        }
    }
    while digits.len() < 10 {
        digits.push(char::from(b'0' + dice.below(10) as u8));
    }
    Some(in_pairs(&digits))
}

/// `0612345678` → `06 12 34 56 78`.
fn in_pairs(digits: &str) -> String {
    let mut out = String::with_capacity(14);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 2 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn well_formed_phone(phone: &str) -> bool {
        let pairs: Vec<&str> = phone.split(' ').collect();
        pairs.len() == 5
            && pairs
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
            && phone.starts_with('0')
    }

    #[test]
    fn phones_are_ten_digits_in_pairs_with_the_region_prefix() {
        let mut dice = Dice::new(1, 0);
        for department in ["75", "29", "67", "13", "33", "2A", "971", "974", "976"] {
            for _ in 0..200 {
                let Some(phone) = phone(&mut dice, department, 40) else {
                    continue;
                };
                assert!(well_formed_phone(&phone), "{phone}");
                let digits: String = phone.split(' ').collect();
                let (landline, mobiles) = phone_prefixes(department);
                assert!(
                    digits.starts_with(landline) || mobiles.iter().any(|m| digits.starts_with(m)),
                    "{department}: {phone}"
                );
            }
        }
    }

    #[test]
    fn emails_use_reserved_domains() {
        let mut dice = Dice::new(2, 0);
        let mut some = 0;
        for _ in 0..500 {
            if let Some(email) = email(&mut dice, "Hélène", "Le Goff", 40, 1984) {
                some += 1;
                let (local, domain) = email.split_once('@').unwrap();
                assert!(DOMAINS.iter().any(|&(d, _)| d == domain), "{email}");
                assert!(local.contains("legoff"), "{email}");
                assert!(email.is_ascii());
            }
        }
        assert!(some > 400);
        assert_eq!(in_pairs("0612345678"), "06 12 34 56 78");
    }
}
