//! Subqueries of a `WHERE` pgseal evaluates: `EXISTS (SELECT … WHERE <sealed test>)` and
//! `x IN (SELECT y … WHERE <sealed test>)`, the way ORMs search a related table (a patient
//! found by a contact value, a name in a names table).
//!
//! The subquery keeps its `FROM` and its unsealed conjuncts; its sealed conjuncts become
//! pgseal's, over hidden values of each of its rows. The server is asked, for every row of the
//! outer query, for the rows of the subquery as an array of records:
//! `ARRAY(SELECT ROW(<hidden values>) FROM … WHERE <unsealed conjuncts>)`, and pgseal keeps
//! the outer row when one of them passes the sealed conjuncts ([`Pred::Any`]). For `IN`, the
//! match `(x) = (y)` moves into the subquery's `WHERE`, so that the server can find the
//! subquery's rows of one outer row by an index on `y` (a foreign key's, usually).
//!
//! Exactness: `EXISTS` is never NULL, so its test is exact under `NOT` too; a positive
//! `LIMIT` in it (Django's `Exists` writes `LIMIT 1`) changes nothing and is dropped. `x IN
//! (…)` is NULL rather than FALSE when no `y` equals `x` but `x` or some `y` is NULL; a `WHERE`
//! keeps only TRUE, so where no `NOT` is above it the rows whose match is NULL are left out,
//! and under `NOT` (`NOT IN`, Django's `exclude`) they are sent too, with their match, so that
//! pgseal computes the NULL ([`Match::Nullable`]; the server then cannot find the rows by the
//! index on `y` alone). `x` is moved inside the subquery only when it is qualified by a
//! relation the subquery does not define (so that it still names the same column there).

use std::ops::Range;

use sqlparser::ast::{Expr, LimitClause, Query, SelectItem, Value};

use super::clauses::{self, Clauses};
use super::evaluable::Builder;
use super::evaluation::{Hidden, Pred, SubqueryText};
use super::expr::Val;
use super::names::fold;
use super::planner::Planner;
use super::scope::Frame;

/// How `x IN (…)` must tell its NULL from FALSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Match {
    /// Not at all (no `NOT` above it): only rows whose match is TRUE are sent.
    Strict,
    /// Exactly (under `NOT`): rows whose match is NULL are sent too, with it.
    Nullable,
}

