//! Paged reads: a `SELECT … LIMIT n` that pgseal filters on sealed columns while the server
//! keeps its order is read from the server a page at a time, until pgseal has the rows the
//! `LIMIT` needs.
//!
//! pgseal must check more rows than the `LIMIT`, so it sends the statement without it. Read
//! whole, such a result costs the server a plan for every row (a sort of the whole table
//! before the first row), and inside a transaction block pgseal had to read every row to the
//! end, since a cancel would abort the transaction. Read in pages, the server stops where
//! pgseal stops.
//!
//! **Extended protocol**: the client's Execute is sent as Executes of the same portal with a
//! row count (and a Flush), each four times larger, while the server suspends the portal and
//! the page is not full; the client's Sync follows as usual, and drops the portal. The
//! portal's plan is the server's usual one.
//!
//! **Simple protocol**: the statement is read through a cursor of pgseal's own, which the
//! server plans for a fast start (`cursor_tuple_fraction`):
//!
//! 1. `[BEGIN;] DECLARE pgseal_paged NO SCROLL CURSOR FOR <the statement>; FETCH FORWARD n`
//!    (`BEGIN` when the client's statement came outside a transaction block: pgseal then opens
//!    the transaction and ends it, so the client still sees an implicit one);
//! 2. `FETCH FORWARD` again, each time four times more rows, while the server gave all it was
//!    asked for and the page is not full;
//! 3. `CLOSE pgseal_paged` (`COMMIT` when pgseal opened the transaction) — or, when pgseal
//!    failed the statement (a cap, a value that does not open), a statement that fails at
//!    once, so that the server's transaction fails as the client is told; `ROLLBACK` follows
//!    when pgseal opened it.
//!
//! The client's Query (or Execute) is held by the frontend until the read ends — for a
//! Query, until the last step's ReadyForQuery, the only one the client sees. The steps in
//! between are answered by the server and swallowed by the backend, which decides each next
//! step ([`Next`]).

use crate::analyze::evaluation::{Count, Evaluation};
use crate::wire::extended;

/// The name of pgseal's cursor (one at a time per session); a client's DECLARE of it is
/// refused.
pub const CURSOR: &str = "pgseal_paged";

/// Rows the first FETCH asks for at least, and at most.
const FIRST_MIN: u64 = 100;
const FIRST_MAX: u64 = 10_000;
/// Rows one FETCH asks for at most.
const FETCH_MAX: u64 = 100_000;

/// A paged read under way, as both filters share it.
#[derive(Debug)]
pub struct Paging {
    /// How it was opened.
    pub plan: PagePlan,
    /// The portal an Execute reads (extended protocol); `None` for a Query.
    pub portal: Option<Vec<u8>>,
    /// What the frontend sends next.
    pub next: Next,
}

/// What the frontend does with the client's held Query at its next look.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The server is still answering the last step: keep holding.
    Wait,
    /// Send these messages to the server, and keep holding.
    Send(Vec<u8>),
    /// The client has its answer: the held message is done with.
    End,
}

/// How a statement is read in pages: whether pgseal opens the transaction (simple protocol),
/// and the first page's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePlan {
    /// pgseal opens (and ends) the transaction: the client sent the statement outside one.
    pub wrapped: bool,
    /// Rows the first FETCH asks for.
    pub first: u64,
}

/// Whether a planned statement is read in pages, and how: a statement pgseal filters, whose
/// order is the server's, with a `LIMIT` written in it, sent alone while nothing else is in
/// flight, outside a failed transaction. `transaction` is the status of the last
/// ReadyForQuery.
pub fn plan(evaluation: &Evaluation, transaction: u8) -> Option<PagePlan> {
    let first = first_page(evaluation, &[])?;
    let wrapped = match transaction {
        b'I' => true,
        b'T' => false,
        _ => return None,
    };
    Some(PagePlan { wrapped, first })
}

