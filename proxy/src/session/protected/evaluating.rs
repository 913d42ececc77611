//! The server → client side of a result pgseal evaluates: each DataRow's hidden values read
//! (sealed ones opened), handed to the [`Run`] that filters and sorts, and removed from what
//! the client receives; rows held for pgseal's sort sent when the result ends.

use std::collections::VecDeque;
use std::sync::Arc;

use smallvec::SmallVec;
use zeroize::Zeroizing;

use super::cursors::KeptRow;
use super::state::Refusal;
use crate::analyze::evaluation::{Evaluation, Hidden};
use crate::evaluate::composite;
use crate::evaluate::rows::{EvalError, HiddenType, HiddenValue, Run};
use crate::evaluate::scalar;
use crate::protect::Protection;
use crate::protect::catalog::DatabaseCatalog;
use crate::protect::column::Storage;
use crate::protect::date_settings::DateSettings;
use crate::protect::values::Format;

/// Opened values of deterministic columns kept per statement, at most this many per column:
/// a list sorted by name opens each distinct name once, not once per row.
const CACHE_MAX: usize = 65_536;

/// A value opened once, kept for the rows that store the same bytes; wiped when dropped.
struct Opened {
    text: String,
    value: crate::evaluate::scalar::Scalar,
}

impl Drop for Opened {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

/// How one hidden column is read.
#[derive(Clone, Debug)]
enum Read {
    Sealed {
        column: pgseal_policies::ColumnId,
        storage: Storage,
        /// Equal plaintexts are stored as equal bytes (every mode but randomized): opened
        /// values are worth keeping.
        cached: bool,
    },
    Boolean,
    Rank,
    Ignored,
    /// A subquery's rows: an array of records, each field read as these.
    Rows(Vec<Read>),
}

impl Read {
    /// How a hidden column of an evaluation is read.
    fn of(hidden: &Hidden, protection: &Protection, catalog: &DatabaseCatalog) -> Read {
        match hidden {
            Hidden::Sealed(column) => Read::Sealed {
                column: *column,
                storage: catalog.storage(*column),
                cached: protection.column(*column).mode != pgseal_policies::SealMode::Randomized,
            },
            Hidden::Boolean => Read::Boolean,
            Hidden::Rank => Read::Rank,
            Hidden::Keeper => Read::Ignored,
            Hidden::Rows(fields) => Read::Rows(
                fields
                    .iter()
                    .map(|f| Read::of(f, protection, catalog))
                    .collect(),
            ),
        }
    }

