//! Running an [`Evaluation`] over the rows of one result: each row's hidden values decide
//! whether it is kept and where it sorts; pgseal then applies `OFFSET` and `LIMIT`.
//!
//! Without a sort of pgseal's, kept rows stream on at once (the server's order is the
//! statement's). With one, kept rows are held with their sort key until the result ends —
//! only the first `OFFSET + LIMIT` of them when there is a `LIMIT` (pruned as they come), and
//! never more than the caps allow: past them the statement fails with an error naming the cap.
//! Held rows and keys hold plaintext; they are dropped (the row frames wiped) with the result.

use std::cmp::Ordering;
use std::sync::Arc;

use pgseal_policies::PlainType;
use zeroize::Zeroizing;

use super::collation::TextOrder;
use super::like;
use super::scalar::{self, Scalar};
use super::unaccent::UnaccentRules;
use crate::analyze::evaluation::{CompareOp, Count, Evaluation, Key, Pred, Term, Test, TrimSide};
use crate::protect::date_settings::DateSettings;
use crate::protect::values;

/// How much one statement evaluated by pgseal may hold and scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Rows held for a sort at once (`--evaluation-max-rows`).
    pub max_rows: usize,
    /// Bytes of rows held for a sort at once (`--evaluation-max-bytes`).
    pub max_bytes: usize,
    /// Rows read from the server (`--evaluation-max-scan`).
    pub max_scanned: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_rows: 200_000,
            max_bytes: 64 << 20,
            max_scanned: 20_000_000,
        }
    }
}

/// Why an evaluation failed: the statement fails with this SQLSTATE and message (which never
/// holds a value).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// SQLSTATE.
    pub sqlstate: &'static str,
    /// Message.
    pub message: String,
}

impl EvalError {
    fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        EvalError {
            sqlstate,
            message: message.into(),
        }
    }
}

/// One hidden value of a row, as the backend read it.
#[derive(Clone, Debug)]
pub enum HiddenValue {
    /// SQL NULL.
    Null,
    /// A sealed column's plaintext: its canonical text and typed value.
    Opened {
        /// Canonical text (what a cast to text gives).
        text: String,
        /// The typed value.
        value: Scalar,
    },
    /// A boolean the server computed.
    Bool(bool),
    /// A rank the server computed.
    Rank(i64),
    /// A value pgseal ignores (the parameter keeper).
    Ignored,
    /// The rows of a subquery pgseal filters, each with its own hidden values.
    Rows(Vec<Vec<HiddenValue>>),
}

/// What pgseal reads a hidden column as: a value (a sealed column's plaintext type; `None`
/// for the server's booleans and ranks), or a subquery's rows with each field's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HiddenType {
    /// One value.
    Value(Option<PlainType>),
    /// The rows of a subquery ([`crate::analyze::evaluation::Hidden::Rows`]).
    Rows(Vec<HiddenType>),
}

/// What to do with a kept row when pgseal does not sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Before `OFFSET`: drop it.
    Skip,
    /// Send it.
    Emit,
    /// Past `LIMIT`: drop it and every row after.
    Stop,
}

/// A term with its constants read once.
#[derive(Clone, Debug)]
enum Value {
    Hidden(usize),
    Const(Option<Scalar>),
    Lower(Box<Value>),
    Upper(Box<Value>),
    Unaccent(Box<Value>, Arc<UnaccentRules>),
    Text(Box<Value>),
    Coalesce(Vec<Value>),
    Concat(Vec<Value>),
    Trim(Box<Value>, TrimSide),
}

impl Value {
    /// Whether it is the same for every row: no hidden value in it (a literal, a parameter,
    /// `'%' || $1 || '%'`).
    fn is_constant(&self) -> bool {
        match self {
            Value::Hidden(_) => false,
            Value::Const(_) => true,
            Value::Lower(inner)
            | Value::Upper(inner)
            | Value::Unaccent(inner, _)
            | Value::Text(inner)
            | Value::Trim(inner, _) => inner.is_constant(),
            Value::Coalesce(parts) | Value::Concat(parts) => parts.iter().all(Value::is_constant),
        }
    }
}

#[derive(Clone, Debug)]
enum Check {
    And(Vec<Check>),
    Or(Vec<Check>),
    Not(Box<Check>),
    Server(usize),
    /// Some row of the subquery in this hidden column passes every check; with a match
    /// field (`x IN (…)` under `NOT`), TRUE when a passing row's match is TRUE, NULL when
    /// none is but one is NULL.
    Any(usize, Vec<Check>, Option<usize>),
    Compare(Value, CompareOp, Value),
    Between(Value, Value, Value, bool),
    In(Value, Vec<Value>, bool),
    IsNull(Value, bool),
    Like {
        value: Value,
        pattern: Value,
        escape: Option<Value>,
        insensitive: bool,
        negated: bool,
    },
}

#[derive(Clone, Debug)]
enum KeyValue {
    Rank(i64),
    Value(Option<Scalar>),
}

struct Held {
    key: Vec<KeyValue>,
    frame: Zeroizing<Vec<u8>>,
}

