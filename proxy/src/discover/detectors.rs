//! Detectors: what kind of personal data a column holds, judged by its name and by the share of
//! its sampled values that match each kind.
//!
//! Every matcher works on one value's text and answers yes or no; [`assess`] counts the answers
//! over a column's sample and weighs them with the hints its name gives. Nothing here keeps,
//! returns or formats a value: evidence is counts and shapes only, so a report built from it
//! cannot leak patient data.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use super::matchers;
use super::sample::ColumnSample;
use crate::seed::data::{names, streets};

/// A kind of personal data a column can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A NIR (French social security number).
    Nir,
    /// An e-mail address.
    Email,
    /// A French phone number.
    Phone,
    /// A date of birth.
    BirthDate,
    /// A first name.
    FirstName,
    /// A last name.
    LastName,
    /// A postal address.
    Address,
    /// An ICD-10 (CIM-10) diagnosis code.
    Icd10,
    /// A health professional's RPPS number.
    Rpps,
    /// A blood group.
    BloodGroup,
    /// A health status named by its column (a serology, a pregnancy): test results or yes/no.
    HealthStatus,
    /// A lab result's value, named by its column and table (`results.value`).
    LabResult,
    /// A French postcode.
    Postcode,
    /// A town.
    City,
    /// A date of care named by its column (inclusion, admission, event, visit, stay, death).
    CareDate,
    /// A sex code.
    Sex,
    /// Free text (clinical notes, prescriptions, comments).
    FreeText,
}

impl Kind {
    /// Every kind, in the order a column's main kind is chosen when several are confident.
    pub const ALL: [Kind; 17] = [
        Kind::Nir,
        Kind::Email,
        Kind::Phone,
        Kind::BirthDate,
        Kind::Icd10,
        Kind::Rpps,
        Kind::BloodGroup,
        Kind::HealthStatus,
        Kind::LabResult,
        Kind::FirstName,
        Kind::LastName,
        Kind::Address,
        Kind::Postcode,
        Kind::City,
        Kind::CareDate,
        Kind::Sex,
        Kind::FreeText,
    ];

    /// The kind's name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Nir => "NIR",
            Kind::Email => "e-mail",
            Kind::Phone => "phone",
            Kind::BirthDate => "date of birth",
            Kind::FirstName => "first name",
            Kind::LastName => "last name",
            Kind::Address => "postal address",
            Kind::Icd10 => "ICD-10 code",
            Kind::Rpps => "RPPS number",
            Kind::BloodGroup => "blood group",
            Kind::HealthStatus => "health status",
            Kind::LabResult => "lab result",
            Kind::Postcode => "postcode",
            Kind::City => "town",
            Kind::CareDate => "date of care",
            Kind::Sex => "sex",
            Kind::FreeText => "free text",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What was seen of one kind in one column: counts and shapes, never a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The kind.
    pub kind: Kind,
    /// The column's name suggests this kind.
    pub by_name: bool,
    /// Sampled non-null values that match the kind.
    pub matched: usize,
    /// Sampled non-null values.
    pub sampled: usize,
    /// What the matching values look like (`15 characters, control key valid`).
    pub shape: String,
    /// Strong enough to seal without a second look.
    pub confident: bool,
}

impl Evidence {
    /// The share of sampled values that match, 0 when nothing was sampled.
    pub fn share(&self) -> f64 {
        if self.sampled == 0 {
            0.0
        } else {
            self.matched as f64 / self.sampled as f64
        }
    }
}

/// The share of values above which content alone makes a kind confident.
pub const STRONG_SHARE: f64 = 0.5;
/// The share of values above which content, with a name that suggests the kind, is confident.
pub const NAMED_SHARE: f64 = 0.2;
/// The share of values below which content alone is not even reported.
pub const WEAK_SHARE: f64 = 0.1;