    /// What the evaluation reads the column as.
    fn hidden_type(&self, protection: &Protection) -> HiddenType {
        match self {
            Read::Sealed { column, .. } => {
                HiddenType::Value(Some(protection.column(*column).plain_type))
            }
            Read::Rows(fields) => {
                HiddenType::Rows(fields.iter().map(|f| f.hidden_type(protection)).collect())
            }
            _ => HiddenType::Value(None),
        }
    }
}

/// A result being evaluated.
pub struct Evaluating {
    /// The filter and sort.
    pub run: Run,
    reads: Vec<Read>,
    /// The format of the hidden columns' values.
    format: Format,
    /// The session's DateStyle and TimeZone: what a migrating column's plaintext dates and
    /// times arrive in.
    dates: Arc<DateSettings>,
    /// Rows of pgseal's sort not sent yet (filled when the result ends).
    pub pending: VecDeque<Zeroizing<Vec<u8>>>,
    /// Whether the sort has been done.
    pub finished: bool,
    /// Rows sent to the client.
    pub emitted: u64,
    /// A kept row waits for its budget (the frame comes back after the wait).
    pub waiting: bool,
    /// The client's row limit for this Execute (0: every row).
    pub row_limit: u32,
    /// For the first run of a FETCH of an evaluated cursor, its count (0: `ALL`): the rows
    /// past it are kept for the cursor's next FETCH.
    pub fetch_count: Option<u32>,
    /// Rows sent for this Execute.
    pub sent: u64,
    /// Rows kept, for a `count(*)` pgseal answers.
    pub counted: u64,
    /// The format the client asked for the count in.
    pub count_format: Format,
    /// A later Execute of a portal pgseal suspended (or ran to its end): its rows are the
    /// ones left from the first.
    pub resumed: bool,
    /// What reading the hidden values met so far.
    pub tally: ReadTally,
    /// Per hidden column, the values opened so far by stored bytes (deterministic columns).
    cache: Vec<std::collections::HashMap<Vec<u8>, Opened>>,
}

impl From<EvalError> for Refusal {
    fn from(e: EvalError) -> Refusal {
        Refusal::new(e.sqlstate, e.message)
    }
}

impl Evaluating {
    /// The evaluation of a result; `hidden_format` is the format the server sends the hidden
    /// columns in, `params` the statement's bound parameters pgseal reads.
    pub fn new(
        protection: &Protection,
        catalog: &DatabaseCatalog,
        evaluation: Arc<Evaluation>,
        params: &[Option<String>],
        hidden_format: Format,
        dates: &Arc<DateSettings>,
        (literal_dates, param_dates): (&DateSettings, &DateSettings),
    ) -> Result<Evaluating, Refusal> {
        let order = catalog.text_order().map_err(|reason| {
            Refusal::new(
                "0A000",
                format!(
                    "pgseal cannot filter or sort on sealed columns in this database: {reason}"
                ),
            )
        })?;
        let reads: Vec<Read> = evaluation
            .hidden
            .iter()
            .map(|h| Read::of(h, protection, catalog))
            .collect();
        let types: Vec<HiddenType> = reads.iter().map(|r| r.hidden_type(protection)).collect();
        let run = Run::new(
            evaluation,
            order,
            &types,
            params,
            (literal_dates, param_dates),
            catalog.unaccent(),
            protection.evaluation_caps,
        )?;
        Ok(Evaluating {
            run,
            reads,
            format: hidden_format,
            dates: Arc::clone(dates),
            pending: VecDeque::new(),
            finished: false,
            emitted: 0,
            waiting: false,
            row_limit: 0,
            fetch_count: None,
            sent: 0,
            counted: 0,
            count_format: Format::Text,
            resumed: false,
            tally: ReadTally::default(),
            cache: Vec::new(),
        })
    }

    /// The evaluation of a FETCH of an evaluated cursor: at most `count` rows (0: all), the
    /// rest kept for the cursor's next FETCH; at a later FETCH, the rows `kept` from the
    /// first, the server's cursor being at its end. At the first FETCH, `elsewhere` is what
    /// the session's other cursors keep (rows, bytes), counted against the caps.
    pub fn for_fetch(
        mut self,
        count: u32,
        kept: Option<VecDeque<KeptRow>>,
        elsewhere: (usize, usize),
    ) -> Self {
        self.fetch_count = Some(count);
        match kept {
            Some(kept) => {
                self.finished = true;
                self.resumed = true;
                self.pending = kept;
            }
            None => self.run.kept_elsewhere(elsewhere.0, elsewhere.1),
        }
        self
    }

    /// A later Execute of a portal pgseal suspended (or ran to its end): its rows are the
    /// ones `left` by the Execute before, the server's portal being exhausted.
    pub fn resume(&mut self, left: VecDeque<KeptRow>) {
        self.finished = true;
        self.resumed = true;
        self.pending = left;
    }

    /// Whether rows are held to the end of the result (pgseal's sort, or a row limit to
    /// suspend at) rather than streamed.
    pub fn holds(&self) -> bool {
        self.run.sorts() || self.row_limit > 0 || self.resumed || self.fetch_count > Some(0)
    }

    /// Whether pgseal answers the statement's `count(*)` itself.
    pub fn counts_only(&self) -> bool {
        self.run.evaluation().count_only
    }

    /// The one row of a `count(*)` pgseal answers, in the column's format.
    pub fn count_row(&self, format: Format) -> Vec<u8> {
        let value = match format {
            Format::Text => self.counted.to_string().into_bytes(),
            Format::Binary => i64::try_from(self.counted)
                .unwrap_or(i64::MAX)
                .to_be_bytes()
                .to_vec(),
        };
        let mut row = bytes::BytesMut::new();
        let mut writer = crate::wire::extended::DataRowWriter::begin(&mut row, 1);
        writer.put(Some(&value));
        // One short value: far below the 2 GiB a row may hold.
        let _ = writer.finish();
        row.to_vec()
    }

