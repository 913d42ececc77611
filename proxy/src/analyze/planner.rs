//! The state of one statement's analysis: the scope stack and everything found so far, with
//! the helpers every walker uses to record reads, writes, seal sites and refusals, and to find
//! the exact text of a value.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use pgseal_policies::ColumnId;
use sqlparser::ast::{CastKind, Expr, Spanned, UnaryOperator, Value};
use sqlparser::tokenizer::Token;

use super::names::Names;
use super::plan::{
    ColumnMatch, Purpose, Refusal, RefusalKind, SealSite, SiteValue, StatementKind, StatementPlan,
    TableRef,
};
use super::scan;
use super::scope::Frame;
use super::spans::Source;

/// A value located in the text: what to seal, what to delete around it, and its whole extent.
#[derive(Clone, Debug)]
pub(crate) struct Located {
    /// The literal or parameter.
    pub value: SiteValue,
    /// Casts around it to delete.
    pub strip: Vec<Range<usize>>,
    /// The value with its casts and parentheses.
    pub extent: Range<usize>,
}

/// One statement's analysis in progress.
pub(crate) struct Planner<'a> {
    /// Policy lookups.
    pub names: Names<'a>,
    /// The text and its tokens.
    pub src: &'a Source<'a>,
    /// Scopes, innermost last.
    pub frames: Vec<Frame<'a>>,
    sealed_tables: Vec<TableRef>,
    reads: BTreeSet<ColumnId>,
    writes: BTreeSet<ColumnId>,
    /// Seal sites, each with the start of its value's extent (for text order).
    sites: Vec<(usize, SealSite)>,
    refusals: Vec<Refusal>,
    column_matches: Vec<ColumnMatch>,
    /// Set by DDL that changes the catalog.
    pub changes_catalog: bool,
    /// The first aggregate or constructor met that folds many rows' values into one value
    /// (`array_agg`, `string_agg`, `ARRAY(SELECT …)`…): refused at the end when the statement
    /// touches a sealed table, since a budget counts the rows that leave.
    pub folds_rows: Option<String>,
    /// The evaluation being built for the top-level `SELECT`, taken by the first `SELECT`
    /// walked (so subqueries never see it).
    pub evaluation: Option<super::evaluable::Builder>,
}

/// A copy of what a planner has found, to undo a trial pass (recursive CTEs).
pub(crate) struct Snapshot {
    sealed_tables: usize,
    reads: BTreeSet<ColumnId>,
    writes: BTreeSet<ColumnId>,
    sites: usize,
    refusals: usize,
    column_matches: usize,
}

impl Snapshot {
    /// Refusals recorded when it was taken.
    pub fn refusal_count(&self) -> usize {
        self.refusals
    }

    /// Seal sites recorded when it was taken.
    pub fn site_count(&self) -> usize {
        self.sites
    }
}

impl<'a> Planner<'a> {
    /// A planner for one statement.
    pub fn new(names: Names<'a>, src: &'a Source<'a>) -> Self {
        Planner {
            names,
            src,
            frames: Vec::new(),
            sealed_tables: Vec::new(),
            reads: BTreeSet::new(),
            writes: BTreeSet::new(),
            sites: Vec::new(),
            refusals: Vec::new(),
            column_matches: Vec::new(),
            changes_catalog: false,
            folds_rows: None,
            evaluation: None,
        }
    }

    /// Records a table the statement touches (kept only when sealed).
    pub fn table_seen(&mut self, table: &TableRef) {
        if self.names.is_sealed(table) && !self.sealed_tables.contains(table) {
            self.sealed_tables.push(table.clone());
        }
    }

    /// True while no sealed table has been seen.
    pub fn sealed_tables_empty(&self) -> bool {
        self.sealed_tables.is_empty()
    }

    /// Records sealed columns the statement reads.
    pub fn read(&mut self, ids: &[ColumnId]) {
        self.reads.extend(ids.iter().copied());
    }

    /// Records a sealed column the statement writes.
    pub fn write(&mut self, id: ColumnId) {
        self.writes.insert(id);
    }