/// Judges one sampled column of table `table`: the evidence for every kind it may hold,
/// confident ones first.
pub fn assess(column: &ColumnSample, table: &str, today: (i32, u8, u8)) -> Vec<Evidence> {
    let values = &column.values;
    let sampled = values.len();
    let hints = NameHints::of(&column.name);
    let share_of = |matched: usize| {
        if sampled == 0 {
            0.0
        } else {
            matched as f64 / sampled as f64
        }
    };
    let count = |matches: &dyn Fn(&str) -> bool| values.iter().filter(|v| matches(v)).count();
    let mut found = Vec::new();
    let mut push = |kind: Kind, matched: usize, shape: String, confident: Option<bool>| {
        let by_name = hints.has(kind);
        let share = if sampled == 0 {
            0.0
        } else {
            matched as f64 / sampled as f64
        };
        let confident =
            confident.unwrap_or(share >= STRONG_SHARE || (by_name && share >= NAMED_SHARE));
        if confident || by_name || share >= WEAK_SHARE {
            found.push(Evidence {
                kind,
                by_name,
                matched,
                sampled,
                shape,
                confident,
            });
        }
    };

    if column.text_like || super::sample::may_hold_nir(column) {
        let valid = count(&|v| is_nir(v));
        let shaped = count(&|v| nir_shaped(v));
        let shape = if shaped > valid {
            format!(
                "15 characters, control key valid in {valid}, NIR-shaped with a wrong key in {}",
                shaped - valid
            )
        } else {
            "15 characters, control key valid".to_string()
        };
        push(Kind::Nir, valid, shape, None);
    }

    if column.text_like {
        push(
            Kind::Email,
            count(&|v| is_email(v)),
            "local part @ domain".into(),
            None,
        );
        push(
            Kind::Phone,
            count(&|v| is_phone(v)),
            "10 digits from 0, or +33 / 0033 and 9 digits".into(),
            None,
        );
        push(
            Kind::Icd10,
            count(&|v| is_icd10(v)),
            "a letter, 2 digits, optional dot and more".into(),
            None,
        );
        let first = count(&|v| is_first_name(v));
        let last = count(&|v| is_last_name(v));
        // First and last names overlap (Martin, Thomas): the larger share wins, the other is
        // kept only when the name says so or it is near as large.
        let (first_ok, last_ok) = (
            first * 10 >= last * 7 || hints.has(Kind::FirstName),
            last * 10 >= first * 7 || hints.has(Kind::LastName),
        );
        if first_ok {
            push(
                Kind::FirstName,
                first,
                "a first name of pgseal seed's lists".into(),
                None,
            );
        }
        if last_ok {
            push(
                Kind::LastName,
                last,
                "a last name of pgseal seed's lists".into(),
                None,
            );
        }
        push(
            Kind::Address,
            count(&|v| is_address(v)),
            "a number and a street type, or a postcode and a town".into(),
            None,
        );
    }

    if column.text_like {
        push(
            Kind::Rpps,
            count(&|v| matchers::is_rpps(v)),
            "11 digits from 10, Luhn key valid".into(),
            None,
        );
        push(
            Kind::BloodGroup,
            count(&|v| matchers::is_blood_group(v)),
            "an ABO group and its rhesus".into(),
            None,
        );
        push(
            Kind::Postcode,
            count(&|v| matchers::is_postcode(v)),
            "5 digits of a French department".into(),
            None,
        );
        push(
            Kind::City,
            count(&|v| matchers::is_town(v)),
            "a town of pgseal seed's communes".into(),
            None,
        );
        // Words and codes too common to be told by content alone: only where the name says so.
        if hints.has(Kind::HealthStatus) {
            let matched = count(&|v| matchers::is_status_answer(v));
            push(
                Kind::HealthStatus,
                matched,
                "a test result or a yes or no".into(),
                Some(share_of(matched) >= NAMED_SHARE),
            );
        }
        if hints.has(Kind::Sex) {
            let matched = count(&|v| matchers::is_sex(v));
            // A quasi-identifier: left for review, never sealed without a second look.
            push(Kind::Sex, matched, "a sex code".into(), Some(false));
        }
    }

    if hints.has(Kind::CareDate)
        && !hints.has(Kind::BirthDate)
        && (column.date_like || column.text_like)
    {
        let matched = count(&|v| leading_date(v).is_some());
        push(
            Kind::CareDate,
            matched,
            format!("a date ({})", column.storage_type),
            Some(share_of(matched) >= STRONG_SHARE),
        );
    }

    if hints.has(Kind::BirthDate) && (column.date_like || column.text_like) {
        let matched = count(&|v| is_birth_date(v, today));
        push(
            Kind::BirthDate,
            matched,
            format!("a date between 1900 and today ({})", column.storage_type),
            Some(share_of(matched) >= STRONG_SHARE),
        );
    }

    if NameHints::of(table).any(&[], LAB_TABLES) && hints.any(&[], LAB_VALUES) {
        // A result's value is numbers and words of every kind: named so in a results table,
        // anything sampled is one.
        found.push(Evidence {
            kind: Kind::LabResult,
            by_name: true,
            matched: sampled,
            sampled,
            shape: "a value of a results table".into(),
            confident: sampled > 0,
        });
    }

    if column.text_like {
        let prose = count(&|v| is_prose(v));
        // Mentions inside text: a value that is itself a NIR or a phone number is not text.
        let mentions = values
            .iter()
            .filter(|v| v.split_whitespace().nth(2).is_some() && !is_phone(v) && !is_nir(v))
            .filter(|v| mentions_kinds(v))
            .count();
        let share = if sampled == 0 {
            0.0
        } else {
            prose as f64 / sampled as f64
        };
        let by_name = hints.has(Kind::FreeText);
        let confident = share >= STRONG_SHARE
            || (by_name && share >= NAMED_SHARE)
            || (prose > 0 && mentions * 20 >= sampled.max(1));
        if confident || by_name || share >= NAMED_SHARE || mentions > 0 {
            found.push(Evidence {
                kind: Kind::FreeText,
                by_name,
                matched: prose,
                sampled,
                shape: format!(
                    "sentences (40+ characters, 6+ words){}",
                    if mentions > 0 {
                        format!("; {mentions} mention a NIR, e-mail or phone number")
                    } else {
                        String::new()
                    }
                ),
                confident,
            });
        }
    }

    found.sort_by_key(|e| {
        (
            !e.confident,
            Kind::ALL
                .iter()
                .position(|k| *k == e.kind)
                .unwrap_or(usize::MAX),
        )
    });
    found
}

