//! The folded form search tokens are computed from: a coarse equivalence of text, so that any
//! two strings PostgreSQL's `=`, `LIKE`, `ILIKE`, `lower()` or `upper()` can find equal fold
//! equal, and a piece of a string folds to a piece of its folded form.
//!
//! Folding works one character at a time (it never looks at a character's neighbours):
//!
//! 1. lower case (`char::to_lowercase`, Unicode's full mapping: `İ` → `i` + U+0307);
//! 2. NFKD (compatibility decomposition: `ﬁ` → `fi`, full-width `Ａ` → `A`, `²` → `2`, `é` →
//!    `e` + U+0301);
//! 3. nonspacing marks (general category Mn: accents, cedillas, the dot of `İ`…) dropped,
//!    except U+0345 COMBINING GREEK YPOGEGRAMMENI, which becomes `ι`: it is the mark ICU's
//!    upper case spells as a capital iota (`ᾳ` → `ΑΙ`), so keeping it as `ι` keeps `ᾳ`, `ᾼ`
//!    and `ΑΙ` together;
//! 4. lower case again (a decomposition may hold capitals: `㎒` → `MHz`), then Unicode's
//!    simple case folding (`CaseFolding.txt`, statuses C and S), which joins the lowercase
//!    variants of a letter to it: `ς` → `σ` (ICU lowers `Σ` to `ς` or `σ` depending on what
//!    follows it), `ſ` → `s`, `ϐ` → `β`, the Cyrillic `ᲀ`–`ᲈ` (whose upper case is `В`, `Д`,
//!    `О`…) to `в`, `д`, `о`…;
//! 5. `ı` → `i`: ICU lowers `I` to `ı` under Turkish and Azeri (case folding leaves `ı` alone
//!    outside its Turkic mappings); `ß` → `ss` (ICU's upper case of `ß` is `SS`).
//!
//! then every run of Unicode whitespace (`char::is_whitespace`: tab, newline, no-break space,
//! ideographic space… and what a decomposition turns into one, such as `¨` → space + mark)
//! becomes one ASCII space. Nothing is trimmed.
//!
//! **Why it is a superset.** Case mappings, whatever the locale or context, only replace a
//! character by characters that fold the same (tested over every code point against Rust's and
//! ICU's mappings under several locales); accents and compatibility variants fold away. So
//! PostgreSQL's equal strings fold equal: `=` and `LIKE` without wildcards compare bytes,
//! `ILIKE` compares `lower()`ed strings, `lower(x) = lower(y)` likewise. `ß` folds to `ss`:
//! `lower()`, `ILIKE` and `=` never equate them, but ICU's `upper()` spells `ß` as `SS`, so
//! `upper(col) = 'STRASSE'` holds for `straße`; joining them keeps `upper()` comparisons
//! narrowable (the tests check every code point's upper case).
//!
//! **Why pieces fold to pieces.** Folding maps characters independently and only merges
//! whitespace runs, so for any split `a ++ b`, `fold(a ++ b)` starts with `fold(a)` and
//! contains `fold(b)`. Hence a value containing a literal run of a pattern, or starting with
//! it, has a folded form containing (starting with) the run's folded form, and the prefix and
//! trigram tokens of the run are among the value's.
//!
//! The normaliser is ICU4X's (`icu_normalizer`), the general category and case folding ICU4X's
//! too (`icu_properties`, `icu_casemap`): all already compiled in for the collator and case
//! mapper of [`crate::evaluate::collation`], with one Unicode data release. Stored tokens
//! depend on the folded form, so it must not drift: Unicode keeps the decompositions and case
//! foldings of assigned characters stable by policy; a new Unicode release can change the
//! folding of characters it newly assigns or recategorises, which an index rebuild absorbs.

use icu_casemap::CaseMapper;
use icu_normalizer::DecomposingNormalizerBorrowed;
use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;

/// COMBINING GREEK YPOGEGRAMMENI, the iota subscript.
const YPOGEGRAMMENI: char = '\u{345}';

