//! Writes: `INSERT` (VALUES, `INSERT … SELECT`, `DEFAULT VALUES`, `ON CONFLICT`, `RETURNING`),
//! `UPDATE … SET … FROM … WHERE … RETURNING`, `DELETE … USING … WHERE … RETURNING`.
//!
//! What may be stored into a sealed column:
//!
//! - a literal or `$n` (under casts if need be): a [`Purpose::Store`] seal site;
//! - `NULL` or `DEFAULT`: nothing to seal (NULL stays NULL, and a sealed column's default is
//!   the schema's business — it is stored as written by the server);
//! - a sealed column of the same domain and mode (`SET nir = EXCLUDED.nir`, `INSERT … SELECT`
//!   from a column of the same domain): the stored value is copied as it is, and it opens under
//!   the same domain's keys, so no plaintext is involved and nothing needs sealing;
//! - anything else (a function, an expression, an unsealed column, a column of another
//!   domain): refused — the value would reach the column in plaintext or unopenable.
//!
//! An `INSERT` into a sealed table without a column list is refused: values map to the table's
//! columns in table order, which neither the analyzer nor the policy knows.

use pgseal_policies::ColumnId;
use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr, FromTable, Insert, OnConflictAction, OnInsert,
    SetExpr, Statement, TableFactor, TableObject, Update, UpdateTableFromKind,
};

use super::expr::Val;
use super::names::{fold, name_parts, table_ref};
use super::plan::{Purpose, TableRef};
use super::planner::Planner;
use super::scope::{Frame, Outputs, Relation, Source};