/// Words of a table's name that make it a table of lab results.
const LAB_TABLES: &[&str] = &[
    "result",
    "resultat",
    "analyse",
    "analysis",
    "biolog",
    "observation",
    "measurement",
    "mesure",
    "examen",
    "labo",
];

/// Words of a column's name that make it a result's value, in a table of lab results.
const LAB_VALUES: &[&str] = &["value", "valeur", "result", "resultat"];

/// The kinds a column's name suggests (`birth_date` → date of birth).
pub fn named_kinds(column: &str) -> Vec<Kind> {
    let hints = NameHints::of(column);
    Kind::ALL.into_iter().filter(|k| hints.has(*k)).collect()
}

/// The kinds a column's name suggests.
struct NameHints {
    /// The name's words (split at `_`, `-`, digits and lower-to-upper case changes), folded.
    words: Vec<String>,
    /// The whole name folded, without separators.
    compact: String,
}

impl NameHints {
    fn of(column: &str) -> NameHints {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut previous_lower = false;
        for c in column.chars() {
            let split = !c.is_alphabetic() || (c.is_uppercase() && previous_lower);
            if split && !word.is_empty() {
                words.push(fold(&word));
                word.clear();
            }
            if c.is_alphabetic() {
                word.push(c);
            }
            previous_lower = c.is_lowercase();
        }
        if !word.is_empty() {
            words.push(fold(&word));
        }
        let compact = words.concat();
        NameHints { words, compact }
    }

    /// Whether a word of the name is one of `exact`, or the whole name contains one of `within`.
    fn any(&self, exact: &[&str], within: &[&str]) -> bool {
        self.words.iter().any(|w| exact.contains(&w.as_str()))
            || within.iter().any(|w| self.compact.contains(w))
    }