/// The sort key of a row [`Run::admit`] let in, for [`Run::hold`].
pub struct Admitted(Vec<KeyValue>);

/// Most `value length × pattern length` pgseal matches for one value (with several `%`, where
/// the matcher may backtrack).
const LIKE_WORK_MAX: usize = 64 << 20;

/// Largest `OFFSET + LIMIT` kept as a sorted top-k (one comparison for most rows); past it,
/// rows are held and pruned in batches.
const TOP_K_MAX: usize = 256;

/// One result being evaluated.
pub struct Run {
    evaluation: Arc<Evaluation>,
    order: Arc<TextOrder>,
    checks: Vec<Check>,
    keys: Vec<(Value, bool, bool)>,
    limit: Option<u64>,
    offset: u64,
    caps: Caps,
    /// Rows and bytes the session already keeps elsewhere (other cursors' rows), counted
    /// against the caps.
    kept_elsewhere: (usize, usize),
    held: Vec<Held>,
    held_bytes: usize,
    scanned: u64,
    /// The identities of the rows kept so far, for a `SELECT DISTINCT` pgseal removes the
    /// duplicates of: digests, so that no plaintext is kept for it.
    seen: std::collections::HashSet<[u8; 16]>,
    kept: u64,
    /// The `LIKE` patterns read so far, for the rows to come.
    patterns: Patterns,
}

impl Run {
    /// Prepares a result's evaluation: `hidden_types` gives what each hidden column holds, `params` the statement's bound parameters as text (`$1` first; `None`
    /// for NULL); dates and times among the literals and parameters are read in the session
    /// settings of their time (the statement's planning, its Bind).
    pub fn new(
        evaluation: Arc<Evaluation>,
        order: Arc<TextOrder>,
        hidden_types: &[HiddenType],
        params: &[Option<String>],
        (literal_dates, param_dates): (&DateSettings, &DateSettings),
        unaccent: Option<Arc<UnaccentRules>>,
        caps: Caps,
    ) -> Result<Run, EvalError> {
        let compiler = Compiler {
            hidden_types,
            params,
            literal_dates,
            param_dates,
            unaccent,
        };
        let checks = evaluation
            .filter
            .iter()
            .map(|p| compiler.pred(p))
            .collect::<Result<_, _>>()?;
        let keys = evaluation
            .order
            .iter()
            .map(|k| {
                let value = match &k.key {
                    Key::Rank(i) => Value::Hidden(*i),
                    Key::Term(t) => compiler.value(t, None)?,
                };
                Ok((value, k.descending, k.nulls_first))
            })
            .collect::<Result<_, EvalError>>()?;
        let limit = compiler.count(evaluation.limit.as_ref(), "LIMIT", "2201W")?;
        let offset = compiler
            .count(evaluation.offset.as_ref(), "OFFSET", "2201X")?
            .unwrap_or(0);
        Ok(Run {
            evaluation,
            order,
            checks,
            keys,
            limit,
            offset,
            caps,
            kept_elsewhere: (0, 0),
            held: Vec::new(),
            held_bytes: 0,
            scanned: 0,
            seen: std::collections::HashSet::new(),
            kept: 0,
            patterns: Patterns::default(),
        })
    }

    /// How text orders and folds in the database.
    pub fn order(&self) -> &TextOrder {
        &self.order
    }

    /// The evaluation run.
    pub fn evaluation(&self) -> &Evaluation {
        &self.evaluation
    }

