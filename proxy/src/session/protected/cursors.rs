//! SQL cursors over statements pgseal evaluates (`DECLARE c CURSOR FOR SELECT … ORDER BY
//! sealed_col`): the statements that act on a cursor read from their tokens, and the session's
//! registry of evaluated cursors.
//!
//! The server is sent `DECLARE c … FOR <the superset>` (the evaluation's rewrite). At the
//! first `FETCH [FORWARD] n` or `FETCH ALL`, the server is sent `FETCH ALL FROM c`: pgseal
//! evaluates the whole result (the same caps as any statement), sends the client the first
//! `n` rows with the tag `FETCH n`, and keeps the rest here, already rendered in the role's
//! view. A later `FETCH n` still goes to the server as `FETCH ALL FROM c` (it answers with
//! no row, so transaction state and errors such as a closed cursor stay the server's), and
//! pgseal sends the next `n` rows kept. `MOVE` and every other direction are refused, and so
//! is `SCROLL`. The rows kept are rendered in the first FETCH's result formats: a later FETCH
//! asking for others is refused (pgseal cannot convert the server's own columns).
//!
//! The registry follows what the server confirmed: a `DECLARE` is recorded when sent
//! (pending, the entry it replaces kept aside), confirmed by its `DECLARE CURSOR` completion or
//! undone by its error. `CLOSE`, `DISCARD ALL` and the end of the declaring transaction
//! (`WITH HOLD`: its rollback only) drop the rows kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};
use zeroize::Zeroizing;

use super::state::Refusal;
use crate::analyze::DeclaredCursor;
use crate::analyze::evaluation::Evaluation;
use crate::protect::date_settings::DateSettings;
use crate::wire::extended::format_at;

/// A rendered DataRow kept for a later FETCH (wiped when dropped).
pub type KeptRow = Zeroizing<Vec<u8>>;

/// What a `DECLARE` planned: the cursor, and what pgseal evaluates in its query.
#[derive(Debug)]
pub struct Declaring {
    /// The cursor.
    pub cursor: DeclaredCursor,
    /// What pgseal evaluates in its query (`None`: its rows stream as any result's).
    pub evaluation: Option<Arc<Evaluation>>,
}

/// An evaluated cursor as declared: what its FETCHes need to evaluate its rows.
#[derive(Debug)]
pub struct EvaluatedCursor {
    /// What pgseal evaluates.
    pub evaluation: Arc<Evaluation>,
    /// The bound parameters pgseal reads (`$1` first), for a DECLARE bound in the extended
    /// protocol; empty for a simple Query.
    pub params: Vec<Option<String>>,
    /// The settings its literals were read in.
    pub literal_dates: Arc<DateSettings>,
    /// The settings its parameters were read in.
    pub param_dates: Arc<DateSettings>,
    /// `WITH HOLD`.
    pub hold: bool,
}

/// What one statement (Query or Execute) does to the registry, applied by the backend when
/// the server answers.
#[derive(Clone, Debug)]
pub enum CursorOp {
    /// A `DECLARE`: confirmed by its completion, undone by its error.
    Declare {
        /// The cursor's name.
        name: String,
        /// The registry's id of the declaration.
        id: u64,
    },
    /// A `FETCH` of an evaluated cursor, sent as `FETCH ALL FROM` it.
    Fetch(Arc<Fetching>),
}

/// A `FETCH` of an evaluated cursor.
#[derive(Debug)]
pub struct Fetching {
    /// The cursor's name.
    pub name: String,
    /// The rows the client asked for (0: all).
    pub limit: u32,
    /// The cursor.
    pub cursor: Arc<EvaluatedCursor>,
}

/// What a statement asks of a cursor, from its tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `FETCH` or `MOVE`.
    Fetch {
        /// `MOVE` (positions without returning rows).
        is_move: bool,
        /// The cursor's name, folded.
        name: String,
        /// Which rows.
        motion: Motion,
    },
    /// `CLOSE name` (`None`: `CLOSE ALL`).
    Close(Option<String>),
    /// Anything else.
    Other,
}