impl<'a> Planner<'a> {
    /// `INSERT`, `UPDATE` or `DELETE` (a statement, or a data-modifying CTE): returns the
    /// `RETURNING` outputs.
    pub fn dml(&mut self, statement: &'a Statement) -> Outputs<'a> {
        match statement {
            Statement::Insert(insert) => self.insert(insert),
            Statement::Update(update) => self.update(update),
            Statement::Delete(delete) => self.delete(delete),
            other => {
                self.opaque("this statement", &other.to_string());
                Outputs::default()
            }
        }
    }

    fn insert(&mut self, insert: &'a Insert) -> Outputs<'a> {
        let target = match &insert.table {
            TableObject::TableName(name) => table_ref(name),
            _ => None,
        };
        let Some(target) = target else {
            self.opaque("INSERT into this target", &insert.to_string());
            return Outputs::default();
        };
        self.table_seen(&target);
        let sealed_table = self.names.is_sealed(&target);
        let columns: Vec<Option<ColumnId>> = insert
            .columns
            .iter()
            .map(|c| {
                name_parts(c)
                    .and_then(|p| p.last().cloned())
                    .and_then(|name| self.names.column(&target, &name))
            })
            .collect();
        for id in columns.iter().flatten() {
            self.write(*id);
        }
        if insert.after_columns.len() + insert.assignments.len() > 0 || insert.partitioned.is_some()
        {
            self.opaque("this INSERT form", &insert.to_string());
        }
        if let Some(source) = &insert.source {
            if sealed_table && insert.columns.is_empty() {
                self.refuse_unanalysable(
                    None,
                    format!(
                        "INSERT into sealed table {target} without a column list: pgseal needs \
                         the column list to know which values to seal (write INSERT INTO \
                         {target} (column, …) VALUES …)"
                    ),
                );
            }
            self.insert_source(source, &columns);
        }
        let alias = insert
            .table_alias
            .as_ref()
            .map(|a| fold(&a.alias))
            .unwrap_or_else(|| target.table.clone());
        let target_relation = Relation {
            name: alias,
            schema: insert.table_alias.is_none().then(|| target.schema.clone()),
            source: Source::Table(target.clone()),
        };
        match &insert.on {
            Some(OnInsert::OnConflict(on_conflict)) => {
                let excluded = Relation {
                    name: "excluded".into(),
                    schema: None,
                    source: Source::Table(target.clone()),
                };
                self.conflict_target(&target, on_conflict.conflict_target.as_ref());
                self.frames.push(Frame {
                    relations: vec![target_relation.clone(), excluded],
                    ctes: Vec::new(),
                });
                if let Some(sqlparser::ast::ConflictTarget::Columns {
                    predicate: Some(predicate),
                    ..
                }) = &on_conflict.conflict_target
                {
                    self.condition(predicate, "ON CONFLICT … WHERE condition");
                }
                if let OnConflictAction::DoUpdate(update) = &on_conflict.action {
                    for assignment in &update.assignments {
                        self.assignment(assignment, &target);
                    }
                    if let Some(selection) = &update.selection {
                        self.condition(selection, "ON CONFLICT DO UPDATE … WHERE condition");
                    }
                }
                self.frames.pop();
            }
            Some(OnInsert::DuplicateKeyUpdate(_)) => {
                self.opaque("ON DUPLICATE KEY UPDATE", &insert.to_string());
            }
            Some(_) | None => {}
        }
        match &insert.returning {
            Some(items) => {
                self.frames.push(Frame {
                    relations: vec![target_relation],
                    ctes: Vec::new(),
                });
                let outputs = self.projection(items);
                self.frames.pop();
                outputs
            }
            None => Outputs::default(),
        }
    }

    /// The rows an `INSERT` stores: `VALUES` lists value by value, or a query's outputs.
    fn insert_source(&mut self, source: &'a sqlparser::ast::Query, columns: &[Option<ColumnId>]) {
        let plain_values = source.with.is_none()
            && source.order_by.is_none()
            && source.limit_clause.is_none()
            && source.fetch.is_none();
        if let (SetExpr::Values(values), true) = (source.body.as_ref(), plain_values) {
            for row in &values.rows {
                if !columns.is_empty() && row.len() != columns.len() {
                    if let Some(&id) = columns.iter().flatten().next() {
                        self.refuse_unanalysable(
                            Some(id),
                            format!(
                                "a VALUES row has {} values for {} columns",
                                row.len(),
                                columns.len()
                            ),
                        );
                    }
                }
                for (i, e) in row.iter().enumerate() {
                    match columns.get(i).copied().flatten() {
                        Some(id) => self.store(id, e),
                        None => {
                            self.value(e);
                        }
                    }
                }
            }
            return;
        }
        if self.insert_from_values(source, columns) || self.insert_from_unnest(source, columns) {
            return;
        }
        let outputs = self.query(source);
        if columns.iter().all(Option::is_none) {
            return;
        }
        let Some(cols) = outputs.positional() else {
            if let Some(&id) = columns.iter().flatten().next() {
                self.refuse_unanalysable(
                    Some(id),
                    format!(
                        "INSERT … SELECT * into sealed column {}: pgseal needs the selected \
                         columns listed to know which values go where",
                        self.names.describe(id)
                    ),
                );
            }
            return;
        };
        for (i, column) in columns.iter().enumerate() {
            let Some(id) = *column else { continue };
            match cols.get(i) {
                Some(col) if col.expr.is_some() => {
                    if let Some(e) = col.expr {
                        self.store_value(id, e);
                    }
                }
                Some(col) if !col.sealed.is_empty() => self.copy_sealed(&col.sealed.clone(), id),
                _ => {
                    let reason = format!(
                        "INSERT … SELECT of a value pgseal cannot seal into sealed column {}: \
                         select a literal, a parameter, or a sealed column of the same domain \
                         and mode",
                        self.names.describe(id)
                    );
                    self.refuse(Some(id), super::plan::RefusalKind::Unsupported, reason);
                }
            }
        }
    }

    /// `INSERT … SELECT * FROM UNNEST($1::T1[], '{…}'::T2[], …)`: how Django inserts several
    /// rows at once (bulk_create), one array per column, the n-th array feeding the n-th
    /// column. Each array for a sealed column must be a parameter or a literal under a `::`
    /// cast: every element of it is sealed ([`Purpose::StoreElements`]). False when the source
    /// is not of this form (the caller analyses it as any query).
    fn insert_from_unnest(
        &mut self,
        source: &'a sqlparser::ast::Query,
        columns: &[Option<ColumnId>],
    ) -> bool {
        use sqlparser::ast::{CastKind, DataType, SelectItem, TableFactor};
        let Some(select) = single_relation_select(source) else {
            return false;
        };
        if source.order_by.is_some()
            || !matches!(select.projection.as_slice(), [SelectItem::Wildcard(_)])
        {
            return false;
        }
        let TableFactor::UNNEST {
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } = &select.from[0].relation
        else {
            return false;
        };
        if array_exprs.len() != columns.len() {
            return false;
        }
        // Each sealed column's array: a parameter or literal (in parentheses or not) under a
        // `::` cast to an array type.
        let mut sealed = Vec::new();
        for (expr, column) in array_exprs.iter().zip(columns) {
            let Some(id) = *column else { continue };
            let Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: inner,
                data_type: DataType::Array(_),
                format: None,
            } = expr
            else {
                return false;
            };
            let Some(cast) = self.extent(inner).and_then(|extent| {
                self.src
                    .double_colon_cast_end(&extent, expr)
                    .map(|end| extent.end..end)
            }) else {
                return false;
            };
            let mut casts = vec![cast];
            let mut value = inner.as_ref();
            while let Expr::Nested(nested) = value {
                value = nested;
            }
            // psycopg binding a list of dates on the client writes `'{…}'::date[]` itself.
            if let Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: literal,
                data_type: DataType::Array(_),
                format: None,
            } = value
            {
                let Some(cast) = self.extent(literal).and_then(|extent| {
                    self.src
                        .double_colon_cast_end(&extent, value)
                        .map(|end| extent.end..end)
                }) else {
                    return false;
                };
                casts.push(cast);
                value = literal;
                while let Expr::Nested(nested) = value {
                    value = nested;
                }
            }
            if !matches!(value, Expr::Value(_)) {
                return false;
            }
            sealed.push((id, value, casts));
        }
        for (expr, column) in array_exprs.iter().zip(columns) {
            if column.is_none() {
                self.value(expr);
            }
        }
        for (id, value, casts) in sealed {
            match self.locate(value) {
                Ok(located) => self.site(located, id, Purpose::StoreElements { casts }),
                Err(why) => {
                    let reason = format!(
                        "pgseal cannot seal the array for sealed column {} ({why}): use a \
                         parameter or a plain literal",
                        self.names.describe(id)
                    );
                    self.refuse_unanalysable(Some(id), reason);
                }
            }
        }
        true
    }

