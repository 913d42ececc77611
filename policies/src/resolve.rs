//! Cross-checks between sections and the compiled form: duplicate columns, shared domains, roles
//! in two classes, views of columns that are not sealed, masks that do not apply, budgets looser
//! than the default; then every class's view of every column and every budget, resolved into
//! [`CompiledPolicy`].

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::budget::Budget;
use crate::compile::{
    ClassDraft, ColumnDraft, ColumnName, Draft, ViewDraft, ViewKind, display_name,
};
use crate::ident::quote_identifier;
use crate::model::{
    ClassId, ColumnId, Member, RoleClass, SealMode, SealedColumn, SealedTable, View,
};
use crate::policy::CompiledPolicy;
use crate::read::Reader;
use crate::source::{Diagnostics, in_file_order};

/// Checks a decoded draft as a whole and compiles it, or returns every problem found while
/// reading and checking.
pub(crate) fn resolve(mut r: Reader<'_>, draft: Draft) -> Result<CompiledPolicy, Diagnostics> {
    let Draft {
        columns,
        default,
        classes,
        trusted_functions,
        databases,
    } = draft;
    // Every column name the file declares, even one whose body has problems, so that views of
    // it are not reported a second time as views of an unsealed column.
    let declared: HashSet<ColumnName> = columns.iter().map(|c| c.name.clone()).collect();
    let columns = check_columns(&mut r, columns);
    check_domains(&mut r, &columns);

    let default_view = match &default.view {
        None => View::Ciphertext,
        Some(ViewDraft {
            kind: ViewKind::Ciphertext,
            ..
        }) => View::Ciphertext,
        Some(ViewDraft {
            kind: ViewKind::Denied,
            ..
        }) => View::Denied,
        Some(other) => {
            r.error(
                &other.span,
                format!(
                    "the default view must be \"ciphertext\" or \"denied\": roles in no class \
                     never see more (found {:?})",
                    other.kind.name()
                ),
            );
            View::Ciphertext
        }
    };

    check_roles(&mut r, &classes);
    let index: HashMap<&ColumnName, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (&c.name, i))
        .collect();
    let views: Vec<Vec<View>> = classes
        .iter()
        .map(|class| class_views(&mut r, class, &columns, &index, &declared))
        .collect();
    let access: Vec<ClassAccess> = classes
        .iter()
        .zip(views)
        .map(|(class, views)| class_access(&mut r, class, &columns, &index, views))
        .collect();
    let default_budget = default_budget(&mut r, default.budget.as_ref(), &classes);

    if !r.is_clean() {
        return Err(in_file_order(r.into_problems()));
    }
    let mut policy = build(
        &r,
        columns,
        default.span,
        default_view,
        default_budget,
        classes,
        access,
    );
    policy.trusted_functions = trusted_functions;
    policy.databases = databases;
    Ok(policy)
}

/// What a class may do with each sealed column, by column index: its view, and its
/// `blind_writes` and `lookups`.
struct ClassAccess {
    views: Vec<View>,
    blind_writes: Vec<bool>,
    lookups: Vec<bool>,
}