/// Which rows a `FETCH` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Motion {
    /// The next `n` rows (`n` at least 1): `FETCH n`, `FORWARD n`, `NEXT`, `FORWARD`.
    Forward(u64),
    /// Every row left: `ALL`, `FORWARD ALL`.
    All,
    /// Any other direction, named: pgseal reads an evaluated cursor forward only.
    Other(&'static str),
}

/// Whether two portal names name the same portal: PostgreSQL compares the first 63 bytes
/// (`NAMEDATALEN` - 1) of a portal's name.
pub fn same_portal_name(a: &[u8], b: &[u8]) -> bool {
    const KEPT: usize = 63;
    a[..a.len().min(KEPT)] == b[..b.len().min(KEPT)]
}

/// Whether two lists of format codes (as a Bind gives them) ask every column in the same
/// format.
fn same_formats(a: &[i16], b: &[i16]) -> bool {
    (0..a.len().max(b.len()).max(1)).all(|i| format_at(a, i) == format_at(b, i))
}

/// Format codes (as a Bind gives them) in words: "every column in text", or each column's.
fn describe_formats(formats: &[i16]) -> String {
    let word = |f: i16| if f == 1 { "binary" } else { "text" };
    match formats {
        [] => "every column in text".into(),
        [one] => format!("every column in {}", word(*one)),
        many => many.iter().map(|f| word(*f)).collect::<Vec<_>>().join(", "),
    }
}

