//! Name resolution: which relations are in scope, what columns they carry, and which sealed
//! column (if any) a column reference designates.
//!
//! Scopes form a stack of [`Frame`]s, one per query level (subqueries see the frames below
//! theirs: correlated references). A relation is a base table (its sealed columns come from the
//! policy; its other columns are unknown and never sealed), a derived table or CTE (its output
//! columns, with the sealed column each carries), or an opaque relation (a set-returning
//! function: nothing sealed).
//!
//! Fail-closed rule for unqualified names: PostgreSQL binds a name to the innermost level that
//! has such a column. The analyzer does not know unsealed tables' columns, so when a level
//! *might* have the column but none of its relations is known to, it keeps looking outward,
//! and a sealed column found there is taken to be the one meant.

use pgseal_policies::ColumnId;
use sqlparser::ast::Expr;

use super::names::Names;
use super::plan::TableRef;

/// One output column of a query, or a column of a derived table.
#[derive(Clone, Debug)]
pub(crate) struct OutCol<'a> {
    /// Its name (alias or column name), folded; `None` for anonymous expressions.
    pub name: Option<String>,
    /// The sealed columns whose stored values it carries as they are (more than one when a
    /// reference was ambiguous or a set operation merges columns); empty when not sealed.
    pub sealed: Vec<ColumnId>,
    /// The expression producing it, when it is a value the analyzer may have to seal
    /// (`INSERT … SELECT 'literal'`).
    pub expr: Option<&'a Expr>,
    /// For a whole-row value of a relation with sealed columns: those columns.
    pub row: Vec<ColumnId>,
}

impl OutCol<'_> {
    /// A plain, anonymous output.
    pub fn plain(name: Option<String>) -> Self {
        OutCol {
            name,
            sealed: Vec::new(),
            expr: None,
            row: Vec::new(),
        }
    }
}

/// An item of a query's output list.
#[derive(Clone, Debug)]
pub(crate) enum OutItem<'a> {
    /// A column at a known position.
    Col(OutCol<'a>),
    /// The columns of a `*` over a relation whose columns are not all known: its sealed ones by
    /// name, at unknown positions, and any number of unsealed ones.
    Star(Vec<(String, ColumnId)>),
}

/// A query's output columns.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outputs<'a> {
    /// The items, in order.
    pub items: Vec<OutItem<'a>>,
}

/// What looking a column name up in one relation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hit {
    /// A sealed column (several candidates when ambiguous).
    Sealed(Vec<ColumnId>),
    /// A column known to exist and not sealed.
    Plain,
    /// The relation may have such a column (not sealed).
    Maybe,
    /// The relation has no such column.
    Absent,
}

impl<'a> Outputs<'a> {
    /// The columns, when every position is known (no [`OutItem::Star`] over unknown columns).
    pub fn positional(&self) -> Option<Vec<&OutCol<'a>>> {
        self.items
            .iter()
            .map(|item| match item {
                OutItem::Col(col) => Some(col),
                OutItem::Star(_) => None,
            })
            .collect()
    }

    /// Every sealed column the outputs carry.
    pub fn all_sealed(&self) -> Vec<ColumnId> {
        let mut all = Vec::new();
        for item in &self.items {
            match item {
                OutItem::Col(col) => all.extend(col.sealed.iter().copied()),
                OutItem::Star(sealed) => all.extend(sealed.iter().map(|(_, id)| *id)),
            }
        }
        all
    }

    /// Looks a column name up.
    pub fn lookup(&self, name: &str) -> Hit {
        let mut sealed = Vec::new();
        let mut plain = false;
        let mut open = false;
        for item in &self.items {
            match item {
                OutItem::Col(col) if col.name.as_deref() == Some(name) => {
                    if col.sealed.is_empty() {
                        plain = true;
                    }
                    sealed.extend(col.sealed.iter().copied());
                }
                OutItem::Col(_) => {}
                OutItem::Star(columns) => {
                    open = true;
                    sealed.extend(columns.iter().filter(|(n, _)| n == name).map(|(_, id)| *id));
                }
            }
        }
        if !sealed.is_empty() {
            Hit::Sealed(sealed)
        } else if plain {
            Hit::Plain
        } else if open {
            Hit::Maybe
        } else {
            Hit::Absent
        }
    }

    /// Renames columns by position (`AS alias(a, b)`). Where positions are unknown, every
    /// renamed column may be any sealed column of the stars (fail closed).
    pub fn renamed(self, names: &[String]) -> Outputs<'a> {
        if names.is_empty() {
            return self;
        }
        match self.positional() {
            Some(cols) => {
                let mut items: Vec<OutItem<'a>> = Vec::with_capacity(cols.len());
                for (i, col) in cols.into_iter().enumerate() {
                    let mut col = col.clone();
                    if let Some(name) = names.get(i) {
                        col.name = Some(name.clone());
                    }
                    items.push(OutItem::Col(col));
                }
                Outputs { items }
            }
            None => {
                let all = self.all_sealed();
                let mut items: Vec<OutItem<'a>> = names
                    .iter()
                    .map(|name| {
                        OutItem::Col(OutCol {
                            name: Some(name.clone()),
                            sealed: all.clone(),
                            expr: None,
                            row: Vec::new(),
                        })
                    })
                    .collect();
                items.push(OutItem::Star(Vec::new()));
                Outputs { items }
            }
        }
    }
}