    /// Whether pgseal sorts (rows are held to the end).
    pub fn sorts(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Rows read from the server so far.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Rows kept so far (every conjunct TRUE, not a duplicate), those before `OFFSET`
    /// included, when pgseal does not sort.
    pub fn kept(&self) -> u64 {
        self.kept
    }

    /// Rows still to keep before the `LIMIT` is reached (`OFFSET` included), when there is one
    /// and pgseal does not sort.
    pub fn remaining(&self) -> Option<u64> {
        let wanted = self.offset.saturating_add(self.limit?);
        Some(wanted.saturating_sub(self.kept))
    }

    /// Whether no row can be sent any more (`LIMIT 0`, or the limit reached while streaming).
    pub fn exhausted(&self) -> bool {
        self.limit
            .is_some_and(|l| !self.sorts() && self.kept >= self.offset.saturating_add(l))
    }

    /// Whether a row with these hidden values is kept (every conjunct TRUE); counts it as
    /// scanned.
    pub fn keep(&mut self, hidden: &[HiddenValue]) -> Result<bool, EvalError> {
        self.scanned += 1;
        if self.scanned > self.caps.max_scanned {
            return Err(EvalError::new(
                "54000",
                format!(
                    "pgseal read more than {} rows to evaluate this statement (--evaluation-max-scan); narrow it with conditions on unsealed columns",
                    self.caps.max_scanned
                ),
            ));
        }
        let row = Row {
            hidden,
            order: &self.order,
            patterns: &self.patterns,
        };
        for check in &self.checks {
            if row.check(check)? != Some(true) {
                return Ok(false);
            }
        }
        if let Some(parts) = &self.evaluation.distinct {
            if !self.seen.insert(identity(hidden, parts)) {
                return Ok(false);
            }
            if self.seen.len() > self.caps.max_rows {
                return Err(EvalError::new(
                    "54000",
                    format!(
                        "pgseal would remember more than {} distinct rows to remove the duplicates of this statement (--evaluation-max-rows); narrow it",
                        self.caps.max_rows
                    ),
                ));
            }
        }
        Ok(true)
    }

    /// Counts rows and bytes the session already keeps elsewhere (other cursors' rows held
    /// for their next FETCH) against this result's caps: one session holds at most the caps in
    /// all.
    pub fn kept_elsewhere(&mut self, rows: usize, bytes: usize) {
        self.kept_elsewhere = (rows, bytes);
    }

    /// Where a kept row goes when pgseal does not sort.
    pub fn step(&mut self) -> Step {
        self.kept += 1;
        if self.kept <= self.offset {
            return Step::Skip;
        }
        match self.limit {
            Some(limit) if self.kept - self.offset > limit => Step::Stop,
            _ => Step::Emit,
        }
    }

    /// How many rows a sort needs to hold at most: `OFFSET + LIMIT`, when there is a `LIMIT`.
    fn wanted(&self) -> Option<usize> {
        self.limit
            .map(|l| usize::try_from(self.offset.saturating_add(l)).unwrap_or(usize::MAX))
    }

    /// Whether a kept row can be among those sent: its sort key when it can (to hand to
    /// [`Run::hold`] with the row), `None` when `LIMIT` rows sorting before it are held
    /// already. Asked before the row is rendered, so that rows that cannot make a page cost
    /// only their sort key.
    pub fn admit(&self, hidden: &[HiddenValue]) -> Result<Option<Admitted>, EvalError> {
        let row = Row {
            hidden,
            order: &self.order,
            patterns: &self.patterns,
        };
        let key = self
            .keys
            .iter()
            .map(|(value, _, _)| match value {
                Value::Hidden(i) => match hidden.get(*i) {
                    Some(HiddenValue::Rank(rank)) => Ok(KeyValue::Rank(*rank)),
                    _ => row.eval(value).map(KeyValue::Value),
                },
                other => row.eval(other).map(KeyValue::Value),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(wanted) = self.wanted().filter(|&w| w <= TOP_K_MAX) {
            if wanted == 0 {
                return Ok(None);
            }
            // Held rows stay sorted: a row that does not sort before the last one needed
            // (ties keep the order they came in) is never sent.
            if self.held.len() >= wanted
                && compare_keys(&self.keys, &self.order, &key, &self.held[wanted - 1].key)
                    != Ordering::Less
            {
                return Ok(None);
            }
        }
        Ok(Some(Admitted(key)))
    }

    /// Holds an admitted row (its DataRow frame, as the client will see it) for pgseal's sort.
    pub fn hold(&mut self, admitted: Admitted, frame: Vec<u8>) -> Result<(), EvalError> {
        let key = admitted.0;
        self.held_bytes += frame.len();
        let held = Held {
            key,
            frame: Zeroizing::new(frame),
        };
        match self.wanted() {
            Some(wanted) if wanted <= TOP_K_MAX => {
                // A sorted top-k: inserted after its equals, the one past `wanted` dropped.
                let at = self.held.partition_point(|h| {
                    compare_keys(&self.keys, &self.order, &h.key, &held.key) != Ordering::Greater
                });
                self.held.insert(at, held);
                if self.held.len() > wanted
                    && let Some(dropped) = self.held.pop()
                {
                    self.held_bytes -= dropped.frame.len();
                }
            }
            wanted => {
                self.held.push(held);
                if let Some(wanted) = wanted
                    && self.held.len() >= wanted.saturating_mul(2).max(1024)
                {
                    self.prune(wanted);
                }
            }
        }
        let (rows_elsewhere, bytes_elsewhere) = self.kept_elsewhere;
        let max_rows = self.caps.max_rows.saturating_sub(rows_elsewhere);
        let max_bytes = self.caps.max_bytes.saturating_sub(bytes_elsewhere);
        if self.held.len() > max_rows || self.held_bytes > max_bytes {
            if let Some(wanted) = self.wanted() {
                self.prune(wanted);
            }
            let elsewhere = if rows_elsewhere > 0 {
                format!(
                    ", {rows_elsewhere} rows of which the session's other cursors keep already; close them"
                )
            } else {
                String::new()
            };
            if self.held.len() > max_rows {
                return Err(EvalError::new(
                    "54000",
                    format!(
                        "pgseal would hold more than {} rows to sort this statement (--evaluation-max-rows{elsewhere}); add a LIMIT or narrow it",
                        self.caps.max_rows
                    ),
                ));
            }
            if self.held_bytes > max_bytes {
                return Err(EvalError::new(
                    "54000",
                    format!(
                        "pgseal would hold more than {} bytes of rows to sort this statement (--evaluation-max-bytes{elsewhere}); add a LIMIT or narrow it",
                        self.caps.max_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Sorts the held rows and keeps the first `wanted`.
    fn prune(&mut self, wanted: usize) {
        self.sort();
        for dropped in self.held.drain(wanted.min(self.held.len())..) {
            self.held_bytes -= dropped.frame.len();
        }
    }

    fn sort(&mut self) {
        let keys = &self.keys;
        let order = &self.order;
        self.held
            .sort_by(|a, b| compare_keys(keys, order, &a.key, &b.key));
    }

    /// The held rows to send, sorted, after `OFFSET` and within `LIMIT`.
    pub fn finish(&mut self) -> Vec<Zeroizing<Vec<u8>>> {
        self.sort();
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let limit = self
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let rows: Vec<_> = std::mem::take(&mut self.held)
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|h| h.frame)
            .collect();
        self.held_bytes = 0;
        rows
    }
}

/// A row's identity for `DISTINCT`: a digest of its identity values, equal exactly when
/// PostgreSQL's equality holds for each (a numeric's trailing zeros and the sign of a zero do
/// not count; NULL equals NULL).
fn identity(hidden: &[HiddenValue], parts: &[usize]) -> [u8; 16] {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for &part in parts {
        match hidden.get(part) {
            None | Some(HiddenValue::Null) => digest.update([0u8]),
            Some(HiddenValue::Rank(rank)) => {
                digest.update([1u8]);
                digest.update(rank.to_le_bytes());
            }
            Some(HiddenValue::Bool(b)) => digest.update([2u8, u8::from(*b)]),
            Some(HiddenValue::Ignored | HiddenValue::Rows(_)) => digest.update([3u8]),
            Some(HiddenValue::Opened { value, .. }) => {
                let bytes = Zeroizing::new(scalar::identity_bytes(value));
                digest.update([4u8]);
                digest.update((bytes.len() as u64).to_le_bytes());
                digest.update(&bytes);
            }
        }
    }
    let full = digest.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn compare_keys(
    keys: &[(Value, bool, bool)],
    order: &TextOrder,
    a: &[KeyValue],
    b: &[KeyValue],
) -> Ordering {
    for ((_, descending, nulls_first), (x, y)) in keys.iter().zip(a.iter().zip(b)) {
        let ordering = match (x, y) {
            (KeyValue::Rank(x), KeyValue::Rank(y)) => x.cmp(y),
            (KeyValue::Value(None), KeyValue::Value(None)) => Ordering::Equal,
            (KeyValue::Value(None), KeyValue::Value(Some(_))) => {
                if *nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (KeyValue::Value(Some(_)), KeyValue::Value(None)) => {
                if *nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (KeyValue::Value(Some(x)), KeyValue::Value(Some(y))) => {
                let o = scalar::compare(x, y, order).unwrap_or(Ordering::Equal);
                if *descending { o.reverse() } else { o }
            }
            _ => Ordering::Equal,
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Reads an [`Evaluation`]'s terms into [`Value`]s, constants parsed once.
struct Compiler<'a> {
    hidden_types: &'a [HiddenType],
    params: &'a [Option<String>],
    literal_dates: &'a DateSettings,
    param_dates: &'a DateSettings,
    /// The database's unaccent rules (`None`: it has no `unaccent` dictionary).
    unaccent: Option<Arc<UnaccentRules>>,
}

impl Compiler<'_> {
    fn pred(&self, pred: &Pred) -> Result<Check, EvalError> {
        Ok(match pred {
            Pred::And(terms) => Check::And(
                terms
                    .iter()
                    .map(|p| self.pred(p))
                    .collect::<Result<_, _>>()?,
            ),
            Pred::Or(terms) => Check::Or(
                terms
                    .iter()
                    .map(|p| self.pred(p))
                    .collect::<Result<_, _>>()?,
            ),
            Pred::Not(inner) => Check::Not(Box::new(self.pred(inner)?)),
            Pred::Server(i) => Check::Server(*i),
            Pred::Any {
                rows,
                filter,
                matched,
                ..
            } => {
                let Some(HiddenType::Rows(fields)) = self.hidden_types.get(*rows) else {
                    return Err(EvalError::new(
                        "XX000",
                        "pgseal's plan of a subquery does not match its hidden columns",
                    ));
                };
                let inner = Compiler {
                    hidden_types: fields,
                    unaccent: self.unaccent.clone(),
                    ..*self
                };
                Check::Any(
                    *rows,
                    filter
                        .iter()
                        .map(|p| inner.pred(p))
                        .collect::<Result<_, _>>()?,
                    *matched,
                )
            }
            Pred::Test(test) => self.test(test)?,
        })
    }

    fn test(&self, test: &Test) -> Result<Check, EvalError> {
        Ok(match test {
            Test::Compare { left, op, right } => {
                let (lt, rt) = (self.type_of(left), self.type_of(right));
                Check::Compare(
                    self.value(left, rt.as_ref())?,
                    *op,
                    self.value(right, lt.as_ref())?,
                )
            }
            Test::Between {
                term,
                low,
                high,
                negated,
            } => {
                let ty = self.type_of(term);
                Check::Between(
                    self.value(term, None)?,
                    self.value(low, ty.as_ref())?,
                    self.value(high, ty.as_ref())?,
                    *negated,
                )
            }
            Test::In {
                term,
                list,
                negated,
            } => {
                let ty = self.type_of(term);
                Check::In(
                    self.value(term, None)?,
                    list.iter()
                        .map(|t| self.value(t, ty.as_ref()))
                        .collect::<Result<_, _>>()?,
                    *negated,
                )
            }
            Test::IsNull { term, negated } => Check::IsNull(self.value(term, None)?, *negated),
            Test::Like {
                term,
                pattern,
                escape,
                insensitive,
                negated,
            } => Check::Like {
                value: self.value(term, None)?,
                pattern: self.value(pattern, Some(&PlainType::Text))?,
                escape: escape
                    .as_ref()
                    .map(|e| self.value(e, Some(&PlainType::Text)))
                    .transpose()?,
                insensitive: *insensitive,
                negated: *negated,
            },
        })
    }

    /// The type of a term's value, when it has one of its own (constants take their partner's).
    fn type_of(&self, term: &Term) -> Option<PlainType> {
        match term {
            Term::Sealed { hidden, .. } => match self.hidden_types.get(*hidden) {
                Some(HiddenType::Value(ty)) => *ty,
                _ => None,
            },
            Term::Lower(_)
            | Term::Upper(_)
            | Term::Unaccent(_)
            | Term::Text(_)
            | Term::Concat(_)
            | Term::Trim(..) => Some(PlainType::Text),
            Term::Coalesce(terms) => terms.iter().find_map(|t| self.type_of(t)),
            Term::Literal(_) | Term::Param(_) | Term::Null => None,
        }
    }

    /// A term; a constant is read as `partner` (the type of what it is compared with).
    fn value(&self, term: &Term, partner: Option<&PlainType>) -> Result<Value, EvalError> {
        Ok(match term {
            Term::Sealed { hidden, .. } => Value::Hidden(*hidden),
            Term::Null => Value::Const(None),
            Term::Literal(text) => Value::Const(Some(constant(text, partner, self.literal_dates)?)),
            Term::Param(n) => match self.params.get(usize::from(*n).saturating_sub(1)) {
                Some(Some(text)) => Value::Const(Some(constant(text, partner, self.param_dates)?)),
                Some(None) => Value::Const(None),
                None => {
                    return Err(EvalError::new(
                        "08P01",
                        format!("parameter ${n} was not bound"),
                    ));
                }
            },
            Term::Lower(t) => Value::Lower(Box::new(self.value(t, Some(&PlainType::Text))?)),
            Term::Upper(t) => Value::Upper(Box::new(self.value(t, Some(&PlainType::Text))?)),
            Term::Unaccent(t) => {
                let rules = self.unaccent.clone().ok_or_else(|| {
                    EvalError::new(
                        "42883",
                        "function unaccent(text) does not exist: this database has no unaccent dictionary (CREATE EXTENSION unaccent)",
                    )
                })?;
                Value::Unaccent(Box::new(self.value(t, Some(&PlainType::Text))?), rules)
            }
            Term::Text(t) => Value::Text(Box::new(self.value(t, partner)?)),
            Term::Trim(t, side) => {
                Value::Trim(Box::new(self.value(t, Some(&PlainType::Text))?), *side)
            }
            Term::Concat(terms) => Value::Concat(
                terms
                    .iter()
                    .map(|t| self.value(t, Some(&PlainType::Text)))
                    .collect::<Result<_, _>>()?,
            ),
            Term::Coalesce(terms) => {
                let ty = terms
                    .iter()
                    .find_map(|t| self.type_of(t))
                    .or_else(|| partner.copied());
                Value::Coalesce(
                    terms
                        .iter()
                        .map(|t| self.value(t, ty.as_ref()))
                        .collect::<Result<_, _>>()?,
                )
            }
        })
    }

    fn count(
        &self,
        count: Option<&Count>,
        what: &str,
        negative: &'static str,
    ) -> Result<Option<u64>, EvalError> {
        let text = match count {
            None => return Ok(None),
            Some(Count::Literal(n)) => return Ok(Some(*n)),
            Some(Count::Param(n)) => match self.params.get(usize::from(*n).saturating_sub(1)) {
                Some(Some(text)) => text.trim().to_string(),
                _ => return Ok(None),
            },
        };
        let n: i64 = text.parse().map_err(|_| {
            EvalError::new(
                "22P02",
                format!("invalid input syntax for type bigint in {what}"),
            )
        })?;
        u64::try_from(n)
            .map(Some)
            .map_err(|_| EvalError::new(negative, format!("{what} must not be negative")))
    }
}

/// A literal or parameter read as the type it is compared with (text when none), a date or
/// time in the session's `dates` settings.
fn constant(text: &str, ty: Option<&PlainType>, dates: &DateSettings) -> Result<Scalar, EvalError> {
    let ty = match ty {
        // Compared as text: no length check, and char(n) drops trailing blanks in `parse`.
        None | Some(PlainType::Varchar(_)) => PlainType::Text,
        Some(PlainType::Char(n)) => {
            return scalar::parse(&PlainType::Char(*n), text.as_bytes())
                .map_err(|e| EvalError::new("22023", e.to_string()));
        }
        Some(other) => *other,
    };
    let canonical = values::canonical_from_text(&ty, text, dates)
        .map_err(|e| EvalError::new(e.sqlstate(), e.to_string()))?;
    scalar::parse(&ty, canonical.as_bytes()).map_err(|e| EvalError::new("22023", e.to_string()))
}

/// One row's hidden values, read by the checks and keys.
struct Row<'a> {
    hidden: &'a [HiddenValue],
    order: &'a TextOrder,
    patterns: &'a Patterns,
}

/// A `LIKE` pattern read from its text, `ESCAPE` and case.
fn read_pattern(
    text: &str,
    escape: Option<&str>,
    insensitive: bool,
    order: &TextOrder,
) -> Result<like::Pattern, EvalError> {
    let clause = match escape {
        None => like::Escape::default(),
        Some(text) => like::Escape::from_clause(text)
            .map_err(|e| EvalError::new(e.sqlstate(), e.to_string()))?,
    };
    like::Pattern::new(text, clause, insensitive.then_some(order))
        .map_err(|e| EvalError::new(e.sqlstate(), e.to_string()))
}

/// How many distinct `LIKE` patterns a result keeps read (a five-column search box has five).
const PATTERNS_KEPT: usize = 8;

/// The `LIKE` patterns of one result, each read once: the text, `ESCAPE` and case of each
/// with what it reads as. A pattern that changes from row to row (a column) is read for
/// each row, as before, the oldest making room.
#[derive(Default)]
struct Patterns(std::cell::RefCell<Vec<KeptPattern>>);

struct KeptPattern {
    text: String,
    escape: Option<String>,
    insensitive: bool,
    pattern: Arc<like::Pattern>,
}

impl Patterns {
    /// The pattern read from `text`, `escape` and case, reading it the first time.
    fn get(
        &self,
        text: &str,
        escape: Option<&str>,
        insensitive: bool,
        order: &TextOrder,
    ) -> Result<Arc<like::Pattern>, EvalError> {
        let same = |kept: &&KeptPattern| {
            kept.insensitive == insensitive && kept.text == text && kept.escape.as_deref() == escape
        };
        if let Some(kept) = self.0.borrow().iter().find(same) {
            return Ok(Arc::clone(&kept.pattern));
        }
        let pattern = Arc::new(read_pattern(text, escape, insensitive, order)?);
        let mut kept = self.0.borrow_mut();
        if kept.len() >= PATTERNS_KEPT {
            kept.remove(0);
        }
        kept.push(KeptPattern {
            text: text.to_string(),
            escape: escape.map(str::to_string),
            insensitive,
            pattern: Arc::clone(&pattern),
        });
        Ok(pattern)
    }
}

impl Row<'_> {
    /// `value [I]LIKE pattern [ESCAPE escape]`, the pattern read once per result when `kept`.
    fn like_match(
        &self,
        value: &str,
        pattern: &str,
        escape: Option<&str>,
        insensitive: bool,
        kept: bool,
    ) -> Result<bool, EvalError> {
        // The matcher's work is bounded by the value's length times the pattern's; past this,
        // one value would hold a proxy thread for seconds.
        if value.len().saturating_mul(pattern.len()) > LIKE_WORK_MAX
            && pattern.matches('%').count() > 1
        {
            return Err(EvalError::new(
                "54000",
                format!(
                    "a LIKE pattern of {} bytes against a value of {} bytes is more work than \
                     pgseal does for one value; shorten the pattern",
                    pattern.len(),
                    value.len()
                ),
            ));
        }
        let compiled = if kept {
            self.patterns
                .get(pattern, escape, insensitive, self.order)?
        } else {
            Arc::new(read_pattern(pattern, escape, insensitive, self.order)?)
        };
        compiled
            .is_match(value, Some(self.order))
            .map_err(|e| EvalError::new(e.sqlstate(), e.to_string()))
    }

    fn check(&self, check: &Check) -> Result<Option<bool>, EvalError> {
        Ok(match check {
            Check::And(terms) => self.connective(terms, false)?,
            Check::Or(terms) => self.connective(terms, true)?,
            Check::Not(inner) => self.check(inner)?.map(|b| !b),
            Check::Server(i) => match self.hidden.get(*i) {
                Some(HiddenValue::Bool(b)) => Some(*b),
                _ => None,
            },
            Check::Any(i, checks, matched) => {
                let Some(HiddenValue::Rows(rows)) = self.hidden.get(*i) else {
                    return Ok(Some(false));
                };
                let mut unknown = false;
                for hidden in rows {
                    let row = Row {
                        hidden,
                        order: self.order,
                        patterns: self.patterns,
                    };
                    let mut passes = true;
                    for check in checks {
                        if row.check(check)? != Some(true) {
                            passes = false;
                            break;
                        }
                    }
                    if !passes {
                        continue;
                    }
                    match matched.map(|m| hidden.get(m)) {
                        None | Some(Some(HiddenValue::Bool(true))) => return Ok(Some(true)),
                        // Never sent (the server is asked for TRUE or NULL matches only).
                        Some(Some(HiddenValue::Bool(false))) => {}
                        Some(_) => unknown = true,
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Check::Compare(left, op, right) => {
                let (l, r) = (self.eval(left)?, self.eval(right)?);
                match op {
                    CompareOp::Distinct | CompareOp::NotDistinct => {
                        let same = match (&l, &r) {
                            (None, None) => true,
                            (Some(l), Some(r)) => self.equal(l, r)?,
                            _ => false,
                        };
                        Some(same == (*op == CompareOp::NotDistinct))
                    }
                    _ => match (l, r) {
                        (Some(l), Some(r)) => Some(self.compare_op(&l, *op, &r)?),
                        _ => None,
                    },
                }
            }
            Check::Between(term, low, high, negated) => {
                let (v, lo, hi) = (self.eval(term)?, self.eval(low)?, self.eval(high)?);
                let above = match (&v, &lo) {
                    (Some(v), Some(lo)) => Some(self.compare_op(v, CompareOp::GtEq, lo)?),
                    _ => None,
                };
                let below = match (&v, &hi) {
                    (Some(v), Some(hi)) => Some(self.compare_op(v, CompareOp::LtEq, hi)?),
                    _ => None,
                };
                let inside = and3(above, below);
                if *negated { inside.map(|b| !b) } else { inside }
            }
            Check::In(term, list, negated) => {
                let Some(v) = self.eval(term)? else {
                    return Ok(None);
                };
                let mut result = Some(false);
                for item in list {
                    match self.eval(item)? {
                        Some(item) if self.equal(&v, &item)? => {
                            result = Some(true);
                            break;
                        }
                        Some(_) => {}
                        None => result = None,
                    }
                }
                if *negated { result.map(|b| !b) } else { result }
            }
            Check::IsNull(term, negated) => {
                let null = self.eval(term)?.is_none();
                Some(null != *negated)
            }
            Check::Like {
                value,
                pattern,
                escape,
                insensitive,
                negated,
            } => {
                let (Some(v), Some(p)) = (self.text(value)?, self.text(pattern)?) else {
                    return Ok(None);
                };
                let escape = match escape {
                    Some(e) => match self.eval(e)? {
                        Some(e) => Some(text_of(&e)?),
                        None => return Ok(None),
                    },
                    None => None,
                };
                // A written or bound pattern is the same for every row: read once. One from
                // a column (a patient's value) is read for its row only, and not kept.
                let kept = pattern.is_constant();
                let matched = self.like_match(&v, &p, escape.as_deref(), *insensitive, kept)?;
                Some(matched != *negated)
            }
        })
    }

    /// `AND` (`decisive` false) or `OR` (`decisive` true) in SQL's three-valued logic: the
    /// first term equal to `decisive` decides, else NULL if a term is NULL.
    fn connective(&self, terms: &[Check], decisive: bool) -> Result<Option<bool>, EvalError> {
        let mut result = Some(!decisive);
        for term in terms {
            match self.check(term)? {
                Some(b) if b == decisive => return Ok(Some(decisive)),
                None => result = None,
                Some(_) => {}
            }
        }
        Ok(result)
    }

    fn equal(&self, a: &Scalar, b: &Scalar) -> Result<bool, EvalError> {
        scalar::equal(a, b).ok_or_else(incomparable)
    }

    fn compare_op(&self, a: &Scalar, op: CompareOp, b: &Scalar) -> Result<bool, EvalError> {
        if matches!(op, CompareOp::Eq | CompareOp::NotEq) {
            return Ok(self.equal(a, b)? == (op == CompareOp::Eq));
        }
        let ordering = scalar::compare(a, b, self.order).ok_or_else(incomparable)?;
        Ok(match op {
            CompareOp::Lt => ordering == Ordering::Less,
            CompareOp::LtEq => ordering != Ordering::Greater,
            CompareOp::Gt => ordering == Ordering::Greater,
            _ => ordering != Ordering::Less,
        })
    }

    /// A value as text for `LIKE` ([`text_of`] of [`Row::eval`]), borrowed when it is a text
    /// already (an opened column, a literal): no copy of a patient's value per row.
    fn text<'v>(
        &'v self,
        value: &'v Value,
    ) -> Result<Option<std::borrow::Cow<'v, str>>, EvalError> {
        let borrowed = match value {
            Value::Hidden(i) => match self.hidden.get(*i) {
                Some(HiddenValue::Opened {
                    value: Scalar::Text(text),
                    ..
                }) => Some(text.as_str()),
                _ => None,
            },
            Value::Const(Some(Scalar::Text(text))) => Some(text.as_str()),
            _ => None,
        };
        if let Some(text) = borrowed {
            return Ok(Some(std::borrow::Cow::Borrowed(text)));
        }
        Ok(match self.eval(value)? {
            Some(v) => Some(std::borrow::Cow::Owned(text_of(&v)?)),
            None => None,
        })
    }

    fn eval(&self, value: &Value) -> Result<Option<Scalar>, EvalError> {
        Ok(match value {
            Value::Hidden(i) => match self.hidden.get(*i) {
                Some(HiddenValue::Opened { value, .. }) => Some(value.clone()),
                Some(HiddenValue::Null) | None => None,
                Some(HiddenValue::Bool(b)) => Some(Scalar::Bool(*b)),
                Some(HiddenValue::Rank(r)) => Some(Scalar::Int(*r)),
                Some(HiddenValue::Ignored | HiddenValue::Rows(_)) => None,
            },
            Value::Const(c) => c.clone(),
            Value::Lower(inner) => match self.eval(inner)? {
                Some(v) => Some(Scalar::Text(self.order.lower(&text_of(&v)?).into_owned())),
                None => None,
            },
            Value::Upper(inner) => match self.eval(inner)? {
                Some(v) => Some(Scalar::Text(self.order.upper(&text_of(&v)?).into_owned())),
                None => None,
            },
            Value::Unaccent(inner, rules) => match self.eval(inner)? {
                Some(v) => Some(Scalar::Text(rules.apply(&text_of(&v)?).into_owned())),
                None => None,
            },
            Value::Text(inner) => match inner.as_ref() {
                Value::Hidden(i) => match self.hidden.get(*i) {
                    Some(HiddenValue::Opened { text, .. }) => Some(Scalar::Text(text.clone())),
                    _ => match self.eval(inner)? {
                        Some(v) => Some(Scalar::Text(text_of(&v)?)),
                        None => None,
                    },
                },
                other => match self.eval(other)? {
                    Some(v) => Some(Scalar::Text(text_of(&v)?)),
                    None => None,
                },
            },
            Value::Coalesce(terms) => {
                for t in terms {
                    if let Some(v) = self.eval(t)? {
                        return Ok(Some(v));
                    }
                }
                None
            }
            Value::Trim(inner, side) => match self.eval(inner)? {
                Some(v) => {
                    let text = text_of(&v)?;
                    let trimmed = match side {
                        TrimSide::Both => text.trim_matches(' '),
                        TrimSide::Leading => text.trim_start_matches(' '),
                        TrimSide::Trailing => text.trim_end_matches(' '),
                    };
                    Some(Scalar::Text(trimmed.to_string()))
                }
                None => None,
            },
            Value::Concat(parts) => {
                let mut text = String::new();
                for part in parts {
                    match self.eval(part)? {
                        Some(v) => text.push_str(&text_of(&v)?),
                        None => return Ok(None),
                    }
                }
                Some(Scalar::Text(text))
            }
        })
    }
}

fn incomparable() -> EvalError {
    EvalError::new(
        "42883",
        "pgseal cannot compare values of these types in a condition it evaluates",
    )
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// A value as text, for `lower`, `upper` and `LIKE` (PostgreSQL has them on text only; a
/// cast to text of a sealed column reads its canonical text instead).
fn text_of(value: &Scalar) -> Result<String, EvalError> {
    match value {
        Scalar::Text(text) => Ok(text.clone()),
        Scalar::Int(n) => Ok(n.to_string()),
        Scalar::Bool(b) => Ok(if *b { "true" } else { "false" }.into()),
        _ => Err(incomparable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_work_is_bounded_per_value() {
        let order = TextOrder::bytes();
        let patterns = Patterns::default();
        let row = Row {
            hidden: &[],
            order: &order,
            patterns: &patterns,
        };
        let value = "a".repeat(1 << 20);
        let pattern = format!("%{}%b%", "a".repeat(100));
        let error = row
            .like_match(&value, &pattern, None, false, true)
            .unwrap_err();
        assert_eq!(error.sqlstate, "54000");
        assert!(!error.message.contains("aaaa"));
        // A short pattern against the same value is matched.
        assert!(row.like_match(&value, "%a%", None, false, true).unwrap());
    }

    #[test]
    fn a_pattern_is_read_once_per_escape_and_case() {
        let order = TextOrder::icu("und").expect("the ICU root collation");
        let patterns = Patterns::default();
        let row = Row {
            hidden: &[],
            order: &order,
            patterns: &patterns,
        };
        assert!(row.like_match("MARTIN", "mar%", None, true, true).unwrap());
        assert!(!row.like_match("MARTIN", "mar%", None, false, true).unwrap());
        assert!(
            row.like_match("mar%x", "mar!%%", Some("!"), false, true)
                .unwrap()
        );
        assert!(
            !row.like_match("marx", "mar!%%", Some("!"), false, true)
                .unwrap()
        );
        assert_eq!(patterns.0.borrow().len(), 3);
        for n in 0..PATTERNS_KEPT + 2 {
            assert!(
                row.like_match(&format!("v{n}"), &format!("v{n}%"), None, false, true)
                    .unwrap()
            );
        }
        assert_eq!(patterns.0.borrow().len(), PATTERNS_KEPT);
        // A pattern from a column is read for its row and not kept.
        assert!(
            row.like_match("abc", "zz%", None, false, false)
                .is_ok_and(|m| !m)
        );
        assert!(!patterns.0.borrow().iter().any(|kept| kept.text == "zz%"));
    }
}