    fn has(&self, kind: Kind) -> bool {
        match kind {
            Kind::Nir => self.any(
                &["nir", "nss", "insee", "ins", "secu", "ssn"],
                &["securitesociale", "socialsecurity", "numsecu"],
            ),
            Kind::Email => self.any(&["mail"], &["email", "courriel"]),
            Kind::Phone => self.any(
                &["tel", "gsm", "fixe", "portable", "mobile"],
                &["phone", "telephone"],
            ),
            Kind::BirthDate => self.any(&["dob", "ddn", "dn"], &["birth", "naiss", "born"]),
            Kind::FirstName => self.any(&[], &["firstname", "prenom", "givenname", "forename"]),
            Kind::LastName => self.any(
                &["nom"],
                &[
                    "lastname",
                    "surname",
                    "familyname",
                    "nomdefamille",
                    "nomusage",
                    "nomnaissance",
                    "patronyme",
                ],
            ),
            Kind::Address => self.any(
                &["addr", "adr", "rue", "voie"],
                &["address", "adresse", "street"],
            ),
            Kind::Icd10 => self.any(
                &["cim", "icd", "dp", "das"],
                &["diagnos", "cim10", "icd10", "pathologie"],
            ),
            Kind::Rpps => self.any(&["rpps", "adeli"], &["rpps"]),
            Kind::BloodGroup => self.any(
                &["abo", "rhesus"],
                &["bloodgroup", "bloodtype", "groupesanguin", "groupsanguin"],
            ),
            Kind::HealthStatus => self.any(
                &["hiv", "vih", "vhc", "vhb", "ivg", "pregnant", "enceinte"],
                &[
                    "serolog",
                    "pregnan",
                    "grossesse",
                    "hepatit",
                    "handicap",
                    "psychiatr",
                    "addiction",
                    "toxico",
                    "contracept",
                    "seropositi",
                ],
            ),
            Kind::LabResult => false,
            Kind::Postcode => self.any(
                &["cp", "zip", "npa"],
                &["postcode", "postalcode", "codepostal", "zipcode"],
            ),
            Kind::City => self.any(
                &["city", "ville", "commune", "town", "localite"],
                &["birthplace", "lieunaissance"],
            ),
            Kind::CareDate => {
                (self
                    .words
                    .iter()
                    .any(|w| w == "date" || w == "at" || w == "le" || w == "dt")
                    || self.words.len() == 1)
                    && self.any(
                        &["event", "visit", "visite", "deces", "death", "rdv", "soin"],
                        &[
                            "inclusion",
                            "admission",
                            "entree",
                            "sortie",
                            "evenement",
                            "sejour",
                            "hospitalis",
                            "consultation",
                            "intervention",
                            "discharge",
                        ],
                    )
            }
            Kind::Sex => self.any(&["sex", "sexe", "gender", "genre"], &[]),
            Kind::FreeText => self.any(
                &["cr", "text", "obs", "memo"],
                &[
                    "note",
                    "comment",
                    "observation",
                    "remark",
                    "remarque",
                    "compterendu",
                    "description",
                    "anamnese",
                    "prescription",
                    "ordonnance",
                    "conclusion",
                    "synthese",
                    "motif",
                    "histoire",
                    "texte",
                ],
            ),
        }
    }
}

/// Lower case, accents dropped: `Hélène` → `helene`, `ÉLODIE` → `elodie`.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        match crate::seed::names::unaccented(c) {
            Some(letters) => out.push_str(letters),
            None => out.push(c),
        }
    }
    out
}

/// Whether `value` is a well-formed NIR (spaces allowed between its groups) with a valid
/// control key: 97 − (body mod 97), Corsican `2A`/`2B` read as `19`/`18`.
pub fn is_nir(value: &str) -> bool {
    let compact: String = value.chars().filter(|c| *c != ' ').collect();
    compact.len() == 15 && pgseal_keys::validate_nir(&compact).is_ok()
}