/// What a relation in a FROM list is.
#[derive(Clone, Debug)]
pub(crate) enum Source<'a> {
    /// A base table (sealed or not).
    Table(TableRef),
    /// A derived table or CTE reference, with its columns.
    Derived(Outputs<'a>),
    /// A relation whose columns are unknown and not sealed (function results, `VALUES` rows of
    /// plain values…).
    Opaque,
}

/// A relation in scope.
#[derive(Clone, Debug)]
pub(crate) struct Relation<'a> {
    /// The name that qualifies its columns: the alias, else the table's (or CTE's) name.
    pub name: String,
    /// For a base table referenced without alias: its schema (`public.patients.nir` works).
    pub schema: Option<String>,
    /// What it is.
    pub source: Source<'a>,
}

impl<'a> Relation<'a> {
    /// Looks a column name up in this relation.
    pub fn lookup(&self, names: Names<'_>, column: &str) -> Hit {
        match &self.source {
            Source::Table(table) => match names.column(table, column) {
                Some(id) => Hit::Sealed(vec![id]),
                None => Hit::Maybe,
            },
            Source::Derived(outputs) => outputs.lookup(column),
            Source::Opaque => Hit::Maybe,
        }
    }

    /// The output items of `relation.*`.
    pub fn star(&self, names: Names<'_>) -> Vec<OutItem<'a>> {
        match &self.source {
            Source::Table(table) => vec![OutItem::Star(names.sealed_columns(table))],
            Source::Derived(outputs) => outputs.items.clone(),
            Source::Opaque => vec![OutItem::Star(Vec::new())],
        }
    }

    /// Every sealed column the relation carries.
    pub fn sealed(&self, names: Names<'_>) -> Vec<ColumnId> {
        match &self.source {
            Source::Table(table) => names
                .sealed_columns(table)
                .into_iter()
                .map(|(_, id)| id)
                .collect(),
            Source::Derived(outputs) => outputs.all_sealed(),
            Source::Opaque => Vec::new(),
        }
    }
}

/// One query level's scope.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frame<'a> {
    /// Relations of its FROM list (and of an UPDATE/DELETE target).
    pub relations: Vec<Relation<'a>>,
    /// CTEs defined at this level, by name.
    pub ctes: Vec<(String, Outputs<'a>)>,
}

/// What a column reference designates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Not a sealed column.
    Plain,
    /// A sealed column (several candidates when it cannot be told which).
    Sealed(Vec<ColumnId>),
    /// A whole-row reference to a relation carrying these sealed columns.
    Row(Vec<ColumnId>),
}

/// Resolves a column reference (`col`, `t.col`, `s.t.col`, `db.s.t.col`) against the frames,
/// innermost last.
pub(crate) fn resolve(frames: &[Frame<'_>], names: Names<'_>, parts: &[String]) -> Resolved {
    match parts {
        [] => Resolved::Plain,
        [column] => resolve_unqualified(frames, names, column),
        [.., qualifier, column] => {
            let schema = (parts.len() >= 3).then(|| parts[parts.len() - 3].as_str());
            match find_relation(frames, qualifier, schema) {
                Some(relation) => match relation.lookup(names, column) {
                    Hit::Sealed(ids) => Resolved::Sealed(ids),
                    _ => Resolved::Plain,
                },
                None if parts.len() == 2 => {
                    // `a.b` where `a` is no relation: a field of a composite column `a`, or an
                    // error in PostgreSQL. A field of a sealed column cannot be taken.
                    match resolve_unqualified(frames, names, qualifier) {
                        Resolved::Sealed(ids) | Resolved::Row(ids) => Resolved::Sealed(ids),
                        Resolved::Plain => Resolved::Plain,
                    }
                }
                None => Resolved::Plain,
            }
        }
    }
}

fn resolve_unqualified(frames: &[Frame<'_>], names: Names<'_>, column: &str) -> Resolved {
    for frame in frames.iter().rev() {
        let mut sealed = Vec::new();
        let mut plain = false;
        for relation in &frame.relations {
            match relation.lookup(names, column) {
                Hit::Sealed(ids) => sealed.extend(ids),
                Hit::Plain => plain = true,
                Hit::Maybe | Hit::Absent => {}
            }
        }
        if !sealed.is_empty() {
            sealed.sort();
            sealed.dedup();
            return Resolved::Sealed(sealed);
        }
        if plain {
            return Resolved::Plain;
        }
    }
    // No column found: a whole-row reference if it names a relation carrying sealed columns.
    if let Some(relation) = find_relation(frames, column, None) {
        let sealed = relation.sealed(names);
        if !sealed.is_empty() {
            return Resolved::Row(sealed);
        }
    }
    Resolved::Plain
}

/// The relation a qualifier names, innermost frame first.
pub(crate) fn find_relation<'f, 'a>(
    frames: &'f [Frame<'a>],
    qualifier: &str,
    schema: Option<&str>,
) -> Option<&'f Relation<'a>> {
    frames.iter().rev().find_map(|frame| {
        frame.relations.iter().find(|r| {
            r.name == qualifier
                && match schema {
                    None => true,
                    Some(schema) => r.schema.as_deref() == Some(schema),
                }
        })
    })
}

/// The outputs of a CTE visible from the innermost frame.
pub(crate) fn find_cte<'f, 'a>(frames: &'f [Frame<'a>], name: &str) -> Option<&'f Outputs<'a>> {
    frames.iter().rev().find_map(|frame| {
        frame
            .ctes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, outputs)| outputs)
    })
}
