//! The clinical side of a patient: long-term conditions, the reason for each visit, and the
//! note and prescription written for it.
//!
//! A patient carries each chronic condition with its prevalence for their age band (and sex,
//! for those that concern one). At a visit, a patient with chronic conditions comes for one of
//! them a little more than half the time; otherwise the reason is an acute or preventive one
//! drawn by weight among those that fit their age, sex and the year (no COVID-19 before 2020).
//! Templates are filled with plausible measurements written the French way (`38,4 °C`).

use super::data::conditions::{CONDITIONS, Condition, Course, Who};
use super::nir::Sex;
use super::random::Dice;

/// Per cent of visits, for a patient with chronic conditions, that are about one of them.
const CHRONIC_VISIT_PERCENT: u32 = 55;

/// What a template needs to know about the patient at the visit.
#[derive(Debug, Clone, Copy)]
pub struct VisitContext {
    /// The patient's sex (for agreement: « patiente », « désorientée »).
    pub sex: Sex,
    /// The patient's age in whole years on the day of the visit.
    pub age: u32,
}

fn concerns(condition: &Condition, sex: Sex) -> bool {
    match condition.who {
        Who::Anyone => true,
        Who::Women => sex == Sex::Female,
        Who::Men => sex == Sex::Male,
    }
}

fn age_band(age: u32) -> usize {
    match age {
        0..=17 => 0,
        18..=44 => 1,
        45..=64 => 2,
        _ => 3,
    }
}

/// The chronic conditions of a patient of `sex` and `age` (at the reference day).
pub fn chronic_conditions(dice: &mut Dice, sex: Sex, age: u32) -> Vec<&'static Condition> {
    CONDITIONS
        .iter()
        .filter(|condition| match condition.course {
            Course::Chronic(prevalence) => {
                // Draw for every chronic condition, whatever the patient, so that one patient's
                // draws do not shift with the next condition's eligibility.
                let has = dice.per_mille(u32::from(prevalence[age_band(age)]));
                has && concerns(condition, sex)
            }
            Course::Acute(_) => false,
        })
        .collect()
}

/// The reason for a visit in `year` by a patient with chronic conditions `chronic`.
pub fn visit_reason(
    dice: &mut Dice,
    chronic: &[&'static Condition],
    context: VisitContext,
    year: i32,
) -> &'static Condition {
    if !chronic.is_empty()
        && dice.percent(CHRONIC_VISIT_PERCENT)
        && let Some(condition) = dice.pick(chronic)
    {
        return condition;
    }
    let fits = |condition: &Condition| {
        concerns(condition, context.sex)
            && (u32::from(condition.min_age)..=u32::from(condition.max_age)).contains(&context.age)
            && condition.since <= year
    };
    let weight = |condition: &Condition| match condition.course {
        Course::Acute(weight) if fits(condition) => u64::from(weight),
        _ => 0,
    };
    let total: u64 = CONDITIONS.iter().map(weight).sum();
    let mut target = dice.below(total);
    for condition in CONDITIONS {
        let w = weight(condition);
        if target < w {
            return condition;
        }
        target -= w;
    }
    // Unreachable with the embedded list (a common cold fits anyone), but never panic.
    &CONDITIONS[0]
}

/// The note and the prescription (if any) of a visit for `condition`.
pub fn write_visit(
    dice: &mut Dice,
    condition: &Condition,
    context: VisitContext,
) -> (String, Option<String>) {
    let note = dice
        .pick(condition.notes)
        .map(|t| render(t, dice, context))
        .unwrap_or_else(|| condition.label.to_owned());
    let prescription = dice
        .pick(condition.prescriptions)
        .filter(|t| !t.is_empty())
        .map(|t| render(t, dice, context));
    (note, prescription)
}

/// Fills a template's `{placeholders}`; an unknown placeholder is left as written.
pub fn render(template: &str, dice: &mut Dice, context: VisitContext) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match value(name, dice, context) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `tenths` as a French decimal with one digit: 384 → `38,4`.
fn tenths(tenths: u64) -> String {
    format!("{},{}", tenths / 10, tenths % 10)
}

/// `hundredths` as a French decimal with two digits: 145 → `1,45`.
fn hundredths(hundredths: u64) -> String {
    format!("{},{:02}", hundredths / 100, hundredths % 100)
}

/// A plausible weight in kilograms for an age.
fn weight_kg(dice: &mut Dice, age: u32) -> u64 {
    match age {
        0 => dice.between(4, 10),
        1..=12 => u64::from(age) * 3 + dice.between(6, 12),
        13..=17 => dice.between(40, 75),
        _ => dice.between(50, 112),
    }
}

