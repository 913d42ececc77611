//! The token structure of a statement's outermost `SELECT`: where its clauses start and end,
//! and how a clause splits into items (conjuncts, `OR` terms, comma-separated keys).
//!
//! Evaluation inside pgseal rewrites a statement by byte ranges (a conjunct replaced, the
//! `ORDER BY … LIMIT …` tail removed, sort keys copied into hidden columns), so it needs exact
//! extents, which the parser's spans do not always give. They come from the tokens here, at
//! parenthesis depth 0 of the statement, and the caller checks that each split has as many
//! pieces as the parsed expression has terms before trusting it.

use std::ops::Range;

use sqlparser::tokenizer::{Token, Word};

use super::spans::Source;

/// Token index ranges of one `SELECT`'s clauses (each excludes its keyword).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Clauses {
    /// The `SELECT` keyword's token.
    pub select: usize,
    /// The select list.
    pub projection: Range<usize>,
    /// The `WHERE` condition, when there is one.
    pub selection: Option<Range<usize>>,
    /// The first token of `ORDER BY` (the `ORDER`), when there is one.
    pub order_start: Option<usize>,
    /// The sort keys (after `ORDER BY`), up to `LIMIT`/`OFFSET`/`FETCH`/`FOR` or the end.
    pub order_keys: Option<Range<usize>>,
    /// The first token of `LIMIT`, `OFFSET` or `FETCH`, when there is one.
    pub limit_start: Option<usize>,
    /// The `SELECT` has `GROUP BY` or `HAVING` (both stay the server's).
    pub grouped: bool,
    /// One past the statement's last token.
    pub end: usize,
}

/// Whether a token is the unquoted keyword `word` (case-insensitive).
pub(crate) fn is_keyword(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(word))
}

/// The parenthesis depth change of a token.
fn depth_change(token: &Token) -> i32 {
    match token {
        Token::LParen | Token::LBracket => 1,
        Token::RParen | Token::RBracket => -1,
        // `CASE … END` nests like parentheses: an `AND` or `OR` inside it is not the clause's.
        t if is_keyword(t, "case") => 1,
        t if is_keyword(t, "end") => -1,
        _ => 0,
    }
}

/// Whether token `i` is the keyword `word` (not a name after a `.`: `t.order`, `t.and`).
fn keyword_at(src: &Source<'_>, i: usize, word: &str) -> bool {
    let after_dot = i
        .checked_sub(1)
        .and_then(|p| src.tok(p))
        .is_some_and(|t| t.token == Token::Period);
    !after_dot && src.tok(i).is_some_and(|t| is_keyword(&t.token, word))
}

/// The token indexes of `tokens` (a range of the source) that stand at depth 0, relative to
/// the range's start; `None` when the parentheses do not balance inside the range.
fn depth_zero(src: &Source<'_>, range: &Range<usize>) -> Option<Vec<usize>> {
    let mut depth = 0i32;
    let mut out = Vec::new();
    for i in range.clone() {
        let token = &src.tok(i)?.token;
        let change = depth_change(token);
        if change < 0 {
            depth += change;
            if depth < 0 {
                return None;
            }
            continue;
        }
        if depth == 0 {
            out.push(i);
        }
        depth += change;
    }
    (depth == 0).then_some(out)
}