/// Whether `value` has a NIR's shape (sex digit, 12 more characters of digits or a Corsican
/// department, 2 key digits), whatever its key.
pub fn nir_shaped(value: &str) -> bool {
    let compact: Vec<u8> = value.bytes().filter(|b| *b != b' ').collect();
    if compact.len() != 15 || !matches!(compact[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
        return false;
    }
    compact.iter().enumerate().all(|(i, &b)| {
        b.is_ascii_digit()
            || (i == 5 && b == b'2' && matches!(compact[6], b'A' | b'B'))
            || (i == 6 && matches!(b, b'A' | b'B') && compact[5] == b'2')
    })
}

/// Whether `value` looks like an e-mail address: one `@`, a non-empty local part, a dotted
/// domain, no white space.
pub fn is_email(value: &str) -> bool {
    let value = value.trim();
    if value.len() > 254 || value.chars().any(char::is_whitespace) {
        return false;
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
}

/// Whether `value` is a French phone number: `0X XX XX XX XX`, `+33 X XX XX XX XX`,
/// `+33 (0)X …` or `0033 X …`, with or without separators (space `.` `-` `/`).
pub fn is_phone(value: &str) -> bool {
    let value = value.trim();
    if value.is_empty() || value.len() > 32 {
        return false;
    }
    let (international, rest) = match value.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let rest = rest.replacen("(0)", "", 1);
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '/'))
    {
        return false;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    let national = if international {
        digits.strip_prefix("33")
    } else if let Some(rest) = digits.strip_prefix("0033") {
        Some(rest)
    } else {
        return digits.len() == 10 && digits.starts_with('0') && !digits[1..].starts_with('0');
    };
    national.is_some_and(|n| n.len() == 9 && !n.starts_with('0'))
}

/// Whether `value` is an ICD-10 code: an upper-case letter, two digits, and optionally a dot
/// and one to four more digits or letters (`E11`, `E11.9`, `J45.0`, `S7200`).
pub fn is_icd10(value: &str) -> bool {
    let b = value.trim().as_bytes();
    if b.len() < 3 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_digit() {
        return false;
    }
    if !b[2].is_ascii_digit() {
        return false;
    }
    let rest = match b.get(3) {
        None => return true,
        Some(b'.') => &b[4..],
        // Without a dot, a digit follows: `C09AA05` is an ATC drug code, not a diagnosis.
        Some(c) if c.is_ascii_digit() => &b[3..],
        Some(_) => return false,
    };
    (1..=4).contains(&rest.len())
        && rest
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
}

/// The folded first names and last names of `pgseal seed`'s lists.
fn name_sets() -> &'static (HashSet<String>, HashSet<String>) {
    static SETS: OnceLock<(HashSet<String>, HashSet<String>)> = OnceLock::new();
    SETS.get_or_init(|| {
        let first = names::FEMALE
            .iter()
            .chain(names::MALE.iter())
            .flat_map(|cohort| cohort.iter())
            .map(|n| fold(n))
            .collect();
        let last = names::LAST.iter().map(|n| fold(n)).collect();
        (first, last)
    })
}

/// Whether the whole value, or each of its parts (`Jean-Pierre`), is one of the listed names.
fn is_listed(value: &str, list: &HashSet<String>) -> bool {
    if value.len() > 256 {
        return false;
    }
    let folded = fold(value.trim());
    if folded.is_empty() {
        return false;
    }
    list.contains(&folded)
        || folded
            .split(['-', ' '])
            .all(|part| !part.is_empty() && list.contains(part))
}

/// Whether `value` is a first name of the seed's lists (any case, accents or not).
pub fn is_first_name(value: &str) -> bool {
    is_listed(value, &name_sets().0)
}

/// Whether `value` is a last name of the seed's lists (any case, accents or not).
pub fn is_last_name(value: &str) -> bool {
    is_listed(value, &name_sets().1)
}

/// Street-type words: the seed's, and the usual abbreviations.
fn street_types() -> &'static HashSet<String> {
    static TYPES: OnceLock<HashSet<String>> = OnceLock::new();
    TYPES.get_or_init(|| {
        streets::STREET_TYPES
            .iter()
            .map(|(t, _)| fold(t))
            .chain(
                [
                    "av",
                    "ave",
                    "bd",
                    "bld",
                    "bvd",
                    "all",
                    "imp",
                    "pl",
                    "rte",
                    "ch",
                    "che",
                    "lieu-dit",
                    "lotissement",
                    "residence",
                    "square",
                    "sentier",
                    "passage",
                    "faubourg",
                    "fg",
                    "hameau",
                    "voie",
                    "cite",
                    "esplanade",
                    "promenade",
                ]
                .map(String::from),
            )
            .collect()
    })
}