    /// Whether this Execute has sent all the rows its limit allows.
    pub fn at_row_limit(&self) -> bool {
        let reached = |limit: u32| limit > 0 && self.sent >= u64::from(limit);
        reached(self.row_limit) || self.fetch_count.is_some_and(reached)
    }

    /// Whether the Execute ends suspended: it sent as many rows as its limit, whether or not
    /// rows are left (PostgreSQL learns that its portal is exhausted only at the next run).
    pub fn suspends(&self) -> bool {
        self.row_limit > 0 && self.sent >= u64::from(self.row_limit)
    }

    /// Splits the rows not sent into this FETCH's rest (returned: for the portal's next
    /// Execute) and the rows past its count (kept for the cursor's next FETCH).
    pub fn split_fetch(&mut self) -> (VecDeque<KeptRow>, VecDeque<KeptRow>) {
        let mut left = std::mem::take(&mut self.pending);
        let owed = match self.fetch_count {
            Some(count) if count > 0 => {
                usize::try_from(u64::from(count).saturating_sub(self.sent)).unwrap_or(usize::MAX)
            }
            _ => left.len(),
        };
        let beyond = left.split_off(owed.min(left.len()));
        (left, beyond)
    }

    /// How many hidden columns lead each row.
    pub fn hidden_count(&self) -> usize {
        self.reads.len()
    }

    /// What of a row's hidden values [`Evaluating::read`] opened can serve its output columns:
    /// each sealed hidden column's stored bytes with the plaintext read from them. An output
    /// column of the same sealed column holding the same bytes, in the same storage and format,
    /// holds the same plaintext, and is rendered without a second opening.
    pub fn opened<'a>(
        &self,
        values: &'a [Option<&'a [u8]>],
        row: &'a [HiddenValue],
    ) -> SmallVec<[Reopened<'a>; 4]> {
        let mut opened = SmallVec::new();
        for (i, read) in self.reads.iter().enumerate() {
            let Read::Sealed {
                column, storage, ..
            } = read
            else {
                continue;
            };
            let (Some(Some(stored)), Some(HiddenValue::Opened { text, .. })) =
                (values.get(i), row.get(i))
            else {
                continue;
            };
            // The text is the plaintext read as UTF-8 (lossily): only an exact one is reused.
            if text.contains(char::REPLACEMENT_CHARACTER) {
                continue;
            }
            opened.push(Reopened {
                column: *column,
                storage: *storage,
                format: self.format,
                stored,
                canonical: text.as_bytes(),
            });
        }
        opened
    }

    /// A row's hidden values, sealed ones opened.
    pub fn read(
        &mut self,
        protection: &Protection,
        values: &[Option<&[u8]>],
    ) -> Result<Vec<HiddenValue>, Refusal> {
        if self.cache.len() < self.reads.len() {
            self.cache
                .resize_with(self.reads.len(), std::collections::HashMap::new);
        }
        let mut out = Vec::with_capacity(self.reads.len());
        for (i, (read, value)) in self.reads.iter().zip(values).enumerate() {
            let Some(value) = value else {
                out.push(HiddenValue::Null);
                continue;
            };
            let cache = match read {
                Read::Sealed { cached: true, .. } => Some(&mut self.cache[i]),
                _ => None,
            };
            let reader = ValueReader {
                protection,
                format: self.format,
                dates: &self.dates,
                order: self.run.order(),
                max_bytes: protection.evaluation_caps.max_bytes,
            };
            out.push(reader.read(read, value, cache, &mut self.tally)?);
        }
        Ok(out)
    }
}

/// A sealed value of a row already opened for a hidden column (see [`Evaluating::opened`]).
pub struct Reopened<'a> {
    /// Its sealed column.
    pub column: pgseal_policies::ColumnId,
    /// How the column is stored.
    pub storage: Storage,
    /// The format the server sent it in.
    pub format: Format,
    /// The stored bytes as the server sent them.
    pub stored: &'a [u8],
    /// The plaintext, canonical.
    pub canonical: &'a [u8],
}