/// The statements of a text, each as its tokens without whitespace and comments (`None` when
/// the text does not tokenize: it is then no cursor statement pgseal handles).
pub fn statements(text: &str) -> Option<Vec<Vec<Token>>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .ok()?;
    let mut out = vec![Vec::new()];
    for token in tokens {
        match token {
            Token::Whitespace(_) => {}
            Token::SemiColon => out.push(Vec::new()),
            token => {
                if let Some(last) = out.last_mut() {
                    last.push(token);
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    Some(out)
}

/// What one statement's tokens ask of a cursor.
pub fn command(tokens: &[Token]) -> Command {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    let name_at = |i: usize| match (tokens.get(i), tokens.len() == i + 1) {
        (Some(Token::Word(w)), true)
            if w.quote_style.is_some()
                || !["from", "in", "all"].contains(&w.value.to_ascii_lowercase().as_str()) =>
        {
            Some(crate::analyze::fold_name(&sqlparser::ast::Ident {
                value: w.value.clone(),
                quote_style: w.quote_style,
                span: sqlparser::tokenizer::Span::empty(),
            }))
        }
        _ => None,
    };
    match word(0).as_deref() {
        Some("close") => match word(1).as_deref() {
            Some("all") if tokens.len() == 2 => Command::Close(None),
            _ => name_at(1).map_or(Command::Other, |name| Command::Close(Some(name))),
        },
        Some(verb @ ("fetch" | "move")) => {
            let is_move = verb == "move";
            // The direction, then `FROM`/`IN`, then the name (last).
            let Some(name) = tokens.len().checked_sub(1).and_then(name_at) else {
                return Command::Other;
            };
            let mut end = tokens.len() - 1;
            if matches!(word(end.saturating_sub(1)).as_deref(), Some("from" | "in")) && end > 1 {
                end -= 1;
            }
            Command::Fetch {
                is_move,
                name,
                motion: motion(&tokens[1..end]),
            }
        }
        _ => Command::Other,
    }
}

/// The motion of a `FETCH`'s direction tokens.
fn motion(tokens: &[Token]) -> Motion {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    let count = |from: usize| -> Option<i128> {
        let (sign, at) = match tokens.get(from) {
            Some(Token::Minus) => (-1, from + 1),
            Some(Token::Plus) => (1, from + 1),
            _ => (1, from),
        };
        match tokens.get(at) {
            Some(Token::Number(n, false)) if at + 1 == tokens.len() => {
                n.parse::<i128>().ok().map(|n| sign * n)
            }
            _ => None,
        }
    };
    let forward = |n: i128| match n {
        n if n > 0 => Motion::Forward(u64::try_from(n).unwrap_or(u64::MAX)),
        0 => Motion::Other("a count of 0 (the current row again)"),
        _ => Motion::Other("a negative count (backward)"),
    };
    match (tokens.len(), word(0).as_deref()) {
        (0, _) => Motion::Forward(1),
        (1, Some("next")) => Motion::Forward(1),
        (1, Some("forward")) => Motion::Forward(1),
        (1, Some("all")) => Motion::All,
        (2, Some("forward")) if word(1).as_deref() == Some("all") => Motion::All,
        (_, Some("forward")) => count(1).map_or(Motion::Other("this direction"), forward),
        (_, Some("backward")) => Motion::Other("BACKWARD"),
        (_, Some("prior")) => Motion::Other("PRIOR"),
        (_, Some("first")) => Motion::Other("FIRST"),
        (_, Some("last")) => Motion::Other("LAST"),
        (_, Some("absolute")) => Motion::Other("ABSOLUTE"),
        (_, Some("relative")) => Motion::Other("RELATIVE"),
        _ => count(0).map_or(Motion::Other("this direction"), forward),
    }
}

/// The text sent to the server for every FETCH of an evaluated cursor.
pub fn fetch_all_sql(name: &str) -> String {
    format!("FETCH ALL FROM \"{}\"", name.replace('"', "\"\""))
}

/// Where an evaluated cursor's rows stand.
#[derive(Debug)]
enum Rows {
    /// Declared; no FETCH has read it yet.
    Fresh,
    /// Read to its end by the first FETCH: the rows not sent yet, rendered in `formats` (as a
    /// Bind gives them: none for text, one for every column, or one per column).
    Kept {
        rows: VecDeque<KeptRow>,
        formats: Vec<i16>,
    },
    /// pgseal failed a FETCH of it (a cap, a budget block, a value that does not open): the
    /// server's cursor is no longer where the client thinks it is.
    Failed(Refusal),
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// `None`: a cursor pgseal does not evaluate (recorded only while its DECLARE is pending,
    /// to undo it if the server refuses it).
    cursor: Option<Arc<EvaluatedCursor>>,
    rows: Rows,
    /// Its DECLARE has not been answered yet.
    pending: bool,
    /// The entry it replaces, restored if its DECLARE fails.
    previous: Option<Box<Entry>>,
    /// Its declaring transaction has committed (a `WITH HOLD` cursor then outlives it).
    committed: bool,
}

/// The session's evaluated cursors, by name.
#[derive(Debug, Default)]
pub struct Cursors {
    entries: HashMap<String, Entry>,
    next_id: u64,
}

/// What the frontend does with a FETCH of a cursor.
pub enum Lookup {
    /// pgseal does not evaluate it: the FETCH goes as it is.
    Streamed,
    /// pgseal evaluates it.
    Evaluated(Arc<EvaluatedCursor>),
    /// It cannot be read now (it failed earlier, or it is being declared again under a name
    /// in use and the server has not answered yet).
    Refused(Refusal),
}

impl Cursors {
    /// Records a DECLARE as it is sent; its id is confirmed or undone when the server answers.
    pub fn declare_sent(&mut self, name: &str, cursor: Option<Arc<EvaluatedCursor>>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        if cursor.is_none() && !self.entries.contains_key(name) {
            // A cursor pgseal streams, replacing none it evaluates: nothing to record.
            return id;
        }
        let previous = self.entries.remove(name).map(Box::new);
        self.entries.insert(
            name.to_string(),
            Entry {
                id,
                cursor,
                rows: Rows::Fresh,
                pending: true,
                previous,
                committed: false,
            },
        );
        id
    }

    /// The server declared the cursor.
    pub fn confirm(&mut self, name: &str, id: u64) {
        let Some(entry) = self.entries.get_mut(name).filter(|e| e.id == id) else {
            return;
        };
        if entry.cursor.is_none() {
            self.entries.remove(name);
        } else {
            entry.pending = false;
            entry.previous = None;
        }
    }

    /// The server refused (or skipped) the DECLARE: what was there before stands.
    pub fn reject(&mut self, name: &str, id: u64) {
        if self.entries.get(name).is_some_and(|e| e.id == id)
            && let Some(entry) = self.entries.remove(name)
            && let Some(previous) = entry.previous
        {
            self.entries.insert(name.to_string(), *previous);
        }
    }

    /// What the protocol portal `name` (of a Describe or Execute) is, when it is one of the
    /// cursors recorded here: PostgreSQL finds a portal by the first 63 bytes of its name.
    pub fn lookup_portal(&self, name: &[u8]) -> Lookup {
        self.entries
            .keys()
            .find(|cursor| same_portal_name(cursor.as_bytes(), name))
            .map_or(Lookup::Streamed, |cursor| self.lookup(cursor))
    }

    /// How a FETCH of `name` is sent.
    pub fn lookup(&self, name: &str) -> Lookup {
        let Some(entry) = self.entries.get(name) else {
            return Lookup::Streamed;
        };
        if entry.pending && entry.previous.is_some() {
            // Which of the two cursors the server holds is not known yet.
            return Lookup::Refused(Refusal::new(
                "55000",
                format!(
                    "cursor {name} is being declared again and the server has not answered yet; wait for the DECLARE's answer before fetching"
                ),
            ));
        }
        if let Rows::Failed(refusal) = &entry.rows {
            return Lookup::Refused(Refusal {
                sqlstate: "55000",
                message: format!(
                    "cursor {name} cannot be read further: an earlier FETCH failed ({}); close it",
                    refusal.message
                ),
                hint: None,
            });
        }
        match &entry.cursor {
            Some(cursor) => Lookup::Evaluated(Arc::clone(cursor)),
            None => Lookup::Streamed,
        }
    }

    /// The rows kept for a FETCH whose columns are asked for in `formats` (`None` at the
    /// first FETCH, which reads the server's rows); refused when the formats differ (see
    /// [`Cursors::formats_refusal`]), the rows staying kept.
    pub fn take_rows(
        &mut self,
        name: &str,
        formats: &[i16],
    ) -> Result<Option<VecDeque<KeptRow>>, Refusal> {
        if let Some(refusal) = self.formats_refusal(name, formats) {
            return Err(refusal);
        }
        Ok(match self.entries.get_mut(name).map(|e| &mut e.rows) {
            Some(Rows::Kept { rows, .. }) => Some(std::mem::take(rows)),
            _ => None,
        })
    }

    /// Why a FETCH asking for `formats` cannot read the rows kept: they were rendered in the
    /// first FETCH's formats, and pgseal cannot convert the server's own columns from one
    /// format to the other.
    pub fn formats_refusal(&self, name: &str, formats: &[i16]) -> Option<Refusal> {
        match self.entries.get(name).map(|e| &e.rows) {
            Some(Rows::Kept { formats: kept, .. }) if !same_formats(kept, formats) => {
                Some(Refusal::new(
                    "0A000",
                    format!(
                        "pgseal keeps the rest of cursor {name} in the formats of its first \
                         FETCH ({}), and cannot convert them to the ones asked ({}): FETCH \
                         from it in the first FETCH's formats",
                        describe_formats(kept),
                        describe_formats(formats)
                    ),
                ))
            }
            _ => None,
        }
    }

    /// Keeps the rows a FETCH did not send, rendered in `formats`, for the next.
    pub fn keep_rows(&mut self, name: &str, rows: VecDeque<KeptRow>, formats: Vec<i16>) {
        if let Some(entry) = self.entries.get_mut(name)
            && !matches!(entry.rows, Rows::Failed(_))
        {
            entry.rows = Rows::Kept { rows, formats };
        }
    }

    /// pgseal failed a FETCH of the cursor: later ones are refused.
    pub fn fail(&mut self, name: &str, refusal: Refusal) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.rows = Rows::Failed(refusal);
        }
    }

    /// A reload moved the session to new policies: the rows kept were rendered under the old
    /// views, so every cursor's later FETCHes are refused (declare it again).
    pub fn fail_all(&mut self) {
        for (name, entry) in &mut self.entries {
            entry.rows = Rows::Failed(Refusal::new(
                "55000",
                format!(
                    "cursor {name} was declared under policies pgseal has reloaded since; close \
                     it and declare it again"
                ),
            ));
        }
    }

    /// `CLOSE name` (`None`: `CLOSE ALL`), or the server's word that the cursor does not
    /// exist: its rows are dropped.
    pub fn close(&mut self, name: Option<&str>) {
        match name {
            Some(name) => {
                if self.entries.get(name).is_some_and(|e| !e.pending) {
                    self.entries.remove(name);
                }
            }
            None => self.entries.retain(|_, e| e.pending),
        }
    }

    /// `DISCARD ALL`.
    pub fn clear(&mut self) {
        self.entries.retain(|_, e| e.pending);
    }

    /// A transaction ended: its cursors go, but for `WITH HOLD` ones when it committed.
    pub fn on_transaction_end(&mut self, committed: bool) {
        self.entries.retain(|_, entry| {
            if entry.pending {
                return true;
            }
            let hold = entry.cursor.as_ref().is_some_and(|c| c.hold);
            if !hold || !(committed || entry.committed) {
                return false;
            }
            entry.committed = true;
            true
        });
    }

    /// The rows kept for all cursors, and their bytes: what a first FETCH counts against its
    /// caps, so that a session keeps at most the caps' worth across its cursors.
    pub fn kept(&self) -> (usize, usize) {
        self.entries
            .values()
            .filter_map(|entry| match &entry.rows {
                Rows::Kept { rows, .. } => Some(rows),
                _ => None,
            })
            .fold((0, 0), |(count, bytes), rows| {
                (
                    count + rows.len(),
                    bytes + rows.iter().map(|r| r.len()).sum::<usize>(),
                )
            })
    }

    /// Whether no cursor is recorded: then no statement needs reading for cursors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many cursors are recorded (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Command {
        let statements = statements(text).unwrap_or_default();
        assert_eq!(statements.len(), 1, "{text}");
        command(&statements[0])
    }

    fn fetch(name: &str, motion: Motion) -> Command {
        Command::Fetch {
            is_move: false,
            name: name.into(),
            motion,
        }
    }

    #[test]
    fn fetch_forms_read_as_postgresql_reads_them() {
        assert_eq!(
            parse("FETCH FORWARD 2000 FROM \"Name\""),
            fetch("Name", Motion::Forward(2000))
        );
        assert_eq!(parse("fetch 7 in C"), fetch("c", Motion::Forward(7)));
        assert_eq!(parse("FETCH c"), fetch("c", Motion::Forward(1)));
        assert_eq!(parse("FETCH NEXT FROM c"), fetch("c", Motion::Forward(1)));
        assert_eq!(
            parse("FETCH FORWARD FROM c"),
            fetch("c", Motion::Forward(1))
        );
        assert_eq!(parse("FETCH ALL c"), fetch("c", Motion::All));
        assert_eq!(parse("FETCH FORWARD ALL FROM c;"), fetch("c", Motion::All));
        assert_eq!(parse("FETCH +3 FROM c"), fetch("c", Motion::Forward(3)));
        for other in [
            "FETCH -1 FROM c",
            "FETCH 0 FROM c",
            "FETCH BACKWARD 2 FROM c",
            "FETCH PRIOR FROM c",
            "FETCH FIRST c",
            "FETCH LAST FROM c",
            "FETCH ABSOLUTE 3 FROM c",
            "FETCH RELATIVE 1 FROM c",
            "FETCH FORWARD 0 FROM c",
        ] {
            assert!(
                matches!(
                    parse(other),
                    Command::Fetch {
                        motion: Motion::Other(_),
                        ..
                    }
                ),
                "{other}"
            );
        }
        assert!(matches!(
            parse("MOVE 3 FROM c"),
            Command::Fetch { is_move: true, .. }
        ));
        assert_eq!(parse("CLOSE ALL"), Command::Close(None));
        assert_eq!(parse("close \"X\""), Command::Close(Some("X".into())));
        assert_eq!(parse("SELECT 1"), Command::Other);
        assert_eq!(parse("FETCH FROM"), Command::Other);
        assert_eq!(
            statements("FETCH 1 FROM c; FETCH 2 FROM c").map(|s| s.len()),
            Some(2)
        );
    }

    fn cursor(hold: bool) -> Arc<EvaluatedCursor> {
        Arc::new(EvaluatedCursor {
            evaluation: Arc::new(Evaluation {
                hidden: Vec::new(),
                filter: Vec::new(),
                order: Vec::new(),
                limit: None,
                offset: None,
                edits: Vec::new(),
                params: Vec::new(),
                read_types: Vec::new(),
                columns: Vec::new(),
                count_only: false,
                hidden_sql: Vec::new(),
                filter_edits: Vec::new(),
                max_param: 0,
                hidden_select: None,
                distinct: None,
            }),
            params: Vec::new(),
            literal_dates: Arc::default(),
            param_dates: Arc::default(),
            hold,
        })
    }

    #[test]
    fn declarations_follow_the_server() {
        let mut cursors = Cursors::default();
        let first = cursors.declare_sent("c", Some(cursor(false)));
        assert!(matches!(cursors.lookup("c"), Lookup::Evaluated(_)));
        cursors.confirm("c", first);
        // Declared again without pgseal's evaluation, and refused (the name is taken): the
        // first stands.
        let second = cursors.declare_sent("c", None);
        assert!(matches!(cursors.lookup("c"), Lookup::Refused(_)));
        cursors.reject("c", second);
        assert!(matches!(cursors.lookup("c"), Lookup::Evaluated(_)));
        cursors.keep_rows("c", VecDeque::from([Zeroizing::new(vec![1])]), vec![0, 1]);
        assert!(cursors.take_rows("c", &[1, 1]).is_err());
        assert!(cursors.take_rows("c", &[0]).is_err());
        assert_eq!(
            cursors.take_rows("c", &[0, 1]).unwrap().map(|r| r.len()),
            Some(1)
        );
        cursors.fail("c", Refusal::new("54000", "cap"));
        assert!(matches!(cursors.lookup("c"), Lookup::Refused(_)));
        cursors.close(Some("c"));
        assert!(matches!(cursors.lookup("c"), Lookup::Streamed));
        // Declared again without evaluation and accepted: nothing is recorded.
        let third = cursors.declare_sent("c", None);
        cursors.confirm("c", third);
        assert_eq!(cursors.len(), 0);
    }

    #[test]
    fn transaction_ends_drop_cursors_as_postgresql_does() {
        let mut cursors = Cursors::default();
        for (name, hold) in [("plain", false), ("held", true)] {
            let id = cursors.declare_sent(name, Some(cursor(hold)));
            cursors.confirm(name, id);
        }
        cursors.on_transaction_end(true);
        assert!(matches!(cursors.lookup("plain"), Lookup::Streamed));
        assert!(matches!(cursors.lookup("held"), Lookup::Evaluated(_)));
        // A later transaction's rollback leaves a committed WITH HOLD cursor.
        cursors.on_transaction_end(false);
        assert!(matches!(cursors.lookup("held"), Lookup::Evaluated(_)));
        // One whose declaring transaction rolls back goes.
        let id = cursors.declare_sent("late", Some(cursor(true)));
        cursors.confirm("late", id);
        cursors.on_transaction_end(false);
        assert!(matches!(cursors.lookup("late"), Lookup::Streamed));
        cursors.clear();
        assert_eq!(cursors.len(), 0);
    }
}
