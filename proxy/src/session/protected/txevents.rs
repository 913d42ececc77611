//! What each statement does to the session's end user and transaction state, recognised when
//! it is sent and applied when the server confirms it (its CommandComplete), so pgseal's idea
//! of the end user follows PostgreSQL's: a `SET` rolled back is undone, a `SET LOCAL` ends with
//! its transaction, a savepoint rolled back to restores what was before it.

use crate::enduser::{EndUserCommand, EndUserState, parse_end_user_command};
use crate::protect::Protection;

/// A statement's effect on end-user and transaction state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxEvent {
    /// None that matters here.
    None,
    /// `SET [LOCAL] pgseal.end_user`, `RESET`, `DISCARD ALL`, `set_config(…)`.
    EndUser(EndUserCommand),
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END` (a rollback when the server's tag says `ROLLBACK`).
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] name`.
    RollbackTo(String),
}

/// The events of each statement of a text, in order (one per statement). Only transaction
/// control, `SET`/`RESET`/`DISCARD`, statements the analysis files as other (`ABORT`…) and
/// statements naming pgseal (`SELECT set_config('pgseal.end_user', …)`) can have one; other
/// queries, writes and DDL are not read again.
pub fn events(protection: &Protection, sql: &str) -> Vec<TxEvent> {
    use crate::analyze::StatementKind;
    match protection.analyze(sql).as_ref() {
        Ok(analysis) => analysis
            .statements
            .iter()
            .map(|statement| {
                let text = sql.get(statement.span.clone()).unwrap_or(sql);
                let may_have_one = matches!(
                    statement.kind,
                    StatementKind::Transaction | StatementKind::Set | StatementKind::Other
                ) || names_pgseal(text);
                if may_have_one {
                    event(text)
                } else {
                    TxEvent::None
                }
            })
            .collect(),
        Err(_) => vec![event(sql)],
    }
}

/// Whether `pgseal` appears in a text, in any case.
fn names_pgseal(text: &str) -> bool {
    text.as_bytes()
        .windows(6)
        .any(|w| w.eq_ignore_ascii_case(b"pgseal"))
}

/// A statement's words as PostgreSQL folds them, keywords and names alike (the last part of
/// each dotted name): what tells a statement's kind and the names it acts on.
pub fn words(statement: &str) -> Vec<String> {
    crate::analyze::identifiers(statement)
        .into_iter()
        .filter_map(|mut name| name.pop())
        .collect()
}

/// The event of one statement.
pub fn event(statement: &str) -> TxEvent {
    let words = words(statement);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let last = || words.last().map(|w| w.to_string()).unwrap_or_default();
    match words.first().copied() {
        Some("begin" | "start") => TxEvent::Begin,
        Some("commit" | "end") => TxEvent::Commit,
        Some("rollback" | "abort") if words.contains(&"to") => TxEvent::RollbackTo(last()),
        Some("rollback" | "abort") => TxEvent::Rollback,
        Some("savepoint") => TxEvent::Savepoint(last()),
        Some("release") => TxEvent::Release(last()),
        _ => match parse_end_user_command(statement) {
            Ok(Some(command)) => TxEvent::EndUser(command),
            _ => TxEvent::None,
        },
    }
}

/// Applies a confirmed event; `tag` is the server's CommandComplete tag.
pub fn apply(state: &mut EndUserState, event: &TxEvent, tag: &[u8]) {
    match event {
        TxEvent::None => {}
        TxEvent::EndUser(command) => {
            state.on_command(command);
        }
        TxEvent::Begin => state.on_begin(),
        TxEvent::Commit => state.on_transaction_end(tag == b"COMMIT"),
        TxEvent::Rollback => state.on_transaction_end(false),
        TxEvent::Savepoint(name) => state.on_savepoint(name),
        TxEvent::Release(name) => state.on_release(name),
        TxEvent::RollbackTo(name) => state.on_rollback_to(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_map_to_their_events() {
        assert_eq!(event("BEGIN"), TxEvent::Begin);
        assert_eq!(
            event("start transaction isolation level serializable"),
            TxEvent::Begin
        );
        assert_eq!(event("COMMIT"), TxEvent::Commit);
        assert_eq!(event("rollback"), TxEvent::Rollback);
        assert_eq!(
            event("ROLLBACK TO SAVEPOINT s1"),
            TxEvent::RollbackTo("s1".into())
        );
        assert_eq!(event("SAVEPOINT s1"), TxEvent::Savepoint("s1".into()));
        assert_eq!(event("RELEASE s1"), TxEvent::Release("s1".into()));
        assert!(matches!(
            event("SET LOCAL pgseal.end_user = 'x'"),
            TxEvent::EndUser(_)
        ));
        assert_eq!(event("SELECT 1"), TxEvent::None);
    }

    #[test]
    fn a_rolled_back_set_is_undone_and_a_local_one_ends_with_its_transaction() {
        let mut state = EndUserState::new();
        apply(&mut state, &TxEvent::Begin, b"BEGIN");
        apply(&mut state, &event("SET pgseal.end_user = 'a'"), b"SET");
        apply(&mut state, &TxEvent::Rollback, b"ROLLBACK");
        assert_eq!(state.current(), None);
        apply(&mut state, &TxEvent::Begin, b"BEGIN");
        apply(
            &mut state,
            &event("SET LOCAL pgseal.end_user = 'b'"),
            b"SET",
        );
        assert_eq!(state.current(), Some("b"));
        apply(&mut state, &TxEvent::Commit, b"COMMIT");
        assert_eq!(state.current(), None);
        // COMMIT of a failed transaction is a rollback: its tag says so.
        apply(&mut state, &TxEvent::Begin, b"BEGIN");
        apply(&mut state, &event("SET pgseal.end_user = 'c'"), b"SET");
        apply(&mut state, &TxEvent::Commit, b"ROLLBACK");
        assert_eq!(state.current(), None);
    }
}
