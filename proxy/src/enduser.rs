//! End users: who the application says its user is, for per-end-user budgets and the audit trail.
//!
//! An application that serves many people through one database role declares its current user
//! in one of two ways:
//!
//! - **per statement**, a [sqlcommenter]-style comment anywhere in the statement:
//!   `SELECT … /* pgseal_user='dr.martin' */` (values are percent-encoded as sqlcommenter does;
//!   other keys in the comment are ignored) — [`end_user_from_comment`];
//! - **per session or transaction**, `SET [SESSION | LOCAL] pgseal.end_user = 'dr.martin'` (or
//!   `TO`, `DEFAULT`, `RESET pgseal.end_user`, `RESET ALL`, `DISCARD ALL`,
//!   `SELECT set_config('pgseal.end_user', 'dr.martin', is_local)`) — recognised by
//!   [`parse_end_user_command`] and tracked with PostgreSQL's semantics by [`EndUserState`].
//!   PostgreSQL accepts the setting itself (a dotted name is a custom option), so the session
//!   forwards the statement and applies it to its state once the server has accepted it.
//!
//! A statement's comment wins over the setting. Both are parsed with the same tokenizer as the
//! SQL analysis, so a comment inside a string literal is not a comment. The end user is the
//! application's word: pgseal trusts the role that declares it, and a role class can insist on
//! one (`require_end_user`).
//!
//! [sqlcommenter]: https://google.github.io/sqlcommenter/spec/

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// The setting the application sets: `pgseal.end_user`.
pub const END_USER_SETTING: &str = "pgseal.end_user";
/// The sqlcommenter key: `pgseal_user`.
pub const COMMENT_KEY: &str = "pgseal_user";
/// The longest end-user name accepted, in bytes.
pub const MAX_END_USER_LEN: usize = 256;

/// Why an end-user declaration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndUserError {
    /// Two `pgseal_user` comments in one statement name different end users.
    #[error("the statement's pgseal_user comments name two different end users")]
    Conflicting,
    /// The name is unusable; the text says why (never the name itself).
    #[error("invalid end user: {0}")]
    Invalid(&'static str),
}

