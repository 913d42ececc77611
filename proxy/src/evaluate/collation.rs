//! How text orders and folds case in a database, as PostgreSQL 15 does it for the database's
//! default collation (`pg_database.datlocprovider`, `datcollate`, `datctype`, `daticulocale`).
//!
//! - **C and POSIX** (and `C.UTF-8` / `C.utf8`, which glibc orders by code point, the same as
//!   UTF-8 byte order): text compares bytewise (`memcmp`, then the shorter first).
//! - **ICU** (`datlocprovider = 'i'`): an ICU4X collator for `daticulocale` (BCP 47 such as
//!   `fr-FR`, `und`, `en-US-u-kn-true`, or ICU's `fr_FR`), with the locale's default strength
//!   (tertiary) unless a `-u-ks-` keyword says otherwise. When the collator finds two strings
//!   equal, PostgreSQL (a database's collation is always deterministic) breaks the tie with a
//!   byte comparison, and so does [`TextOrder::compare`]. `lower()` and `upper()` are ICU's
//!   full, context-sensitive case mappings for the locale's language (`u_strToLower` /
//!   `u_strToUpper`: final sigma, Turkish and Azeri dotted i, Lithuanian dots, Greek accents
//!   dropped in upper case…). In PostgreSQL 15, `datcollate` and `datctype` do not change
//!   ordering or case in an ICU database.
//! - **libc with a language locale** (`fr_FR.UTF-8`, `en_US.utf8`, `de_DE.utf8`…): glibc 2.28
//!   and later collate by ISO 14651, close to CLDR's root order. pgseal uses the CLDR order of
//!   the locale's language and territory as the approximation: both derive from the same
//!   Unicode Collation Algorithm tables, so letters, accents and case are expected to agree;
//!   punctuation and symbols may not (glibc may ignore some at the first levels where CLDR
//!   does not). This is not tested: the test machine has no glibc language locales. `lower()` and `upper()` there are glibc's
//!   `towlower` / `towupper`, one character at a time: Unicode's simple mappings (a character
//!   whose mapping is several characters is left as it is), with the Turkish dotted and
//!   dotless i for `tr` and `az`. `LC_CTYPE` C or POSIX folds ASCII letters only.
//!
//! Exactness is tested against a real server for ICU and C (`tests/tests/evaluation_primitives.rs`);
//! the libc language locales are an approximation by design. What is not understood (another
//! provider, an ICU locale with `@` keywords or unsupported `-u-` keywords, a language CLDR
//! does not know, a libc locale that is not UTF-8) is a [`CollationError`] naming it: the
//! caller refuses to evaluate rather than guess.
//!
//! The data is ICU4X's compiled CLDR data (CLDR 48, Unicode 17), newer than the ICU library of
//! most servers (ICU 72 is CLDR 42, Unicode 15). Sorting every code point on both sides found
//! the characters whose order or case differs. The curly quotation marks ‘ ’ ‚ ‛ “ ” „ ‟ (the
//! typographic apostrophe of French names) are compared as the servers' CLDR 42 orders them
//! (`with_cldr42_quotes`); for the rest (CJK radicals and compatibility ideographs, characters
//! encoded since Unicode 15…) [`TextOrder::first_unverified`] names the first such character
//! of a value and [`UNVERIFIED`] lists them: pgseal's order may differ there. Every other character
//! ordered and folded the same as ICU 72 in those probes (letters of every European script with
//! their accents, case and ligatures, digits, spaces, ASCII punctuation…), under `fr-FR`,
//! `de-DE`, `sv-SE` and `tr-TR`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use icu_casemap::CaseMapper;
use icu_collator::options::{AlternateHandling, CaseLevel, CollatorOptions, MaxVariable, Strength};
use icu_collator::{Collator, CollatorBorrowed, CollatorPreferences};
use icu_locale::{LocaleExpander, TransformResult};
use icu_locale_core::{LanguageIdentifier, Locale};
use thiserror::Error;