/// The folded form of `text` (see the module documentation).
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_folded(c, &mut out);
    }
    out
}

/// Appends the folded form of `c` to `out`, merging a whitespace run with one that `out`
/// already ends with (every space in a folded string stands for whitespace).
pub(crate) fn push_folded(c: char, out: &mut String) {
    if c.is_ascii() {
        if c.is_whitespace() {
            push_space(out);
        } else {
            out.push(c.to_ascii_lowercase());
        }
        return;
    }
    let nfkd = DecomposingNormalizerBorrowed::new_nfkd();
    let case = CaseMapper::new();
    for lowered in c.to_lowercase() {
        for decomposed in nfkd.normalize_iter(std::iter::once(lowered)) {
            if decomposed == YPOGEGRAMMENI {
                out.push('ι');
                continue;
            }
            if is_nonspacing_mark(decomposed) {
                continue;
            }
            for again in decomposed.to_lowercase() {
                match case.simple_fold(again) {
                    'ı' => out.push('i'),
                    'ς' => out.push('σ'),
                    // ICU's upper case spells it `SS`: joined to `ss` so that `upper(col)`
                    // comparisons are narrowed safely too (`=`, `LIKE`, `ILIKE` and `lower()`
                    // never equate them; folding is only coarser).
                    'ß' => out.push_str("ss"),
                    c if c.is_whitespace() => push_space(out),
                    c if is_nonspacing_mark(c) => {}
                    c => out.push(c),
                }
            }
        }
    }
}

fn push_space(out: &mut String) {
    if !out.ends_with(' ') {
        out.push(' ');
    }
}