fn value(name: &str, dice: &mut Dice, context: VisitContext) -> Option<String> {
    let female = context.sex == Sex::Female;
    let v = match name {
        "temp" => format!("{} °C", tenths(dice.between(378, 399))),
        "ta" => format!("{}/{} mmHg", dice.between(108, 142), dice.between(62, 88)),
        "ta_haute" => format!("{}/{} mmHg", dice.between(142, 176), dice.between(84, 102)),
        "fc" => format!("{}/min", dice.between(56, 98)),
        "spo2" => format!("{} %", dice.between(93, 99)),
        "poids" => format!("{} kg", weight_kg(dice, context.age)),
        "imc" => tenths(dice.between(190, 329)),
        "imc_obesite" => tenths(dice.between(301, 412)),
        "hba1c" => format!("{} %", tenths(dice.between(60, 94))),
        "ldl" => format!("{} g/L", hundredths(dice.between(90, 220))),
        "tsh" => format!("{} mUI/L", tenths(dice.between(5, 65))),
        "dfg" => format!("{} mL/min/1,73 m²", dice.between(30, 59)),
        "dfg_normal" => format!("{} mL/min/1,73 m²", dice.between(60, 105)),
        "eva" => dice.between(3, 8).to_string(),
        "jours" => dice.between(2, 7).to_string(),
        "semaines" => dice.between(2, 8).to_string(),
        "mois" => dice.between(1, 6).to_string(),
        "crises" => dice.between(1, 6).to_string(),
        "paquets" => dice.between(5, 40).to_string(),
        "cd4" => dice.between(450, 1100).to_string(),
        "psa" => format!("{} ng/mL", tenths(dice.between(5, 95))),
        "sa" => dice.between(8, 36).to_string(),
        "patient" => (if female { "patiente" } else { "patient" }).to_owned(),
        "Patient" => (if female { "La patiente" } else { "Le patient" }).to_owned(),
        "e" => (if female { "e" } else { "" }).to_owned(),
        "paracetamol" if context.age < 12 => {
            "Paracétamol suspension buvable : 1 dose-poids".to_owned()
        }
        "paracetamol" => "Paracétamol 1 g : 1 comprimé".to_owned(),
        _ => return None,
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_cim10(code: &str) -> bool {
        let b = code.as_bytes();
        let head = b.len() >= 3
            && b[0].is_ascii_uppercase()
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit();
        head && match &b[3..] {
            [] => true,
            [b'.', d] => d.is_ascii_digit(),
            _ => false,
        }
    }

    #[test]
    fn every_code_is_cim10_shaped_and_unique() {
        let mut codes: Vec<&str> = CONDITIONS.iter().map(|c| c.code).collect();
        for code in &codes {
            assert!(is_cim10(code), "{code}");
        }
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CONDITIONS.len());
    }

    #[test]
    fn every_template_renders_without_leftover_braces() {
        let mut dice = Dice::new(5, 0);
        for condition in CONDITIONS {
            assert!(!condition.notes.is_empty(), "{}", condition.code);
            assert!(!condition.prescriptions.is_empty(), "{}", condition.code);
            for template in condition.notes.iter().chain(condition.prescriptions) {
                for (sex, age) in [(Sex::Female, 4), (Sex::Male, 70)] {
                    let text = render(template, &mut dice, VisitContext { sex, age });
                    assert!(!text.contains(['{', '}']), "{}: {text}", condition.code);
                }
            }
        }
    }

    #[test]
    fn agreement_and_french_decimals() {
        let mut dice = Dice::new(6, 0);
        let woman = VisitContext {
            sex: Sex::Female,
            age: 80,
        };
        assert_eq!(
            render("{Patient} désorienté{e}.", &mut dice, woman),
            "La patiente désorientée."
        );
        let temp = render("{temp}", &mut dice, woman);
        assert!(temp.ends_with(" °C") && temp.contains(','), "{temp}");
        assert_eq!(render("{inconnu} {", &mut dice, woman), "{inconnu} {");
        assert_eq!(hundredths(105), "1,05");
    }

    #[test]
    fn visit_reasons_fit_the_patient() {
        let mut dice = Dice::new(7, 0);
        for _ in 0..2000 {
            let context = VisitContext {
                sex: Sex::Male,
                age: 8,
            };
            let reason = visit_reason(&mut dice, &[], context, 2019);
            assert!(reason.who != Who::Women, "{}", reason.code);
            assert!(reason.code != "U07.1");
            assert!(u32::from(reason.min_age) <= 8 && 8 <= u32::from(reason.max_age));
        }
    }

    #[test]
    fn chronic_conditions_grow_with_age() {
        let mut dice = Dice::new(8, 0);
        let count = |dice: &mut Dice, age| -> usize {
            (0..500)
                .map(|_| chronic_conditions(dice, Sex::Female, age).len())
                .sum()
        };
        let young = count(&mut dice, 25);
        let old = count(&mut dice, 75);
        assert!(old > 2 * young, "{young} {old}");
    }
}
