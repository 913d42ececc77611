//! Schema changes on sealed tables: which ones pgseal lets through, and which it refuses
//! because they would store a sealed column's values in clear, rewrite its ciphertext, or leave
//! the policy naming a column that is no longer there.
//!
//! - A `DEFAULT`, generated or identity clause on a sealed column (`CREATE TABLE`,
//!   `ADD COLUMN`, `ALTER COLUMN … SET DEFAULT`) is refused: the server would fill the column
//!   itself, in clear.
//! - `ALTER COLUMN … TYPE` on a sealed column is refused: the stored form is text or bytea
//!   whatever the plaintext type (tokens keep theirs), so the plaintext type is the policy's
//!   `type`.
//! - Renaming a sealed column, or a table holding sealed columns, is refused: the policy would
//!   name nothing, and values written under the new name would go unsealed.
//! - Everything else passes: new unsealed columns, constraints, drops, comments, and indexes
//!   on sealed columns as plain columns (with or without an operator class: they index
//!   ciphertext). An index over an expression of a sealed column is refused by the caller.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnDef, ColumnOption, Expr, ObjectName,
};

use super::names::{fold, table_ref};
use super::plan::{RefusalKind, TableRef};
use super::planner::Planner;

impl Planner<'_> {
    /// Checks the columns a `CREATE TABLE` defines, when it creates a sealed table.
    pub(crate) fn created_columns(&mut self, name: &ObjectName, columns: &[ColumnDef]) {
        let Some(table) = table_ref(name) else { return };
        for column in columns {
            self.sealed_column_definition(&table, column);
        }
    }

    /// Refuses a table created as a child or partition of a sealed table: its rows would be
    /// read through the sealed one, and written unsealed.
    pub(crate) fn created_under(
        &mut self,
        inherits: &[ObjectName],
        partition_of: Option<&ObjectName>,
    ) {
        for parent in inherits.iter().chain(partition_of) {
            if let Some(parent) = table_ref(parent)
                && self.names.is_sealed(&parent)
            {
                self.refuse_schema(format!(
                    "a table inheriting from or partitioning sealed table {parent} would have its \
                     rows read through it and written unsealed"
                ));
            }
        }
    }

    /// Refuses an `ALTER SCHEMA` of a schema holding sealed tables (a rename would leave the
    /// policy naming nothing).
    pub(crate) fn altered_schema(&mut self, name: &ObjectName) {
        let Some(parts) = super::names::name_parts(name) else {
            return;
        };
        let Some(schema) = parts.last() else { return };
        if self
            .names
            .policy
            .tables()
            .iter()
            .any(|t| &t.schema == schema)
        {
            self.refuse_schema(renamed(&format!(
                "schema {schema}, which holds sealed tables,"
            )));
        }
    }

    /// Checks the operations of an `ALTER TABLE`: on a sealed table, only the operations that
    /// cannot unseal a column pass; on another table, none may attach or inherit a sealed one.
    pub(crate) fn altered_table(&mut self, name: &ObjectName, operations: &[AlterTableOperation]) {
        let Some(table) = table_ref(name) else { return };
        if !self.names.is_sealed(&table) {
            let links = operations.iter().any(|op| {
                matches!(
                    op,
                    AlterTableOperation::AttachPartition { .. }
                        | AlterTableOperation::AttachPartitionOf { .. }
                        | AlterTableOperation::DetachPartition { .. }
                        | AlterTableOperation::DetachPartitionOf { .. }
                        | AlterTableOperation::Inherit { .. }
                        | AlterTableOperation::NoInherit { .. }
                )
            });
            if links && !self.sealed_tables_empty() {
                self.refuse_schema(
                    "attaching, detaching or inheriting a sealed table would have its rows read \
                     through another table, outside the policy"
                        .into(),
                );
            }
            return;
        }
        for operation in operations {
            match operation {
                AlterTableOperation::AddColumn { column_def, .. } => {
                    self.sealed_column_definition(&table, column_def);
                }
                AlterTableOperation::AlterColumn { column_name, op } => {
                    let Some(id) = self.names.column(&table, &fold(column_name)) else {
                        continue;
                    };
                    let column = self.names.describe(id);
                    match op {
                        AlterColumnOperation::SetDataType { .. } => self.refuse_schema(format!(
                            "changing the type of sealed column {column} would rewrite its stored \
                             form; the type the application sees is the policy's `type` (change \
                             it there), and a change of storage goes through `pgseal migrate \
                             decrypt`, the change, then `pgseal migrate encrypt`"
                        )),
                        AlterColumnOperation::SetDefault { .. }
                        | AlterColumnOperation::AddGenerated { .. } => {
                            self.refuse_schema(filled_by_server(&column));
                        }
                        _ => {}
                    }
                }
                AlterTableOperation::RenameColumn {
                    old_column_name, ..
                } => {
                    if let Some(id) = self.names.column(&table, &fold(old_column_name)) {
                        self.refuse_schema(renamed(&self.names.describe(id)));
                    }
                }
                AlterTableOperation::RenameTable { .. } => {
                    self.refuse_schema(renamed(&format!("sealed table {table}")));
                }
                AlterTableOperation::DropColumn { .. }
                | AlterTableOperation::AddConstraint { .. }
                | AlterTableOperation::DropConstraint { .. }
                | AlterTableOperation::RenameConstraint { .. }
                | AlterTableOperation::ValidateConstraint { .. }
                | AlterTableOperation::DropPrimaryKey { .. }
                | AlterTableOperation::DropForeignKey { .. }
                | AlterTableOperation::EnableTrigger { .. }
                | AlterTableOperation::DisableTrigger { .. }
                | AlterTableOperation::EnableAlwaysTrigger { .. }
                | AlterTableOperation::EnableReplicaTrigger { .. }
                | AlterTableOperation::EnableRowLevelSecurity
                | AlterTableOperation::DisableRowLevelSecurity
                | AlterTableOperation::ForceRowLevelSecurity
                | AlterTableOperation::NoForceRowLevelSecurity
                | AlterTableOperation::ReplicaIdentity { .. }
                | AlterTableOperation::SetLogged
                | AlterTableOperation::SetUnlogged
                | AlterTableOperation::OwnerTo { .. }
                | AlterTableOperation::SetOptionsParens { .. }
                | AlterTableOperation::ResetOptions { .. } => {}
                // Anything else (inheritance, partitions, another schema, forms pgseal does not
                // model) could take the table's rows out of the policy's reach.
                other => self.refuse_schema(format!(
                    "pgseal refuses this ALTER TABLE operation on sealed table {table} ({}): it \
                     could move the table's rows out of the policy's reach; run it on PostgreSQL \
                     directly as the owner with pgseal stopped",
                    operation_name(other)
                )),
            }
        }
    }

    /// Refuses a sealed column's definition that lets the server fill it.
    fn sealed_column_definition(&mut self, table: &TableRef, column: &ColumnDef) {
        let Some(id) = self.names.column(table, &fold(&column.name)) else {
            return;
        };
        let fills = column.options.iter().any(|option| {
            matches!(
                option.option,
                ColumnOption::Default(_)
                    | ColumnOption::Materialized(_)
                    | ColumnOption::Ephemeral(Some(_))
                    | ColumnOption::Alias(_)
                    | ColumnOption::Generated { .. }
                    | ColumnOption::Identity(_)
                    | ColumnOption::OnUpdate(_)
            )
        });
        if fills {
            let column = self.names.describe(id);
            self.refuse_schema(filled_by_server(&column));
        }
    }

    fn refuse_schema(&mut self, reason: String) {
        self.refuse(None, RefusalKind::Unsupported, reason);
    }
}

fn filled_by_server(column: &str) -> String {
    format!(
        "a DEFAULT, generated or identity clause on sealed column {column} would have the \
         server store values in clear; let the application write the value through pgseal"
    )
}

fn renamed(what: &str) -> String {
    format!(
        "renaming {what} would leave the pgseal policy naming nothing, and values written under \
         the new name unsealed; rename it on PostgreSQL directly as its owner with pgseal \
         stopped, and the policy with it"
    )
}

/// Whether an index column is a plain column (`last_name`, `("last_name")`), whatever its
/// operator class: an index on a sealed column then indexes its ciphertext.
pub(crate) fn is_plain_column(expr: &Expr) -> bool {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => true,
        Expr::Nested(inner) => is_plain_column(inner),
        _ => false,
    }
}

/// The first words of an `ALTER TABLE` operation, for messages (no values: constraint and
/// column names at most).
fn operation_name(operation: &AlterTableOperation) -> String {
    let text = operation.to_string();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}