    /// Records a refusal.
    pub fn refuse(&mut self, column: Option<ColumnId>, kind: RefusalKind, reason: String) {
        let refusal = Refusal {
            column,
            kind,
            reason,
        };
        if !self.refusals.contains(&refusal) {
            self.refusals.push(refusal);
        }
    }

    /// Refuses an operation on a sealed column: "`what` on sealed column s.t.c (mode)".
    pub fn refuse_op(&mut self, id: ColumnId, what: &str) {
        let reason = format!("{what} on sealed column {}", self.names.describe(id));
        self.refuse(Some(id), RefusalKind::Unsupported, reason);
    }

    /// Refuses because pgseal cannot analyse a construct that mentions sealed data.
    pub fn refuse_unanalysable(&mut self, column: Option<ColumnId>, reason: String) {
        self.refuse(column, RefusalKind::Unanalysable, reason);
    }

    /// Records a seal site.
    pub fn site(&mut self, located: Located, column: ColumnId, purpose: Purpose) {
        let site = SealSite {
            value: located.value,
            column,
            purpose,
            strip: located.strip,
        };
        self.sites.push((located.extent.start, site));
    }

    /// How many seal sites are recorded so far.
    pub fn site_total(&self) -> usize {
        self.sites.len()
    }

    /// Adds `span` to the spans deleted around the first seal site recorded since `since`
    /// for `column` (a cast that applies to every row's value, deleted once); false when
    /// there is none.
    pub fn strip_at_first_site(
        &mut self,
        since: usize,
        column: ColumnId,
        span: Range<usize>,
    ) -> bool {
        let since = since.min(self.sites.len());
        match self.sites[since..]
            .iter_mut()
            .find(|(_, site)| site.column == column)
        {
            Some((_, site)) => {
                site.strip.push(span);
                true
            }
            None => false,
        }
    }

    /// Records an equality between sealed columns of one domain.
    pub fn column_match(&mut self, left: ColumnId, right: ColumnId, span: Range<usize>) {
        self.column_matches.push(ColumnMatch { left, right, span });
    }

    /// Forgets the last recorded column match (set operations compare without joining).
    pub fn forget_last_match(&mut self) {
        self.column_matches.pop();
    }

    /// Refuses `construct` when its text mentions a sealed table or column: for parts of the
    /// AST the analyzer does not walk.
    pub fn opaque(&mut self, construct: &str, text: &str) {
        for table in scan::sealed_tables_in(text, self.names.policy) {
            self.table_seen(&table);
        }
        if scan::mentions_sealed(text, self.names.policy) {
            self.refuse_unanalysable(
                None,
                format!("pgseal cannot analyse {construct} where it mentions sealed data"),
            );
        }
    }

