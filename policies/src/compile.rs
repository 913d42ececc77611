//! Decoding a policy file into drafts: every section read, every key checked, every value
//! parsed, with a diagnostic for each problem. Cross-checks and the compiled form come after,
//! in [`crate::resolve`].

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::budget::{Action, Budget, BudgetScope, Counting, Rate};
use crate::ident::{IdentError, parse_identifier, parse_qualified, quote_qualified};
use crate::mask::Mask;
use crate::model::SealMode;
use crate::policy::CompiledPolicy;
use crate::read::{Reader, Value, section, toml_key};
use crate::search::{self, DateBuckets, SearchSpec};
use crate::source::{Diagnostics, SourceMap, in_file_order};
use crate::types::PlainType;

/// The policy format version this crate reads.
pub const FORMAT_VERSION: u64 = 1;

const TOP_KEYS: &[&str] = &[
    "version",
    "columns",
    "default",
    "classes",
    "trusted_functions",
    "databases",
];
const COLUMN_KEYS: &[&str] = &["mode", "type", "domain", "mask", "migrating", "search"];
const SEARCH_KEYS: &[&str] = &["prefix", "trigram", "exact", "date", "bits"];
const DEFAULT_KEYS: &[&str] = &["view", "budget"];
const CLASS_KEYS: &[&str] = &[
    "roles",
    "default",
    "views",
    "budget",
    "end_user_budget",
    "require_end_user",
    "blind_writes",
    "lookups",
];
const VIEW_KEYS: &[&str] = &["view", "mask"];
const BUDGET_KEYS: &[&str] = &[
    "rate", "burst", "per_hour", "per_day", "action", "on_cap", "counts",
];
const MODES: &str =
    "randomized, deterministic, tokenize-nir, tokenize-digits, tokenize-alnum or pseudonym";
const VIEWS: &str = "plaintext, masked, pseudonym, ciphertext or denied";

/// A view name, before masks are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ViewKind {
    Plaintext,
    Masked,
    Pseudonym,
    Ciphertext,
    Denied,
}

impl ViewKind {
    fn parse(written: &str) -> Option<Self> {
        Some(match written {
            "plaintext" => ViewKind::Plaintext,
            "masked" => ViewKind::Masked,
            "pseudonym" => ViewKind::Pseudonym,
            "ciphertext" => ViewKind::Ciphertext,
            "denied" => ViewKind::Denied,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ViewKind::Plaintext => "plaintext",
            ViewKind::Masked => "masked",
            ViewKind::Pseudonym => "pseudonym",
            ViewKind::Ciphertext => "ciphertext",
            ViewKind::Denied => "denied",
        }
    }
}

/// `schema`, `table`, `column` after folding.
pub(crate) type ColumnName = (String, String, String);

/// A `[columns."schema.table.column"]` entry.
#[derive(Debug)]
pub(crate) struct ColumnDraft {
    pub(crate) name: ColumnName,
    pub(crate) span: Range<usize>,
    /// `None` when missing or invalid (already reported).
    pub(crate) mode: Option<SealMode>,
    pub(crate) ty: Option<PlainType>,
    pub(crate) domain: Option<(String, Range<usize>)>,
    pub(crate) mask: Option<Mask>,
    /// `migrating = true`: the column may still hold plaintext (see `SealedColumn::migrating`).
    pub(crate) migrating: bool,
    /// `search = { … }`: the column's search indexes.
    pub(crate) search: Option<SearchSpec>,
    /// False when the column's body had problems (already reported): views of it are not
    /// checked further, to keep follow-on errors out of the list.
    pub(crate) complete: bool,
}

impl ColumnDraft {
    pub(crate) fn display(&self) -> String {
        display_name(&self.name)
    }
}

pub(crate) fn display_name((s, t, c): &ColumnName) -> String {
    quote_qualified(&[s, t, c])
}

/// A view as a class writes it, for a column or as its default.
#[derive(Debug, Clone)]
pub(crate) struct ViewDraft {
    pub(crate) kind: ViewKind,
    pub(crate) mask: Option<Mask>,
    pub(crate) span: Range<usize>,
}

/// A `[classes.NAME]` entry.
#[derive(Debug)]
pub(crate) struct ClassDraft {
    pub(crate) name: String,
    pub(crate) span: Range<usize>,
    pub(crate) roles: Vec<(String, Range<usize>)>,
    pub(crate) default_view: Option<ViewDraft>,
    pub(crate) views: Vec<(ColumnName, ViewDraft)>,
    pub(crate) budget: Option<(Budget, Range<usize>)>,
    /// `[classes.NAME.end_user_budget]`, with scope [`BudgetScope::EndUser`].
    pub(crate) end_user_budget: Option<Budget>,
    /// `require_end_user`.
    pub(crate) require_end_user: bool,
    /// `blind_writes`: sealed columns the class may write without reading them.
    pub(crate) blind_writes: Vec<(ColumnName, Range<usize>)>,
    /// `lookups`: sealed columns the class may look up by value without reading them.
    pub(crate) lookups: Vec<(ColumnName, Range<usize>)>,
}

/// The `[default]` section.
#[derive(Debug, Default)]
pub(crate) struct DefaultDraft {
    pub(crate) span: Option<Range<usize>>,
    pub(crate) view: Option<ViewDraft>,
    pub(crate) budget: Option<(Budget, Range<usize>)>,
}

/// Everything decoded from one file.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub(crate) columns: Vec<ColumnDraft>,
    pub(crate) default: DefaultDraft,
    pub(crate) classes: Vec<ClassDraft>,
    /// `trusted_functions`: function names (folded) the proxy lets through although they
    /// read data a statement does not show.
    pub(crate) trusted_functions: Vec<String>,
    /// `databases`: the databases the policy protects (none written: every database).
    pub(crate) databases: Vec<String>,
}