/// Why a database's collation settings cannot be mirrored.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CollationError {
    /// A `datlocprovider` other than `c` (libc) or `i` (ICU).
    #[error("unsupported locale provider {0:?} (pgseal knows 'c' for libc and 'i' for ICU)")]
    UnknownProvider(String),
    /// The ICU provider without an ICU locale.
    #[error("the database uses the ICU provider but has no ICU locale")]
    MissingIcuLocale,
    /// An ICU locale pgseal cannot mirror.
    #[error("unsupported ICU locale {locale:?}: {reason}")]
    IcuLocale {
        /// The locale as the catalog gives it.
        locale: String,
        /// What is not supported.
        reason: &'static str,
    },
    /// A libc locale (`datcollate` or `datctype`) pgseal cannot mirror.
    #[error("unsupported libc locale {locale:?}: {reason}")]
    LibcLocale {
        /// The locale as the catalog gives it.
        locale: String,
        /// What is not supported.
        reason: &'static str,
    },
}

/// How text orders and folds case in one database: what `a < b`, `ORDER BY`, `lower()` and
/// `upper()` do under its default collation. Cheap to clone (the collator is shared).
#[derive(Clone)]
pub struct TextOrder {
    ordering: Collation,
    case: CaseRules,
    approximation: bool,
    description: Arc<str>,
}

/// How strings compare.
#[derive(Clone)]
enum Collation {
    /// Bytewise (C, POSIX, C.UTF-8).
    Bytes,
    /// A CLDR collator, ties broken bytewise.
    Collator(Arc<CollatorBorrowed<'static>>),
}

/// How case is folded.
#[derive(Clone, Debug)]
enum CaseRules {
    /// ASCII letters only (`LC_CTYPE` C or POSIX).
    Ascii,
    /// glibc's `towlower` / `towupper`: simple mappings, one character at a time.
    Simple {
        /// Turkish or Azeri: I <-> ı, İ <-> i.
        turkic: bool,
    },
    /// ICU's full mappings for a language.
    Full(LanguageIdentifier),
}

impl fmt::Debug for TextOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TextOrder").field(&self.description).finish()
    }
}

impl TextOrder {
    /// The text order of a database, from its `pg_database` row (PostgreSQL 15 and later):
    /// `datlocprovider` (`c` libc, `i` ICU), `datcollate`, `datctype`, and `daticulocale`
    /// (NULL for libc). Under ICU, ordering and case come from `daticulocale` alone; under
    /// libc, ordering comes from `datcollate` and case from `datctype`.
    pub fn from_catalog(
        provider: &str,
        collate: &str,
        ctype: &str,
        icu_locale: Option<&str>,
    ) -> Result<TextOrder, CollationError> {
        match provider {
            "i" => {
                let written = icu_locale.ok_or(CollationError::MissingIcuLocale)?;
                TextOrder::icu(written)
            }
            "c" => TextOrder::libc(collate, ctype),
            other => Err(CollationError::UnknownProvider(other.to_string())),
        }
    }

    /// The `C` collation: bytewise order, ASCII-only case folding.
    pub fn bytes() -> TextOrder {
        TextOrder {
            ordering: Collation::Bytes,
            case: CaseRules::Ascii,
            approximation: false,
            description: "C".into(),
        }
    }

    /// An ICU collation for `written` (the `daticulocale` or `colliculocale` text).
    pub fn icu(written: &str) -> Result<TextOrder, CollationError> {
        let refuse = |reason| CollationError::IcuLocale {
            locale: written.to_string(),
            reason,
        };
        let (locale, options) = icu_locale(written).map_err(refuse)?;
        let preferences = CollatorPreferences::from_locale_strict(&locale)
            .map_err(|_| refuse("a -u- keyword value ICU4X does not understand"))?;
        let collator = Collator::try_new(preferences, options)
            .map_err(|_| refuse("no collation data for this locale"))?;
        Ok(TextOrder {
            ordering: Collation::Collator(Arc::new(collator)),
            case: CaseRules::Full(locale.id.clone()),
            approximation: false,
            description: format!("ICU {written}").into(),
        })
    }

