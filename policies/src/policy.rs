//! [`CompiledPolicy`]: the loaded policy, and the lookups the proxy makes on its hot path.
//!
//! Names are resolved to dense ids once (a column by `(schema, table, column)`, a role by name),
//! then every per-row question is an array index: `views[class][column]`. The proxy caches the
//! `ColumnId` of each `(table OID, attnum)` it meets and the `ClassId` of its session's role.

use std::collections::HashMap;
use std::path::Path;

use crate::budget::Budget;
use crate::model::{ClassId, ColumnId, RoleClass, SealedColumn, SealedTable, View, WriteAccess};
use crate::source::Diagnostics;

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read and is not a valid policy; every problem is listed.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// A sealed table's index in [`CompiledPolicy::tables`], and its sealed columns by name.
pub(crate) type TableEntry = (usize, HashMap<String, ColumnId>);

/// A policy, validated and compiled into lookups.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub(crate) file: String,
    pub(crate) columns: Vec<SealedColumn>,
    pub(crate) tables: Vec<SealedTable>,
    /// schema → table → (index into `tables`, column → id).
    pub(crate) by_name: HashMap<String, HashMap<String, TableEntry>>,
    pub(crate) classes: Vec<RoleClass>,
    pub(crate) class_by_role: HashMap<String, ClassId>,
    pub(crate) trusted_functions: Vec<String>,
    pub(crate) databases: Vec<String>,
}

impl CompiledPolicy {
    /// Reads, validates and compiles a policy file; diagnostics name the file as given.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: name.clone(),
            source,
        })?;
        Self::from_toml(&name, &text).map_err(LoadError::Invalid)
    }

    /// Validates and compiles a policy from its text; `file` names it in diagnostics.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, Diagnostics> {
        crate::compile::compile(file, text)
    }

    /// The file name the policy was loaded under.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The databases the policy protects, as PostgreSQL spells their names (case matters);
    /// empty when it protects every database.
    pub fn databases(&self) -> &[String] {
        &self.databases
    }

    /// Every sealed column, indexed by [`ColumnId::index`].
    pub fn columns(&self) -> &[SealedColumn] {
        &self.columns
    }

    /// One sealed column.
    ///
    /// # Panics
    /// If the id comes from another policy with more columns.
    pub fn column(&self, id: ColumnId) -> &SealedColumn {
        &self.columns[id.index()]
    }

    /// The id of a sealed column, by catalog names; `None` when the column is not sealed.
    pub fn column_id(&self, schema: &str, table: &str, column: &str) -> Option<ColumnId> {
        self.by_name.get(schema)?.get(table)?.1.get(column).copied()
    }

    /// The sealed table with these catalog names, if it has sealed columns.
    pub fn sealed_table(&self, schema: &str, table: &str) -> Option<&SealedTable> {
        let (index, _) = self.by_name.get(schema)?.get(table)?;
        Some(&self.tables[*index])
    }

    /// True when the table has sealed columns (rows of results touching it count against
    /// budgets).
    pub fn is_sealed_table(&self, schema: &str, table: &str) -> bool {
        self.sealed_table(schema, table).is_some()
    }

    /// Every sealed table, in file order of their first sealed column.
    pub fn tables(&self) -> &[SealedTable] {
        &self.tables
    }

    /// Every role class; index 0 is [`ClassId::DEFAULT`].
    pub fn classes(&self) -> &[RoleClass] {
        &self.classes
    }

    /// One role class.
    ///
    /// # Panics
    /// If the id comes from another policy with more classes.
    pub fn class(&self, id: ClassId) -> &RoleClass {
        &self.classes[id.index()]
    }

    /// The class of a role (the exact name the client authenticated as);
    /// [`ClassId::DEFAULT`] when the policy does not name it.
    pub fn class_of(&self, role: &str) -> ClassId {
        self.class_by_role
            .get(role)
            .copied()
            .unwrap_or(ClassId::DEFAULT)
    }

    /// What a class sees of a sealed column.
    ///
    /// # Panics
    /// If an id comes from another policy.
    pub fn view(&self, class: ClassId, column: ColumnId) -> View {
        self.classes[class.index()].views[column.index()]
    }

    /// How a class may write a sealed column: as a reader of its plaintext, blindly (the
    /// policy's `blind_writes`), or not at all.
    ///
    /// # Panics
    /// If an id comes from another policy.
    pub fn write_access(&self, class: ClassId, column: ColumnId) -> WriteAccess {
        let class = &self.classes[class.index()];
        if class.views[column.index()] == View::Plaintext {
            WriteAccess::Reader
        } else if class.blind_writes[column.index()] {
            WriteAccess::Blind
        } else {
            WriteAccess::Refused
        }
    }

    /// Whether a class may compare a sealed column with values it supplies (`=`, `IN`, …):
    /// always with a plaintext view, otherwise only when the policy's `lookups` grant it.
    ///
    /// # Panics
    /// If an id comes from another policy.
    pub fn may_look_up(&self, class: ClassId, column: ColumnId) -> bool {
        let class = &self.classes[class.index()];
        class.views[column.index()] == View::Plaintext || class.lookups[column.index()]
    }

    /// Whether the policy trusts a function (by its folded name) that pgseal would otherwise
    /// refuse because it reads data a statement does not show (`trusted_functions`).
    pub fn trusts_function(&self, name: &str) -> bool {
        self.trusted_functions.iter().any(|trusted| trusted == name)
    }

    /// What a role sees of a column; `None` when the column is not sealed (it passes as is).
    pub fn view_for(&self, role: &str, schema: &str, table: &str, column: &str) -> Option<View> {
        let column = self.column_id(schema, table, column)?;
        Some(self.view(self.class_of(role), column))
    }

    /// The budget each role of a class is held to.
    ///
    /// # Panics
    /// If the id comes from another policy.
    pub fn budget(&self, class: ClassId) -> &Budget {
        &self.classes[class.index()].budget
    }

    /// The budget each end user of a class's roles is held to, on top of the role's own
    /// ([`CompiledPolicy::budget`]); `None` when the class gives end users no budget of their
    /// own.
    ///
    /// # Panics
    /// If the id comes from another policy.
    pub fn end_user_budget(&self, class: ClassId) -> Option<&Budget> {
        self.classes[class.index()].end_user_budget.as_ref()
    }

    /// Whether a class's sessions must declare their end user before touching sealed tables.
    ///
    /// # Panics
    /// If the id comes from another policy.
    pub fn requires_end_user(&self, class: ClassId) -> bool {
        self.classes[class.index()].require_end_user
    }

    /// The budget of a role (the default budget when the policy does not name it).
    pub fn budget_for(&self, role: &str) -> &Budget {
        self.budget(self.class_of(role))
    }
}