/// Whether `value` looks like a postal address: a number followed by a street-type word
/// (`12 rue …`, `3 bis av. …`), or a five-digit postcode followed by a town.
pub fn is_address(value: &str) -> bool {
    if value.len() > 512 {
        return false;
    }
    let folded = fold(value);
    let words: Vec<&str> = folded
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_end_matches('.'))
        .collect();
    let numbered_street = words.windows(2).any(|pair| {
        street_types().contains(pair[1])
            && pair[0].bytes().next().is_some_and(|b| b.is_ascii_digit())
    }) || words.windows(3).any(|w| {
        matches!(w[1], "bis" | "ter" | "b" | "t")
            && street_types().contains(w[2])
            && w[0].bytes().all(|b| b.is_ascii_digit())
    });
    let postcode_town = words.windows(2).any(|pair| {
        pair[0].len() == 5
            && pair[0].bytes().all(|b| b.is_ascii_digit())
            && pair[1].chars().next().is_some_and(char::is_alphabetic)
    });
    numbered_street || postcode_town
}

/// Reads a date at the start of `value`: ISO `YYYY-MM-DD` (dates, timestamps) or French
/// `DD/MM/YYYY`.
fn leading_date(value: &str) -> Option<(i32, u8, u8)> {
    let b = value.trim().as_bytes();
    let number = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let (y, m, d) = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        (number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?)
    } else if b.len() >= 10 && b[2] == b'/' && b[5] == b'/' {
        (number(&b[6..10])?, number(&b[3..5])?, number(&b[0..2])?)
    } else {
        return None;
    };
    if b.len() > 10 && !matches!(b[10], b' ' | b'T') {
        return None;
    }
    let (m, d) = (u8::try_from(m).ok()?, u8::try_from(d).ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((i32::try_from(y).ok()?, m, d))
}

/// Whether `value` is a date (or timestamp) between 1900-01-01 and `today`.
pub fn is_birth_date(value: &str, today: (i32, u8, u8)) -> bool {
    leading_date(value).is_some_and(|date| date >= (1900, 1, 1) && date <= today)
}

/// Whether `value` reads as sentences: 40 characters or more and 6 words or more.
pub fn is_prose(value: &str) -> bool {
    value.chars().take(40).count() >= 40 && value.split_whitespace().take(6).count() >= 6
}