    fn libc(collate: &str, ctype: &str) -> Result<TextOrder, CollationError> {
        let collate_locale = libc_locale(collate)?;
        let ctype_locale = libc_locale(ctype)?;
        let ordering = match &collate_locale {
            LibcLocale::C | LibcLocale::CUtf8 => Collation::Bytes,
            LibcLocale::Language(id) => {
                let locale = Locale::from(id.clone());
                let collator = Collator::try_new((&locale).into(), CollatorOptions::default())
                    .map_err(|_| CollationError::LibcLocale {
                        locale: collate.to_string(),
                        reason: "no collation data for this language",
                    })?;
                Collation::Collator(Arc::new(collator))
            }
        };
        let case = match &ctype_locale {
            LibcLocale::C => CaseRules::Ascii,
            LibcLocale::CUtf8 => CaseRules::Simple { turkic: false },
            LibcLocale::Language(id) => CaseRules::Simple {
                turkic: matches!(id.language.as_str(), "tr" | "az"),
            },
        };
        let order_name = match &collate_locale {
            LibcLocale::Language(id) => format!("libc {collate} (CLDR {id} order)"),
            _ => format!("libc {collate}"),
        };
        let description = if collate == ctype {
            order_name
        } else {
            format!("{order_name}, ctype {ctype}")
        };
        Ok(TextOrder {
            approximation: matches!(collate_locale, LibcLocale::Language(_)),
            ordering,
            case,
            description: description.into(),
        })
    }

    /// Compares as `a < b` and `ORDER BY` do (the database's collation is deterministic:
    /// strings the collator finds equal are ordered by their bytes, so only identical strings
    /// are equal).
    pub fn compare(&self, a: &str, b: &str) -> Ordering {
        match &self.ordering {
            Collation::Bytes => a.as_bytes().cmp(b.as_bytes()),
            Collation::Collator(collator) => {
                if a == b {
                    return Ordering::Equal;
                }
                collator
                    .compare(&with_cldr42_quotes(a), &with_cldr42_quotes(b))
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            }
        }
    }

    /// PostgreSQL's `lower()` under this collation (borrowed when nothing changes).
    pub fn lower<'a>(&self, s: &'a str) -> Cow<'a, str> {
        match &self.case {
            CaseRules::Ascii => {
                if s.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(s.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(s)
                }
            }
            CaseRules::Simple { turkic } => map_chars(s, |c| simple_lower(c, *turkic)),
            // ICU's full lowercasing changes ASCII text as ASCII does, but in Turkish and
            // Azeri (`I` is `ı` there): most names are ASCII, and ICU's mapper costs more.
            CaseRules::Full(language) if s.is_ascii() && !is_turkic(language) => {
                if s.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(s.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(s)
                }
            }
            CaseRules::Full(language) => CaseMapper::new().lowercase_to_string(s, language),
        }
    }

    /// PostgreSQL's `upper()` under this collation (borrowed when nothing changes).
    pub fn upper<'a>(&self, s: &'a str) -> Cow<'a, str> {
        match &self.case {
            CaseRules::Ascii => {
                if s.bytes().any(|b| b.is_ascii_lowercase()) {
                    Cow::Owned(s.to_ascii_uppercase())
                } else {
                    Cow::Borrowed(s)
                }
            }
            CaseRules::Simple { turkic } => map_chars(s, |c| simple_upper(c, *turkic)),
            CaseRules::Full(language) => CaseMapper::new().uppercase_to_string(s, language),
        }
    }

    /// What this order is, for logs and errors: `C`, `ICU fr-FR`,
    /// `libc fr_FR.UTF-8 (CLDR fr-FR order)`.
    pub fn describe(&self) -> String {
        self.description.to_string()
    }

    /// Whether strings compare bytewise (C, POSIX, C.UTF-8).
    pub fn is_bytewise(&self) -> bool {
        matches!(self.ordering, Collation::Bytes)
    }

    /// Whether the order stands in for a glibc locale (libc provider with a language locale):
    /// CLDR's order, not verified against glibc (see the module documentation).
    pub fn is_approximation(&self) -> bool {
        self.approximation
    }

    /// The first character of `s` for which [`compare`](Self::compare), [`lower`](Self::lower)
    /// or [`upper`](Self::upper) may disagree with the server: one whose order or case mapping
    /// differs between the server's ICU and the newer CLDR and Unicode data pgseal carries (see
    /// [`UNVERIFIED`]). `None` under C and POSIX, whose byte order and ASCII folding are exact.
    /// A caller that must be exact refuses to evaluate a value where this is `Some`.
    pub fn first_unverified(&self, s: &str) -> Option<char> {
        if matches!(
            (&self.ordering, &self.case),
            (Collation::Bytes, CaseRules::Ascii)
        ) {
            return None;
        }
        s.chars().find(|c| is_unverified(*c))
    }
}