/// What reading an evaluated result's hidden values met, for its log line and metrics.
#[derive(Debug, Default)]
pub struct ReadTally {
    /// Values that hold a character whose order pgseal's collation data may give differently
    /// from the server's ICU ([`crate::evaluate::collation::UNVERIFIED`]).
    pub unverified: u64,
    /// Rows of subqueries pgseal filters, read from their hidden columns.
    pub subquery_rows: u64,
}

/// Reads one hidden value of a row (or of a subquery's row inside it).
struct ValueReader<'a> {
    protection: &'a Protection,
    format: Format,
    dates: &'a DateSettings,
    order: &'a crate::evaluate::collation::TextOrder,
    /// The most bytes a subquery's rows may take in one row (`--evaluation-max-bytes`).
    max_bytes: usize,
}

impl ValueReader<'_> {
    fn read(
        &self,
        read: &Read,
        value: &[u8],
        cache: Option<&mut std::collections::HashMap<Vec<u8>, Opened>>,
        tally: &mut ReadTally,
    ) -> Result<HiddenValue, Refusal> {
        Ok(match read {
            Read::Sealed {
                column, storage, ..
            } => {
                if let Some(known) = cache.as_ref().and_then(|c| c.get(value)) {
                    return Ok(HiddenValue::Opened {
                        text: known.text.clone(),
                        value: known.value.clone(),
                    });
                }
                let crypto = self.protection.column(*column);
                let canonical = crypto
                    .open(value, self.format, *storage, self.dates)
                    .map_err(|e| {
                        self.protection
                            .metrics
                            .open_failures
                            .with(&[&crypto.name])
                            .inc();
                        Refusal::new(e.sqlstate(), e.to_string())
                    })?;
                let value_read = scalar::parse(&crypto.plain_type, &canonical)
                    .map_err(|e| Refusal::new("22000", e.to_string()))?;
                let text = String::from_utf8_lossy(&canonical).into_owned();
                if self.order.first_unverified(&text).is_some() {
                    tally.unverified += 1;
                }
                if let Some(cache) = cache
                    && cache.len() < CACHE_MAX
                {
                    cache.insert(
                        value.to_vec(),
                        Opened {
                            text: text.clone(),
                            value: value_read.clone(),
                        },
                    );
                }
                HiddenValue::Opened {
                    text,
                    value: value_read,
                }
            }
            Read::Boolean => HiddenValue::Bool(match self.format {
                Format::Binary => value.first().is_some_and(|b| *b != 0),
                Format::Text => value.first() == Some(&b't'),
            }),
            Read::Rank => HiddenValue::Rank(match self.format {
                Format::Binary => {
                    <[u8; 8]>::try_from(value)
                        .map(i64::from_be_bytes)
                        .map_err(|_| {
                            Refusal::new("08P01", "a rank pgseal asked for is not a bigint")
                        })?
                }
                Format::Text => std::str::from_utf8(value)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| {
                        Refusal::new("08P01", "a rank pgseal asked for is not a bigint")
                    })?,
            }),
            Read::Ignored => HiddenValue::Ignored,
            Read::Rows(fields) => {
                if value.len() > self.max_bytes {
                    return Err(Refusal::new(
                        "54000",
                        format!(
                            "the rows of a subquery pgseal filters took more than {} bytes for one row (--evaluation-max-bytes); narrow the subquery with conditions on unsealed columns",
                            self.max_bytes
                        ),
                    ));
                }
                let malformed = |e: composite::CompositeError| Refusal::new("08P01", e.to_string());
                let mut rows = Vec::new();
                for element in composite::array_elements(value, self.format).map_err(malformed)? {
                    let element = element.ok_or_else(|| {
                        Refusal::new("08P01", "a subquery's row pgseal asked for is NULL")
                    })?;
                    tally.subquery_rows += 1;
                    let items =
                        composite::record_fields(&element, self.format).map_err(malformed)?;
                    if items.len() != fields.len() {
                        return Err(Refusal::new(
                            "08P01",
                            "a subquery's row pgseal asked for has another number of fields",
                        ));
                    }
                    let mut row = Vec::with_capacity(fields.len());
                    for (field, item) in fields.iter().zip(&items) {
                        row.push(match item {
                            None => HiddenValue::Null,
                            Some(bytes) => self.read(field, bytes, None, tally)?,
                        });
                    }
                    rows.push(row);
                }
                HiddenValue::Rows(rows)
            }
        })
    }
}