fn is_nonspacing_mark(c: char) -> bool {
    CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::NonspacingMark
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::collation::TextOrder;
    use proptest::prelude::*;

    #[test]
    fn accents_case_and_compatibility_forms_fold_away() {
        for (text, folded) in [
            ("Éloïse", "eloise"),
            ("ÉLOÏSE", "eloise"),
            ("E\u{301}loi\u{308}se", "eloise"),
            ("François", "francois"),
            ("Noël", "noel"),
            ("ﬁlet", "filet"),
            ("Ｍａｒｔｉｎ", "martin"),
            ("Œuvre", "œuvre"),
            ("Æsir", "æsir"),
            ("Straße", "strasse"),
            ("STRAẞE", "strasse"),
            ("İstanbul", "istanbul"),
            ("ıspanak", "ispanak"),
            ("ISPANAK", "ispanak"),
            ("ΟΔΥΣΣΕΥΣ", "οδυσσευσ"),
            ("ſ ϐ ᲀ ᲂ", "s β в о"),
            ("Οδυσσεύς", "οδυσσευσ"),
            ("ᾼ", "αι"),
            ("ᾳ", "αι"),
            ("Ångström", "angstrom"),
            ("Łódź", "łodz"),
            ("㎒", "mhz"),
            ("x²", "x2"),
            ("D’Artagnan", "d’artagnan"),
            ("", ""),
        ] {
            assert_eq!(fold(text), folded, "{text:?}");
        }
    }

    #[test]
    fn whitespace_runs_become_one_space_and_nothing_is_trimmed() {
        for (text, folded) in [
            ("Jean  Pierre", "jean pierre"),
            ("Jean\tPierre", "jean pierre"),
            ("Jean\n\r\n Pierre", "jean pierre"),
            ("Jean\u{a0}Pierre", "jean pierre"),
            ("Jean\u{3000}\u{2009}Pierre", "jean pierre"),
            ("  Jean ", " jean "),
            ("\t", " "),
            // A spacing accent decomposes to a space and a mark: a space.
            ("a¨ b", "a b"),
        ] {
            assert_eq!(fold(text), folded, "{text:?}");
        }
    }

    /// Characters whose upper case folds differently from the character: `ß` → `SS` (ICU's
    /// full mapping, also Rust's). Listed so that a change of Unicode data is noticed.
    const UPPER_EXCEPTIONS: &[char] = &[];

    #[test]
    fn case_mappings_never_change_the_folded_form() {
        let orders = [
            TextOrder::bytes(),
            TextOrder::icu("und").unwrap(),
            TextOrder::icu("fr-FR").unwrap(),
            TextOrder::icu("tr-TR").unwrap(),
            TextOrder::icu("lt-LT").unwrap(),
            TextOrder::icu("el-GR").unwrap(),
            TextOrder::from_catalog("c", "C.UTF-8", "C.UTF-8", None).unwrap(),
            TextOrder::from_catalog("c", "tr_TR.UTF-8", "tr_TR.UTF-8", None).unwrap(),
        ];
        let mut upper_exceptions = Vec::new();
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let s = c.to_string();
            let folded = fold(&s);
            let lowered: String = c.to_lowercase().collect();
            let uppered: String = c.to_uppercase().collect();
            // Rust's own full mappings, used by folding itself.
            assert_eq!(fold(&lowered), folded, "lower {c:?}");
            let mut upper_differs = fold(&uppered) != folded;
            // Locales and contexts change only characters that have a case mapping of their
            // own (the others stay what they are under every order).
            if lowered == s && uppered == s {
                assert!(!upper_differs);
                continue;
            }
            for order in &orders {
                assert_eq!(fold(&order.lower(&s)), folded, "{order:?} lower {c:?}");
                upper_differs |= fold(&order.upper(&s)) != folded;
            }
            if upper_differs {
                upper_exceptions.push(c);
            }
        }
        assert_eq!(upper_exceptions, UPPER_EXCEPTIONS);
    }

    #[test]
    fn contextual_case_mappings_fold_like_their_characters() {
        let icu = [
            TextOrder::icu("el-GR").unwrap(),
            TextOrder::icu("tr-TR").unwrap(),
            TextOrder::icu("lt-LT").unwrap(),
            TextOrder::icu("und").unwrap(),
        ];
        for text in [
            "ΟΔΥΣΣΕΥΣ ΣΑΣ Σ",
            "Οδυσσεύς",
            "ΆΣΟΣ.",
            "IİıiI\u{307}",
            "Ì Í Ĩ J\u{301} Į\u{301} I\u{300}",
            "DİYARBAKIR",
        ] {
            for order in &icu {
                assert_eq!(fold(&order.lower(text)), fold(text), "{order:?} {text}");
                assert_eq!(fold(&order.upper(text)), fold(text), "{order:?} {text}");
            }
        }
    }

    /// Text drawn from characters that fold in every way: ASCII letters and spaces, accents
    /// precomposed and combining, ligatures, full width, Turkish and Greek letters, `ß`, and
    /// whitespace of every kind.
    fn tricky_text() -> impl Strategy<Value = String> {
        let chars: Vec<char> =
            "aAbzZ -’'éÉe\u{301}\u{308}ëËçÇﬁﬀＡａİıIiΣσςßẞ\t\n\u{a0}\u{3000}¨ᾳᾼ㎒²_%\\"
                .chars()
                .collect();
        prop::collection::vec(prop::sample::select(chars), 0..24)
            .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn folding_is_compatible_with_concatenation(a in tricky_text(), b in tricky_text()) {
            let whole = fold(&format!("{a}{b}"));
            let (fa, fb) = (fold(&a), fold(&b));
            prop_assert!(whole.starts_with(&fa), "{whole:?} {fa:?}");
            prop_assert!(whole.contains(&fb), "{whole:?} {fb:?}");
            // And folding twice changes nothing.
            prop_assert_eq!(fold(&whole), whole.clone());
        }

        #[test]
        fn arbitrary_text_folds_without_panicking(text in "\\PC{0,40}") {
            let folded = fold(&text);
            prop_assert_eq!(fold(&folded), folded.clone());
            prop_assert!(!folded.contains("  "));
        }
    }
}