/// The first page's size for a statement pgseal filters in the server's order with a `LIMIT`
/// (`params`: the bound values pgseal reads, as text, `$1` first); `None` when it is not read
/// in pages (its own sort, `count(*)`, no `LIMIT`, or a count that does not read, which the
/// evaluation reports).
pub fn first_page(evaluation: &Evaluation, params: &[Option<String>]) -> Option<u64> {
    if !evaluation.order.is_empty() || evaluation.count_only {
        return None;
    }
    let count = |count: &Count| match count {
        Count::Literal(n) => Some(*n),
        Count::Param(n) => params
            .get(usize::from(*n).checked_sub(1)?)?
            .as_deref()?
            .trim()
            .parse()
            .ok(),
    };
    let limit = count(evaluation.limit.as_ref()?)?;
    let offset = match &evaluation.offset {
        None => 0,
        Some(offset) => count(offset)?,
    };
    Some(first_fetch(offset.saturating_add(limit)))
}

/// The first FETCH's count for a page of `wanted` rows (`OFFSET + LIMIT`): four times as many,
/// within bounds, so that a filter keeping a quarter of the rows fills it at once.
fn first_fetch(wanted: u64) -> u64 {
    wanted.saturating_mul(4).clamp(FIRST_MIN, FIRST_MAX)
}

/// The next page's size after one of `asked` rows that did not fill the client's: the rows
/// the filter's rate so far (`kept` of `read`) says the `remaining` ones need, half again for
/// chance, within bounds — never more than four times the last page (nor when nothing matched
/// yet), so that a rate read on few rows does not over-read much, and never less than the
/// first page's minimum.
pub fn next_fetch(asked: u64, read: u64, kept: u64, remaining: u64) -> u64 {
    let most = asked.saturating_mul(4).min(FETCH_MAX);
    if kept == 0 {
        return most;
    }
    let needed = u128::from(remaining) * u128::from(read) / u128::from(kept);
    let needed = u64::try_from(needed.saturating_add(needed / 2)).unwrap_or(u64::MAX);
    needed.max(FIRST_MIN).min(most)
}

/// The text that opens a paged read of `sql` (the statement as pgseal sends it).
///
/// When pgseal opens the transaction, it also sets in it:
/// - `idle_in_transaction_session_timeout` off: the server waits between pages while pgseal
///   paces rows out under an export budget, which would otherwise end the session;
/// - `jit` off: the server decides on JIT compilation by the cost of reading the whole result,
///   and on a large table it compiles (tens of milliseconds) for a read pgseal stops after a
///   page.
///
/// In the client's transaction block, `jit` is turned off for the cursor's planning too, after
/// reading its value (`SELECT current_setting('jit')`, the row the backend keeps for itself),
/// and set back when the cursor is closed ([`closing`]).
pub fn opening(sql: &str, plan: PagePlan) -> String {
    // A newline ends a trailing `--` comment; an empty statement after a trailing `;` is
    // nothing to the server.
    format!(
        "{}SET LOCAL jit = off;DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}\n;{}",
        if plan.wrapped {
            "BEGIN;SET LOCAL idle_in_transaction_session_timeout = 0;"
        } else {
            "SELECT current_setting('jit');"
        },
        fetch(plan.first)
    )
}

/// The value of `jit` the opening read in the client's transaction block (its one DataRow's
/// field), when it is one `SET LOCAL` can give back.
pub fn jit_setting(field: &[u8]) -> Option<&'static str> {
    match field {
        b"on" => Some("on"),
        b"off" => Some("off"),
        _ => None,
    }
}

/// Whether a statement text can follow `DECLARE … FOR`: its first token (past whitespace and
/// comments) is not a `;` of an empty statement before it.
pub fn begins_with_statement(sql: &str) -> bool {
    let mut rest = sql.as_bytes();
    loop {
        match rest {
            [b, tail @ ..] if b.is_ascii_whitespace() => rest = tail,
            [b'-', b'-', tail @ ..] => {
                let end = tail.iter().position(|&b| b == b'\n' || b == b'\r');
                rest = end.map_or(&[][..], |end| &tail[end..]);
            }
            [b'/', b'*', tail @ ..] => {
                // Block comments nest.
                let (mut depth, mut at) = (1usize, 0);
                while depth > 0 && at < tail.len() {
                    match &tail[at..] {
                        [b'/', b'*', ..] => (depth, at) = (depth + 1, at + 2),
                        [b'*', b'/', ..] => (depth, at) = (depth - 1, at + 2),
                        _ => at += 1,
                    }
                }
                rest = &tail[at..];
            }
            [first, ..] => return *first != b';',
            [] => return false,
        }
    }
}

/// The text of a later FETCH.
pub fn fetch(count: u64) -> String {
    format!("FETCH FORWARD {count} FROM {CURSOR}")
}