impl Clauses {
    /// The clauses of the statement whose tokens are `tokens` (indexes into the source) and
    /// whose `SELECT` keyword is at `select`; `None` when the structure is not the plain
    /// `SELECT … FROM … [WHERE …] [GROUP BY …] [HAVING …] [ORDER BY …] [LIMIT/OFFSET …]`
    /// this module handles.
    pub fn of(src: &Source<'_>, tokens: Range<usize>, select: usize) -> Option<Clauses> {
        let level = depth_zero(src, &(select..tokens.end))?;
        let word = |i: usize, w: &str| keyword_at(src, i, w);
        let mut from = None;
        let mut selection_start = None;
        let mut order_start = None;
        let mut limit_start = None;
        let mut group_start = None;
        let mut having_start = None;
        let mut clause_ends = Vec::new();
        for (n, &i) in level.iter().enumerate() {
            if i == select {
                continue;
            }
            let previous = n.checked_sub(1).map(|p| level[p]);
            if word(i, "from")
                && from.is_none()
                && !previous.is_some_and(|p| word(p, "distinct") && p + 1 == i)
            {
                from = Some(i);
            } else if word(i, "where")
                && selection_start.is_none()
                && from.is_some()
                && group_start.is_none()
                && having_start.is_none()
            {
                selection_start = Some(i);
            } else if word(i, "group")
                && previous.is_some_and(|p| word(p, "within"))
                && src.tok(i + 1).is_some_and(|t| t.token == Token::LParen)
            {
                // An ordered-set aggregate's `WITHIN GROUP (ORDER BY …)`.
            } else if word(i, "group")
                && level.get(n + 1).is_some_and(|&next| word(next, "by"))
                && from.is_some()
                && group_start.is_none()
                && having_start.is_none()
                && order_start.is_none()
                && limit_start.is_none()
            {
                // `GROUP BY` and `HAVING` end the `WHERE` condition; they stay the server's.
                group_start = Some(i);
                clause_ends.push(i);
            } else if word(i, "having")
                && from.is_some()
                && having_start.is_none()
                && order_start.is_none()
                && limit_start.is_none()
            {
                having_start = Some(i);
                clause_ends.push(i);
            } else if word(i, "order")
                && level.get(n + 1).is_some_and(|&next| word(next, "by"))
                && order_start.is_none()
            {
                order_start = Some(i);
                clause_ends.push(i);
            } else if (word(i, "limit") || word(i, "offset") || word(i, "fetch")) && from.is_some()
            {
                // The paging tail: `LIMIT`/`OFFSET` in either order, or the standard's
                // `OFFSET n ROWS FETCH FIRST m ROWS ONLY`.
                if limit_start.is_none() {
                    limit_start = Some(i);
                    clause_ends.push(i);
                }
            } else if [
                "where",
                "group",
                "having",
                "window",
                "for",
                "union",
                "intersect",
                "except",
                "select",
                "into",
            ]
            .iter()
            .any(|w| word(i, w))
            {
                // Clauses evaluation does not handle.
                return None;
            }
        }
        let from = from?;
        let end = tokens.end;
        let next_after = |start: usize| {
            clause_ends
                .iter()
                .copied()
                .filter(|&e| e > start)
                .min()
                .unwrap_or(end)
        };
        let selection = selection_start.map(|w| w + 1..next_after(w));
        let order_keys = order_start.map(|o| o + 2..next_after(o + 1));
        if let (Some(order), Some(limit)) = (order_start, limit_start)
            && limit < order
        {
            return None;
        }
        Some(Clauses {
            select,
            projection: select + 1..from,
            selection,
            order_start,
            order_keys,
            limit_start,
            grouped: group_start.is_some() || having_start.is_some(),
            end,
        })
    }
}

/// Splits a token range at its depth-0 `AND`s that join conjuncts (not the `AND` of a
/// `BETWEEN`); the whole range when a depth-0 `OR` makes it one disjunction.
pub(crate) fn conjuncts(src: &Source<'_>, range: &Range<usize>) -> Option<Vec<Range<usize>>> {
    let level = depth_zero(src, range)?;
    let word = |i: usize, w: &str| keyword_at(src, i, w);
    if level.iter().any(|&i| word(i, "or")) {
        return Some(vec![range.clone()]);
    }
    split_at(range, level.iter().copied(), |i, between| {
        if word(i, "between") {
            *between += 1;
            false
        } else if word(i, "and") {
            if *between > 0 {
                *between -= 1;
                false
            } else {
                true
            }
        } else {
            false
        }
    })
}

/// Splits a token range at its depth-0 `OR`s.
pub(crate) fn disjuncts(src: &Source<'_>, range: &Range<usize>) -> Option<Vec<Range<usize>>> {
    let level = depth_zero(src, range)?;
    split_at(range, level.iter().copied(), |i, _| {
        keyword_at(src, i, "or")
    })
}

/// Splits a token range at its depth-0 commas.
pub(crate) fn items(src: &Source<'_>, range: &Range<usize>) -> Option<Vec<Range<usize>>> {
    let level = depth_zero(src, range)?;
    split_at(range, level.iter().copied(), |i, _| {
        src.tok(i).is_some_and(|t| t.token == Token::Comma)
    })
}

/// Splits `range` at the separator tokens `is_separator` picks among `candidates`; `None` when
/// a piece would be empty.
fn split_at(
    range: &Range<usize>,
    candidates: impl Iterator<Item = usize>,
    mut is_separator: impl FnMut(usize, &mut u32) -> bool,
) -> Option<Vec<Range<usize>>> {
    let mut pieces = Vec::new();
    let mut start = range.start;
    let mut state = 0u32;
    for i in candidates {
        if is_separator(i, &mut state) {
            if i == start {
                return None;
            }
            pieces.push(start..i);
            start = i + 1;
        }
    }
    if start >= range.end {
        return None;
    }
    pieces.push(start..range.end);
    Some(pieces)
}

/// The range inside one pair of parentheses enclosing all of `range`, if it is so enclosed.
pub(crate) fn inside_parentheses(src: &Source<'_>, range: &Range<usize>) -> Option<Range<usize>> {
    if range.len() < 2
        || src.tok(range.start)?.token != Token::LParen
        || src.tok(range.end - 1)?.token != Token::RParen
    {
        return None;
    }
    let inner = range.start + 1..range.end - 1;
    depth_zero(src, &inner).map(|_| inner)
}

