//! Which tables join, and the joined sample that copies are compared on.
//!
//! Two columns are *linked* when they hold the same keys: a foreign key and the column it
//! references, two foreign keys referencing the same column, or, where an ORM left no
//! constraint, an `x_id` column and the primary key of table `x` (or its plural), or two `x_id`
//! columns of the same type. Linked columns form key groups; two tables with a column in the
//! same group are joined on those columns, so that a candidate column can be compared with the
//! *same entity's* value in another table.
//!
//! A join reads at most the sample's number of rows, through `TABLESAMPLE` on the candidate's
//! table when it is large, and looks its rows up in the other table only by an indexed key (or
//! in a small table), so that it never scans a large table.

use std::collections::HashMap;

use super::DiscoverError;
use super::sample::{TableSample, as_text, qualified_table, sql_ident, tablesample};

/// A column of the sampled database: (table index, column index) in discovery's tables.
pub type ColumnAt = (usize, usize);

/// Why two columns are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A foreign key, or two foreign keys referencing the same column.
    ForeignKey,
    /// Their names say so (`party_id` and `party.id`), with no constraint.
    Name,
}

/// Two linked columns of two different tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The column of the first table.
    pub a: ColumnAt,
    /// The column of the second table.
    pub b: ColumnAt,
    /// Why they are linked.
    pub kind: LinkKind,
}

/// The larger table above which a join looks rows up only through an index.
pub const SCAN_LIMIT_ROWS: f64 = 100_000.0;

/// Reads the single-column foreign keys among the sampled tables, as pairs of linked columns.
pub async fn foreign_keys(
    transaction: &tokio_postgres::Transaction<'_>,
    tables: &[TableSample],
) -> Result<Vec<(ColumnAt, ColumnAt)>, DiscoverError> {
    let rows = transaction
        .query(FOREIGN_KEYS_SQL, &[])
        .await
        .map_err(|e| DiscoverError::db("reading the foreign keys", &e))?;
    let index = column_index(tables);
    let mut pairs = Vec::new();
    for row in rows {
        let get = |i: usize| row.try_get::<_, String>(i).unwrap_or_default();
        let from = index.get(&(get(0), get(1), get(2)));
        let to = index.get(&(get(3), get(4), get(5)));
        if let (Some(&from), Some(&to)) = (from, to) {
            pairs.push((from, to));
        }
    }
    Ok(pairs)
}

/// `(schema, table, column)` → its place among the sampled tables.
fn column_index(tables: &[TableSample]) -> HashMap<(String, String, String), ColumnAt> {
    let mut index = HashMap::new();
    for (t, table) in tables.iter().enumerate() {
        for (c, column) in table.columns.iter().enumerate() {
            index.insert(
                (
                    table.schema.clone(),
                    table.table.clone(),
                    column.name.clone(),
                ),
                (t, c),
            );
        }
    }
    index
}

/// The pairs of columns linked by their names: `x_id` (or `xid`) and the single-column primary
/// key of table `x` or its plural (`xs`, `parties`) of the same schema; two `x_id` columns of the same type.
pub fn named_links(tables: &[TableSample]) -> Vec<(ColumnAt, ColumnAt)> {
    let mut primary: HashMap<(&str, String), ColumnAt> = HashMap::new();
    for (t, table) in tables.iter().enumerate() {
        if let Some(c) = table.columns.iter().position(|c| c.keys.primary) {
            primary.insert((table.schema.as_str(), table.table.to_lowercase()), (t, c));
        }
    }
    let mut by_name: HashMap<(&str, String, &str), Vec<ColumnAt>> = HashMap::new();
    let mut pairs = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        for (c, column) in table.columns.iter().enumerate() {
            let name = column.name.to_lowercase();
            let Some(stem) = name
                .strip_suffix("_id")
                .or_else(|| name.strip_suffix("id"))
                .filter(|s| !s.is_empty())
            else {
                continue;
            };
            let stem = stem.trim_end_matches('_').to_string();
            let plural = match stem.strip_suffix('y') {
                Some(root) => format!("{root}ies"),
                None => format!("{stem}s"),
            };
            for target in [stem.clone(), plural] {
                if let Some(&key) = primary.get(&(table.schema.as_str(), target)) {
                    if key.0 != t {
                        pairs.push(((t, c), key));
                    }
                }
            }
            if !name.ends_with("_id") {
                continue;
            }
            by_name
                .entry((
                    table.schema.as_str(),
                    name.clone(),
                    column.storage_type.as_str(),
                ))
                .or_default()
                .push((t, c));
        }
    }
    for columns in by_name.values() {
        for pair in columns.windows(2) {
            if pair[0].0 != pair[1].0 {
                pairs.push((pair[0], pair[1]));
            }
        }
    }
    pairs
}