    /// `INSERT … SELECT p0::T0, p1, … FROM (VALUES (…), (…)) AS v(p0, p1, …, n) ORDER BY n`:
    /// how SQLAlchemy inserts several rows at once ("insertmanyvalues"). Each row's value for
    /// a sealed column is sealed where it stands, and the cast the select list applies to it
    /// (to the column's declared type, which its ciphertext is not) is deleted. False when
    /// the source is not of this form (the caller analyses it as any query).
    fn insert_from_values(
        &mut self,
        source: &'a sqlparser::ast::Query,
        columns: &[Option<ColumnId>],
    ) -> bool {
        use sqlparser::ast::{CastKind, SelectItem, TableFactor};
        let Some(select) = single_relation_select(source) else {
            return false;
        };
        if select.projection.len() != columns.len() {
            return false;
        }
        let TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
            ..
        } = &select.from[0].relation
        else {
            return false;
        };
        let SetExpr::Values(values) = subquery.body.as_ref() else {
            return false;
        };
        if subquery.with.is_some()
            || subquery.order_by.is_some()
            || subquery.limit_clause.is_some()
            || alias.columns.is_empty()
        {
            return false;
        }
        let alias_name = fold(&alias.name);
        let position = |expr: &Expr| -> Option<usize> {
            let name = match expr {
                Expr::Identifier(ident) => fold(ident),
                Expr::CompoundIdentifier(parts)
                    if parts.len() == 2 && fold(&parts[0]) == alias_name =>
                {
                    fold(&parts[1])
                }
                _ => return None,
            };
            alias.columns.iter().position(|c| fold(&c.name) == name)
        };
        // Each target column: the VALUES column it takes, and the cast around it.
        let mut sources = Vec::with_capacity(columns.len());
        for item in &select.projection {
            let SelectItem::UnnamedExpr(expr) = item else {
                return false;
            };
            let (inner, cast) = match expr {
                Expr::Cast {
                    kind: CastKind::DoubleColon | CastKind::Cast,
                    expr: inner,
                    format: None,
                    ..
                } => (inner.as_ref(), Some(expr)),
                other => (other, None),
            };
            let Some(j) = position(inner) else {
                return false;
            };
            sources.push((j, inner, cast));
        }
        // Each VALUES column feeds one target: a value sealed for one column must never reach
        // another (a sealed column's plaintext would go to an unsealed one, or the reverse).
        for (n, (j, _, _)) in sources.iter().enumerate() {
            if sources[n + 1..].iter().any(|(k, _, _)| k == j) {
                return false;
            }
        }
        if let Some(order_by) = &source.order_by {
            let sqlparser::ast::OrderByKind::Expressions(keys) = &order_by.kind else {
                return false;
            };
            // Ordering by the row counter: never by a value that will be sealed.
            for key in keys {
                let Some(j) = position(&key.expr) else {
                    return false;
                };
                if sources
                    .iter()
                    .zip(columns)
                    .any(|((source, _, _), column)| *source == j && column.is_some())
                {
                    return false;
                }
            }
        }
        let first_site = self.site_total();
        let sealed_at = |j: usize| -> Option<ColumnId> {
            sources
                .iter()
                .zip(columns)
                .find(|((source, _, _), _)| *source == j)
                .and_then(|(_, column)| *column)
        };
        for row in &values.rows {
            if row.len() != alias.columns.len() {
                return false;
            }
        }
        for row in &values.rows {
            for (j, value) in row.iter().enumerate() {
                match sealed_at(j) {
                    Some(id) => self.store(id, value),
                    None => {
                        self.value(value);
                    }
                }
            }
        }
        for ((_, inner, cast), column) in sources.iter().zip(columns) {
            let (Some(id), Some(cast)) = (column, cast) else {
                continue;
            };
            let span = self.extent(inner).and_then(|extent| match cast {
                Expr::Cast {
                    kind: CastKind::DoubleColon,
                    ..
                } => self
                    .src
                    .double_colon_cast_end(&extent, cast)
                    .map(|end| std::iter::once(extent.end..end).collect::<Vec<_>>()),
                _ => self
                    .src
                    .cast_call_extent(&extent, cast)
                    .map(|call| vec![call.start..extent.start, extent.end..call.end]),
            });
            match span {
                Some(spans) => {
                    for span in spans {
                        // No site (every row's value NULL): the cast stays, harmless on NULL.
                        self.strip_at_first_site(first_site, *id, span);
                    }
                }
                None => {
                    let reason = format!(
                        "pgseal cannot locate the cast applied to sealed column {} in this INSERT",
                        self.names.describe(*id)
                    );
                    self.refuse_unanalysable(Some(*id), reason);
                }
            }
        }
        true
    }

    /// A value stored into sealed column `id`.
    pub fn store(&mut self, id: ColumnId, expr: &'a Expr) {
        if let Expr::Identifier(ident) = expr {
            if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default") {
                return;
            }
        }
        match self.value(expr) {
            Val::Null => {}
            Val::Value(_) => self.store_value(id, expr),
            Val::Sealed { ids, .. } => self.copy_sealed(&ids, id),
            Val::Row(_) | Val::Other => {
                let reason = format!(
                    "pgseal cannot seal a computed value for sealed column {}: write a literal, \
                     a parameter, NULL or DEFAULT",
                    self.names.describe(id)
                );
                self.refuse(Some(id), super::plan::RefusalKind::Unsupported, reason);
            }
        }
    }

    /// A located literal or parameter stored into `id`: a Store site.
    fn store_value(&mut self, id: ColumnId, expr: &'a Expr) {
        match self.locate(expr) {
            Ok(located) => self.site(located, id, Purpose::Store),
            Err(why) => {
                let reason = format!(
                    "pgseal cannot seal the value for sealed column {} ({why}): use a parameter \
                     or a plain literal",
                    self.names.describe(id)
                );
                self.refuse_unanalysable(Some(id), reason);
            }
        }
    }

    /// Stored values of `from` copied into `to`: fine within one domain and mode.
    fn copy_sealed(&mut self, from: &[ColumnId], to: ColumnId) {
        for &source in from {
            if !self.names.copyable(source, to) {
                let reason = format!(
                    "copying sealed column {} into sealed column {}: different domain or mode, \
                     the copied value would not open",
                    self.names.describe(source),
                    self.names.describe(to)
                );
                self.refuse(Some(to), super::plan::RefusalKind::Unsupported, reason);
            }
        }
    }

    /// `SET target = value` (or `(a, b) = (x, y)`) on a table.
    fn assignment(&mut self, assignment: &'a Assignment, target: &TableRef) {
        let column_of = |name: &sqlparser::ast::ObjectName| {
            name_parts(name)
                .and_then(|p| p.last().cloned())
                .and_then(|c| self.names.column(target, &c))
        };
        match &assignment.target {
            AssignmentTarget::ColumnName(name) => match column_of(name) {
                Some(id) => {
                    self.write(id);
                    self.store(id, &assignment.value);
                }
                None => {
                    self.value(&assignment.value);
                }
            },
            AssignmentTarget::Tuple(names) => {
                let ids: Vec<Option<ColumnId>> = names.iter().map(column_of).collect();
                for id in ids.iter().flatten() {
                    self.write(*id);
                }
                match &assignment.value {
                    Expr::Tuple(values) if values.len() == ids.len() => {
                        for (id, value) in ids.iter().zip(values) {
                            match id {
                                Some(id) => self.store(*id, value),
                                None => {
                                    self.value(value);
                                }
                            }
                        }
                    }
                    value => {
                        self.value(value);
                        if let Some(&id) = ids.iter().flatten().next() {
                            let reason = format!(
                                "pgseal cannot split this row value to seal sealed column {}: \
                                 write (a, b) = (value, value)",
                                self.names.describe(id)
                            );
                            self.refuse_unanalysable(Some(id), reason);
                        }
                    }
                }
            }
        }
    }

    fn update(&mut self, update: &'a Update) -> Outputs<'a> {
        self.frames.push(Frame::default());
        self.table_with_joins(&update.table);
        let target = match &update.table.relation {
            TableFactor::Table { name, .. } => table_ref(name),
            _ => None,
        };
        if let Some(from) = &update.from {
            let (UpdateTableFromKind::BeforeSet(tables) | UpdateTableFromKind::AfterSet(tables)) =
                from;
            for table in tables {
                self.table_with_joins(table);
            }
        }
        match &target {
            Some(target) => {
                for assignment in &update.assignments {
                    self.assignment(assignment, target);
                }
            }
            None => self.opaque("UPDATE of this target", &update.to_string()),
        }
        if let Some(selection) = &update.selection {
            self.condition(selection, "WHERE condition");
        }
        if !update.order_by.is_empty() || update.limit.is_some() || update.output.is_some() {
            self.opaque("this UPDATE clause", &update.to_string());
        }
        let outputs = match &update.returning {
            Some(items) => self.projection(items),
            None => Outputs::default(),
        };
        self.frames.pop();
        outputs
    }

    fn delete(&mut self, delete: &'a Delete) -> Outputs<'a> {
        self.frames.push(Frame::default());
        for name in &delete.tables {
            if let Some(table) = table_ref(name) {
                self.table_seen(&table);
            }
        }
        let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &delete.from;
        for table in tables {
            self.table_with_joins(table);
        }
        for table in delete.using.iter().flatten() {
            self.table_with_joins(table);
        }
        if let Some(selection) = &delete.selection {
            self.condition(selection, "WHERE condition");
        }
        if !delete.order_by.is_empty() || delete.limit.is_some() || delete.output.is_some() {
            self.opaque("this DELETE clause", &delete.to_string());
        }
        let outputs = match &delete.returning {
            Some(items) => self.projection(items),
            None => Outputs::default(),
        };
        self.frames.pop();
        outputs
    }
}

impl Planner<'_> {
    /// An upsert compares the row it inserts with the stored ones on its conflict target:
    /// the sealed columns named there are read (a role that may not compare them is refused).
    /// `ON CONSTRAINT` and a target-less `ON CONFLICT` name no column: every sealed column of
    /// the table counts as compared.
    fn conflict_target(
        &mut self,
        target: &TableRef,
        conflict: Option<&sqlparser::ast::ConflictTarget>,
    ) {
        let ids: Vec<ColumnId> = match conflict {
            Some(sqlparser::ast::ConflictTarget::Columns { columns, .. }) => columns
                .iter()
                .filter_map(|c| self.names.column(target, &fold(c)))
                .collect(),
            _ => self
                .names
                .sealed_columns(target)
                .into_iter()
                .map(|(_, id)| id)
                .collect(),
        };
        self.read(&ids);
    }
}

/// The `SELECT` of an `INSERT`'s source that reads one relation and nothing more (no `WITH`,
/// `LIMIT`, join, `WHERE`, `GROUP BY`, `HAVING` or `DISTINCT`; an `ORDER BY` is the caller's to
/// judge): the shapes ORMs insert several rows with.
fn single_relation_select(source: &sqlparser::ast::Query) -> Option<&sqlparser::ast::Select> {
    use sqlparser::ast::GroupByExpr;
    if source.with.is_some() || source.limit_clause.is_some() || source.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = source.body.as_ref() else {
        return None;
    };
    let grouped =
        !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    let single = select.from.len() == 1
        && select.from[0].joins.is_empty()
        && select.selection.is_none()
        && select.having.is_none()
        && select.distinct.is_none()
        && !grouped;
    single.then_some(select.as_ref())
}