/// Parses, validates and compiles a policy text.
pub(crate) fn compile(file: &str, text: &str) -> Result<CompiledPolicy, Diagnostics> {
    let map = SourceMap::new(file, text);
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        let mut reader = Reader::new(&map);
        for err in syntax_errors {
            let span = err.span().unwrap_or(0..0);
            let message = match text.get(span.clone()) {
                // toml says only "duplicate key": name it.
                Some(key) if err.message() == "duplicate key" && !key.is_empty() => {
                    format!("invalid TOML: duplicate key {key}")
                }
                _ => format!("invalid TOML: {}", err.message()),
            };
            reader.error(&span, message);
        }
        return Err(in_file_order(reader.into_problems()));
    }
    let mut reader = Reader::new(&map);
    let draft = decode(&mut reader, document.get_ref());
    crate::resolve::resolve(reader, draft)
}

/// Entries of a table in file order (the tree keeps them sorted by key).
fn entries<'v, 'i>(table: &'v DeTable<'i>) -> Vec<(&'v crate::read::Key<'i>, &'v Value<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

fn decode(r: &mut Reader<'_>, top: &DeTable<'_>) -> Draft {
    let mut draft = Draft::default();
    for (key, value) in entries(top) {
        match key.get_ref().as_ref() {
            "version" => {
                if let Some(v) = r.count(value, "`version`")
                    && v != FORMAT_VERSION
                {
                    r.error(
                        &value.span(),
                        format!(
                            "unsupported policy format version {v} (this pgseal reads version \
                             {FORMAT_VERSION})"
                        ),
                    );
                }
            }
            "columns" => {
                if let Some(t) = r.table(value, "`columns`") {
                    decode_columns(r, t, &mut draft.columns);
                }
            }
            "default" => {
                if let Some(t) = r.table(value, "`default`") {
                    draft.default = decode_default(r, t);
                    draft.default.span = Some(key.span());
                }
            }
            "classes" => {
                if let Some(t) = r.table(value, "`classes`") {
                    decode_classes(r, t, &mut draft.classes);
                }
            }
            "trusted_functions" => {
                let Some(items) = r.array(value, "`trusted_functions`") else {
                    continue;
                };
                for item in items {
                    let Some(written) = r.string(item, "a function name") else {
                        continue;
                    };
                    match parse_qualified(written) {
                        Ok(parts) if parts.len() <= 2 => {
                            draft.trusted_functions.push(parts.join("."));
                        }
                        Ok(parts) => r.error(
                            &item.span(),
                            format!(
                                "invalid function name {written:?} in `trusted_functions`: \
                                 {} parts (write a name, or schema.name for a function pgseal \
                                 lists with its schema, such as cron.schedule)",
                                parts.len()
                            ),
                        ),
                        Err(e) => r.error(
                            &item.span(),
                            format!(
                                "invalid function name {written:?} in `trusted_functions` \
                                 (write the name alone, without arguments): {e}"
                            ),
                        ),
                    }
                }
            }
            "databases" => {
                let Some(items) = r.array(value, "`databases`") else {
                    continue;
                };
                if items.is_empty() {
                    r.error(
                        &value.span(),
                        "`databases` is empty: name the databases the policy protects, or \
                         leave the key out to protect every database"
                            .to_string(),
                    );
                }
                for item in items {
                    let Some(name) = r.string(item, "a database name") else {
                        continue;
                    };
                    if name.is_empty() || name.contains('\0') {
                        r.error(&item.span(), format!("invalid database name {name:?}"));
                    } else if draft.databases.iter().any(|d| d == name) {
                        r.error(
                            &item.span(),
                            format!("database {name:?} is named twice in `databases`"),
                        );
                    } else {
                        draft.databases.push(name.to_string());
                    }
                }
            }
            _ => r.unknown_key(key, "the policy's top level", TOP_KEYS),
        }
    }
    draft
}

/// Parses a qualified column name, reporting problems at `span`.
fn column_name(r: &mut Reader<'_>, written: &str, span: &Range<usize>) -> Option<ColumnName> {
    let problem = match parse_qualified(written) {
        Ok(parts) if parts.len() == 3 => {
            let mut parts = parts.into_iter();
            let (s, t, c) = (parts.next()?, parts.next()?, parts.next()?);
            return Some((s, t, c));
        }
        Ok(parts) => IdentError::WrongParts {
            expected: 3,
            found: parts.len(),
        }
        .to_string(),
        Err(e) => e.to_string(),
    };
    r.error(
        span,
        format!("invalid column {written:?}: write it as schema.table.column ({problem})"),
    );
    None
}

/// An array of sealed column names (`["public.patients.nir", …]`), each with its span.
fn column_list(
    r: &mut Reader<'_>,
    value: &Value<'_>,
    what: &str,
) -> Vec<(ColumnName, Range<usize>)> {
    let Some(items) = r.array(value, what) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let written = r.string(item, "a column name")?;
            column_name(r, written, &item.span()).map(|name| (name, item.span()))
        })
        .collect()
}