/// Checks an end-user name: at most [`MAX_END_USER_LEN`] bytes, no control characters.
pub fn validate_end_user(name: &str) -> Result<(), EndUserError> {
    if name.len() > MAX_END_USER_LEN {
        return Err(EndUserError::Invalid("longer than 256 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(EndUserError::Invalid("contains control characters"));
    }
    Ok(())
}

/// The end user a statement's `pgseal_user` comment declares: `Ok(None)` when there is none
/// (or the statement does not tokenize: the analysis refuses those anyway), an error when two
/// comments disagree or the value is unusable. An empty value declares nothing.
pub fn end_user_from_comment(sql: &str) -> Result<Option<String>, EndUserError> {
    if !sql.contains(COMMENT_KEY) {
        return Ok(None);
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(None);
    };
    let mut found: Option<String> = None;
    for token in tokens {
        let Token::Whitespace(Whitespace::MultiLineComment(comment)) = token else {
            continue;
        };
        for (key, value) in sqlcommenter_pairs(&comment) {
            if key != COMMENT_KEY {
                continue;
            }
            validate_end_user(&value)?;
            match &found {
                Some(earlier) if *earlier != value => return Err(EndUserError::Conflicting),
                _ => found = Some(value),
            }
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// The `key='value'` pairs of a sqlcommenter comment body, decoded; malformed pairs are skipped.
fn sqlcommenter_pairs(comment: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = comment.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim();
        let after = rest[eq + 1..].trim_start();
        let Some(body) = after.strip_prefix('\'') else {
            break;
        };
        // The value runs to the next unescaped quote (sqlcommenter escapes ' as \').
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        value.push(next);
                    }
                }
                '\'' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { break };
        if let (Some(key), Some(value)) = (percent_decode(key), percent_decode(&value)) {
            pairs.push((key, value));
        }
        rest = body[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    pairs
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A statement that changes `pgseal.end_user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndUserCommand {
    /// `SET [SESSION|LOCAL] pgseal.end_user = value` (or `TO`, or `set_config`); an empty value
    /// clears the end user.
    Set {
        /// `SET LOCAL` (or `set_config(…, true)`): until the end of the transaction.
        local: bool,
        /// The new end user.
        value: String,
    },
    /// `RESET pgseal.end_user` or `SET [SESSION|LOCAL] pgseal.end_user TO DEFAULT`.
    Reset {
        /// `SET LOCAL … TO DEFAULT`.
        local: bool,
    },
    /// `RESET ALL` or `DISCARD ALL`: every setting, this one included, back to its default.
    ResetAll,
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// An identifier as PostgreSQL folds it.
fn ident(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        Token::Word(w) if w.quote_style == Some('"') => Some(w.value.clone()),
        _ => None,
    }
}

/// Recognises a statement that sets or resets `pgseal.end_user` (one statement, without the
/// others of a multi-statement query). `Ok(None)` for every other statement; an error when it is
/// such a statement but its value is unusable (the session should refuse it).
pub fn parse_end_user_command(sql: &str) -> Result<Option<EndUserCommand>, EndUserError> {
    let lowered = sql.to_ascii_lowercase();
    if !lowered.contains("end_user") && !lowered.contains("all") {
        return Ok(None);
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(None);
    };
    let mut t: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    while matches!(t.last(), Some(Token::SemiColon)) {
        t.pop();
    }
    let names_setting = |t: &[Token]| -> bool {
        matches!(t, [a, Token::Period, b]
            if ident(a).as_deref() == Some("pgseal") && ident(b).as_deref() == Some("end_user"))
    };
    match t.as_slice() {
        [first, rest @ ..] if is_word(first, "reset") => {
            if let [all] = rest
                && is_word(all, "all")
            {
                return Ok(Some(EndUserCommand::ResetAll));
            }
            Ok(names_setting(rest).then_some(EndUserCommand::Reset { local: false }))
        }
        [first, all] if is_word(first, "discard") && is_word(all, "all") => {
            Ok(Some(EndUserCommand::ResetAll))
        }
        [first, rest @ ..] if is_word(first, "set") => {
            let (local, rest) = match rest {
                [scope, rest @ ..] if is_word(scope, "local") => (true, rest),
                [scope, rest @ ..] if is_word(scope, "session") => (false, rest),
                _ => (false, rest),
            };
            if rest.len() < 3 || !names_setting(&rest[..3]) {
                return Ok(None);
            }
            let value = match &rest[3..] {
                [op, value] if matches!(op, Token::Eq) || is_word(op, "to") => value,
                _ => return Err(EndUserError::Invalid("expected = or TO and one value")),
            };
            if is_word(value, "default") {
                return Ok(Some(EndUserCommand::Reset { local }));
            }
            let value = match value {
                Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => s.clone(),
                Token::DollarQuotedString(s) => s.value.clone(),
                Token::Number(n, _) => n.clone(),
                word @ Token::Word(_) => ident(word).unwrap_or_default(),
                _ => return Err(EndUserError::Invalid("the value must be a string")),
            };
            validate_end_user(&value)?;
            Ok(Some(EndUserCommand::Set { local, value }))
        }
        [select, rest @ ..] if is_word(select, "select") => {
            let rest = match rest {
                [schema, Token::Period, rest @ ..]
                    if ident(schema).as_deref() == Some("pg_catalog") =>
                {
                    rest
                }
                _ => rest,
            };
            let [
                function,
                Token::LParen,
                Token::SingleQuotedString(name),
                Token::Comma,
                value,
                Token::Comma,
                is_local,
                Token::RParen,
            ] = rest
            else {
                return Ok(None);
            };
            if ident(function).as_deref() != Some("set_config")
                || !name.eq_ignore_ascii_case(END_USER_SETTING)
            {
                return Ok(None);
            }
            let local = if is_word(is_local, "true") {
                true
            } else if is_word(is_local, "false") {
                false
            } else {
                return Err(EndUserError::Invalid("is_local must be true or false"));
            };
            let Token::SingleQuotedString(value) = value else {
                return Err(EndUserError::Invalid("the value must be a string"));
            };
            validate_end_user(value)?;
            Ok(Some(EndUserCommand::Set {
                local,
                value: value.clone(),
            }))
        }
        _ => Ok(None),
    }
}

/// The session's `pgseal.end_user`, with PostgreSQL's `SET` / `SET LOCAL` semantics across
/// transactions and savepoints.
///
/// Drive it from the session as the server confirms each step: [`EndUserState::on_begin`] when
/// a transaction starts (an explicit `BEGIN`, or the implicit transaction of a multi-statement
/// simple Query), [`EndUserState::on_command`] after the server accepted a statement that
/// [`parse_end_user_command`] recognised, the savepoint calls, and
/// [`EndUserState::on_transaction_end`] with whether it committed (a `COMMIT` of a failed
/// transaction is a rollback: its CommandComplete tag says `ROLLBACK`).
///
/// - `SET` inside a transaction lasts after `COMMIT` and is undone by `ROLLBACK`; it also
///   replaces an earlier `SET LOCAL` of the transaction.
/// - `SET LOCAL` lasts until the transaction ends, committed or not; outside a transaction it
///   does nothing (PostgreSQL warns and ignores it).
/// - `ROLLBACK TO SAVEPOINT` undoes what was set after the savepoint; `RELEASE` keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndUserState {
    /// The session value, including changes made by the open transaction.
    session: Option<String>,
    /// A `SET LOCAL` of the open transaction: `Some(None)` for a local reset.
    local: Option<Option<String>>,
    /// The session value when the open transaction began, `None` outside one.
    at_begin: Option<Option<String>>,
    /// Open savepoints: name, session value, local value.
    savepoints: Vec<(String, Option<String>, Option<Option<String>>)>,
}

impl EndUserState {
    /// No end user, outside a transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// The end user in effect for the next statement, without a comment of its own.
    pub fn current(&self) -> Option<&str> {
        match &self.local {
            Some(local) => local.as_deref(),
            None => self.session.as_deref(),
        }
    }

    /// The end user of a statement: its own comment's, else the setting's.
    pub fn for_statement<'a>(&'a self, comment: Option<&'a str>) -> Option<&'a str> {
        comment.or_else(|| self.current())
    }

    /// True inside a transaction block.
    pub fn in_transaction(&self) -> bool {
        self.at_begin.is_some()
    }

    /// A transaction began.
    pub fn on_begin(&mut self) {
        if self.at_begin.is_none() {
            self.at_begin = Some(self.session.clone());
            self.local = None;
            self.savepoints.clear();
        }
    }

    /// `SET` (`local` false) or `SET LOCAL` of a value, `None` (or empty) to reset it. Returns
    /// false when it had no effect (`SET LOCAL` outside a transaction).
    pub fn on_set(&mut self, local: bool, value: Option<&str>) -> bool {
        let value = value.filter(|v| !v.is_empty()).map(str::to_owned);
        if local {
            if !self.in_transaction() {
                return false;
            }
            self.local = Some(value);
        } else {
            self.session = value;
            self.local = None;
        }
        true
    }

    /// Applies a recognised command (after the server accepted it).
    pub fn on_command(&mut self, command: &EndUserCommand) -> bool {
        match command {
            EndUserCommand::Set { local, value } => self.on_set(*local, Some(value)),
            EndUserCommand::Reset { local } => self.on_set(*local, None),
            EndUserCommand::ResetAll => self.on_set(false, None),
        }
    }

    /// The transaction ended: committed (`SET`s stay) or rolled back (they are undone).
    /// `SET LOCAL`s end either way.
    pub fn on_transaction_end(&mut self, committed: bool) {
        if let Some(at_begin) = self.at_begin.take()
            && !committed
        {
            self.session = at_begin;
        }
        self.local = None;
        self.savepoints.clear();
    }

    /// `SAVEPOINT name`.
    pub fn on_savepoint(&mut self, name: &str) {
        if self.in_transaction() {
            self.savepoints
                .push((name.to_owned(), self.session.clone(), self.local.clone()));
        }
    }

    /// `ROLLBACK TO [SAVEPOINT] name`: back to the values at the savepoint, which stays open.
    pub fn on_rollback_to(&mut self, name: &str) {
        if let Some(i) = self.savepoints.iter().rposition(|(n, _, _)| n == name) {
            self.savepoints.truncate(i + 1);
            let (_, session, local) = &self.savepoints[i];
            self.session = session.clone();
            self.local = local.clone();
        }
    }

    /// `RELEASE [SAVEPOINT] name`: the savepoint and later ones close; values stay.
    pub fn on_release(&mut self, name: &str) {
        if let Some(i) = self.savepoints.iter().rposition(|(n, _, _)| n == name) {
            self.savepoints.truncate(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlcommenter_pairs_decode() {
        assert_eq!(
            sqlcommenter_pairs("controller='index',pgseal_user='dr%20martin', route='%2Fp'"),
            [
                ("controller".to_owned(), "index".to_owned()),
                ("pgseal_user".to_owned(), "dr martin".to_owned()),
                ("route".to_owned(), "/p".to_owned()),
            ]
        );
        assert_eq!(
            sqlcommenter_pairs(r"pgseal_user='o\'brien'"),
            [("pgseal_user".to_owned(), "o'brien".to_owned())]
        );
        assert!(sqlcommenter_pairs("just a comment").is_empty());
        assert!(sqlcommenter_pairs("pgseal_user='%zz'").is_empty());
        assert!(sqlcommenter_pairs("pgseal_user='unterminated").is_empty());
    }
}
