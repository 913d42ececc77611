//! `unaccent(text)` as the database's `unaccent` dictionary computes it, for filters and sorts
//! pgseal evaluates over `unaccent(column)` (Tryton and Django write their accent-insensitive
//! searches that way).
//!
//! The rules are the database's own: pgseal asks the dictionary (`ts_lexize`) what it makes of
//! each character of the ranges its rules cover, once per database (`protect::catalog`), and
//! applies them character by character, as the dictionary does for rules of one character
//! (those of PostgreSQL's `unaccent.rules`; a custom file's rules of several characters are not
//! seen).

use std::borrow::Cow;
use std::collections::HashMap;

/// The code point ranges pgseal asks the dictionary about: every block PostgreSQL's
/// `unaccent.rules` has rules in (Latin, Greek, Cyrillic and their extensions, punctuation,
/// letterlike and number forms, enclosed alphanumerics, CJK compatibility, presentation and
/// half/full-width forms, mathematical alphanumerics, enclosed supplement).
pub const PROBED_RANGES: &[(u32, u32)] = &[
    (0x80, 0x33FF),
    (0xA700, 0xA7FF),
    (0xFB00, 0xFFFF),
    (0x1D400, 0x1D7FF),
    (0x1F100, 0x1F1FF),
];

/// One database's unaccent rules: what each character becomes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnaccentRules {
    map: HashMap<char, String>,
}

impl UnaccentRules {
    /// The rules from the catalog query's JSON object (`{"é": "e", "Œ": "OE", …}`); `None`
    /// when it is not one.
    pub fn from_json(text: &str) -> Option<UnaccentRules> {
        let object: HashMap<String, String> = serde_json::from_str(text).ok()?;
        let mut map = HashMap::with_capacity(object.len());
        for (from, to) in object {
            let mut chars = from.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return None;
            };
            map.insert(c, to);
        }
        Some(UnaccentRules { map })
    }

    /// `unaccent(text)`.
    pub fn apply<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if !text.chars().any(|c| self.map.contains_key(&c)) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match self.map.get(&c) {
                Some(to) => out.push_str(to),
                None => out.push(c),
            }
        }
        Cow::Owned(out)
    }

    /// How many characters have a rule.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no character has a rule.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_character_by_character() {
        let rules =
            UnaccentRules::from_json(r#"{"é": "e", "Œ": "OE", "\u0301": "", "ï": "i"}"#).unwrap();
        assert_eq!(rules.apply("Éloïse ŒUVRE"), "Éloise OEUVRE");
        assert_eq!(rules.apply("e\u{301}"), "e");
        assert!(matches!(rules.apply("plain"), Cow::Borrowed("plain")));
        assert!(UnaccentRules::from_json(r#"{"ab": "x"}"#).is_none());
        assert!(UnaccentRules::from_json("[1]").is_none());
    }
}