fn decode_columns(r: &mut Reader<'_>, table: &DeTable<'_>, out: &mut Vec<ColumnDraft>) {
    for (key, value) in entries(table) {
        let written = key.get_ref().as_ref();
        let here = section(&["columns", written]);
        let problems_before = r.problem_count();
        let name = column_name(r, written, &key.span());
        let Some(body) = r.table(value, &format!("sealed column {}", toml_key(written))) else {
            continue;
        };
        let mut mode = None;
        let mut ty = None;
        let mut domain = None;
        let mut mask = None;
        let mut migrating = false;
        let mut search = None;
        let mut mode_seen = false;
        let mut type_seen = false;
        for (k, v) in entries(body) {
            match k.get_ref().as_ref() {
                "mode" => {
                    mode_seen = true;
                    if let Some(s) = r.string(v, "`mode`") {
                        mode = SealMode::parse(s);
                        if mode.is_none() {
                            r.error(&v.span(), format!("unknown mode {s:?} (expected {MODES})"));
                        }
                    }
                }
                "type" => {
                    type_seen = true;
                    if let Some(s) = r.string(v, "`type`") {
                        match PlainType::parse(s) {
                            Ok(t) => ty = Some(t),
                            Err(e) => r.error(&v.span(), e.to_string()),
                        }
                    }
                }
                "domain" => {
                    if let Some(s) = r.string(v, "`domain`") {
                        let valid = !s.is_empty()
                            && s.len() <= 63
                            && s.bytes().all(|b| {
                                b.is_ascii_lowercase()
                                    || b.is_ascii_digit()
                                    || b == b'_'
                                    || b == b'-'
                            });
                        if valid {
                            domain = Some((s.to_owned(), v.span()));
                        } else {
                            r.error(
                                &v.span(),
                                format!(
                                    "invalid domain {s:?}: use 1 to 63 lower-case letters, \
                                     digits, '_' and '-'"
                                ),
                            );
                        }
                    }
                }
                "mask" => mask = decode_mask(r, v),
                "migrating" => migrating = r.boolean(v, "`migrating`").unwrap_or(false),
                "search" => search = decode_search(r, v, &format!("{here}.search")),
                _ => r.unknown_key(k, &here, COLUMN_KEYS),
            }
        }
        if !mode_seen {
            r.error(
                &key.span(),
                format!("{here} has no `mode` (one of {MODES})"),
            );
        }
        if !type_seen {
            r.error(
                &key.span(),
                format!("{here} has no `type` (the plaintext type the application sees)"),
            );
        }
        if let (Some(m), Some(t)) = (mode, ty)
            && let Err(why) = m.check_type(&t)
        {
            r.error(&key.span(), format!("mode {m} cannot fit type {t}: {why}"));
        }
        if let (Some(m), Some(t)) = (mask, ty)
            && !m.fits(&t)
        {
            r.error(&key.span(), format!("mask {m} does not fit type {t}"));
        }
        if let (Some(spec), Some(m), Some(t)) = (&search, mode, ty)
            && let Err(why) = check_search(spec, m, &t)
        {
            r.error(&key.span(), format!("{here}.search: {why}"));
        }
        if let Some(name) = name {
            out.push(ColumnDraft {
                name,
                span: key.span(),
                mode,
                ty,
                domain,
                mask,
                migrating,
                search,
                complete: r.problem_count() == problems_before,
            });
        }
    }
}

