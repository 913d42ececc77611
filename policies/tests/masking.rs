//! Masking rules on ordinary values and on edge cases: short values, Unicode, malformed input.
//! Every rule must return a value that reveals no more than the rule says, and never panic.

use pgseal_policies::Mask;
use pgseal_policies::mask::{
    STARRED_NIR, STARRED_PHONE, keep, mask_email, mask_initial, mask_nir, mask_phone, mask_year,
    mask_year_month, normalize_nir, redact,
};

#[test]
fn nir_keeps_sex_year_and_month() {
    assert_eq!(mask_nir("1 85 05 78 006 084 91"), "1 85 05 ** *** *** **");
    assert_eq!(mask_nir("185057800608491"), "1 85 05 ** *** *** **");
    assert_eq!(
        mask_nir("  1 85 05 78 006 084 91\t"),
        "1 85 05 ** *** *** **"
    );
    assert_eq!(mask_nir("169017512345617"), "1 69 01 ** *** *** **");
    // Provisional number (sex digit 8).
    assert_eq!(mask_nir("899129999999902"), "8 99 12 ** *** *** **");
}

#[test]
fn nir_handles_corsica() {
    // 2A counts as 19 and 2B as 18 in the key.
    assert_eq!(mask_nir("2 90 12 2A 004 123 67"), "2 90 12 ** *** *** **");
    assert_eq!(mask_nir("290122b00412394"), "2 90 12 ** *** *** **");
    assert_eq!(
        normalize_nir("290122b00412394").as_deref(),
        Some("290122B00412394")
    );
    // Swapping the Corsican departments breaks the key.
    assert_eq!(mask_nir("290122A00412394"), STARRED_NIR);
}

#[test]
fn malformed_nir_is_starred_whole() {
    for bad in [
        "",
        "1",
        "1 85 05",
        "18505780060849",                 // 14 characters
        "1850578006084911",               // 16 characters
        "185057800608492",                // wrong key
        "585057800608491",                // sex digit 5
        "1850578OO608491",                // letters O instead of zeros
        "1 85 05 78 006 084 9١",          // an Arabic-Indic digit
        "１８５０５７８００６０８４９１", // full-width digits
        "2 90 12 2C 004 123 67",
        "not a nir at all",
        "\u{0}\u{0}\u{0}",
    ] {
        assert_eq!(mask_nir(bad), STARRED_NIR, "{bad:?}");
    }
    assert_eq!(STARRED_NIR, "* ** ** ** *** *** **");
}

#[test]
fn email_keeps_first_character_and_domain() {
    assert_eq!(mask_email("jean.dupont@exemple.fr"), "j***@exemple.fr");
    assert_eq!(mask_email(" j@exemple.fr "), "j***@exemple.fr");
    // The last @ separates the domain.
    assert_eq!(mask_email("\"a@b\"@exemple.fr"), "\"***@exemple.fr");
    // Unicode local parts: a whole character, precomposed or not.
    assert_eq!(mask_email("élodie@exemple.fr"), "é***@exemple.fr");
    assert_eq!(
        mask_email("e\u{301}lodie@exemple.fr"),
        "e\u{301}***@exemple.fr"
    );
    assert_eq!(mask_email("李小龙@例子.中国"), "李***@例子.中国");
    for bad in [
        "",
        "jean.dupont",
        "@exemple.fr",
        "jean@",
        "jean dupont@exemple.fr",
        "jean@.fr",
        "jean@exemple.",
    ] {
        assert_eq!(mask_email(bad), "***", "{bad:?}");
    }
}

#[test]
fn phone_keeps_two_digits_at_each_end() {
    assert_eq!(mask_phone("06 12 34 56 12"), "06 ** ** ** 12");
    assert_eq!(mask_phone("0612345612"), "06******12");
    assert_eq!(mask_phone("06.12.34.56.12"), "06.**.**.**.12");
    assert_eq!(mask_phone("+33 6 12 34 56 12"), "+33 6 ** ** ** 12");
    assert_eq!(mask_phone("+33612345612"), "+336******12");
    assert_eq!(mask_phone("0033 6 12 34 56 12"), "0033 6 ** ** ** 12");
    assert_eq!(mask_phone("(0)1-45-67-89-10"), "(0)1-**-**-**-10");
    // Short numbers (fewer than four digits hidden) and anything with letters: starred whole.
    for bad in [
        "",
        "15",
        "3615",
        "06 12 34",
        "+33 6 12",
        "06 12 34 56 12 poste 4",
        "06 12 ab 56 12",
        "06+12345612",
        "٠٦١٢٣٤٥٦١٢",
    ] {
        assert_eq!(mask_phone(bad), STARRED_PHONE, "{bad:?}");
    }
}

#[test]
fn initial_keeps_one_letter() {
    assert_eq!(mask_initial("Dupont"), "D.");
    assert_eq!(mask_initial("  dupont  "), "d.");
    assert_eq!(mask_initial("Élodie"), "É.");
    // A decomposed É (E + combining acute) stays whole.
    assert_eq!(mask_initial("E\u{301}lodie"), "E\u{301}.");
    assert_eq!(mask_initial("Jean-Pierre"), "J.");
    assert_eq!(mask_initial("Ørsted"), "Ø.");
    assert_eq!(mask_initial("李"), "李.");
    // A flag emoji is one grapheme of two code points.
    assert_eq!(mask_initial("🇫🇷 Marianne"), "🇫🇷.");
    assert_eq!(mask_initial("X"), "X.");
    assert_eq!(mask_initial(""), "");
    assert_eq!(mask_initial("   "), "");
}

