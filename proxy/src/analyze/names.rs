//! Names as PostgreSQL reads them: identifier folding, table names resolved to
//! [`TableRef`]s, and the policy questions asked by name.
//!
//! Unquoted identifiers are folded to ASCII lower case (PostgreSQL leaves other letters as
//! written), quoted ones are kept, and both are truncated to 63 bytes as PostgreSQL does.
//! An unqualified table name is taken to be in `public`: pgseal assumes the default
//! `search_path` (`"$user", public`, with no schema named after the role). A client that
//! changes `search_path` can make an unqualified name reach another table; it can never make
//! a sealed table's name resolve to an unsealed one without the analyzer seeing the sealed
//! table's name, which is what decides sealing.

use pgseal_policies::ident::MAX_IDENTIFIER_BYTES;
use pgseal_policies::{ColumnId, CompiledPolicy, SealedColumn};
use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::plan::TableRef;

/// The schema an unqualified table name is taken to be in.
pub(crate) const DEFAULT_SCHEMA: &str = "public";

/// An identifier as the catalog holds it.
pub(crate) fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        truncate_identifier(ident.value.clone())
    } else {
        fold_str(&ident.value)
    }
}

/// An unquoted identifier folded: ASCII lower case, truncated to 63 bytes.
pub(crate) fn fold_str(written: &str) -> String {
    truncate_identifier(written.to_ascii_lowercase())
}

/// Truncates a name to 63 bytes on a character boundary, as PostgreSQL does.
pub(crate) fn truncate_identifier(mut name: String) -> String {
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut cut = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

/// The folded parts of an object name; `None` when a part is not a plain identifier.
pub(crate) fn name_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(fold(ident)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// The table an object name designates: `t` → `public.t`, `s.t`, `db.s.t` → `s.t`. `None`
/// for names with another shape.
pub(crate) fn table_ref(name: &ObjectName) -> Option<TableRef> {
    let parts = name_parts(name)?;
    match parts.as_slice() {
        [table] => Some(TableRef {
            schema: DEFAULT_SCHEMA.to_string(),
            table: table.clone(),
        }),
        [.., schema, table] if parts.len() <= 3 => Some(TableRef {
            schema: schema.clone(),
            table: table.clone(),
        }),
        _ => None,
    }
}

/// Policy questions by name.
#[derive(Clone, Copy)]
pub(crate) struct Names<'p> {
    /// The policy.
    pub policy: &'p CompiledPolicy,
}

impl<'p> Names<'p> {
    /// True when the table has sealed columns.
    pub fn is_sealed(&self, table: &TableRef) -> bool {
        self.policy.is_sealed_table(&table.schema, &table.table)
    }

    /// The sealed column `table.column`, if it is one.
    pub fn column(&self, table: &TableRef, column: &str) -> Option<ColumnId> {
        self.policy.column_id(&table.schema, &table.table, column)
    }

    /// A sealed table's sealed columns, with their names, in policy order (the helper the
    /// policy crate does not have: its `SealedTable` lists ids only).
    pub fn sealed_columns(&self, table: &TableRef) -> Vec<(String, ColumnId)> {
        self.policy
            .sealed_table(&table.schema, &table.table)
            .map(|t| {
                t.columns
                    .iter()
                    .map(|&id| (self.policy.column(id).column.clone(), id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A sealed column's declaration.
    pub fn get(&self, id: ColumnId) -> &'p SealedColumn {
        self.policy.column(id)
    }

    /// `schema.table.column (mode)`, for messages.
    pub fn describe(&self, id: ColumnId) -> String {
        let column = self.get(id);
        format!("{} ({})", column.qualified_name(), column.mode)
    }

    /// True when values of `a` can be compared with values of `b` as stored: same domain,
    /// same mode, and a mode where equal plaintexts are stored equal.
    pub fn comparable(&self, a: ColumnId, b: ColumnId) -> bool {
        let (a, b) = (self.get(a), self.get(b));
        a.domain == b.domain && a.mode == b.mode && a.mode.supports_equality()
    }

    /// True when a stored value of `from` can be copied into `to` as it is and still open:
    /// same domain and same mode (ciphertext is bound to its domain, tokens to their keys).
    pub fn copyable(&self, from: ColumnId, to: ColumnId) -> bool {
        let (from, to) = (self.get(from), self.get(to));
        from.domain == to.domain && from.mode == to.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_follows_postgresql() {
        assert_eq!(fold(&Ident::new("Patients")), "patients");
        assert_eq!(fold(&Ident::with_quote('"', "Patients")), "Patients");
        assert_eq!(fold_str("ÉTAT"), "État");
        let long = "a".repeat(70);
        assert_eq!(fold_str(&long).len(), 63);
        let wide = "é".repeat(40);
        let folded = truncate_identifier(wide);
        assert!(folded.len() <= 63 && folded.chars().all(|c| c == 'é'));
    }

    #[test]
    fn table_names_default_to_public() {
        let name = |parts: &[&str]| {
            ObjectName::from(parts.iter().map(|p| Ident::new(*p)).collect::<Vec<_>>())
        };
        assert_eq!(
            table_ref(&name(&["Patients"])),
            Some(TableRef {
                schema: "public".into(),
                table: "patients".into()
            })
        );
        assert_eq!(
            table_ref(&name(&["ehr", "s", "t"])),
            Some(TableRef {
                schema: "s".into(),
                table: "t".into()
            })
        );
        assert_eq!(table_ref(&name(&["a", "b", "c", "d"])), None);
    }
}