/// `search = { prefix = 4, trigram = true, exact = true, date = "month", bits = 12 }`.
fn decode_search(r: &mut Reader<'_>, value: &Value<'_>, here: &str) -> Option<SearchSpec> {
    let body = r.table(value, "`search`")?;
    let problems_before = r.problem_count();
    let mut spec = SearchSpec {
        prefix: 0,
        trigram: false,
        exact: false,
        date: None,
        bits: search::DEFAULT_BITS,
    };
    for (k, v) in entries(body) {
        match k.get_ref().as_ref() {
            "prefix" => {
                if let Some(n) = r.count(v, "`prefix`") {
                    match u8::try_from(n) {
                        Ok(n) if (1..=search::MAX_PREFIX).contains(&n) => spec.prefix = n,
                        _ => r.error(
                            &v.span(),
                            format!(
                                "`prefix` is the longest indexed prefix, 1 to {} characters \
                                 (found {n})",
                                search::MAX_PREFIX
                            ),
                        ),
                    }
                }
            }
            "trigram" => spec.trigram = r.boolean(v, "`trigram`").unwrap_or(false),
            "exact" => spec.exact = r.boolean(v, "`exact`").unwrap_or(false),
            "date" => {
                if let Some(s) = r.string(v, "`date`") {
                    spec.date = DateBuckets::parse(s);
                    if spec.date.is_none() {
                        r.error(
                            &v.span(),
                            format!("unknown date buckets {s:?} (expected \"year\" or \"month\")"),
                        );
                    }
                }
            }
            "bits" => {
                if let Some(n) = r.count(v, "`bits`") {
                    match u8::try_from(n) {
                        Ok(n) if (search::MIN_BITS..=search::MAX_BITS).contains(&n) => {
                            spec.bits = n
                        }
                        _ => r.error(
                            &v.span(),
                            format!(
                                "`bits` keeps {} to {} bits of each token (found {n}): fewer \
                                 make every search read most rows, more make tokens of whole \
                                 values close to unique",
                                search::MIN_BITS,
                                search::MAX_BITS
                            ),
                        ),
                    }
                }
            }
            _ => r.unknown_key(k, here, SEARCH_KEYS),
        }
    }
    if spec.is_empty() && r.problem_count() == problems_before {
        r.error(
            &value.span(),
            format!(
                "{here} asks for no index: give `prefix`, `trigram`, `exact` or `date` (or \
                 remove `search`)"
            ),
        );
    }
    (r.problem_count() == problems_before).then_some(spec)
}

