//! PostgreSQL identifiers as a policy writes them.
//!
//! A policy names roles, schemas, tables and columns the way SQL does: an unquoted name is
//! folded to lower case (`Patients` is `patients`), a double-quoted one is kept exactly
//! (`"Patients"` is `Patients`, with `""` standing for one `"`). Qualified names join
//! identifiers with dots and no spaces: `public.patients.nir`, `public."Patients".nir`.
//!
//! The folded names are the ones the catalog holds (`pg_namespace.nspname`, `pg_class.relname`,
//! `pg_attribute.attname`, `pg_roles.rolname`), so the proxy compares them as they are.

use std::borrow::Cow;

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Why a written identifier is not a valid PostgreSQL identifier.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// Nothing was written where a name was expected.
    #[error("empty name")]
    Empty,
    /// `""`: PostgreSQL has no zero-length identifier.
    #[error("a quoted name cannot be empty")]
    EmptyQuoted,
    /// A double quote was opened and never closed.
    #[error("unterminated quoted name")]
    Unterminated,
    /// A character that cannot appear in an unquoted name (quote the name to keep it).
    #[error("unexpected character {0:?} (quote the name to use it)")]
    UnexpectedChar(char),
    /// An unquoted name starting with a digit or a dollar sign.
    #[error("a name cannot start with {0:?} unless it is quoted")]
    BadStart(char),
    /// A name PostgreSQL would silently truncate.
    #[error("name {name:?} is {bytes} bytes long; PostgreSQL truncates names to 63 bytes")]
    TooLong {
        /// The name after folding.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// A qualified name with the wrong number of parts.
    #[error("expected {expected} dot-separated names, found {found}")]
    WrongParts {
        /// How many parts the context needs.
        expected: usize,
        /// How many were written.
        found: usize,
    },
}

/// Parses one identifier, folding it the PostgreSQL way.
pub fn parse_identifier(written: &str) -> Result<String, IdentError> {
    let mut parts = parse_qualified(written)?;
    if parts.len() != 1 {
        return Err(IdentError::WrongParts {
            expected: 1,
            found: parts.len(),
        });
    }
    Ok(parts.remove(0))
}

/// Parses a dot-separated qualified name (`schema.table.column`), folding each part.
pub fn parse_qualified(written: &str) -> Result<Vec<String>, IdentError> {
    if written.is_empty() {
        return Err(IdentError::Empty);
    }
    let mut parts = Vec::new();
    let mut chars = written.chars().peekable();
    loop {
        let name = match chars.peek() {
            None => return Err(IdentError::Empty),
            Some('"') => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        None => return Err(IdentError::Unterminated),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some('"') => break,
                        Some('\0') => return Err(IdentError::UnexpectedChar('\0')),
                        Some(c) => name.push(c),
                    }
                }
                if name.is_empty() {
                    return Err(IdentError::EmptyQuoted);
                }
                name
            }
            Some(&first) => {
                if first == '.' {
                    return Err(IdentError::Empty);
                }
                if !(first.is_alphabetic() || first == '_') {
                    return Err(if first.is_ascii_digit() || first == '$' {
                        IdentError::BadStart(first)
                    } else {
                        IdentError::UnexpectedChar(first)
                    });
                }
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_alphabetic() || c.is_ascii_digit() || c == '_' || c == '$') {
                        return Err(IdentError::UnexpectedChar(c));
                    }
                    // PostgreSQL folds ASCII letters only; other letters are kept as written.
                    name.push(c.to_ascii_lowercase());
                    chars.next();
                }
                name
            }
        };
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(IdentError::TooLong {
                bytes: name.len(),
                name,
            });
        }
        parts.push(name);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => return Err(IdentError::UnexpectedChar(c)),
        }
    }
}

/// Writes a catalog name back as a policy (or SQL) would: bare when that folds back to the same
/// name, double-quoted otherwise.
pub fn quote_identifier(name: &str) -> Cow<'_, str> {
    let mut chars = name.chars();
    let bare = match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        }
        _ => false,
    };
    if bare {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("\"{}\"", name.replace('"', "\"\"")))
    }
}

/// Writes a qualified name, quoting each part that needs it.
pub fn quote_qualified(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| quote_identifier(p))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_names_fold_to_lower_case() {
        assert_eq!(parse_identifier("EHR_App").unwrap(), "ehr_app");
        assert_eq!(
            parse_qualified("Public.Patients.NIR").unwrap(),
            ["public", "patients", "nir"]
        );
        // Only ASCII letters fold, as in PostgreSQL with a UTF-8 database.
        assert_eq!(parse_identifier("Élève").unwrap(), "Élève");
        assert_eq!(parse_identifier("a$1_b").unwrap(), "a$1_b");
    }

    #[test]
    fn quoted_names_are_kept_exactly() {
        assert_eq!(
            parse_qualified("public.\"Patients\".\"Date de naissance\"").unwrap(),
            ["public", "Patients", "Date de naissance"]
        );
        assert_eq!(parse_identifier("\"a\"\"b\"").unwrap(), "a\"b");
        assert_eq!(parse_identifier("\"a.b\"").unwrap(), "a.b");
    }

    #[test]
    fn malformed_names_are_refused() {
        assert_eq!(parse_identifier(""), Err(IdentError::Empty));
        assert_eq!(parse_identifier("\"\""), Err(IdentError::EmptyQuoted));
        assert_eq!(parse_identifier("\"abc"), Err(IdentError::Unterminated));
        assert_eq!(parse_identifier("1abc"), Err(IdentError::BadStart('1')));
        assert_eq!(parse_identifier("$x"), Err(IdentError::BadStart('$')));
        assert_eq!(
            parse_identifier("a b"),
            Err(IdentError::UnexpectedChar(' '))
        );
        assert_eq!(
            parse_identifier("a-b"),
            Err(IdentError::UnexpectedChar('-'))
        );
        assert_eq!(parse_qualified("a..b"), Err(IdentError::Empty));
        assert_eq!(parse_qualified("a."), Err(IdentError::Empty));
        assert_eq!(parse_qualified(".a"), Err(IdentError::Empty));
        assert_eq!(
            parse_qualified("\"a\"b"),
            Err(IdentError::UnexpectedChar('b'))
        );
        assert_eq!(
            parse_identifier("a.b"),
            Err(IdentError::WrongParts {
                expected: 1,
                found: 2
            })
        );
        let long = "x".repeat(64);
        assert_eq!(
            parse_identifier(&long),
            Err(IdentError::TooLong {
                name: long.clone(),
                bytes: 64
            })
        );
        assert!(parse_identifier(&"x".repeat(63)).is_ok());
    }

    #[test]
    fn quoting_round_trips() {
        for name in [
            "nir",
            "Patients",
            "a\"b",
            "date de naissance",
            "_x1",
            "1x",
            "é",
        ] {
            let written = quote_identifier(name);
            assert_eq!(parse_identifier(&written).unwrap(), name, "{written}");
        }
        assert_eq!(quote_identifier("nir"), "nir");
        assert_eq!(quote_identifier("Nir"), "\"Nir\"");
        assert_eq!(
            quote_qualified(&["public", "Patients", "nir"]),
            "public.\"Patients\".nir"
        );
    }
}
