//! Key-derivation domains: a column, or a named domain several columns share.
//!
//! Every key is derived for one domain, and a sealed value carries its domain as associated data,
//! so a value copied into another column fails to open there. Columns that must be joined or
//! compared to each other (a patient id in two tables) share a named domain instead.
//!
//! A domain's canonical *label* feeds the key derivation and must never change for existing
//! data: `column:schema.table.column` (a part containing `.` or `"` is double-quoted, SQL style,
//! so labels stay unambiguous) or `shared:name`. Names are case-sensitive: the caller folds
//! unquoted SQL identifiers to lower case before building a domain, as PostgreSQL does.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Longest accepted identifier part, in bytes (PostgreSQL's `NAMEDATALEN - 1`).
const MAX_IDENT_LEN: usize = 63;
/// Longest accepted shared-domain name, in bytes.
const MAX_SHARED_LEN: usize = 128;

/// A key-derivation domain. Cheap to clone; compares and hashes by its canonical label.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Domain {
    label: Arc<str>,
}

impl Domain {
    /// The domain of one column, `schema.table.column`.
    pub fn column(schema: &str, table: &str, column: &str) -> Result<Self> {
        let mut label = String::from("column:");
        for (i, part) in [schema, table, column].into_iter().enumerate() {
            check_ident(part)?;
            if i > 0 {
                label.push('.');
            }
            push_quoted(&mut label, part);
        }
        Ok(Domain {
            label: label.into(),
        })
    }

    /// A named domain that several columns share, so their sealed values and tokens can be
    /// compared and joined. Names use ASCII letters, digits, `_`, `-` and `.`.
    pub fn shared(name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::InvalidDomain("shared domain name is empty"));
        }
        if name.len() > MAX_SHARED_LEN {
            return Err(Error::InvalidDomain(
                "shared domain name is longer than 128 bytes",
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(Error::InvalidDomain(
                "shared domain names use only ASCII letters, digits, '_', '-' and '.'",
            ));
        }
        Ok(Domain {
            label: format!("shared:{name}").into(),
        })
    }

    /// Parses the policy notation: `schema.table.column` for a column (unquoted parts only), or
    /// `shared:name` for a named domain.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(name) = text.strip_prefix("shared:") {
            return Self::shared(name);
        }
        let mut parts = text.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(schema), Some(table), Some(column), None) => Self::column(schema, table, column),
            _ => Err(Error::InvalidDomain(
                "expected schema.table.column or shared:name",
            )),
        }
    }

    /// The canonical label that key derivation and envelopes bind to.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether this is a shared, named domain rather than a single column.
    pub fn is_shared(&self) -> bool {
        self.label.starts_with("shared:")
    }
}

fn check_ident(part: &str) -> Result<()> {
    if part.is_empty() {
        return Err(Error::InvalidDomain("empty schema, table or column name"));
    }
    if part.len() > MAX_IDENT_LEN {
        return Err(Error::InvalidDomain(
            "schema, table or column name longer than 63 bytes",
        ));
    }
    if part.chars().any(char::is_control) {
        return Err(Error::InvalidDomain(
            "control character in a schema, table or column name",
        ));
    }
    Ok(())
}

fn push_quoted(out: &mut String, part: &str) {
    if part.contains(['.', '"']) {
        out.push('"');
        out.push_str(&part.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(part);
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.label.strip_prefix("column:") {
            Some(column) => write!(f, "column {column}"),
            None => write!(f, "domain {}", &self.label["shared:".len()..]),
        }
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_canonical_and_unambiguous() {
        let d = Domain::column("public", "patients", "nir").unwrap();
        assert_eq!(d.label(), "column:public.patients.nir");
        assert_eq!(d.to_string(), "column public.patients.nir");
        assert_eq!(Domain::parse("public.patients.nir").unwrap(), d);
        let dotted = Domain::column("a.b", "c", "d").unwrap();
        let split = Domain::column("a", "b.c", "d").unwrap();
        assert_eq!(dotted.label(), "column:\"a.b\".c.d");
        assert_eq!(split.label(), "column:a.\"b.c\".d");
        assert_ne!(dotted, split);
        assert_eq!(
            Domain::column("s", "t\"x", "c").unwrap().label(),
            "column:s.\"t\"\"x\".c"
        );
    }

    #[test]
    fn shared_domains() {
        let d = Domain::parse("shared:patient_id").unwrap();
        assert!(d.is_shared());
        assert_eq!(d.label(), "shared:patient_id");
        assert_eq!(d.to_string(), "domain patient_id");
        assert_ne!(d, Domain::column("shared", "patient_id", "x").unwrap());
    }

    #[test]
    fn bad_domains_are_refused() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a..c",
            "shared:",
            "shared:a b",
            "shared:é",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Domain::column("a", "b", &"x".repeat(64)).is_err());
        assert!(Domain::column("a", "b\n", "c").is_err());
    }
}