/// Whether a column of this mode and type can have these indexes.
fn check_search(spec: &SearchSpec, mode: SealMode, ty: &PlainType) -> Result<(), String> {
    match mode {
        SealMode::Randomized => {}
        SealMode::Deterministic => {
            return Err(
                "search indexes on a deterministic column are not supported yet (its lookups, \
                 joins and GROUP BY compare stored forms, which the tokens would change): make \
                 the column randomized with `exact = true`, which answers equality through \
                 the index"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "search indexes live beside envelopes, so they need a randomized column, not \
                 {other} (a {other} column already answers equality)"
            ));
        }
    }
    if (spec.prefix > 0 || spec.trigram) && !ty.is_character() {
        return Err(format!(
            "`prefix` and `trigram` index characters: they need text, varchar or char, not {ty}"
        ));
    }
    if spec.date.is_some() && !ty.is_dated() {
        return Err(format!(
            "`date` buckets need date, timestamp or timestamptz, not {ty}"
        ));
    }
    Ok(())
}

fn decode_mask(r: &mut Reader<'_>, value: &Value<'_>) -> Option<Mask> {
    let written = r.string(value, "`mask`")?;
    match Mask::parse(written) {
        Ok(m) => Some(m),
        Err(e) => {
            r.error(&value.span(), e.to_string());
            None
        }
    }
}

/// A view written as a string (`"masked"`) or a table (`{ view = "masked", mask = "year" }`).
fn decode_view(r: &mut Reader<'_>, value: &Value<'_>, here: &str) -> Option<ViewDraft> {
    let span = value.span();
    let view_name = |r: &mut Reader<'_>, v: &Value<'_>| {
        let s = r.string(v, "a view")?;
        let kind = ViewKind::parse(s);
        if kind.is_none() {
            r.error(&v.span(), format!("unknown view {s:?} (expected {VIEWS})"));
        }
        kind
    };
    match value.get_ref() {
        DeValue::String(_) => Some(ViewDraft {
            kind: view_name(r, value)?,
            mask: None,
            span,
        }),
        DeValue::Table(t) => {
            let mut kind = None;
            let mut view_seen = false;
            let mut mask = None;
            let mut ok = true;
            for (k, v) in entries(t) {
                match k.get_ref().as_ref() {
                    "view" => {
                        view_seen = true;
                        kind = view_name(r, v);
                        ok &= kind.is_some();
                    }
                    "mask" => {
                        mask = decode_mask(r, v);
                        ok &= mask.is_some();
                    }
                    _ => {
                        r.unknown_key(k, here, VIEW_KEYS);
                        ok = false;
                    }
                }
            }
            if !view_seen {
                r.error(&span, format!("{here} has no `view` (one of {VIEWS})"));
            }
            if let (Some(kind), Some(mask)) = (kind, mask)
                && kind != ViewKind::Masked
            {
                r.error(
                    &span,
                    format!(
                        "a mask applies only to the \"masked\" view, not to {:?} (mask {mask})",
                        kind.name()
                    ),
                );
                ok = false;
            }
            match (ok, kind) {
                (true, Some(kind)) => Some(ViewDraft { kind, mask, span }),
                _ => None,
            }
        }
        other => {
            r.error(
                &span,
                format!(
                    "a view must be a string or a table like {{ view = \"masked\", mask = \
                     \"initial\" }}, found {}",
                    crate::read::kind(other)
                ),
            );
            None
        }
    }
}