#[test]
fn dates_keep_the_year_or_the_month() {
    assert_eq!(mask_year("1985-05-17"), "1985");
    assert_eq!(mask_year_month("1985-05-17"), "1985-05");
    assert_eq!(mask_year("2024-03-05 14:30:00+01"), "2024");
    assert_eq!(mask_year_month("2024-03-05 14:30:00.123456+01"), "2024-03");
    assert_eq!(mask_year_month("2024-03-05T14:30:00Z"), "2024-03");
    assert_eq!(mask_year("0044-03-15 BC"), "0044 BC");
    assert_eq!(mask_year_month("0044-03-15 BC"), "0044-03 BC");
    assert_eq!(mask_year("12345-01-01"), "12345");
    assert_eq!(mask_year("infinity"), "infinity");
    assert_eq!(mask_year_month("-infinity"), "-infinity");
    // Not ISO (another DateStyle), out of range, or truncated: starred.
    for bad in [
        "",
        "17/05/1985",
        "05-17-1985",
        "1985",
        "1985-05",
        "1985-13-01",
        "1985-00-10",
        "1985-05-32",
        "1985-5-17",
        "85-05-17",
        "1985-05-17x",
        "1985-+5-17",
        "1985-05-1é",
        "1985-é5-17",
        "１９８５-05-17",
    ] {
        assert_eq!(mask_year(bad), "****", "{bad:?}");
        assert_eq!(mask_year_month(bad), "****-**", "{bad:?}");
    }
}

#[test]
fn redact_hides_everything_including_length() {
    assert_eq!(redact("Patient anxieux, antécédents de…"), "***");
    assert_eq!(redact(""), "***");
    assert_eq!(Mask::Redact.apply("x"), "***");
}

#[test]
fn keep_first_and_last() {
    assert_eq!(keep("E11.9", 3, 0), "E11**");
    assert_eq!(keep("10003456789", 0, 3), "********789");
    assert_eq!(keep("Dupont", 1, 1), "D****t");
    // Characters, not bytes.
    assert_eq!(keep("Élisabeth", 2, 1), "Él******h");
    assert_eq!(keep("e\u{301}cole", 1, 0), "e\u{301}****");
    // A value no longer than what would be kept is starred whole.
    assert_eq!(keep("12", 0, 4), "**");
    assert_eq!(keep("abcd", 2, 2), "****");
    assert_eq!(keep("abcde", 2, 2), "ab*de");
    assert_eq!(keep("", 1, 1), "");
    assert_eq!(keep("  padded   ", 1, 0), "p*****");
    assert_eq!(keep("x", usize::MAX, usize::MAX), "*");
}

#[test]
fn rules_apply_through_the_enum() {
    let cases = [
        ("nir", "185057800608491", "1 85 05 ** *** *** **"),
        ("email", "jean.dupont@exemple.fr", "j***@exemple.fr"),
        ("phone", "06 12 34 56 12", "06 ** ** ** 12"),
        ("initial", "Élodie", "É."),
        ("year", "1985-05-17", "1985"),
        ("year-month", "1985-05-17", "1985-05"),
        ("redact", "secret", "***"),
        ("keep-first-1-last-2", "0612345612", "0*******12"),
    ];
    for (rule, input, output) in cases {
        assert_eq!(Mask::parse(rule).unwrap().apply(input), output, "{rule}");
    }
}

#[test]
fn no_rule_panics_on_awkward_input() {
    let rules = [
        Mask::Nir,
        Mask::Email,
        Mask::Phone,
        Mask::Initial,
        Mask::Year,
        Mask::YearMonth,
        Mask::Redact,
        Mask::Keep { first: 3, last: 2 },
        Mask::Keep {
            first: 64,
            last: 64,
        },
    ];
    let mut inputs: Vec<String> = [
        "",
        " ",
        "@",
        "@@",
        "-",
        "--",
        "+",
        "é",
        "e\u{301}",
        "🇫🇷",
        "\u{200d}",
        "\u{feff}",
        "\u{0}",
        "2",
        "2A",
        "1985-",
        "1985-05-",
        "1985-05-1",
        "1985-05-1\u{301}",
        "0000-00-00",
        "\u{10ffff}",
        "a@b@c",
        "+٣٣",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every prefix (by character) of some realistic values, to hit every truncation point.
    for value in [
        "1 85 05 78 006 084 91",
        "élodie.dupont@exemple.fr",
        "+33 6 12 34 56 12",
        "2024-03-05 14:30:00+01",
    ] {
        let chars: Vec<char> = value.chars().collect();
        for n in 0..=chars.len() {
            inputs.push(chars[..n].iter().collect());
        }
    }
    inputs.push("x".repeat(100_000));
    for rule in rules {
        for input in &inputs {
            let masked = rule.apply(input);
            // Masking never hands back a value of some length unchanged.
            if input.chars().count() > 4 {
                assert_ne!(&masked, input, "{rule} passed {input:?} through");
            }
        }
    }
}