/// One link per pair of tables sharing a key group (foreign keys first).
pub fn links(
    table_count: usize,
    foreign: &[(ColumnAt, ColumnAt)],
    named: &[(ColumnAt, ColumnAt)],
) -> Vec<Link> {
    let mut groups = Groups::default();
    for &(a, b) in foreign {
        groups.union(a, b, LinkKind::ForeignKey);
    }
    for &(a, b) in named {
        groups.union(a, b, LinkKind::Name);
    }
    let mut members: HashMap<ColumnAt, Vec<ColumnAt>> = HashMap::new();
    let mut nodes: Vec<ColumnAt> = groups.parent.keys().copied().collect();
    nodes.sort_unstable();
    for node in nodes {
        let root = groups.find(node);
        members.entry(root).or_default().push(node);
    }
    let mut roots: Vec<ColumnAt> = members.keys().copied().collect();
    roots.sort_unstable();
    let mut seen = vec![false; table_count * table_count];
    let mut out = Vec::new();
    for kind in [LinkKind::ForeignKey, LinkKind::Name] {
        for root in &roots {
            if groups.kind.get(root).copied().unwrap_or(LinkKind::Name) != kind {
                continue;
            }
            let group = &members[root];
            for (i, &a) in group.iter().enumerate() {
                for &b in &group[i + 1..] {
                    if a.0 == b.0 {
                        continue;
                    }
                    let (low, high) = (a.0.min(b.0), a.0.max(b.0));
                    let at = low * table_count + high;
                    if seen.get(at).copied().unwrap_or(true) {
                        continue;
                    }
                    seen[at] = true;
                    out.push(Link { a, b, kind });
                }
            }
        }
    }
    out
}

/// Union-find over columns: the key groups.
#[derive(Default)]
struct Groups {
    parent: HashMap<ColumnAt, ColumnAt>,
    /// A root's strongest link: a foreign key anywhere in the group makes it `ForeignKey`.
    kind: HashMap<ColumnAt, LinkKind>,
}

impl Groups {
    fn find(&mut self, node: ColumnAt) -> ColumnAt {
        let mut root = node;
        while let Some(&up) = self.parent.get(&root) {
            if up == root {
                break;
            }
            root = up;
        }
        self.parent.entry(node).or_insert(node);
        // Path compression, one step is enough for groups this small.
        self.parent.insert(node, root);
        root
    }

    fn union(&mut self, a: ColumnAt, b: ColumnAt, kind: LinkKind) {
        let (ra, rb) = (self.find(a), self.find(b));
        let foreign = kind == LinkKind::ForeignKey
            || self.kind.get(&ra) == Some(&LinkKind::ForeignKey)
            || self.kind.get(&rb) == Some(&LinkKind::ForeignKey);
        let merged = if foreign {
            LinkKind::ForeignKey
        } else {
            LinkKind::Name
        };
        if ra != rb {
            self.parent.insert(rb, ra);
            self.kind.remove(&rb);
        }
        self.kind.insert(ra, merged);
    }
}

/// Rows of a candidate table joined to another table through a link: for each joined row, the
/// candidate columns' values then the other table's columns' values.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    /// Each joined row: `candidates.len() + others.len()` values.
    pub rows: Vec<Vec<Option<String>>>,
}

/// Whether a join may look rows up in `table` by `column`: an index starts with it, or the
/// table is small.
pub fn may_look_up(tables: &[TableSample], (t, c): ColumnAt) -> bool {
    let table = &tables[t];
    let keys = table.columns[c].keys;
    keys.primary || keys.unique || keys.indexed || table.estimated_rows <= SCAN_LIMIT_ROWS
}