fn decode_default(r: &mut Reader<'_>, table: &DeTable<'_>) -> DefaultDraft {
    let mut draft = DefaultDraft::default();
    for (k, v) in entries(table) {
        match k.get_ref().as_ref() {
            "view" => draft.view = decode_view(r, v, "[default].view"),
            "budget" => {
                draft.budget = decode_budget(r, v, &["default", "budget"], BudgetScope::Role)
                    .map(|b| (b, k.span()));
            }
            _ => r.unknown_key(k, "[default]", DEFAULT_KEYS),
        }
    }
    draft
}

fn decode_classes(r: &mut Reader<'_>, table: &DeTable<'_>, out: &mut Vec<ClassDraft>) {
    for (key, value) in entries(table) {
        let name = key.get_ref().as_ref();
        let here = section(&["classes", name]);
        let Some(body) = r.table(value, &format!("class {}", toml_key(name))) else {
            continue;
        };
        if name.is_empty() {
            r.error(&key.span(), "a class name cannot be empty");
        }
        if name == "default" {
            r.error(
                &key.span(),
                "class name \"default\" is reserved for roles in no class: configure them in \
                 [default]",
            );
        }
        let mut class = ClassDraft {
            name: name.to_owned(),
            span: key.span(),
            roles: Vec::new(),
            default_view: None,
            views: Vec::new(),
            budget: None,
            end_user_budget: None,
            require_end_user: false,
            blind_writes: Vec::new(),
            lookups: Vec::new(),
        };
        let mut roles_seen = false;
        for (k, v) in entries(body) {
            match k.get_ref().as_ref() {
                "roles" => {
                    roles_seen = true;
                    let Some(items) = r.array(v, "`roles`") else {
                        continue;
                    };
                    if items.is_empty() {
                        r.error(
                            &v.span(),
                            format!("class {name} has no roles: list its members in `roles`"),
                        );
                    }
                    for item in items {
                        let Some(written) = r.string(item, "a role") else {
                            continue;
                        };
                        match parse_identifier(written) {
                            Ok(role) => class.roles.push((role, item.span())),
                            Err(e) => {
                                r.error(&item.span(), format!("invalid role {written:?}: {e}"))
                            }
                        }
                    }
                }
                "default" => {
                    if let Some(view) = decode_view(r, v, &format!("{here}.default")) {
                        if view.mask.is_some() {
                            r.error(
                                &view.span,
                                "a class's default view takes no mask: each column's own `mask` \
                                 applies",
                            );
                        } else {
                            class.default_view = Some(view);
                        }
                    }
                }
                "views" => {
                    let Some(views) = r.table(v, "`views`") else {
                        continue;
                    };
                    let views_here = section(&["classes", name, "views"]);
                    for (ck, cv) in entries(views) {
                        let written = ck.get_ref().as_ref();
                        let column = column_name(r, written, &ck.span());
                        let view_here = format!("{views_here} {}", toml_key(written));
                        if let (Some(column), Some(view)) = (column, decode_view(r, cv, &view_here))
                        {
                            class.views.push((column, view));
                        }
                    }
                }
                "budget" => {
                    class.budget =
                        decode_budget(r, v, &["classes", name, "budget"], BudgetScope::Role)
                            .map(|b| (b, k.span()));
                }
                "end_user_budget" => {
                    class.end_user_budget = decode_budget(
                        r,
                        v,
                        &["classes", name, "end_user_budget"],
                        BudgetScope::EndUser,
                    );
                }
                "require_end_user" => {
                    class.require_end_user = r.boolean(v, "`require_end_user`").unwrap_or(false);
                }
                "blind_writes" => class.blind_writes = column_list(r, v, "`blind_writes`"),
                "lookups" => class.lookups = column_list(r, v, "`lookups`"),
                _ => r.unknown_key(k, &here, CLASS_KEYS),
            }
        }
        if !roles_seen {
            r.error(
                &key.span(),
                format!("class {name} has no roles: list its members in `roles`"),
            );
        }
        out.push(class);
    }
}