    /// Saves what was found so far.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sealed_tables: self.sealed_tables.len(),
            reads: self.reads.clone(),
            writes: self.writes.clone(),
            sites: self.sites.len(),
            refusals: self.refusals.len(),
            column_matches: self.column_matches.len(),
        }
    }

    /// Forgets what was found since a snapshot.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.sealed_tables.truncate(snapshot.sealed_tables);
        self.reads = snapshot.reads;
        self.writes = snapshot.writes;
        self.sites.truncate(snapshot.sites);
        self.refusals.truncate(snapshot.refusals);
        self.column_matches.truncate(snapshot.column_matches);
    }

    /// The finished plan.
    pub fn finish(mut self, kind: StatementKind, span: Range<usize>) -> StatementPlan {
        self.check_params(&span);
        if let Some(fold) = self.folds_rows.take()
            && !self.sealed_tables.is_empty()
        {
            let tables: Vec<String> = self.sealed_tables.iter().map(ToString::to_string).collect();
            let reason = format!(
                "{fold} folds many rows into one value in a statement on sealed table {}, which \
                 an export budget would count as one row: select the rows themselves (each is \
                 counted) or aggregate them in the application",
                tables.join(", ")
            );
            self.refuse(None, RefusalKind::Unsupported, reason);
        }
        self.sites.sort_by_key(|(position, _)| *position);
        StatementPlan {
            span,
            kind,
            sealed_tables: self.sealed_tables,
            reads: self.reads.into_iter().collect(),
            writes: self.writes.into_iter().collect(),
            sites: self.sites.into_iter().map(|(_, site)| site).collect(),
            refusals: self.refusals,
            column_matches: self.column_matches,
            copy: None,
            prepared: None,
            changes_catalog: self.changes_catalog,
            reads_only: false,
            evaluation: None,
            declared: None,
        }
    }

    /// A `$n` that is sealed in one place must be sealed the same way everywhere it appears:
    /// the session seals a bound value once. Refused when its sites disagree on the column's
    /// domain or mode, or when it also appears where nothing is sealed.
    fn check_params(&mut self, span: &Range<usize>) {
        let mut sites: BTreeMap<u16, Vec<ColumnId>> = BTreeMap::new();
        for (_, site) in &self.sites {
            if let SiteValue::Param { index, .. } = site.value {
                sites.entry(index).or_default().push(site.column);
            }
        }
        if sites.is_empty() {
            return;
        }
        let mut occurrences: BTreeMap<u16, usize> = BTreeMap::new();
        for tok in self.src.tokens() {
            if tok.range.start < span.start || tok.range.end > span.end {
                continue;
            }
            if let Token::Placeholder(p) = &tok.token {
                if let Some(index) = param_index(p) {
                    *occurrences.entry(index).or_default() += 1;
                }
            }
        }
        for (index, columns) in sites {
            let first = columns[0];
            if let Some(&other) = columns.iter().find(|&&c| !self.names.copyable(first, c)) {
                let reason = format!(
                    "parameter ${index} is bound for sealed columns {} and {}, sealed \
                     differently: use two parameters",
                    self.names.describe(first),
                    self.names.describe(other)
                );
                self.refuse_unanalysable(Some(first), reason);
            } else if occurrences.get(&index).copied().unwrap_or(0) > columns.len() {
                let reason = format!(
                    "parameter ${index} is bound for sealed column {} and also used where it \
                     would not be sealed: use two parameters",
                    self.names.describe(first)
                );
                self.refuse_unanalysable(Some(first), reason);
            }
        }
    }

    /// Locates a literal or parameter (possibly under casts, parentheses, a typed-string
    /// prefix or a minus sign) exactly in the text; the error says why it cannot.
    pub fn locate(&self, expr: &Expr) -> Result<Located, String> {
        match expr {
            Expr::Value(v) => {
                let span = self
                    .src
                    .range(v.span)
                    .ok_or_else(|| "no position for a literal".to_string())?;
                let value = self.literal_at(&v.value, &span)?;
                Ok(Located {
                    value,
                    strip: Vec::new(),
                    extent: span,
                })
            }
            Expr::Nested(inner) => {
                let located = self.locate(inner)?;
                let extent = self
                    .src
                    .parenthesized(&located.extent)
                    .ok_or_else(|| "cannot find the parentheses around a value".to_string())?;
                Ok(Located { extent, ..located })
            }
            Expr::Cast {
                kind,
                expr: inner,
                format: None,
                ..
            } => {
                let mut located = self.locate(inner)?;
                match kind {
                    CastKind::DoubleColon => {
                        let end = self
                            .src
                            .double_colon_cast_end(&located.extent, expr)
                            .ok_or_else(|| "cannot find the extent of a ::cast".to_string())?;
                        located.strip.push(located.extent.end..end);
                        located.extent = located.extent.start..end;
                    }
                    CastKind::Cast => {
                        let extent = self
                            .src
                            .cast_call_extent(&located.extent, expr)
                            .ok_or_else(|| "cannot find the extent of a CAST(…)".to_string())?;
                        located.strip.push(extent.start..located.extent.start);
                        located.strip.push(located.extent.end..extent.end);
                        located.extent = extent;
                    }
                    CastKind::TryCast | CastKind::SafeCast => {
                        return Err("TRY_CAST/SAFE_CAST is not PostgreSQL".into());
                    }
                }
                Ok(located)
            }
            Expr::TypedString(typed) if !typed.uses_odbc_syntax => {
                let span = self
                    .src
                    .range(typed.value.span)
                    .ok_or_else(|| "no position for a typed literal".to_string())?;
                let value = self.literal_at(&typed.value.value, &span)?;
                let start = self
                    .src
                    .typed_string_start(&span, expr)
                    .ok_or_else(|| "cannot find the type of a typed literal".to_string())?;
                let strip = std::iter::once(start..span.start).collect();
                Ok(Located {
                    value,
                    strip,
                    extent: start..span.end,
                })
            }
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: inner,
            } => match inner.as_ref() {
                Expr::Value(v) => {
                    let Value::Number(number, false) = &v.value else {
                        return Err("a minus sign before a non-number".into());
                    };
                    let span = self
                        .src
                        .range(v.span)
                        .ok_or_else(|| "no position for a number".to_string())?;
                    self.literal_at(&v.value, &span)?;
                    let start = self
                        .src
                        .minus_before(&span)
                        .ok_or_else(|| "cannot find a minus sign".to_string())?;
                    Ok(Located {
                        value: SiteValue::Literal {
                            span: start..span.end,
                            text: format!("-{number}"),
                        },
                        strip: Vec::new(),
                        extent: start..span.end,
                    })
                }
                _ => Err("a minus sign before an expression".into()),
            },
            _ => Err("not a literal or parameter".into()),
        }
    }

    /// The literal a value token holds, checked against the token at its span.
    fn literal_at(&self, value: &Value, span: &Range<usize>) -> Result<SiteValue, String> {
        let index = self
            .src
            .token_at(span.start)
            .ok_or_else(|| "no token at a literal's position".to_string())?;
        let token = self
            .src
            .tok(index)
            .ok_or_else(|| "no token at a literal's position".to_string())?;
        if token.range != *span {
            return Err("a literal's position does not match its token".into());
        }
        let text = match (value, &token.token) {
            (Value::SingleQuotedString(v), Token::SingleQuotedString(t))
            | (Value::EscapedStringLiteral(v), Token::EscapedStringLiteral(t))
            | (Value::UnicodeStringLiteral(v), Token::UnicodeStringLiteral(t))
            | (Value::NationalStringLiteral(v), Token::NationalStringLiteral(t))
                if v == t =>
            {
                v.clone()
            }
            (Value::DollarQuotedString(v), Token::DollarQuotedString(t)) if v == t => {
                v.value.clone()
            }
            (Value::Number(v, false), Token::Number(t, false)) if v == t => v.clone(),
            (Value::Boolean(b), Token::Word(w))
                if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(&b.to_string()) =>
            {
                b.to_string()
            }
            (Value::Placeholder(v), Token::Placeholder(t)) if v == t => {
                let index =
                    param_index(v).ok_or_else(|| format!("parameter {v} is not of the form $n"))?;
                return Ok(SiteValue::Param { index });
            }
            _ => return Err("this kind of literal cannot be sealed".into()),
        };
        Ok(SiteValue::Literal {
            span: span.clone(),
            text,
        })
    }

    /// The exact extent of a column reference or value: identifiers, parentheses, values and
    /// their casts.
    pub fn extent(&self, expr: &Expr) -> Option<Range<usize>> {
        match expr {
            Expr::Identifier(ident) => self.src.range(ident.span),
            Expr::CompoundIdentifier(idents) => {
                let first = self.src.range(idents.first()?.span)?;
                let last = self.src.range(idents.last()?.span)?;
                (first.start <= last.end).then_some(first.start..last.end)
            }
            Expr::Nested(inner) => self.src.parenthesized(&self.extent(inner)?),
            _ => self.locate(expr).ok().map(|l| l.extent),
        }
    }

    /// A rough byte range for messages and [`ColumnMatch`]: the extent when known, else
    /// sqlparser's span of the expression, else empty.
    pub fn rough_range(&self, expr: &Expr) -> Range<usize> {
        self.extent(expr)
            .or_else(|| self.src.range(expr.span()))
            .unwrap_or(0..0)
    }
}

/// `$n` → n (1-based, fits in u16).
pub(crate) fn param_index(placeholder: &str) -> Option<u16> {
    let digits = placeholder.strip_prefix('$')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&n| n >= 1)
}
