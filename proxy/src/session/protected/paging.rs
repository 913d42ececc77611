//! Paged reads: a simple-protocol `SELECT … LIMIT n` that pgseal filters on sealed columns
//! while the server keeps its order is read from the server through a cursor of pgseal's own,
//! a page at a time, until pgseal has the rows the `LIMIT` needs.
//!
//! Without it, pgseal sends the statement without its `LIMIT` (it must check more rows than
//! the `LIMIT`) and the server, planning for the whole result, sorts the whole table before
//! its first row; inside a transaction block pgseal then reads every row to the end, since a
//! cancel would abort the transaction. As a cursor the statement is planned for a fast start
//! (`cursor_tuple_fraction`), and pgseal stops fetching once its page is full:
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
//! The client's Query is held by the frontend until the last step's ReadyForQuery, which is
//! the only one the client sees: the steps in between are answered by the server and
//! swallowed by the backend, which decides each next step ([`Next`]).

use crate::analyze::evaluation::{Count, Evaluation};

/// The name of pgseal's cursor (one at a time per session).
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
    /// What the frontend sends next.
    pub next: Next,
}

/// What the frontend does with the client's held Query at its next look.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The server is still answering the last step: keep holding.
    Wait,
    /// Send this statement to the server, and keep holding.
    Send(String),
    /// The client has its answer: the Query is done with.
    End,
}

/// How a statement is read in pages: whether pgseal opens the transaction, and the first
/// FETCH's count.
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
    if !evaluation.order.is_empty() || evaluation.count_only {
        return None;
    }
    let Some(Count::Literal(limit)) = evaluation.limit else {
        return None;
    };
    let offset = match evaluation.offset {
        None => 0,
        Some(Count::Literal(offset)) => offset,
        Some(Count::Param(_)) => return None,
    };
    let wrapped = match transaction {
        b'I' => true,
        b'T' => false,
        _ => return None,
    };
    Some(PagePlan {
        wrapped,
        first: first_fetch(offset.saturating_add(limit)),
    })
}

/// The first FETCH's count for a page of `wanted` rows (`OFFSET + LIMIT`): four times as many,
/// within bounds, so that a filter keeping a quarter of the rows fills it at once.
fn first_fetch(wanted: u64) -> u64 {
    wanted.saturating_mul(4).clamp(FIRST_MIN, FIRST_MAX)
}

/// The next FETCH's count after one of `asked` rows that did not fill the page.
pub fn next_fetch(asked: u64) -> u64 {
    asked.saturating_mul(4).min(FETCH_MAX)
}

/// The text that opens a paged read of `sql` (the statement as pgseal sends it).
pub fn opening(sql: &str, plan: PagePlan) -> String {
    // A newline ends a trailing `--` comment; an empty statement after a trailing `;` is
    // nothing to the server.
    format!(
        "{}DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}\n;{}",
        if plan.wrapped { "BEGIN;" } else { "" },
        fetch(plan.first)
    )
}

/// The text of a later FETCH.
pub fn fetch(count: u64) -> String {
    format!("FETCH FORWARD {count} FROM {CURSOR}")
}

/// The text that ends a paged read whose rows the client has.
pub fn closing(wrapped: bool) -> String {
    if wrapped {
        "COMMIT".into()
    } else {
        format!("CLOSE {CURSOR}")
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
    /// pgseal opened the transaction.
    pub wrapped: bool,
    /// Rows the FETCH under way asked for.
    pub asked: u64,
    /// Where the responses are.
    pub phase: Phase,
    /// What to send at the next ReadyForQuery, and the phase its responses are in.
    pub then: Option<(String, Phase)>,
}

impl PagedRead {
    /// The state at the start of a paged read's responses.
    pub fn new(plan: PagePlan) -> Self {
        PagedRead {
            wrapped: plan.wrapped,
            asked: plan.first,
            phase: Phase::Opening,
            then: None,
        }
    }

    /// What follows a ReadyForQuery with transaction status `status`: the next step to send
    /// (the ReadyForQuery is the server's alone), or `None` when it is the client's.
    pub fn after_ready(&mut self, status: u8) -> Option<String> {
        if self.wrapped && status == b'E' && self.phase != Phase::RollingBack {
            // An error ended the step: the transaction pgseal opened is rolled back, and
            // the client sees the implicit transaction it sent its statement in fail.
            self.then = None;
            self.phase = Phase::RollingBack;
            return Some("ROLLBACK".into());
        }
        let (sql, phase) = self.then.take()?;
        self.phase = phase;
        Some(sql)
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
        assert_eq!(next_fetch(100), 400);
        assert_eq!(next_fetch(90_000), FETCH_MAX);
        assert_eq!(next_fetch(u64::MAX), FETCH_MAX);
    }

    #[test]
    fn texts_name_pgseal_cursor() {
        let plan = PagePlan {
            wrapped: true,
            first: 100,
        };
        assert_eq!(
            opening("SELECT 1 -- note", plan),
            "BEGIN;DECLARE pgseal_paged NO SCROLL CURSOR FOR SELECT 1 -- note\n;FETCH FORWARD 100 FROM pgseal_paged"
        );
        assert!(
            opening(
                "SELECT 1;",
                PagePlan {
                    wrapped: false,
                    ..plan
                }
            )
            .starts_with("DECLARE")
        );
        assert_eq!(closing(true), "COMMIT");
        assert_eq!(closing(false), "CLOSE pgseal_paged");
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
        let mut read = PagedRead::new(PagePlan {
            wrapped: true,
            first: 100,
        });
        read.then = Some((fetch(400), Phase::Reading));
        assert_eq!(read.after_ready(b'E').as_deref(), Some("ROLLBACK"));
        assert_eq!(read.after_ready(b'I'), None);
        let mut inside = PagedRead::new(PagePlan {
            wrapped: false,
            first: 100,
        });
        assert_eq!(inside.after_ready(b'E'), None);
        inside.then = Some((closing(false), Phase::Finishing));
        assert_eq!(
            inside.after_ready(b'T').as_deref(),
            Some("CLOSE pgseal_paged")
        );
        assert_eq!(inside.phase, Phase::Finishing);
    }
}