/// The curly quotation marks as the servers' ICU orders them (CLDR 42: `'` < `‘` < `’` < `‚`
/// < `‛` < `‹` … < `"` < `“` < `”` < `„` < `‟` < `«`, each its own primary weight), where
/// pgseal's CLDR 48 data makes them variants of `'` and `"`: each is compared as its
/// straight quote followed by one of four Han characters, which sort after every letter, in
/// that order. French names are written with `’` as often as with `'` (D’Artagnan, N’Diaye):
/// without this, every list holding both would be ordered differently from PostgreSQL.
fn with_cldr42_quotes(s: &str) -> Cow<'_, str> {
    const AFTER: [char; 4] = ['\u{4E00}', '\u{4E01}', '\u{4E02}', '\u{4E03}'];
    if !s.chars().any(|c| ('\u{2018}'..='\u{201F}').contains(&c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        let code = c as u32;
        if (0x2018..=0x201F).contains(&code) {
            let offset = (code - 0x2018) as usize;
            out.push(if offset < 4 { '\'' } else { '"' });
            out.push(AFTER[offset % 4]);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Code points whose order or case mapping differs between the ICU of the PostgreSQL servers
/// pgseal was checked against (ICU 72, CLDR 42, Unicode 15: Debian 12's PostgreSQL 15) and the
/// data pgseal carries (ICU4X 2.1: CLDR 48, Unicode 17), as inclusive ranges.
///
/// Found by sorting every code point from U+0000 to U+2FFFF followed by `a`, `b`, `à` and `A`
/// on both sides, under `fr-FR`, `de-DE`, `sv-SE` and `tr-TR` (the same set for all four):
/// the Hebrew geresh and gershayim, the peseta and rupee signs, some Roman numerals,
/// Indic number signs, CJK radicals and compatibility ideographs, and the characters encoded
/// since Unicode 15; and, from `lower()` and `upper()` of every code point of the Basic
/// Multilingual Plane, the letters whose case partner is that recent (ƛ, ɤ, ꟓ, ꟕ). CJK
/// ideographs and the supplementary planes are listed wholesale.
/// Re-derive it when the ICU4X data or the supported servers change.
pub const UNVERIFIED: &[(u32, u32)] = &[
    (0x019B, 0x019B),
    (0x0264, 0x0264),
    (0x05F3, 0x05F4),
    (0x088F, 0x088F),
    (0x0897, 0x0897),
    (0x09F4, 0x09F9),
    (0x0B72, 0x0B77),
    (0x0BF0, 0x0BF2),
    (0x0C5C, 0x0C5C),
    (0x0CDC, 0x0CDC),
    (0x0D58, 0x0D5E),
    (0x0D70, 0x0D78),
    (0x1372, 0x137C),
    (0x1ACF, 0x1ADD),
    (0x1AE0, 0x1AEB),
    (0x1B4E, 0x1B4F),
    (0x1B7F, 0x1B7F),
    (0x1C89, 0x1C8A),
    (0x20A7, 0x20A8),
    (0x20C1, 0x20C1),
    (0x2180, 0x2182),
    (0x2186, 0x2188),
    (0x2427, 0x2429),
    (0x2B96, 0x2B96),
    (0x2CFD, 0x2CFD),
    (0x2E42, 0x2E42),
    (0x2E80, 0x2FFF),
    (0x301D, 0x301F),
    (0x3039, 0x3039),
    (0x3112, 0x3112),
    (0x31E4, 0x31E5),
    (0x31EF, 0x31EF),
    (0x3400, 0x9FFF),
    (0xA7CB, 0xA7CF),
    (0xA7D2, 0xA7D5),
    (0xA7DA, 0xA7DC),
    (0xA7F1, 0xA7F1),
    (0xA830, 0xA835),
    (0xF900, 0xFAFF),
    (0xFBC3, 0xFBD2),
    (0xFD90, 0xFD91),
    (0xFDC8, 0xFDCE),
    (0xFDFC, 0xFDFC),
    (0x10000, 0x10FFFF),
];

fn is_unverified(c: char) -> bool {
    let code = u32::from(c);
    let at = UNVERIFIED.partition_point(|&(_, end)| end < code);
    UNVERIFIED
        .get(at)
        .is_some_and(|&(start, end)| (start..=end).contains(&code))
}

/// Applies a one-character mapping, borrowing when no character changes.
fn map_chars(s: &str, map: impl Fn(char) -> char) -> Cow<'_, str> {
    match s.char_indices().find(|&(_, c)| map(c) != c) {
        None => Cow::Borrowed(s),
        Some((first, _)) => {
            let mut out = String::with_capacity(s.len());
            out.push_str(s.get(..first).unwrap_or_default());
            out.extend(s.get(first..).unwrap_or_default().chars().map(map));
            Cow::Owned(out)
        }
    }
}

/// glibc's `towlower` in a UTF-8 locale.
fn simple_lower(c: char, turkic: bool) -> char {
    match c {
        'I' if turkic => 'ı',
        _ => CaseMapper::new().simple_lowercase(c),
    }
}

/// glibc's `towupper` in a UTF-8 locale.
fn simple_upper(c: char, turkic: bool) -> char {
    match c {
        'i' if turkic => 'İ',
        _ => CaseMapper::new().simple_uppercase(c),
    }
}

/// Whether a language maps the dotted and dotless i its own way (Turkish, Azeri).
fn is_turkic(language: &LanguageIdentifier) -> bool {
    matches!(language.language.as_str(), "tr" | "az")
}

/// Reads an ICU locale as PostgreSQL 15 passes it to `ucol_open`: a BCP 47 tag or ICU's
/// underscore form, `root` for the root locale; returns the locale (keywords other than
/// `kf` and `kn` removed) and the collator options its `-u-` keywords set.
fn icu_locale(written: &str) -> Result<(Locale, CollatorOptions), &'static str> {
    if written.contains('@') {
        return Err("ICU keywords after '@' are not supported (use -u- extensions)");
    }
    let tag = if written.eq_ignore_ascii_case("root") {
        "und".to_string()
    } else {
        written.replace('_', "-")
    };
    let mut locale =
        Locale::try_from_str(&tag).map_err(|_| "not a BCP 47 language tag ICU4X can read")?;
    if !locale.extensions.transform.is_empty()
        || !locale.extensions.private.is_empty()
        || !locale.extensions.other.is_empty()
        || !locale.extensions.unicode.attributes.is_empty()
    {
        return Err("extensions other than -u- keywords are not supported");
    }
    let mut options = CollatorOptions::default();
    let keywords: Vec<(String, String)> = locale
        .extensions
        .unicode
        .keywords
        .iter()
        .map(|(key, value)| (key.as_str().to_string(), value.to_string()))
        .collect();
    for (key, value) in &keywords {
        let value = value.as_str();
        match key.as_str() {
            "kf" | "kn" => continue,
            "ks" => {
                options.strength = Some(match value {
                    "level1" => Strength::Primary,
                    "level2" => Strength::Secondary,
                    "level3" => Strength::Tertiary,
                    "level4" => Strength::Quaternary,
                    "identic" => Strength::Identical,
                    _ => return Err("unknown -u-ks- value"),
                })
            }
            "ka" => {
                options.alternate_handling = Some(match value {
                    "noignore" => AlternateHandling::NonIgnorable,
                    "shifted" => AlternateHandling::Shifted,
                    _ => return Err("unknown -u-ka- value"),
                })
            }
            "kc" => {
                options.case_level = Some(match value {
                    "" | "true" | "yes" => CaseLevel::On,
                    "false" | "no" => CaseLevel::Off,
                    _ => return Err("unknown -u-kc- value"),
                })
            }
            "kv" => {
                options.max_variable = Some(match value {
                    "space" => MaxVariable::Space,
                    "punct" => MaxVariable::Punctuation,
                    "symbol" => MaxVariable::Symbol,
                    "currency" => MaxVariable::Currency,
                    _ => return Err("unknown -u-kv- value"),
                })
            }
            _ => return Err("a -u- keyword pgseal does not support (kf, kn, ks, ka, kc, kv are)"),
        }
    }
    locale
        .extensions
        .unicode
        .keywords
        .retain_by_key(|key| matches!(key.as_str(), "kf" | "kn"));
    check_language(&locale.id)?;
    Ok((locale, options))
}

/// Refuses a language CLDR does not know: ICU would fall back to the root order silently,
/// and ICU4X's data may lack a tailoring the server's ICU has.
fn check_language(id: &LanguageIdentifier) -> Result<(), &'static str> {
    if id.language.is_unknown() {
        return Ok(());
    }
    let mut bare = LanguageIdentifier::UNKNOWN;
    bare.language = id.language;
    match LocaleExpander::new_common().maximize(&mut bare) {
        TransformResult::Modified => Ok(()),
        TransformResult::Unmodified => Err("a language CLDR does not know"),
    }
}