/// A simple Query's frame.
pub fn query(sql: &str) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    extended::put_query(&mut out, sql.as_bytes());
    out.to_vec()
}

/// The frames that ask the server for the next `count` rows of `portal`, at once.
pub fn execute(portal: &[u8], count: u64) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    extended::put_frame(&mut out, b'E', |b| {
        b.extend_from_slice(portal);
        b.extend_from_slice(&[0]);
        b.extend_from_slice(&count.to_be_bytes());
    });
    extended::put_frame(&mut out, b'H', |_| {});
    out.to_vec()
}

/// The text that ends a paged read whose rows the client has: pgseal's transaction committed,
/// or its cursor closed and `jit` set back as it was (`jit_before`) in the client's.
pub fn closing(wrapped: bool, jit_before: Option<&str>) -> String {
    match (wrapped, jit_before) {
        (true, _) => "COMMIT".into(),
        (false, Some(jit)) => format!("CLOSE {CURSOR};SET LOCAL jit = {jit}"),
        (false, None) => format!("CLOSE {CURSOR}"),
    }
}

/// The count of a FETCH's CommandComplete tag (`FETCH n`).
pub fn fetched(tag: &[u8]) -> Option<u64> {
    std::str::from_utf8(tag.strip_prefix(b"FETCH ")?)
        .ok()?
        .parse()
        .ok()
}

/// Where the backend is in a paged read's responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `BEGIN` and `DECLARE` complete; the first FETCH's rows come next.
    Opening,
    /// A FETCH's rows.
    Reading,
    /// The `CLOSE` or `COMMIT` after the client's rows.
    Finishing,
    /// The statement that fails in place of the rest (pgseal failed the statement).
    Failing,
    /// The `ROLLBACK` of a transaction pgseal opened, after an error.
    RollingBack,
}

/// The backend's side of a paged read.
#[derive(Debug)]
pub struct PagedRead {
    /// The portal an Execute reads in pages (extended protocol); `None` for a Query.
    pub portal: Option<Vec<u8>>,
    /// pgseal opened the transaction.
    pub wrapped: bool,
    /// Rows the FETCH under way asked for.
    pub asked: u64,
    /// Where the responses are.
    pub phase: Phase,
    /// What to send at the next ReadyForQuery, and the phase its responses are in.
    pub then: Option<(String, Phase)>,
    /// The client's `jit`, read by the opening in its transaction block.
    pub jit_before: Option<&'static str>,
}

impl PagedRead {
    /// The state at the start of a paged read's responses.
    pub fn new(plan: PagePlan, portal: Option<Vec<u8>>) -> Self {
        PagedRead {
            portal,
            wrapped: plan.wrapped,
            asked: plan.first,
            phase: Phase::Opening,
            then: None,
            jit_before: None,
        }
    }