/// Samples up to `sample_rows` rows of the candidate table (through `TABLESAMPLE` when large)
/// joined on `candidate_key = other_key` to the other table, reading `candidates` of the first
/// and `others` of the second, as text.
pub async fn sample_joined(
    transaction: &tokio_postgres::Transaction<'_>,
    tables: &[TableSample],
    (candidate_key, other_key): (ColumnAt, ColumnAt),
    candidates: &[usize],
    others: &[usize],
    sample_rows: u32,
) -> Result<Joined, DiscoverError> {
    let (ct, ot) = (&tables[candidate_key.0], &tables[other_key.0]);
    let list: Vec<String> = candidates
        .iter()
        .map(|&c| as_text(Some("c"), &ct.columns[c].name))
        .chain(
            others
                .iter()
                .map(|&c| as_text(Some("o"), &ot.columns[c].name)),
        )
        .collect();
    let sql = format!(
        "SELECT {} FROM {} c{} JOIN {} o ON o.{} = c.{} LIMIT {sample_rows}",
        list.join(", "),
        qualified_table(ct),
        tablesample(ct.estimated_rows, sample_rows),
        qualified_table(ot),
        sql_ident(&ot.columns[other_key.1].name),
        sql_ident(&ct.columns[candidate_key.1].name),
    );
    let rows = transaction
        .query(&sql, &[])
        .await
        .map_err(|e| DiscoverError::db(format!("joining {}", qualified_table(ct)), &e))?;
    let width = list.len();
    Ok(Joined {
        rows: rows
            .iter()
            .map(|row| {
                (0..width)
                    .map(|i| row.try_get::<_, Option<String>>(i).ok().flatten())
                    .collect()
            })
            .collect(),
    })
}

/// Single-column foreign keys: the referencing column, then the referenced one.
const FOREIGN_KEYS_SQL: &str = "\
SELECT fn.nspname::text, fc.relname::text, fa.attname::text,
       tn.nspname::text, tc.relname::text, ta.attname::text
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class fc ON fc.oid = k.conrelid
JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
JOIN pg_catalog.pg_attribute fa ON fa.attrelid = k.conrelid AND fa.attnum = k.conkey[1]
JOIN pg_catalog.pg_class tc ON tc.oid = k.confrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
JOIN pg_catalog.pg_attribute ta ON ta.attrelid = k.confrelid AND ta.attnum = k.confkey[1]
WHERE k.contype = 'f' AND cardinality(k.conkey) = 1";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{ColumnSample, Keys};

    fn table(name: &str, columns: &[(&str, bool)]) -> TableSample {
        TableSample {
            schema: "public".into(),
            table: name.into(),
            columns: columns
                .iter()
                .map(|&(name, primary)| ColumnSample {
                    name: name.into(),
                    storage_type: "uuid".into(),
                    keys: Keys {
                        primary,
                        ..Keys::default()
                    },
                    ..ColumnSample::default()
                })
                .collect(),
            ..TableSample::default()
        }
    }

    #[test]
    fn foreign_keys_to_one_column_link_every_pair_of_tables() {
        let tables = [
            table("party", &[("id", true), ("code", false)]),
            table("person", &[("party_id", true), ("first_name", false)]),
            table("party_name", &[("id", true), ("party_id", false)]),
            table("other", &[("id", true)]),
        ];
        let foreign = [((1, 0), (0, 0)), ((2, 1), (0, 0))];
        let found = links(tables.len(), &foreign, &[]);
        let pairs: Vec<(usize, usize)> = found
            .iter()
            .map(|l| (l.a.0.min(l.b.0), l.a.0.max(l.b.0)))
            .collect();
        assert_eq!(found.len(), 3, "{found:?}");
        for pair in [(0, 1), (0, 2), (1, 2)] {
            assert!(pairs.contains(&pair), "{pairs:?}");
        }
        assert!(found.iter().all(|l| l.kind == LinkKind::ForeignKey));
    }

    #[test]
    fn names_link_tables_without_constraints() {
        let tables = [
            table("parties", &[("id", true)]),
            table("contact", &[("id", true), ("party_id", false)]),
            table("note", &[("id", true), ("party_id", false)]),
        ];
        let named = named_links(&tables);
        let found = links(tables.len(), &[], &named);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().all(|l| l.kind == LinkKind::Name));
        // An `id` column alone links nothing.
        let lone = [table("a", &[("id", true)]), table("b", &[("id", true)])];
        assert!(links(2, &[], &named_links(&lone)).is_empty());
    }
}