/// Resolves a class's `blind_writes` and `lookups` against its views, refusing the
/// combinations that would hand it a guessing oracle or that cannot work.
fn class_access(
    r: &mut Reader<'_>,
    class: &ClassDraft,
    columns: &[ColumnDraft],
    index: &HashMap<&ColumnName, usize>,
    views: Vec<View>,
) -> ClassAccess {
    let listed = |r: &mut Reader<'_>, key: &str, names: &[(ColumnName, Range<usize>)]| {
        let mut flags = vec![false; columns.len()];
        for (name, span) in names {
            match index.get(name) {
                Some(&i) if flags[i] => r.error(
                    span,
                    format!(
                        "class {} lists {} twice in `{key}`",
                        class.name,
                        display_name(name)
                    ),
                ),
                Some(&i) => flags[i] = true,
                None => r.error(
                    span,
                    format!(
                        "class {} lists {} in `{key}`, but it is not a sealed column",
                        class.name,
                        display_name(name)
                    ),
                ),
            }
        }
        flags
    };
    let blind_writes = listed(r, "blind_writes", &class.blind_writes);
    let lookups = listed(r, "lookups", &class.lookups);
    let span_of = |names: &[(ColumnName, Range<usize>)], column: &ColumnDraft| {
        names
            .iter()
            .find(|(name, _)| *name == column.name)
            .map(|(_, span)| span.clone())
            .unwrap_or_else(|| class.span.clone())
    };
    for (i, column) in columns.iter().enumerate() {
        let Some(mode) = column.mode.filter(|_| column.complete) else {
            continue;
        };
        // Search tokens stored beside a randomized value show which rows share a (truncated)
        // item, as a deterministic column shows equal values.
        let reveals_equality = mode != SealMode::Randomized || column.search.is_some();
        let (name, class_name, view) = (column.display(), &class.name, views[i]);
        if blind_writes[i] {
            let span = span_of(&class.blind_writes, column);
            if view == View::Plaintext {
                r.error(
                    &span,
                    format!(
                        "class {class_name} sees {name} as plaintext, so it writes it already: \
                         remove it from `blind_writes`"
                    ),
                );
            } else if reveals_equality && view != View::Denied {
                r.error(
                    &span,
                    format!(
                        "class {class_name} writes {name} blindly, so its view of it must be \
                         \"denied\" (found {:?}): {name} is stored {}, and any other view would let it \
                         compare the values it writes with the stored ones",
                        view.name(),
                        if column.search.is_some() && mode == SealMode::Randomized {
                            "with search tokens"
                        } else {
                            mode.name()
                        }
                    ),
                );
            }
            if lookups[i] {
                r.error(
                    &span_of(&class.lookups, column),
                    format!(
                        "class {class_name} writes {name} blindly and cannot also look it up: \
                         the two together test any guess against the stored values"
                    ),
                );
            }
        }
        if lookups[i] && !blind_writes[i] {
            let span = span_of(&class.lookups, column);
            let problem = if view == View::Plaintext {
                Some("it sees it as plaintext and may look it up already".to_owned())
            } else if view == View::Denied {
                Some("its view of it is \"denied\"".to_owned())
            } else if !reveals_equality {
                Some(format!(
                    "{name} is stored randomized, which cannot be looked up by value"
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                r.error(
                    &span,
                    format!("class {class_name} lists {name} in `lookups`, but {problem}"),
                );
            }
        }
    }
    check_domain_views(r, class, columns, &views);
    ClassAccess {
        views,
        blind_writes,
        lookups,
    }
}

/// Columns sharing a deterministic, tokenized or pseudonym domain hold equal stored forms for
/// equal values: a class reading one in clear and another not could decode the second with
/// the first (their stored values, read where they carry no column origin, match). Refused.
fn check_domain_views(
    r: &mut Reader<'_>,
    class: &ClassDraft,
    columns: &[ColumnDraft],
    views: &[View],
) {
    for (i, a) in columns.iter().enumerate() {
        let Some((domain, _)) = &a.domain else {
            continue;
        };
        if a.mode == Some(SealMode::Randomized) || !a.complete {
            continue;
        }
        for (j, b) in columns.iter().enumerate().skip(i + 1) {
            if b.domain.as_ref().map(|(d, _)| d) != Some(domain) || !b.complete {
                continue;
            }
            let (clear_a, clear_b) = (views[i] == View::Plaintext, views[j] == View::Plaintext);
            if clear_a != clear_b {
                let (seen, hidden) = if clear_a { (a, b) } else { (b, a) };
                r.error(
                    &class.span,
                    format!(
                        "class {} reads {} in clear but not {}, which shares domain {domain}: \
                         equal values are stored equal, so the first would decode the second; \
                         give both the same kind of view or give them separate domains",
                        class.name,
                        seen.display(),
                        hidden.display()
                    ),
                );
            }
        }
    }
}

/// Drops duplicate and system-schema columns (reporting them) and returns the rest in file
/// order.
fn check_columns(r: &mut Reader<'_>, columns: Vec<ColumnDraft>) -> Vec<ColumnDraft> {
    let mut first: HashMap<ColumnName, Range<usize>> = HashMap::new();
    let mut kept = Vec::with_capacity(columns.len());
    for column in columns {
        let schema = &column.name.0;
        if schema == "pg_catalog" || schema == "information_schema" || schema.starts_with("pg_") {
            r.error(
                &column.span,
                format!(
                    "cannot seal {}: {} is a system schema",
                    column.display(),
                    quote_identifier(schema)
                ),
            );
            continue;
        }
        if let Some(earlier) = first.get(&column.name) {
            let line = r.map().location(earlier.start).line;
            r.error(
                &column.span,
                format!(
                    "duplicate sealed column {} (first declared on line {line})",
                    column.display()
                ),
            );
            continue;
        }
        first.insert(column.name.clone(), column.span.clone());
        kept.push(column);
    }
    kept
}

/// Columns sharing a domain must be joinable: same mode, comparable types.
fn check_domains(r: &mut Reader<'_>, columns: &[ColumnDraft]) {
    let mut first: HashMap<&str, &ColumnDraft> = HashMap::new();
    for column in columns {
        let Some((domain, span)) = &column.domain else {
            continue;
        };
        let Some(earlier) = first.get(domain.as_str()) else {
            first.insert(domain, column);
            continue;
        };
        if let (Some(a), Some(b)) = (earlier.mode, column.mode)
            && a != b
        {
            r.error(
                span,
                format!(
                    "domain {domain:?} joins columns of different modes: {} is {a}, {} is {b}",
                    earlier.display(),
                    column.display()
                ),
            );
        }
        if earlier.search != column.search {
            r.error(
                span,
                format!(
                    "domain {domain:?} joins columns with different `search`: {} and {} must \
                     index the same way, or their stored forms differ and joins miss rows",
                    earlier.display(),
                    column.display()
                ),
            );
        }
        if let (Some(a), Some(b)) = (earlier.ty, column.ty)
            && !a.joins_with(&b)
        {
            r.error(
                span,
                format!(
                    "domain {domain:?} joins columns of incompatible types: {} is {a}, {} is {b}",
                    earlier.display(),
                    column.display()
                ),
            );
        }
    }
}

/// A role belongs to one class, listed once.
fn check_roles(r: &mut Reader<'_>, classes: &[ClassDraft]) {
    let mut all: Vec<(&str, &Range<usize>, &str)> = classes
        .iter()
        .flat_map(|c| {
            c.roles
                .iter()
                .map(move |(role, span)| (role.as_str(), span, c.name.as_str()))
        })
        .collect();
    all.sort_by_key(|(_, span, _)| span.start);
    let mut first: HashMap<&str, (&str, &Range<usize>)> = HashMap::new();
    for (role, span, class) in all {
        match first.get(role) {
            Some((earlier_class, earlier)) => {
                let line = r.map().location(earlier.start).line;
                let message = if *earlier_class == class {
                    format!(
                        "role {} is listed twice in class {class} (first on line {line})",
                        quote_identifier(role)
                    )
                } else {
                    format!(
                        "role {} is in two classes, {earlier_class} (line {line}) and {class}: a \
                         role belongs to one class",
                        quote_identifier(role)
                    )
                };
                r.error(span, message);
            }
            None => {
                first.insert(role, (class, span));
            }
        }
    }
}

/// One class's view of every sealed column, by column index.
fn class_views(
    r: &mut Reader<'_>,
    class: &ClassDraft,
    columns: &[ColumnDraft],
    index: &HashMap<&ColumnName, usize>,
    declared: &HashSet<ColumnName>,
) -> Vec<View> {
    let mut explicit: Vec<Option<&ViewDraft>> = vec![None; columns.len()];
    for (name, view) in &class.views {
        match index.get(name) {
            Some(&i) => {
                if explicit[i].is_some() {
                    r.error(
                        &view.span,
                        format!(
                            "class {} gives two views of {}",
                            class.name,
                            display_name(name)
                        ),
                    );
                } else {
                    explicit[i] = Some(view);
                }
            }
            None if declared.contains(name) => {}
            None => r.error(
                &view.span,
                format!(
                    "class {} gives a view of {}, which is not a sealed column",
                    class.name,
                    display_name(name)
                ),
            ),
        }
    }
    columns
        .iter()
        .zip(explicit)
        .map(|(column, explicit)| match explicit {
            Some(view) => resolve_view(r, class, column, view, true),
            None => match &class.default_view {
                Some(view) => resolve_view(r, class, column, view, false),
                None => View::Ciphertext,
            },
        })
        .collect()
}

/// Turns a written view into the view of one column, checking it makes sense there.
fn resolve_view(
    r: &mut Reader<'_>,
    class: &ClassDraft,
    column: &ColumnDraft,
    view: &ViewDraft,
    explicit: bool,
) -> View {
    let irreversible = column.mode == Some(SealMode::Pseudonym);
    if !column.complete {
        // The column's own problems are reported; nothing is built from this anyway.
        return View::Ciphertext;
    }
    match view.kind {
        ViewKind::Plaintext | ViewKind::Masked if irreversible => {
            if explicit {
                r.error(
                    &view.span,
                    format!(
                        "{} is stored in pseudonym mode and cannot be read back, so the view {:?} \
                         makes no sense: use \"pseudonym\"",
                        column.display(),
                        view.kind.name()
                    ),
                );
            }
            // As the class default, it gives the most the column can give.
            View::Pseudonym
        }
        ViewKind::Plaintext => View::Plaintext,
        ViewKind::Pseudonym => View::Pseudonym,
        ViewKind::Ciphertext => View::Ciphertext,
        ViewKind::Denied => View::Denied,
        ViewKind::Masked => {
            let Some(mask) = view.mask.or(column.mask) else {
                let fix = if explicit {
                    "write { view = \"masked\", mask = \"...\" } or set `mask` on the column"
                        .to_owned()
                } else {
                    format!(
                        "set `mask` on the column or give it its own view in [classes.{}.views]",
                        class.name
                    )
                };
                r.error(
                    &view.span,
                    format!(
                        "class {} sees {} masked, but no mask rule applies: {fix}",
                        class.name,
                        column.display()
                    ),
                );
                return View::Ciphertext;
            };
            // A column's own mask was checked against its type with the column.
            if let (Some(ty), Some(mask)) = (column.ty, view.mask)
                && !mask.fits(&ty)
            {
                r.error(
                    &view.span,
                    format!("mask {mask} does not fit {} (type {ty})", column.display()),
                );
            }
            View::Masked(mask)
        }
    }
}

/// The budget of roles in no class: the one the policy gives (which must be the strictest), or
/// the built-in default tightened by every class's budget.
fn default_budget(
    r: &mut Reader<'_>,
    explicit: Option<&(Budget, Range<usize>)>,
    classes: &[ClassDraft],
) -> Budget {
    match explicit {
        Some((budget, span)) => {
            for class in classes {
                if let Some((theirs, _)) = &class.budget
                    && let Some(why) = budget.looser_than(theirs)
                {
                    r.error(
                        span,
                        format!(
                            "the default budget must be the strictest, but it is looser than \
                             class {}'s: {why}",
                            class.name
                        ),
                    );
                }
            }
            *budget
        }
        None => classes
            .iter()
            .filter_map(|c| c.budget.as_ref())
            .fold(Budget::BUILT_IN_DEFAULT, |acc, (b, _)| acc.tightened_by(b)),
    }
}

fn build(
    r: &Reader<'_>,
    columns: Vec<ColumnDraft>,
    default_span: Option<Range<usize>>,
    default_view: View,
    default_budget: Budget,
    classes: Vec<ClassDraft>,
    access: Vec<ClassAccess>,
) -> CompiledPolicy {
    let map = r.map();
    let mut policy = CompiledPolicy {
        file: map.name().to_owned(),
        columns: Vec::with_capacity(columns.len()),
        tables: Vec::new(),
        by_name: HashMap::new(),
        classes: Vec::with_capacity(classes.len() + 1),
        class_by_role: HashMap::new(),
        trusted_functions: Vec::new(),
        databases: Vec::new(),
    };
    for (i, draft) in columns.into_iter().enumerate() {
        let id = ColumnId(u32::try_from(i).unwrap_or(u32::MAX));
        let (schema, table, column) = draft.name.clone();
        let domain = match draft.domain {
            Some((domain, _)) => domain,
            None => display_name(&draft.name),
        };
        let tables = &mut policy.tables;
        let (table_index, by_column) = policy
            .by_name
            .entry(schema.clone())
            .or_default()
            .entry(table.clone())
            .or_insert_with(|| {
                tables.push(SealedTable {
                    schema: schema.clone(),
                    table: table.clone(),
                    columns: Vec::new(),
                });
                (tables.len() - 1, HashMap::new())
            });
        by_column.insert(column.clone(), id);
        policy.tables[*table_index].columns.push(id);
        policy.columns.push(SealedColumn {
            id,
            schema,
            table,
            column,
            // Present: a draft without them has been reported, and nothing is built then.
            mode: draft.mode.unwrap_or(SealMode::Randomized),
            plain_type: draft.ty.unwrap_or(crate::types::PlainType::Text),
            domain,
            mask: draft.mask,
            migrating: draft.migrating,
            search: draft.search,
            declared_at: map.location(draft.span.start),
        });
    }
    policy.classes.push(RoleClass {
        id: ClassId::DEFAULT,
        name: "default".to_owned(),
        members: Vec::new(),
        views: vec![default_view; policy.columns.len()],
        budget: default_budget,
        end_user_budget: None,
        require_end_user: false,
        blind_writes: vec![false; policy.columns.len()],
        lookups: vec![false; policy.columns.len()],
        declared_at: default_span.map(|s| map.location(s.start)),
    });
    for (i, (class, access)) in classes.into_iter().zip(access).enumerate() {
        let id = ClassId(u32::try_from(i + 1).unwrap_or(u32::MAX));
        let members = class
            .roles
            .into_iter()
            .map(|(role, span)| {
                policy.class_by_role.insert(role.clone(), id);
                Member {
                    role,
                    declared_at: map.location(span.start),
                }
            })
            .collect();
        policy.classes.push(RoleClass {
            id,
            name: class.name,
            members,
            views: access.views,
            budget: class.budget.map_or(default_budget, |(b, _)| b),
            end_user_budget: class.end_user_budget,
            require_end_user: class.require_end_user,
            blind_writes: access.blind_writes,
            lookups: access.lookups,
            declared_at: Some(map.location(class.span.start)),
        });
    }
    policy
}
