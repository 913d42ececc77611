//! Reading the spanned TOML tree: typed getters that report a diagnostic at the offending value
//! instead of stopping at the first problem.
//!
//! The policy is parsed with `toml`'s spanned document tree rather than serde, so that every
//! unknown key, wrong type and bad value in the file is reported in one pass, each at its line
//! and column.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::source::{SourceMap, Spotted};

/// A spanned TOML value of the document being read.
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;
/// A spanned TOML key.
pub(crate) type Key<'i> = Spanned<DeString<'i>>;

/// Collects diagnostics while a document is read.
pub(crate) struct Reader<'a> {
    map: &'a SourceMap<'a>,
    problems: Vec<Spotted>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(map: &'a SourceMap<'a>) -> Self {
        Reader {
            map,
            problems: Vec::new(),
        }
    }

    pub(crate) fn map(&self) -> &SourceMap<'a> {
        self.map
    }

    /// Records a problem at a span.
    pub(crate) fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.problems.push(self.map.at(span, message));
    }

    /// How many problems have been recorded so far.
    pub(crate) fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// True when no problem has been recorded.
    pub(crate) fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn into_problems(self) -> Vec<Spotted> {
        self.problems
    }

    /// Reports a key that `section` does not know.
    pub(crate) fn unknown_key(&mut self, key: &Key<'_>, section: &str, expected: &[&str]) {
        let message = format!(
            "unknown key `{}` in {section}; expected one of: {}",
            key.get_ref(),
            expected.join(", ")
        );
        self.error(&key.span(), message);
    }

    /// The value as a table, or a diagnostic.
    pub(crate) fn table<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        what: &str,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.wrong_type(value, what, "a table", other);
                None
            }
        }
    }

    /// The value as a string, or a diagnostic.
    pub(crate) fn string<'v>(&mut self, value: &'v Value<'_>, what: &str) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            other => {
                self.wrong_type(value, what, "a string", other);
                None
            }
        }
    }

    /// The value as a non-negative integer, or a diagnostic.
    pub(crate) fn count(&mut self, value: &Value<'_>, what: &str) -> Option<u64> {
        match value.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        &value.span(),
                        format!("{what} must be a number of rows, 0 or more (found {i})"),
                    );
                    None
                }
            },
            other => {
                self.wrong_type(value, what, "an integer", other);
                None
            }
        }
    }

    /// The value as a boolean, or a diagnostic.
    pub(crate) fn boolean(&mut self, value: &Value<'_>, what: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.wrong_type(value, what, "a boolean", other);
                None
            }
        }
    }

    /// The value as an array, or a diagnostic.
    pub(crate) fn array<'v, 'i>(
        &mut self,
        value: &'v Value<'i>,
        what: &str,
    ) -> Option<&'v [Value<'i>]> {
        match value.get_ref() {
            DeValue::Array(a) => Some(&a[..]),
            other => {
                self.wrong_type(value, what, "an array", other);
                None
            }
        }
    }

    fn wrong_type(&mut self, value: &Value<'_>, what: &str, expected: &str, found: &DeValue<'_>) {
        let message = format!("{what} must be {expected}, found {}", kind(found));
        self.error(&value.span(), message);
    }
}

/// "a string", "an integer"… for messages.
pub(crate) fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A TOML key as a header would write it: bare when it can be, double-quoted otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        let mut quoted = String::with_capacity(key.len() + 2);
        quoted.push('"');
        for c in key.chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        quoted
    }
}

/// A section header for messages: `[classes.ehr_app.budget]`.
pub(crate) fn section(keys: &[&str]) -> String {
    let parts: Vec<String> = keys.iter().map(|k| toml_key(k)).collect();
    format!("[{}]", parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_quote_keys_that_need_it() {
        assert_eq!(
            section(&["classes", "ehr_app", "budget"]),
            "[classes.ehr_app.budget]"
        );
        assert_eq!(
            section(&["columns", "public.patients.nir"]),
            "[columns.\"public.patients.nir\"]"
        );
        assert_eq!(toml_key("public.\"P\".x"), "\"public.\\\"P\\\".x\"");
    }
}
