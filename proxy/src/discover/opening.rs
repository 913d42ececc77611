//! Opening a sealed column's sampled values with a keyring, so that `pgseal policy check
//! --keyring` can compare copies with the plaintext of columns already sealed.
//!
//! Each value is opened exactly as the proxy would open it (the column's [`ColumnCrypto`]),
//! into its canonical text. Pseudonyms cannot be opened; a tokenized column marked `migrating`
//! is not opened either, as its tokens cannot be told from plaintext. What is opened stays in
//! memory while copies are compared, like a plaintext database's sample, and is never printed.

use std::collections::HashMap;

use pgseal_keys::Keyring;
use pgseal_policies::{CompiledPolicy, SealMode};

use crate::protect::column::{ColumnCrypto, Storage};
use crate::protect::date_settings::DateSettings;
use crate::protect::values::Format;

/// Opens stored values of the sealed columns of a policy.
pub struct KeyringOpener {
    /// `(schema, table, column)` → the column's keys.
    columns: HashMap<(String, String, String), ColumnCrypto>,
}

impl std::fmt::Debug for KeyringOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringOpener")
            .field("columns", &self.columns.len())
            .finish()
    }
}

impl KeyringOpener {
    /// The keys of every sealed column of `policy` but pseudonym ones, derived from `keyring`.
    pub fn new(policy: &CompiledPolicy, keyring: &Keyring) -> Result<Self, pgseal_keys::Error> {
        let mut columns = HashMap::new();
        for column in policy.columns() {
            if column.mode == SealMode::Pseudonym {
                continue;
            }
            columns.insert(
                (
                    column.schema.clone(),
                    column.table.clone(),
                    column.column.clone(),
                ),
                ColumnCrypto::new(column, keyring)?,
            );
        }
        Ok(KeyringOpener { columns })
    }

    /// The canonical plaintext of `stored` (the text form of a value of `column`, whose
    /// storage type is `storage_type`), or `None` when it cannot be opened.
    pub fn open(
        &self,
        column: (&str, &str, &str),
        storage_type: &str,
        stored: &str,
    ) -> Option<String> {
        let key = (
            column.0.to_string(),
            column.1.to_string(),
            column.2.to_string(),
        );
        let crypto = self.columns.get(&key)?;
        let storage = if storage_type == "bytea" {
            Storage::Bytea
        } else {
            Storage::Text
        };
        let opened = crypto
            .open(
                stored.as_bytes(),
                Format::Text,
                storage,
                DateSettings::canonical(),
            )
            .ok()?;
        String::from_utf8(opened.to_vec()).ok()
    }
}