    /// What follows a ReadyForQuery with transaction status `status`: the next step to send
    /// (the ReadyForQuery is the server's alone), or `None` when it is the client's.
    pub fn after_ready(&mut self, status: u8) -> Option<Vec<u8>> {
        if self.wrapped && status == b'E' && self.phase != Phase::RollingBack {
            // An error ended the step: the transaction pgseal opened is rolled back, and
            // the client sees the implicit transaction it sent its statement in fail.
            self.then = None;
            self.phase = Phase::RollingBack;
            return Some(query("ROLLBACK"));
        }
        let (sql, phase) = self.then.take()?;
        self.phase = phase;
        Some(query(&sql))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_counts_grow_within_bounds() {
        assert_eq!(first_fetch(0), FIRST_MIN);
        assert_eq!(first_fetch(20), FIRST_MIN);
        assert_eq!(first_fetch(50), 200);
        assert_eq!(first_fetch(u64::MAX), FIRST_MAX);
        // Nothing kept yet: four times more.
        assert_eq!(next_fetch(100, 100, 0, 20), 400);
        assert_eq!(next_fetch(90_000, 90_000, 0, 20), FETCH_MAX);
        assert_eq!(next_fetch(u64::MAX, u64::MAX, 0, 1), FETCH_MAX);
        // One kept in 100 read, 24 still wanted: 2,400 rows, 3,600 with the margin.
        assert_eq!(next_fetch(3_200, 4_400, 44, 24), 3_600);
        // A rate read on few rows asks for at most four times the last page.
        assert_eq!(next_fetch(100, 100, 1, 1_000), 400);
        // Almost there: never below the first page's minimum.
        assert_eq!(next_fetch(400, 500, 250, 1), FIRST_MIN);
        assert_eq!(next_fetch(u64::MAX, u64::MAX, 1, u64::MAX), FETCH_MAX);
    }

    #[test]
    fn texts_name_pgseal_cursor() {
        let plan = PagePlan {
            wrapped: true,
            first: 100,
        };
        assert_eq!(
            opening("SELECT 1 -- note", plan),
            "BEGIN;SET LOCAL idle_in_transaction_session_timeout = 0;SET LOCAL jit = off;DECLARE pgseal_paged NO SCROLL CURSOR FOR SELECT 1 -- note\n;FETCH FORWARD 100 FROM pgseal_paged"
        );
        assert!(begins_with_statement(
            " /* a /* nested */ note */ -- line\n SELECT 1"
        ));
        assert!(!begins_with_statement(" ;SELECT 1"));
        assert!(!begins_with_statement("/* x */ ; SELECT 1"));
        assert!(!begins_with_statement("-- only a comment"));
        assert!(!begins_with_statement("/* unterminated"));

        assert!(
            opening(
                "SELECT 1",
                PagePlan {
                    wrapped: false,
                    ..plan
                }
            )
            .starts_with("SELECT current_setting('jit');SET LOCAL jit = off;DECLARE")
        );
        assert_eq!(closing(true, Some("on")), "COMMIT");
        assert_eq!(closing(false, None), "CLOSE pgseal_paged");
        assert_eq!(
            closing(false, jit_setting(b"on")),
            "CLOSE pgseal_paged;SET LOCAL jit = on"
        );
        assert_eq!(jit_setting(b"on; DROP"), None);
    }

    #[test]
    fn fetch_tags_are_read() {
        assert_eq!(fetched(b"FETCH 100"), Some(100));
        assert_eq!(fetched(b"FETCH 0"), Some(0));
        assert_eq!(fetched(b"SELECT 3"), None);
        assert_eq!(fetched(b"FETCH x"), None);
    }

    #[test]
    fn an_error_in_a_transaction_pgseal_opened_is_rolled_back() {
        let mut read = PagedRead::new(
            PagePlan {
                wrapped: true,
                first: 100,
            },
            None,
        );
        read.then = Some((fetch(400), Phase::Reading));
        assert_eq!(read.after_ready(b'E'), Some(query("ROLLBACK")));
        assert_eq!(read.after_ready(b'I'), None);
        let mut inside = PagedRead::new(
            PagePlan {
                wrapped: false,
                first: 100,
            },
            None,
        );
        assert_eq!(inside.after_ready(b'E'), None);
        inside.then = Some((closing(false, None), Phase::Finishing));
        assert_eq!(inside.after_ready(b'T'), Some(query("CLOSE pgseal_paged")));
        assert_eq!(inside.phase, Phase::Finishing);
    }

    #[test]
    fn page_sizes_read_bound_counts() {
        let mut evaluation = Evaluation {
            limit: Some(Count::Param(1)),
            offset: Some(Count::Param(2)),
            ..Evaluation::default()
        };
        let params = |l: &str, o: &str| vec![Some(l.to_string()), Some(o.to_string())];
        assert_eq!(first_page(&evaluation, &params("5", " 60 ")), Some(260));
        // A count that does not read is the evaluation's to report.
        assert_eq!(first_page(&evaluation, &params("x", "0")), None);
        assert_eq!(first_page(&evaluation, &[None, None]), None);
        evaluation.offset = None;
        evaluation.limit = Some(Count::Literal(3));
        assert_eq!(first_page(&evaluation, &[]), Some(FIRST_MIN));
        evaluation.count_only = true;
        assert_eq!(first_page(&evaluation, &[]), None);
    }

    #[test]
    fn executes_ask_for_a_count_and_flush() {
        let frames = execute(b"p1", 400);
        assert_eq!(
            frames,
            [&b"E\0\0\0\x0bp1\0\0\0\x01\x90"[..], &b"H\0\0\0\x04"[..]].concat()
        );
        // Past what the protocol's count holds: as many as it can ask for.
        assert!(execute(b"", u64::MAX).starts_with(b"E\0\0\0\x09\0\x7f\xff\xff\xff"));
    }
}