/// A libc locale name, as far as pgseal reads it.
enum LibcLocale {
    /// `C` or `POSIX`.
    C,
    /// `C.UTF-8` / `C.utf8`.
    CUtf8,
    /// `ll_CC.UTF-8`.
    Language(LanguageIdentifier),
}

fn libc_locale(written: &str) -> Result<LibcLocale, CollationError> {
    let refuse = |reason| CollationError::LibcLocale {
        locale: written.to_string(),
        reason,
    };
    if written == "C" || written == "POSIX" {
        return Ok(LibcLocale::C);
    }
    if written.contains('@') {
        return Err(refuse("locale modifiers (@...) are not supported"));
    }
    let Some((name, codeset)) = written.split_once('.') else {
        return Err(refuse("not a UTF-8 locale"));
    };
    if !codeset.eq_ignore_ascii_case("utf8") && !codeset.eq_ignore_ascii_case("utf-8") {
        return Err(refuse("not a UTF-8 locale"));
    }
    if name == "C" || name == "POSIX" {
        return Ok(LibcLocale::CUtf8);
    }
    let (language, territory) = name.split_once('_').unwrap_or((name, ""));
    let lowercase_letters = |s: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase())
    };
    let territory_ok = territory.is_empty()
        || (territory.len() == 2 && territory.bytes().all(|b| b.is_ascii_uppercase()))
        || (territory.len() == 3 && territory.bytes().all(|b| b.is_ascii_digit()));
    if !lowercase_letters(language, 2..=3) || !territory_ok {
        return Err(refuse("not a language_TERRITORY.UTF-8 locale name"));
    }
    let tag = if territory.is_empty() {
        language.to_string()
    } else {
        format!("{language}-{territory}")
    };
    let id = LanguageIdentifier::try_from_str(&tag)
        .map_err(|_| refuse("not a language_TERRITORY.UTF-8 locale name"))?;
    check_language(&id).map_err(refuse)?;
    Ok(LibcLocale::Language(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icu(locale: &str) -> TextOrder {
        TextOrder::from_catalog("i", "C", "C", Some(locale)).expect("a supported ICU locale")
    }

    fn sorted(order: &TextOrder, words: &[&str]) -> Vec<String> {
        let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        words.sort_by(|a, b| order.compare(a, b));
        words
    }

    #[test]
    fn c_compares_bytes_and_folds_ascii_only() {
        let c = TextOrder::bytes();
        assert_eq!(c.compare("B", "a"), Ordering::Less);
        assert_eq!(c.compare("", "a"), Ordering::Less);
        assert_eq!(c.compare("ab", "a"), Ordering::Greater);
        assert_eq!(c.compare("é", "f"), Ordering::Greater);
        assert_eq!(c.lower("ÉCOLE"), "École");
        assert_eq!(c.upper("école straße"), "éCOLE STRAßE");
        assert!(matches!(c.lower("déjà vu"), Cow::Borrowed(_)));
        assert_eq!(c.describe(), "C");
        let posix = TextOrder::from_catalog("c", "POSIX", "POSIX", None).expect("POSIX");
        assert!(posix.is_bytewise());
    }

    #[test]
    fn c_utf8_compares_bytes_and_folds_one_character_at_a_time() {
        let order = TextOrder::from_catalog("c", "C.utf8", "C.UTF-8", None).expect("C.utf8");
        assert!(order.is_bytewise());
        assert_eq!(order.compare("a", "B"), Ordering::Greater);
        assert_eq!(order.lower("ÉCOLE ΣΑΣ İ ß"), "école σασ i ß");
        assert_eq!(order.upper("école straße ŉ ǆ"), "ÉCOLE STRAßE ŉ Ǆ");
    }

    #[test]
    fn icu_orders_by_the_locale_and_breaks_ties_by_bytes() {
        let fr = icu("fr-FR");
        assert_eq!(
            sorted(
                &fr,
                &["Zoé", "zoe", "Élodie", "eloise", "élodie", "Eloïse", ""]
            ),
            ["", "élodie", "Élodie", "eloise", "Eloïse", "zoe", "Zoé"]
        );
        assert_eq!(fr.compare("a", "B"), Ordering::Less);
        assert_eq!(fr.compare("same", "same"), Ordering::Equal);
        // Canonically equivalent strings are equal to the collator: bytes decide.
        let composed = "\u{e9}";
        let decomposed = "e\u{301}";
        assert_eq!(fr.compare(composed, decomposed), Ordering::Greater);
        assert_eq!(fr.compare(decomposed, composed), Ordering::Less);
        assert_eq!(fr.describe(), "ICU fr-FR");
    }

    #[test]
    fn icu_locale_forms() {
        for written in [
            "fr_FR",
            "fr",
            "und",
            "root",
            "en-US-u-kn-true",
            "de-u-ks-level2",
        ] {
            assert!(TextOrder::icu(written).is_ok(), "{written}");
        }
        let numeric = icu("en-US-u-kn-true");
        assert_eq!(numeric.compare("a10", "a9"), Ordering::Greater);
        assert_eq!(icu("en-US").compare("a10", "a9"), Ordering::Less);
        let upper_first = icu("en-u-kf-upper");
        assert_eq!(upper_first.compare("A", "a"), Ordering::Less);
        for refused in [
            "",
            "fr@collation=phonebook",
            "xx-YY",
            "de-u-co-phonebk",
            "C",
            "en-x-y",
        ] {
            assert!(TextOrder::icu(refused).is_err(), "{refused}");
        }
        assert!(matches!(
            TextOrder::from_catalog("i", "C", "C", None),
            Err(CollationError::MissingIcuLocale)
        ));
        assert!(matches!(
            TextOrder::from_catalog("b", "C", "C", None),
            Err(CollationError::UnknownProvider(_))
        ));
    }

    #[test]
    fn icu_case_mappings_are_full_and_contextual() {
        let fr = icu("fr-FR");
        assert_eq!(fr.lower("ÉCOLE ΣΑΣ İ"), "école σας i\u{307}");
        assert_eq!(fr.upper("straße ŉ"), "STRASSE ʼN");
        let tr = icu("tr-TR");
        assert_eq!(tr.lower("ISTANBUL İ"), "ıstanbul i");
        assert_eq!(tr.upper("istanbul"), "İSTANBUL");
        assert!(matches!(fr.lower("déjà"), Cow::Borrowed(_)));
    }

    #[test]
    fn icu_lowercases_ascii_as_its_mapper_does() {
        let texts = [
            "",
            "dupont",
            "DUPONT",
            "Martin-Lefebvre",
            "O'NEIL",
            "IJssel",
            "I i J j",
            "Mc Donald 42",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789",
            "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\t\n",
        ];
        for locale in [
            "fr-FR", "en", "und", "nl", "lt", "tr-TR", "az", "el", "de-DE",
        ] {
            let order = icu(locale);
            let CaseRules::Full(language) = &order.case else {
                panic!("{locale} maps case with ICU");
            };
            for text in texts {
                let mapped = CaseMapper::new().lowercase_to_string(text, language);
                assert_eq!(order.lower(text), mapped, "{locale}: {text:?}");
            }
        }
        assert!(matches!(icu("fr-FR").lower("dupont"), Cow::Borrowed(_)));
    }

    #[test]
    fn libc_language_locales() {
        let fr = TextOrder::from_catalog("c", "fr_FR.UTF-8", "fr_FR.UTF-8", None).expect("fr");
        assert!(!fr.is_bytewise());
        assert_eq!(fr.compare("élodie", "Eloïse"), Ordering::Less);
        assert_eq!(fr.lower("ÉCOLE İ"), "école i");
        assert_eq!(fr.upper("straße"), "STRAßE");
        assert_eq!(fr.describe(), "libc fr_FR.UTF-8 (CLDR fr-FR order)");
        let tr = TextOrder::from_catalog("c", "tr_TR.utf8", "tr_TR.utf8", None).expect("tr");
        assert_eq!(tr.lower("I"), "ı");
        assert_eq!(tr.upper("i"), "İ");
        let mixed = TextOrder::from_catalog("c", "C", "de_DE.utf8", None).expect("mixed");
        assert!(mixed.is_bytewise());
        assert_eq!(mixed.lower("Ä"), "ä");
        assert_eq!(mixed.describe(), "libc C, ctype de_DE.utf8");
        for refused in [
            "fr_FR",
            "fr_FR.ISO-8859-1",
            "fr_FR@euro",
            "french",
            "xx_YY.UTF-8",
            "",
        ] {
            assert!(
                TextOrder::from_catalog("c", refused, "C", None).is_err(),
                "{refused}"
            );
            assert!(
                TextOrder::from_catalog("c", "C", refused, None).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn unverified_characters() {
        assert!(UNVERIFIED.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(UNVERIFIED.iter().all(|(start, end)| start <= end));
        let fr = icu("fr-FR");
        assert_eq!(fr.first_unverified("D'Artagnan Éloïse"), None);
        // Curly quotes are compared as the servers' ICU orders them.
        assert_eq!(fr.first_unverified("D’Artagnan"), None);
        let quotes = ["'a", "‘a", "’a", "‚a", "‛a", "\"a", "“a", "”a", "„a", "‟a"];
        assert!(
            quotes
                .windows(2)
                .all(|w| fr.compare(w[0], w[1]) == Ordering::Less)
        );
        assert_eq!(fr.compare("d'Artagnan", "D’Artagnan"), Ordering::Less);
        assert_eq!(fr.compare("D'Zorro", "D’Artagnan"), Ordering::Less);
        assert_eq!(fr.compare("D’Artagnan", "Dartagnan"), Ordering::Less);
        assert_eq!(fr.first_unverified("李"), Some('李'));
        assert_eq!(fr.first_unverified("🙂"), Some('🙂'));
        assert_eq!(TextOrder::bytes().first_unverified("D’Artagnan 李"), None);
        let c_utf8 = TextOrder::from_catalog("c", "C.utf8", "C.utf8", None).expect("C.utf8");
        assert_eq!(c_utf8.first_unverified("\u{A7CB}"), Some('\u{A7CB}'));
        assert!(!fr.is_approximation() && !c_utf8.is_approximation());
        let libc = TextOrder::from_catalog("c", "fr_FR.UTF-8", "C", None).expect("fr_FR");
        assert!(libc.is_approximation());
    }
}