fn decode_budget(
    r: &mut Reader<'_>,
    value: &Value<'_>,
    path: &[&str],
    scope: BudgetScope,
) -> Option<Budget> {
    let here = section(path);
    let table = r.table(value, &format!("`{}`", path[path.len() - 1]))?;
    let mut ok = true;
    let mut rate_seen = false;
    let mut rate = None;
    let mut burst = None;
    let mut per_hour: Option<(u64, Range<usize>)> = None;
    let mut per_day = None;
    let mut action = Action::Throttle;
    let mut on_cap = Action::Block;
    let mut counts = Counting::SealedTables;
    for (k, v) in entries(table) {
        let key = k.get_ref().as_ref();
        match key {
            "rate" => {
                rate_seen = true;
                match r.string(v, "`rate`").map(Rate::parse) {
                    Some(Ok(parsed)) => rate = Some(parsed),
                    Some(Err(e)) => r.error(&v.span(), e.to_string()),
                    None => {}
                }
            }
            "burst" | "per_hour" | "per_day" => {
                let Some(n) = r.count(v, &format!("`{key}`")) else {
                    ok = false;
                    continue;
                };
                if n == 0 {
                    let why = if key == "burst" {
                        "burst must be at least 1 row".to_owned()
                    } else {
                        format!(
                            "{key} = 0 lets no row through: to forbid a column, give it the \
                             view \"denied\""
                        )
                    };
                    r.error(&v.span(), why);
                    ok = false;
                }
                match key {
                    "burst" => burst = Some(n),
                    "per_hour" => per_hour = Some((n, v.span())),
                    _ => per_day = Some(n),
                }
            }
            "action" | "on_cap" => {
                let Some(s) = r.string(v, &format!("`{key}`")) else {
                    ok = false;
                    continue;
                };
                match Action::parse(s) {
                    Some(Action::Throttle) if key == "on_cap" => {
                        r.error(
                            &v.span(),
                            "on_cap = \"throttle\" makes no sense: a cap only frees up as the \
                             hour or day rolls on, so use \"block\" or \"alert\"",
                        );
                        ok = false;
                    }
                    Some(a) if key == "action" => action = a,
                    Some(a) => on_cap = a,
                    None => {
                        r.error(
                            &v.span(),
                            format!("unknown {key} {s:?} (expected throttle, block or alert)"),
                        );
                        ok = false;
                    }
                }
            }
            "counts" => match r.string(v, "`counts`") {
                Some("sealed") => counts = Counting::SealedTables,
                Some("all") => counts = Counting::AllRows,
                Some(s) => {
                    r.error(
                        &v.span(),
                        format!("unknown counts {s:?} (expected \"sealed\" or \"all\")"),
                    );
                    ok = false;
                }
                None => ok = false,
            },
            _ => {
                r.unknown_key(k, &here, BUDGET_KEYS);
                ok = false;
            }
        }
    }
    if !rate_seen {
        r.error(
            &value.span(),
            format!("{here} has no `rate` (for example rate = \"100/minute\")"),
        );
    }
    if let (Some((h, span)), Some(d)) = (&per_hour, per_day)
        && *h > d
    {
        r.error(
            span,
            format!("per_hour {h} is above per_day {d}: the hourly cap could never be reached"),
        );
        ok = false;
    }
    let rate = rate?;
    if !ok {
        return None;
    }
    Some(Budget {
        rate,
        burst: burst.unwrap_or(rate.rows),
        per_hour: per_hour.map(|(h, _)| h),
        per_day,
        action,
        on_cap,
        counts,
        scope,
    })
}