/// The byte range covered by a token range.
pub(crate) fn bytes(src: &Source<'_>, range: &Range<usize>) -> Option<Range<usize>> {
    let first = src.tok(range.start)?;
    let last = src.tok(range.end.checked_sub(1)?)?;
    Some(first.range.start..last.range.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(src: &Source<'_>, range: &Range<usize>) -> String {
        src.slice(&bytes(src, range).unwrap()).to_string()
    }

    fn clauses(sql: &str) -> (Source<'_>, Option<Clauses>) {
        let src = Source::new(sql).unwrap();
        let n = src.tokens().len();
        let clauses = Clauses::of(&src, 0..n, 0);
        (src, clauses)
    }

    #[test]
    fn clauses_are_found_at_depth_zero() {
        let (src, c) = clauses(
            "SELECT a, (SELECT x FROM y WHERE z ORDER BY 1) FROM t WHERE a IS DISTINCT FROM b \
             AND c BETWEEN 1 AND 2 ORDER BY a DESC, b LIMIT 5 OFFSET $1",
        );
        let c = c.unwrap();
        assert_eq!(
            text_of(&src, &c.projection),
            "a, (SELECT x FROM y WHERE z ORDER BY 1)"
        );
        let selection = c.selection.clone().unwrap();
        assert_eq!(
            text_of(&src, &selection),
            "a IS DISTINCT FROM b AND c BETWEEN 1 AND 2"
        );
        let parts: Vec<String> = conjuncts(&src, &selection)
            .unwrap()
            .iter()
            .map(|r| text_of(&src, r))
            .collect();
        assert_eq!(parts, ["a IS DISTINCT FROM b", "c BETWEEN 1 AND 2"]);
        let keys: Vec<String> = items(&src, &c.order_keys.clone().unwrap())
            .unwrap()
            .iter()
            .map(|r| text_of(&src, r))
            .collect();
        assert_eq!(keys, ["a DESC", "b"]);
        assert!(c.limit_start.is_some());
    }

    #[test]
    fn group_by_and_having_end_the_condition() {
        let (src, c) = clauses(
            "SELECT p.id, count(c.id) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY c.id) \
             FROM p JOIN c ON c.p = p.id WHERE p.a = 1 GROUP BY p.id HAVING count(*) > 1 \
             ORDER BY n DESC, p.b LIMIT 5",
        );
        let c = c.unwrap();
        assert!(c.grouped);
        assert_eq!(text_of(&src, &c.selection.clone().unwrap()), "p.a = 1");
        assert_eq!(text_of(&src, &c.order_keys.clone().unwrap()), "n DESC, p.b");
        let (_, c) = clauses("SELECT a FROM t HAVING count(*) > 0 ORDER BY a");
        assert!(c.unwrap().grouped);
        let (_, c) = clauses("SELECT a FROM t WHERE b ORDER BY a");
        assert!(!c.unwrap().grouped);
    }

    #[test]
    fn the_standard_paging_tail_ends_the_sort_keys() {
        for (sql, tail) in [
            (
                "SELECT a FROM t ORDER BY a, b OFFSET $1 ROWS FETCH FIRST $2 ROWS ONLY",
                "OFFSET",
            ),
            ("SELECT a FROM t ORDER BY a, b FETCH NEXT ROW ONLY", "FETCH"),
        ] {
            let (src, c) = clauses(sql);
            let c = c.unwrap();
            let keys = text_of(&src, &c.order_keys.clone().unwrap());
            assert_eq!(keys, "a, b", "{sql}");
            let start = c.limit_start.unwrap();
            assert_eq!(text_of(&src, &(start..start + 1)), tail, "{sql}");
        }
    }

    #[test]
    fn a_disjunction_is_one_conjunct_and_splits_into_terms() {
        let (src, c) = clauses("SELECT * FROM t WHERE a = 1 AND b = 2 OR (c ILIKE $1 OR d)");
        let selection = c.unwrap().selection.unwrap();
        assert_eq!(conjuncts(&src, &selection).unwrap().len(), 1);
        let terms = disjuncts(&src, &selection).unwrap();
        assert_eq!(text_of(&src, &terms[1]), "(c ILIKE $1 OR d)");
        let inner = inside_parentheses(&src, &terms[1]).unwrap();
        assert_eq!(text_of(&src, &inner), "c ILIKE $1 OR d");
        assert!(inside_parentheses(&src, &(terms[0].clone())).is_none());
    }

    #[test]
    fn unhandled_clauses_give_none() {
        for sql in [
            "SELECT a FROM t GROUP BY a GROUP BY b",
            "SELECT a FROM t ORDER BY a GROUP BY a",
            "SELECT a FROM t HAVING true WHERE a",
            "SELECT a FROM t UNION SELECT b FROM u",
            "SELECT a FROM t FOR UPDATE",
            "SELECT a INTO x FROM t",
            "SELECT a FROM t LIMIT 1 ORDER BY a",
        ] {
            assert!(clauses(sql).1.is_none(), "{sql}");
        }
    }
}