/// Whether a text mentions a NIR, an e-mail address or a phone number somewhere in it.
pub fn mentions_kinds(value: &str) -> bool {
    if value
        .split_whitespace()
        .any(|w| is_email(w.trim_matches(|c: char| !c.is_alphanumeric())))
    {
        return true;
    }
    // Runs of digits and separators: a phone number or a NIR written in groups.
    let mut run = String::new();
    let check = |run: &str| {
        let run = run.trim_matches(|c: char| !c.is_ascii_digit() && c != '+');
        is_phone(run) || is_nir(run)
    };
    for c in value.chars() {
        if c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '+' | 'A' | 'B') {
            run.push(c);
        } else {
            if check(&run) {
                return true;
            }
            run.clear();
        }
    }
    check(&run)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NIR body with its key appended.
    fn with_key(body: &str) -> String {
        let digits = body.replace("2A", "19").replace("2B", "18");
        let n: u64 = digits.parse().unwrap();
        format!("{body}{:02}", 97 - n % 97)
    }

    #[test]
    fn nirs_need_their_control_key() {
        let nir = with_key("1850575063123");
        assert!(is_nir(&nir));
        assert!(nir_shaped(&nir));
        let spaced = format!(
            "{} {} {} {} {} {} {}",
            &nir[0..1],
            &nir[1..3],
            &nir[3..5],
            &nir[5..7],
            &nir[7..10],
            &nir[10..13],
            &nir[13..15]
        );
        assert!(is_nir(&spaced));
        let key: u8 = nir[13..].parse().unwrap();
        let wrong = format!("{}{:02}", &nir[..13], (key % 97) + 1);
        assert!(!is_nir(&wrong));
        assert!(nir_shaped(&wrong));
        assert!(!is_nir("185057506312"));
        assert!(!is_nir("5850575063123 45"));
        assert!(!is_nir(""));
    }

    #[test]
    fn corsican_nirs_read_2a_and_2b_as_19_and_18() {
        let ajaccio = with_key("290072A004042");
        let bastia = with_key("190072B033007");
        assert!(is_nir(&ajaccio), "{ajaccio}");
        assert!(is_nir(&bastia), "{bastia}");
        assert!(nir_shaped(&ajaccio));
        // The same key with the other department is wrong.
        let swapped = ajaccio.replace("2A", "2B");
        assert!(!is_nir(&swapped));
        assert!(!nir_shaped("1900725A0330071"));
    }

    #[test]
    fn french_phone_numbers_in_their_usual_forms() {
        for phone in [
            "06 12 34 56 78",
            "0612345678",
            "06.12.34.56.78",
            "06-12-34-56-78",
            "+33 6 12 34 56 78",
            "+33612345678",
            "+33 (0)6 12 34 56 78",
            "0033 6 12 34 56 78",
            "01 42 00 00 00",
        ] {
            assert!(is_phone(phone), "{phone}");
        }
        for not in [
            "",
            "612345678",
            "06 12 34 56",
            "00 12 34 56 78",
            "+44 20 7946 0000",
            "06 12 34 56 7a",
            "2024-01-15",
            "+33 06 12 34 56 78",
        ] {
            assert!(!is_phone(not), "{not}");
        }
    }

    #[test]
    fn e_mail_addresses() {
        assert!(is_email("jean.dupont@exemple.fr"));
        assert!(is_email("j-p.martin+ehr@sub.example.org"));
        for not in [
            "",
            "jean",
            "@exemple.fr",
            "jean@",
            "jean@localhost",
            "a b@c.fr",
            "a@.fr",
        ] {
            assert!(!is_email(not), "{not}");
        }
    }

    #[test]
    fn icd10_codes() {
        for code in [
            "E11", "E11.9", "J45.0", "I10", "S72.00", "Z00.00", "U07.1", "S7200",
        ] {
            assert!(is_icd10(code), "{code}");
        }
        for not in [
            "",
            "E1",
            "11.9",
            "e11.9",
            "E11.",
            "E11.12345",
            "EE1",
            "Martin",
            "E11 9",
            "C09AA05",
            "A10BA",
        ] {
            assert!(!is_icd10(not), "{not}");
        }
    }

    #[test]
    fn names_addresses_dates_and_prose() {
        assert!(is_first_name("Hélène"));
        assert!(is_first_name("HELENE"));
        assert!(is_last_name("Martin"));
        assert!(!is_last_name("Zzyzx"));
        assert!(is_address("12 rue Victor Hugo"));
        assert!(is_address("3 bis allée des Roses"));
        assert!(is_address("Résidence du Parc, 4 avenue Jean Jaurès"));
        assert!(is_address("75015 Paris"));
        assert!(!is_address("Paris"));
        let today = (2026, 12, 6);
        assert!(is_birth_date("1985-05-17", today));
        assert!(is_birth_date("17/05/1985", today));
        assert!(is_birth_date("1985-05-17 00:00:00+01", today));
        assert!(!is_birth_date("1899-12-31", today));
        assert!(!is_birth_date("2027-01-01", today));
        assert!(!is_birth_date("1985-13-01", today));
        assert!(!is_birth_date("é", today));
        assert!(is_prose(
            "Suivi HTA. TA 135/85, FC 72. Bonne observance, pas d'effet indésirable."
        ));
        assert!(!is_prose("Dr Claire Martin"));
        assert!(mentions_kinds(
            "Rappeler la patiente au 06 12 34 56 78 demain."
        ));
        assert!(mentions_kinds("Écrire à jean.dupont@exemple.fr."));
        assert!(!mentions_kinds("TA 135/85, FC 72, HbA1c 7,2 %."));
    }

    #[test]
    fn odd_values_do_not_panic() {
        let huge = "é".repeat(100_000);
        for value in [
            huge.as_str(),
            "\u{0}",
            "2A",
            "+",
            "@",
            "----------",
            "2024-1é-01x",
        ] {
            let _ = (
                is_nir(value),
                nir_shaped(value),
                is_email(value),
                is_phone(value),
                is_icd10(value),
                is_first_name(value),
                is_address(value),
                is_birth_date(value, (2026, 1, 1)),
                is_prose(value),
                mentions_kinds(value),
            );
        }
    }

    #[test]
    fn a_column_is_judged_by_its_share_and_its_name() {
        let nirs = ColumnSample {
            name: "numero".into(),
            storage_type: "character varying(15)".into(),
            text_like: true,
            values: vec![with_key("1850575063123"); 10],
            ..ColumnSample::default()
        };
        let found = assess(&nirs, "t", (2026, 1, 1));
        assert_eq!(
            found.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [Kind::Nir]
        );
        assert!(found[0].confident && !found[0].by_name);
        // A few codes in a column named for nothing: reported, but not confident.
        let mut values = vec!["bonjour".to_string(); 8];
        values.extend(["E11.9".to_string(), "I10".to_string()]);
        let codes = ColumnSample {
            name: "label".into(),
            storage_type: "text".into(),
            text_like: true,
            values,
            ..ColumnSample::default()
        };
        let found = assess(&codes, "t", (2026, 1, 1));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].kind, found[0].confident), (Kind::Icd10, false));
        // Nothing sampled: the name alone is reported, unsure.
        let empty = ColumnSample {
            name: "birth_date".into(),
            storage_type: "date".into(),
            date_like: true,
            ..ColumnSample::default()
        };
        let found = assess(&empty, "t", (2026, 1, 1));
        assert_eq!(
            (found[0].kind, found[0].confident),
            (Kind::BirthDate, false)
        );
        // Integers are judged for NIRs only (a NIR can be stored as a bigint).
        let id = ColumnSample {
            name: "id".into(),
            storage_type: "bigint".into(),
            numeric: true,
            values: vec!["1".into(); 10],
            ..ColumnSample::default()
        };
        assert!(assess(&id, "t", (2026, 1, 1)).is_empty());
        let numbers = ColumnSample {
            values: vec![with_key("1850575063123"); 10],
            ..id
        };
        let found = assess(&numbers, "t", (2026, 1, 1));
        assert_eq!((found[0].kind, found[0].confident), (Kind::Nir, true));
        let tiny = ColumnSample {
            storage_type: "integer".into(),
            ..numbers
        };
        assert!(assess(&tiny, "t", (2026, 1, 1)).is_empty());
    }

    #[test]
    fn name_only_kinds_need_their_name() {
        let text = |name: &str, values: &[&str]| ColumnSample {
            name: name.into(),
            storage_type: "text".into(),
            text_like: true,
            values: values.iter().map(|v| v.to_string()).collect(),
            ..ColumnSample::default()
        };
        let kinds = |column: &ColumnSample, table: &str| {
            assess(column, table, (2026, 1, 1))
                .iter()
                .map(|e| (e.kind, e.confident))
                .collect::<Vec<_>>()
        };
        let answers = ["true", "false", "false", "true"];
        assert_eq!(
            kinds(&text("pregnant", &answers), "samples"),
            [(Kind::HealthStatus, true)]
        );
        assert!(kinds(&text("archived", &answers), "samples").is_empty());
        let numbers = ["5.4", "12", "0.8", "positif"];
        assert_eq!(
            kinds(&text("value", &numbers), "results"),
            [(Kind::LabResult, true)]
        );
        assert!(kinds(&text("value", &numbers), "settings").is_empty());
        let dates = ["2024-01-15", "2023-11-02"];
        assert_eq!(
            kinds(&text("inclusion_date", &dates), "subjects"),
            [(Kind::CareDate, true)]
        );
        assert!(kinds(&text("created_at", &dates), "subjects").is_empty());
        assert_eq!(
            kinds(&text("sex", &["F", "M", "F"]), "patients"),
            [(Kind::Sex, false)]
        );
        assert_eq!(
            kinds(&text("groupe", &["A+", "O-", "AB+", "B+"]), "patients"),
            [(Kind::BloodGroup, true)]
        );
    }

    #[test]
    fn column_names_give_hints() {
        assert!(NameHints::of("birth_date").has(Kind::BirthDate));
        assert!(NameHints::of("dateNaissance").has(Kind::BirthDate));
        assert!(NameHints::of("prenom").has(Kind::FirstName));
        assert!(NameHints::of("last_name").has(Kind::LastName));
        assert!(NameHints::of("diagnosis_code").has(Kind::Icd10));
        assert!(NameHints::of("prescription").has(Kind::FreeText));
        assert!(!NameHints::of("seen_at").has(Kind::BirthDate));
        assert!(!NameHints::of("patient_id").has(Kind::Nir));
    }
}