impl<'a> Planner<'a> {
    /// `EXISTS (query)` (`outer` `None`) or `outer IN (query)`, over the tokens `range`, as a
    /// test of some row of the subquery; an error (the refusal stands) when it does not fit.
    pub(crate) fn subquery_pred(
        &mut self,
        query: &'a Query,
        outer: Option<(&'a Expr, Match)>,
        range: &Range<usize>,
        builder: &mut Builder,
    ) -> Result<Pred, String> {
        // `EXISTS (… LIMIT n)`, n > 0: whether a row exists does not depend on it.
        let exists_limit = outer.is_none()
            && matches!(&query.limit_clause, Some(LimitClause::LimitOffset {
                limit: Some(Expr::Value(v)),
                offset: None,
                limit_by,
            }) if limit_by.is_empty()
                && matches!(&v.value, Value::Number(n, false) if n.parse::<u64>().is_ok_and(|n| n > 0)));
        let select = match query.body.as_ref() {
            sqlparser::ast::SetExpr::Select(select)
                if query.with.is_none()
                    && query.order_by.is_none()
                    && (query.limit_clause.is_none() || exists_limit)
                    && query.fetch.is_none()
                    && query.locks.is_empty()
                    && select.distinct.is_none() =>
            {
                select.as_ref()
            }
            _ => return Err("a subquery with more than SELECT … FROM … WHERE".into()),
        };
        // The subquery's tokens: from its SELECT to the parenthesis that closes it, which ends
        // the condition.
        let select_index = self
            .src
            .range(select.select_token.0.span)
            .and_then(|r| self.src.token_at(r.start))
            .filter(|&i| i > range.start && i < range.end)
            .ok_or("the subquery could not be located")?;
        let inside = clauses::inside_parentheses(self.src, &(select_index - 1..range.end))
            .ok_or("the subquery could not be located")?;
        let clauses = Clauses::of(self.src, inside.clone(), select_index)
            .filter(|c| c.order_start.is_none() && (c.limit_start.is_none() || exists_limit))
            .ok_or("the subquery's clauses could not be located")?;
        // Where the subquery's text ends for pgseal: before its dropped LIMIT.
        let end = match clauses.limit_start {
            Some(limit) => self
                .src
                .tok(limit)
                .map(|t| t.range.start)
                .ok_or("the subquery's LIMIT could not be located")?,
            None => {
                self.bytes(&inside)
                    .ok_or("the subquery could not be located")?
                    .end
            }
        };
        let selection = select
            .selection
            .as_ref()
            .ok_or("a subquery without WHERE")?;
        // Its select list is dropped (EXISTS) or moved into its WHERE (IN): an aggregate,
        // window or set-returning function there would change how many rows it has.
        if self.calls_row_functions(&clauses.projection) {
            return Err(
                "an aggregate, window or set-returning function in a subquery's select list".into(),
            );
        }
        // A parameter in a dropped select list (Django binds EXISTS's `SELECT 1 AS "a"` as
        // `SELECT $1 AS "a"`) must still be typed: as text, as PostgreSQL types an untyped
        // parameter in a select list, through the statement's keeper of consumed parameters
        // when it appears nowhere else.
        if outer.is_none() {
            for i in clauses.projection.clone() {
                if let Some(sqlparser::tokenizer::Token::Placeholder(name)) =
                    self.src.tok(i).map(|t| &t.token)
                {
                    let index = name
                        .strip_prefix('$')
                        .and_then(|n| n.parse::<u16>().ok())
                        .ok_or("a parameter in an EXISTS subquery's select list")?;
                    builder.param_type(index, "text");
                }
            }
        }
        let where_tokens = clauses
            .selection
            .clone()
            .ok_or("the subquery's WHERE could not be located")?;
        let outer_text = match outer {
            Some((expr, _)) => Some(self.outer_operand(expr, range, select_index)?),
            None => None,
        };
        let nullable = matches!(outer, Some((_, Match::Nullable)));
        let before = self.counts().0;
        self.frames.push(Frame::default());
        for from in &select.from {
            self.table_with_joins(from);
        }
        let relations: Vec<String> = self
            .frames
            .last()
            .map(|f| f.relations.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        let outputs = self.projection(&select.projection);
        let mut sub = builder.nested(clauses.clone());
        self.evaluated_where(selection, &mut sub);
        self.frames.pop();
        let (mut fields, filter, removed, copied) = builder.merge_nested(sub);
        if self.counts().0 != before {
            return Err("the subquery holds what pgseal refuses".into());
        }
        if filter.is_empty() {
            return Err("a subquery pgseal does not filter".into());
        }
        // `x IN (SELECT y …)`: one unsealed output, and `x` names the same thing inside.
        let matched = match &outer_text {
            None => None,
            Some((qualifier, x)) => {
                if relations.contains(qualifier) {
                    return Err("the outer value's relation is also the subquery's".into());
                }
                let plain_output = matches!(outputs.positional().as_deref(),
                    Some([col]) if col.sealed.is_empty() && col.row.is_empty());
                if !plain_output
                    || !matches!(select.projection.as_slice(), [SelectItem::UnnamedExpr(_)])
                {
                    return Err("IN (subquery) of other than one unsealed value".into());
                }
                let y = self
                    .bytes(&clauses.projection)
                    .ok_or("the subquery's output could not be located")?;
                Some((x.clone(), self.src.slice(&y).to_string()))
            }
        };
        let removed_bytes = removed
            .iter()
            .map(|r| self.bytes(r).ok_or("a condition could not be located"))
            .collect::<Result<Vec<_>, _>>()?;
        let where_bytes = self
            .bytes(&where_tokens)
            .ok_or("the subquery's WHERE could not be located")?;
        let projection_bytes = self
            .bytes(&clauses.projection)
            .ok_or("the subquery's output could not be located")?;
        let inside_bytes = self
            .bytes(&inside)
            .ok_or("the subquery could not be located")?;
        if removed_bytes.len() != filter.len()
            || where_bytes.end > end
            || !self.src.slice(&(where_bytes.end..end)).trim().is_empty()
            || removed_bytes
                .windows(2)
                .any(|pair| pair[0].end > pair[1].start)
        {
            return Err("the subquery's conditions could not be located".into());
        }
        // The condition's text between pgseal's conjuncts.
        let mut pieces = Vec::with_capacity(removed_bytes.len() + 1);
        let mut at = where_bytes.start;
        for range in &removed_bytes {
            pieces.push(self.src.slice(&(at..range.start)).to_string());
            at = range.end;
        }
        pieces.push(self.src.slice(&(at..where_bytes.end)).to_string());
        // Under NOT, each row's match goes with it, for pgseal to tell NULL from FALSE.
        let match_field = match (&matched, nullable) {
            (Some((x, y)), true) => {
                fields.push((Hidden::Boolean, format!("(({x}) = ({y}))")));
                Some(fields.len() - 1)
            }
            _ => None,
        };
        let text = SubqueryText {
            from: format!(
                " {}",
                self.src
                    .slice(&(projection_bytes.end..where_bytes.start))
                    .trim_start()
            ),
            pieces,
            matched,
            nullable,
            fields: fields.iter().map(|(_, text)| text.clone()).collect(),
        };
        // What of the subquery reaches the server (its parameters there are sent): all but
        // its select list and its sealed conjuncts, plus the hidden values' own texts.
        builder.copy(copied);
        let mut kept_out = removed_bytes;
        // For IN, the select list's `y` is sent (in the match); for EXISTS it is dropped.
        if text.matched.is_none() {
            kept_out.push(projection_bytes);
        }
        kept_out.push(end..inside_bytes.end);
        builder.copy(complement(&inside_bytes, &kept_out));
        let hidden = Hidden::Rows(fields.into_iter().map(|(h, _)| h).collect());
        let rows = builder.hidden_index(hidden, text.rows_sql());
        Ok(Pred::Any {
            rows,
            filter,
            text: Box::new(text),
            matched: match_field,
        })
    }

    /// The text of `x` in `x IN (subquery)` and the relation qualifying it: a qualified column
    /// (`a.id`, `s.t.id`), which stays the same column inside the subquery unless the
    /// subquery defines a relation of that name; or a column named alone when the statement
    /// reads one relation, which then qualifies it (`id` becomes `"p".id`).
    fn outer_operand(
        &mut self,
        expr: &'a Expr,
        range: &Range<usize>,
        select_index: usize,
    ) -> Result<(String, String), String> {
        let mut inner = expr;
        while let Expr::Nested(e) = inner {
            inner = e;
        }
        let (qualifier, prefix) = match inner {
            Expr::CompoundIdentifier(parts) if (2..=3).contains(&parts.len()) => {
                (fold(&parts[parts.len() - 2]), String::new())
            }
            Expr::Identifier(_) if matches!(expr, Expr::Identifier(_)) => {
                let mut relations = self.frames.iter().flat_map(|f| f.relations.iter());
                match (relations.next(), relations.next()) {
                    (Some(only), None) => (
                        only.name.clone(),
                        format!("\"{}\".", only.name.replace('"', "\"\"")),
                    ),
                    _ => return Err("IN (subquery) of a column of one of several relations".into()),
                }
            }
            _ => return Err("IN (subquery) of other than a column".into()),
        };
        let before = self.counts().0;
        let value = self.value(expr);
        if self.counts().0 != before || matches!(value, Val::Sealed { .. } | Val::Row(_)) {
            return Err("IN (subquery) of a sealed value".into());
        }
        // `x IN (`: the tokens before the subquery's parenthesis.
        let in_index = select_index
            .checked_sub(2)
            .filter(|&i| i > range.start)
            .ok_or("IN could not be located")?;
        if !self
            .src
            .tok(in_index)
            .is_some_and(|t| clauses::is_keyword(&t.token, "in"))
        {
            return Err("IN could not be located".into());
        }
        // `x NOT IN (`: `x` ends before the NOT.
        let end = if self
            .src
            .tok(in_index - 1)
            .is_some_and(|t| clauses::is_keyword(&t.token, "not"))
        {
            in_index - 1
        } else {
            in_index
        };
        let bytes = self
            .bytes(&(range.start..end))
            .ok_or("the outer value could not be located")?;
        Ok((qualifier, format!("{prefix}{}", self.src.slice(&bytes))))
    }
}

/// The parts of `base` outside every range of `holes`.
fn complement(base: &Range<usize>, holes: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut holes: Vec<&Range<usize>> = holes.iter().collect();
    holes.sort_by_key(|r| r.start);
    let mut out = Vec::new();
    let mut at = base.start;
    for hole in holes {
        if hole.start > at {
            out.push(at..hole.start.min(base.end));
        }
        at = at.max(hole.end);
    }
    if at < base.end {
        out.push(at..base.end);
    }
    out
}
