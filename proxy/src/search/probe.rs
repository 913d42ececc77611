//! What a predicate on a sealed column asks of its search index: a [`Probe`], the tokens a row
//! must hold (all of them, or one of them) to be a candidate. pgseal checks every candidate
//! exactly, so a probe may let through rows that do not match — never miss one that does.
//!
//! - **Equality** ([`ColumnSearch::equality`]): the exact token when the column has one;
//!   otherwise, for character types, the longest indexed prefix and a few trigrams of the
//!   folded value; for dated types, the value's finest date bucket.
//! - **Patterns** ([`ColumnSearch::pattern`], `LIKE` and `ILIKE` alike, since folding is
//!   coarser than `ILIKE`'s lowering): the pattern is cut into literal runs at its wildcards;
//!   the run that starts the pattern gives a prefix token, every run of three folded characters
//!   or more gives trigrams. A pattern without wildcards is an equality, which adds the exact
//!   token. At most one prefix token and [`MAX_PROBE_TRIGRAMS`] trigrams: the longest prefix
//!   implies the shorter ones, and the trigrams are spread over the runs and along each run.
//! - **Ranges** ([`ColumnSearch::range`]) on dated columns: every date bucket between the two
//!   bounds, months when there are at most [`MAX_RANGE_BUCKETS`] of them, else years.
//!
//! `None` means the index cannot narrow the predicate: pgseal reads every row.

use pgseal_keys::TokenKind;
use pgseal_policies::{DateBuckets, PlainType};

use super::fold::fold;
use super::tokens::{AdDate, ColumnSearch, days_in_month, trigrams};
use crate::evaluate::like::{Escape, MAX_PATTERN_BYTES};

/// The most trigram tokens one probe asks for. Each token is one posting list the database
/// reads and intersects, and the intersection is already small after two or three
/// independent ones: at 12 bits a name of fifteen letters holds about 13 of the 4,096 trigram
/// tokens, so a row that does not match holds a given one by hash collision with a
/// probability of about 0.3 % (real trigrams are far less even: `ier`, `ard`, `mar` are common
/// in French names, which is what the others are for). With the prefix token (and the exact
/// one, for a pattern without wildcards), a probe holds at most [`MAX_PROBE_TOKENS`].
pub const MAX_PROBE_TRIGRAMS: usize = 6;

/// The most tokens an `AllOf` probe holds: one exact, one prefix and [`MAX_PROBE_TRIGRAMS`]
/// trigrams.
pub const MAX_PROBE_TOKENS: usize = 2 + MAX_PROBE_TRIGRAMS;

/// The most date buckets a range probe lists (months, else years): past this, the probe costs
/// the database more posting lists than it saves, and pgseal scans.
pub const MAX_RANGE_BUCKETS: usize = 64;

/// The tokens a row's index must hold for the row to be a candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Every one of these tokens (`AllOf(vec![])`: every row).
    AllOf(Vec<String>),
    /// At least one of these tokens (`AnyOf(vec![])`: no row).
    AnyOf(Vec<String>),
}

impl Probe {
    /// The tokens the probe names.
    pub fn tokens(&self) -> &[String] {
        match self {
            Probe::AllOf(tokens) | Probe::AnyOf(tokens) => tokens,
        }
    }

    /// Whether a row whose stored tokens are `stored` is a candidate, as the database's index
    /// decides it.
    pub fn admits(&self, stored: &[String]) -> bool {
        match self {
            Probe::AllOf(tokens) => tokens.iter().all(|t| stored.contains(t)),
            Probe::AnyOf(tokens) => tokens.iter().any(|t| stored.contains(t)),
        }
    }

    fn all_of(mut tokens: Vec<String>) -> Option<Probe> {
        tokens.sort_unstable();
        tokens.dedup();
        (!tokens.is_empty()).then_some(Probe::AllOf(tokens))
    }
}

impl ColumnSearch {
    /// The probe of `column = value`, `value` in canonical form: the exact token when the
    /// column has one; else, for character types, the longest indexed prefix of the folded
    /// value and up to [`MAX_PROBE_TRIGRAMS`] of its trigrams; for dated types, the value's
    /// finest date bucket. `None` when nothing applies (the value is too short for any token,
    /// a date is BC or infinite, a character value is not UTF-8…).
    pub fn equality(&self, canonical: &[u8]) -> Option<Probe> {
        if self.plain_type().is_character() {
            return self.text_equality(std::str::from_utf8(canonical).ok()?);
        }
        if self.spec().exact {
            return Some(Probe::AllOf(vec![self.token(TokenKind::Exact, canonical)]));
        }
        let buckets = self.date_buckets()?;
        let date = AdDate::parse(canonical)?;
        Some(Probe::AllOf(vec![match buckets {
            DateBuckets::Month => self.token(TokenKind::Month, date.month_item().as_bytes()),
            DateBuckets::Year => self.token(TokenKind::Year, date.year_item().as_bytes()),
        }]))
    }

    /// The probe of `column LIKE pattern` or `column ILIKE pattern` with `escape` (the same
    /// probe: folding is coarser than `ILIKE`'s lowering). `None` when the pattern gives no
    /// usable token (`%a%`, `_b_`, a column without prefix or trigram indexes), when the column
    /// is not of a character type, and for a pattern the matcher may refuse (ending with the
    /// escape character, or longer than half of [`MAX_PATTERN_BYTES`], past which escaping and
    /// lowering may push it over the limit): the exact evaluation reports it.
    pub fn pattern(&self, pattern: &str, escape: Escape) -> Option<Probe> {
        // Escaping (`ESCAPE ''` doubles backslashes) and `ILIKE`'s lowering (`İ`, two bytes,
        // lowers to three) at most double a pattern before the matcher checks its length.
        if !self.plain_type().is_character() || pattern.len() > MAX_PATTERN_BYTES / 2 {
            return None;
        }
        let parsed = Pattern::parse(pattern, escape)?;
        if parsed.wildcard_free {
            // `LIKE 'abc'`: the value equals `abc` (blank-padded for `char(n)`: trimmed like
            // `=` does). The prefix and trigrams with the exact token weed out the values
            // whose truncated exact token merely collides.
            let text = parsed.runs.first().map_or("", String::as_str);
            let mut tokens = self.narrowing(&[fold(self.unpadded(text))], true);
            if self.spec().exact {
                tokens.push(self.exact_text_token(text));
            }
            return Probe::all_of(tokens);
        }
        let folded: Vec<String> = parsed.runs.iter().map(|run| fold(run)).collect();
        Probe::all_of(self.narrowing(&folded, parsed.anchored))
    }

    /// The probe of `low <(=) column <(=) high` on a dated column with date buckets, bounds in
    /// canonical form with whether each is inclusive. Both bounds are needed, and both must be
    /// AD dates (a BC or infinite bound gives `None`). The buckets from low's to high's: months
    /// when the column has them and there are at most [`MAX_RANGE_BUCKETS`], else years when
    /// there are at most that many, else `None`. An exclusive bound at a bucket's very edge
    /// (`< '2025-01-01'`, `> '2024-12-31'` on a date) leaves that bucket out. When no bucket is
    /// left (low's bucket after high's), the probe is `AnyOf(vec![])`: no row can match, and
    /// the caller may skip the query. (Low after high within one bucket still lists it.)
    pub fn range(&self, low: Option<(&[u8], bool)>, high: Option<(&[u8], bool)>) -> Option<Probe> {
        let buckets = self.date_buckets()?;
        let (low, low_inclusive) = low?;
        let (high, high_inclusive) = high?;
        let (low_date, high_date) = (AdDate::parse(low)?, AdDate::parse(high)?);
        // The first instant after an exclusive low at the last moment of its day, and the
        // last instant before an exclusive high at midnight, may fall in another bucket.
        let is_date = *self.plain_type() == PlainType::Date;
        let low_next_day = !low_inclusive && is_last_instant(low, is_date);
        let high_previous_day = !high_inclusive && is_midnight(high);
        let last_day = |d: &AdDate| d.day == days_in_month(d.year, d.month);

        let month_of = |d: &AdDate| i64::from(d.year) * 12 + i64::from(d.month) - 1;
        let first_month = month_of(&low_date) + i64::from(low_next_day && last_day(&low_date));
        let last_month = month_of(&high_date) - i64::from(high_previous_day && high_date.day == 1);
        let first_year = i64::from(low_date.year)
            + i64::from(low_next_day && low_date.month == 12 && last_day(&low_date));
        let last_year = i64::from(high_date.year)
            - i64::from(high_previous_day && high_date.month == 1 && high_date.day == 1);

        let months = last_month - first_month + 1;
        let years = last_year - first_year + 1;
        if months <= 0 || years <= 0 {
            return Some(Probe::AnyOf(Vec::new()));
        }
        let limit = i64::try_from(MAX_RANGE_BUCKETS).unwrap_or(i64::MAX);
        let tokens = if buckets == DateBuckets::Month && months <= limit {
            (first_month..=last_month)
                .map(|m| {
                    let item = format!("{:04}-{:02}", m / 12, m % 12 + 1);
                    self.token(TokenKind::Month, item.as_bytes())
                })
                .collect()
        } else if years <= limit {
            (first_year..=last_year)
                .map(|y| self.token(TokenKind::Year, format!("{y:04}").as_bytes()))
                .collect()
        } else {
            return None;
        };
        Some(Probe::AnyOf(tokens))
    }

    /// Equality with a character value.
    fn text_equality(&self, text: &str) -> Option<Probe> {
        if self.spec().exact {
            return Some(Probe::AllOf(vec![self.exact_text_token(text)]));
        }
        Probe::all_of(self.narrowing(&[fold(self.unpadded(text))], true))
    }

    /// Prefix and trigram tokens every value holds whose folded form contains each of the
    /// folded `runs`, the first one at its start when `anchored`: the longest indexed prefix
    /// and up to [`MAX_PROBE_TRIGRAMS`] trigrams.
    fn narrowing(&self, runs: &[String], anchored: bool) -> Vec<String> {
        let spec = self.spec();
        let mut tokens = Vec::new();
        // How many leading characters of the first run the prefix token stands for.
        let mut covered = 0;
        if anchored && spec.prefix > 0 {
            let prefix: String = runs
                .first()
                .map(|run| run.chars().take(usize::from(spec.prefix)).collect())
                .unwrap_or_default();
            covered = prefix.chars().count();
            if covered > 0 {
                tokens.push(self.token(TokenKind::Prefix, prefix.as_bytes()));
            }
        }
        if spec.trigram {
            let mut seen = std::collections::HashSet::new();
            let per_run: Vec<Vec<&str>> = runs
                .iter()
                .enumerate()
                .map(|(i, run)| {
                    let skip = if i == 0 && anchored { covered } else { 0 };
                    // A trigram inside the prefix tells the index nothing the prefix does not.
                    trigrams(run)
                        .into_iter()
                        .enumerate()
                        .filter(|(start, _)| start + 3 > skip)
                        .map(|(_, trigram)| trigram)
                        .filter(|trigram| seen.insert(*trigram))
                        .collect()
                })
                .collect();
            for trigram in spread(&per_run, MAX_PROBE_TRIGRAMS) {
                tokens.push(self.token(TokenKind::Trigram, trigram.as_bytes()));
            }
        }
        tokens
    }
}

/// At most `cap` trigrams from `runs`: first one per run (in order), then more per run in
/// turn; within a run, taken at the middles of equal stretches so that they cover it evenly.
fn spread<'a>(runs: &[Vec<&'a str>], cap: usize) -> Vec<&'a str> {
    let mut quota = vec![0usize; runs.len()];
    let mut left = cap;
    while left > 0 {
        let mut granted = false;
        for (q, run) in quota.iter_mut().zip(runs) {
            if left > 0 && *q < run.len() {
                *q += 1;
                left -= 1;
                granted = true;
            }
        }
        if !granted {
            break;
        }
    }
    let mut picked = Vec::new();
    for (run, q) in runs.iter().zip(quota) {
        for j in 0..q {
            // The middle of the j-th of q equal stretches: distinct indexes, all of them
            // when q is the run's length.
            if let Some(trigram) = run.get((2 * j + 1) * run.len() / (2 * q)) {
                picked.push(*trigram);
            }
        }
    }
    picked
}

/// Whether a canonical dated value is at midnight (a date, or a time of `00:00:00`).
fn is_midnight(canonical: &[u8]) -> bool {
    let time = time_part(canonical);
    time.is_empty() || time == b" 00:00:00" || time == b" 00:00:00+00"
}

/// Whether a canonical dated value is the last instant of its day: `23:59:59.999999`,
/// timestamps' last microsecond, or a date on a `date` column (`is_date`), whose next value is
/// the next day. (A date compared with a timestamp column stands for its midnight.)
fn is_last_instant(canonical: &[u8], is_date: bool) -> bool {
    let time = time_part(canonical);
    (is_date && time.is_empty()) || time == b" 23:59:59.999999" || time == b" 23:59:59.999999+00"
}

/// What follows the date in a canonical dated value (empty for a `date`).
fn time_part(canonical: &[u8]) -> &[u8] {
    let date_end = canonical
        .iter()
        .position(|b| *b == b' ')
        .unwrap_or(canonical.len());
    canonical.get(date_end..).unwrap_or_default()
}

/// A `LIKE` pattern cut at its wildcards.
struct Pattern {
    /// The literal runs between wildcards, escapes resolved, in order (none empty).
    runs: Vec<String>,
    /// Whether the pattern starts with a literal (the first run is a prefix of the value).
    anchored: bool,
    /// Whether it has no wildcard at all (one run at most: an equality).
    wildcard_free: bool,
}

impl Pattern {
    /// Cuts `pattern` as PostgreSQL reads it with `escape`: the escape character makes the
    /// next character literal, `%` and `_` are wildcards. `None` when the pattern ends with
    /// the escape character.
    fn parse(pattern: &str, escape: Escape) -> Option<Pattern> {
        let escape = match escape {
            Escape::Backslash => Some('\\'),
            Escape::Disabled => None,
            Escape::Char(c) => Some(c),
        };
        let mut runs = Vec::new();
        let mut run = String::new();
        let mut anchored = None;
        let mut wildcard_free = true;
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let literal = if Some(c) == escape {
                Some(chars.next()?)
            } else if c == '%' || c == '_' {
                None
            } else {
                Some(c)
            };
            anchored.get_or_insert(literal.is_some());
            match literal {
                Some(c) => run.push(c),
                None => {
                    wildcard_free = false;
                    if !run.is_empty() {
                        runs.push(std::mem::take(&mut run));
                    }
                }
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        Some(Pattern {
            runs,
            anchored: anchored.unwrap_or(true),
            wildcard_free,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::collation::TextOrder;
    use crate::evaluate::like;
    use crate::search::tokens::tests::{key, spec};
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn text_column(prefix: u8, trigram: bool, exact: bool, ty: PlainType) -> ColumnSearch {
        ColumnSearch::new(spec(prefix, trigram, exact, None), key("last_name"), ty)
    }

    /// Every character-column flavour a policy can ask for.
    fn text_columns() -> Vec<ColumnSearch> {
        let mut columns = Vec::new();
        for ty in [
            PlainType::Text,
            PlainType::Varchar(Some(40)),
            PlainType::Char(24),
        ] {
            for (prefix, trigram, exact) in [
                (4, true, true),
                (8, true, false),
                (3, false, false),
                (0, true, false),
                (0, false, true),
                (1, false, true),
            ] {
                columns.push(text_column(prefix, trigram, exact, ty));
            }
        }
        columns
    }

    fn orders() -> Vec<TextOrder> {
        vec![
            TextOrder::bytes(),
            TextOrder::icu("fr-FR").unwrap(),
            TextOrder::icu("tr-TR").unwrap(),
            TextOrder::icu("el-GR").unwrap(),
            TextOrder::from_catalog("c", "tr_TR.UTF-8", "tr_TR.UTF-8", None).unwrap(),
        ]
    }

    /// French names and their variants: accents, case, hyphens, apostrophes, spaces, tabs.
    const NAMES: &[&str] = &[
        "Martin",
        "MARTIN",
        "martin",
        "Martín",
        "Marie-Thérèse",
        "marie thérèse",
        "MARIE-THERESE",
        "Éloïse",
        "ELOISE",
        "Eloi\u{308}se",
        "Dupont",
        "du Pont",
        "Dupont ",
        "D’Artagnan",
        "d'Artagnan",
        "François",
        "FRANÇOIS",
        "Françoise",
        "Noël",
        "Lefèvre",
        "LEFEVRE",
        "Le  Fèvre",
        "Le\tFèvre",
        "Le\u{a0}Fèvre",
        "Œuvray",
        "ﬁlippi",
        "Straße",
        "STRASSE",
        "İnce",
        "ınce",
        "Σοφία",
        "ΣΟΦΙΑΣ",
        "a",
        "ab",
        "",
        "   ",
        "100% pur",
        "under_score",
        "back\\slash",
        "Mar",
        "Marguerite",
    ];

    /// Patterns built from the names: whole, cut, wildcards around and inside, case changed,
    /// escaped wildcards.
    fn patterns() -> Vec<String> {
        let mut out = vec![
            "%".to_string(),
            "_".into(),
            "%%".into(),
            "".into(),
            "mar%".into(),
            "MAR%".into(),
            "%ERES%".into(),
            "%thérèse".into(),
            "d_pont%".into(),
            "%pont".into(),
            "%100\\%%".into(),
            "under\\_%".into(),
            "%\\_score".into(),
            "back\\\\%".into(),
            "le fèvre%".into(),
            "le  fèvre%".into(),
            "%e f%".into(),
            "ΣΟΦ%".into(),
            "%φιας".into(),
            "%ία".into(),
            "%ΊΑ".into(),
            "İN%".into(),
            "in%".into(),
            "%strass%".into(),
            "%ß%".into(),
            "_a%t_n".into(),
            "m%t%n".into(),
            "%o%".into(),
            "Dupont ".into(),
            "Dupont".into(),
            "dupont%".into(),
        ];
        for name in NAMES {
            let chars: Vec<char> = name.chars().collect();
            out.push((*name).to_string());
            out.push(name.to_uppercase());
            out.push(name.to_lowercase());
            for cut in 1..chars.len() {
                let (head, tail): (String, String) =
                    (chars[..cut].iter().collect(), chars[cut..].iter().collect());
                out.push(format!("{head}%"));
                out.push(format!("%{tail}"));
                out.push(format!("%{head}%"));
                out.push(format!(
                    "{head}_{}",
                    tail.chars().skip(1).collect::<String>()
                ));
                out.push(format!("{}%", head.to_uppercase()));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The value `LIKE` sees: blank-padded for `char(n)`.
    fn padded(value: &str, ty: &PlainType) -> String {
        match ty {
            PlainType::Char(n) => {
                let len = value.chars().count();
                let pad = (*n as usize).saturating_sub(len);
                format!("{value}{}", " ".repeat(pad))
            }
            _ => value.to_string(),
        }
    }

    /// The canonical text of a character value as pgseal stores it.
    fn canonical(value: &str, ty: &PlainType) -> String {
        match ty {
            PlainType::Char(_) => value.trim_end_matches(' ').to_string(),
            _ => value.to_string(),
        }
    }

    /// Whether any reading of `value LIKE/ILIKE pattern` holds: padded and unpadded for
    /// `char(n)`, under every order.
    fn some_match(
        value: &str,
        pattern: &str,
        escape: Escape,
        ty: &PlainType,
        orders: &[TextOrder],
    ) -> bool {
        let forms = [canonical(value, ty), padded(&canonical(value, ty), ty)];
        forms.iter().any(|v| {
            like::like(v, pattern, escape) == Ok(true)
                || orders
                    .iter()
                    .any(|o| like::ilike(v, pattern, escape, o) == Ok(true))
        })
    }

    #[test]
    fn pattern_probes_admit_every_match() {
        let orders = orders();
        let patterns = patterns();
        let columns = text_columns();
        let mut checked = 0;
        // Matching depends on the type (padding) only: decide it once for all flavours.
        for ty in [PlainType::Text, PlainType::Char(24)] {
            let flavours: Vec<&ColumnSearch> = columns
                .iter()
                .filter(|c| {
                    matches!(c.plain_type(), PlainType::Char(_)) == matches!(ty, PlainType::Char(_))
                })
                .collect();
            for value in NAMES {
                let stored: Vec<Vec<String>> = flavours
                    .iter()
                    .map(|c| c.stored_tokens(canonical(value, &ty).as_bytes()))
                    .collect();
                for pattern in &patterns {
                    if !some_match(value, pattern, Escape::Backslash, &ty, &orders) {
                        continue;
                    }
                    for (column, stored) in flavours.iter().zip(&stored) {
                        if let Some(probe) = column.pattern(pattern, Escape::Backslash) {
                            checked += 1;
                            assert!(
                                probe.admits(stored),
                                "{:?} {:?}: {value:?} matches {pattern:?}",
                                column.plain_type(),
                                column.spec()
                            );
                        }
                    }
                }
            }
        }
        assert!(checked > 5_000, "{checked}");
    }

    #[test]
    fn equality_probes_admit_every_equal_value() {
        let orders = orders();
        for column in text_columns() {
            let ty = *column.plain_type();
            for value in NAMES {
                let stored = column.stored_tokens(canonical(value, &ty).as_bytes());
                for other in NAMES {
                    let probe = column.equality(canonical(other, &ty).as_bytes());
                    let equal = canonical(value, &ty) == canonical(other, &ty);
                    // `lower(col) = lower(x)` and `upper(col) = upper(x)` (but for `ß`, see
                    // `fold`), which a caller may narrow with the same probe.
                    let case_equal = orders.iter().any(|o| {
                        o.lower(value) == o.lower(other)
                            || (!value.contains('ß')
                                && !other.contains('ß')
                                && o.upper(value) == o.upper(other))
                    });
                    if let Some(probe) = probe
                        && (equal || case_equal)
                    {
                        assert!(probe.admits(&stored), "{ty:?} {value:?} = {other:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn escapes_are_read_as_the_matcher_reads_them() {
        let column = text_column(8, true, true, PlainType::Text);
        let orders = orders();
        let cases: &[(&str, &str, Escape)] = &[
            ("50%", "50#%", Escape::Char('#')),
            ("50% off", "50#%%", Escape::Char('#')),
            ("a#b", "a##b", Escape::Char('#')),
            ("a\\b", "a\\b", Escape::Disabled),
            ("a\\bcd", "a\\b%", Escape::Disabled),
            ("abc_def", "%c\\_d%", Escape::Backslash),
            ("é%x", "éé%%", Escape::Char('é')),
            ("a%b", "a%b", Escape::Disabled),
        ];
        for (value, pattern, escape) in cases {
            assert!(some_match(
                value,
                pattern,
                *escape,
                &PlainType::Text,
                &orders
            ));
            let probe = column.pattern(pattern, *escape).expect("a probe");
            assert!(
                probe.admits(&column.stored_tokens(value.as_bytes())),
                "{pattern:?}"
            );
        }
        // A pattern ending with its escape character may be refused by the matcher: no probe.
        assert_eq!(column.pattern("abc\\", Escape::Backslash), None);
        assert_eq!(column.pattern("abc#", Escape::Char('#')), None);
        assert!(column.pattern("abc\\", Escape::Disabled).is_some());
        let long = "a".repeat(MAX_PATTERN_BYTES / 2 + 1);
        assert_eq!(column.pattern(&long, Escape::Backslash), None);
        assert!(column.pattern(&long[1..], Escape::Backslash).is_some());
    }

    #[test]
    fn probes_narrow() {
        let column = text_column(4, true, true, PlainType::Text);
        let stored = |v: &str| column.stored_tokens(v.as_bytes());
        let mar = column.pattern("mar%", Escape::Backslash).unwrap();
        assert!(mar.admits(&stored("Martin")));
        assert!(mar.admits(&stored("MARIE")));
        assert!(!mar.admits(&stored("dupont")));
        assert!(!mar.admits(&stored("Amar")));
        let pont = column.pattern("%pont%", Escape::Backslash).unwrap();
        assert!(pont.admits(&stored("Dupont")));
        assert!(!pont.admits(&stored("Martin")));
        let eq = column.equality(b"Martin").unwrap();
        assert!(eq.admits(&stored("MARTÍN")));
        assert!(!eq.admits(&stored("Martine")));
        // A pattern without wildcards is an equality: the exact token, with the prefix and
        // trigrams of the value.
        let like = column.pattern("martin", Escape::Backslash).unwrap();
        assert!(like.tokens().contains(&eq.tokens()[0]));
        assert_eq!(like.tokens().len(), 4, "exact, mart, rti, tin: {like:?}");
        assert!(like.admits(&stored("MARTÍN")));
        assert!(!like.admits(&stored("Martine")));
        assert_eq!(column.pattern("mar\\tin", Escape::Backslash), Some(like));
        let long = column
            .pattern("Marie-Thérèse de la Tour d’Auvergne", Escape::Backslash)
            .unwrap();
        assert_eq!(long.tokens().len(), MAX_PROBE_TOKENS);
        // Nothing to narrow with.
        for pattern in ["%", "%a%", "_b_", "%ab%cd%"] {
            assert_eq!(
                column.pattern(pattern, Escape::Backslash),
                None,
                "{pattern}"
            );
        }
        let no_trigram = text_column(4, false, false, PlainType::Text);
        assert_eq!(no_trigram.pattern("%pont%", Escape::Backslash), None);
        assert_eq!(no_trigram.equality(b""), None);
        let date = ColumnSearch::new(spec(0, false, true, None), key("d"), PlainType::Date);
        assert_eq!(date.pattern("2024%", Escape::Backslash), None);
    }

    #[test]
    fn probes_hold_the_longest_prefix_and_a_bounded_spread_of_trigrams() {
        let column = text_column(4, true, false, PlainType::Text);
        let token = |kind, item: &str| column.token(kind, item.as_bytes());
        // The prefix covers "mari": trigrams start where it stops helping.
        assert_eq!(
            column.pattern("marie%", Escape::Backslash),
            Probe::all_of(vec![
                token(TokenKind::Prefix, "mari"),
                token(TokenKind::Trigram, "rie"),
            ])
        );
        let long = "Marie-Thérèse de la Tour d’Auvergne";
        let probe = column
            .pattern(&format!("{long}%"), Escape::Backslash)
            .unwrap();
        assert_eq!(probe.tokens().len(), 1 + MAX_PROBE_TRIGRAMS);
        // Every run gets a trigram before any run gets a second one.
        let probe = column
            .pattern("%abcdefgh%xyz%klm%", Escape::Backslash)
            .unwrap();
        for t in ["abc", "xyz", "klm"] {
            let trigram = token(TokenKind::Trigram, t);
            let mid = token(TokenKind::Trigram, "def");
            assert!(
                probe.tokens().contains(&trigram) || t == "abc" && probe.tokens().contains(&mid),
                "{t}"
            );
        }
        assert!(probe.tokens().contains(&token(TokenKind::Trigram, "xyz")));
        assert!(probe.tokens().contains(&token(TokenKind::Trigram, "klm")));
        assert_eq!(probe.tokens().len(), MAX_PROBE_TRIGRAMS);
        assert_eq!(spread(&[vec!["a", "b", "c", "d"]], 2), ["b", "d"]);
        assert_eq!(spread(&[vec!["a", "b", "c"]], 6), ["a", "b", "c"]);
        assert_eq!(spread(&[vec!["a"], vec![], vec!["b", "c"]], 2), ["a", "c"]);
        assert_eq!(spread(&[], 6), Vec::<&str>::new());
    }

    #[test]
    fn probe_meanings() {
        let stored = vec!["a".to_string(), "b".into()];
        assert!(Probe::AllOf(vec![]).admits(&stored));
        assert!(!Probe::AnyOf(vec![]).admits(&stored));
        assert!(Probe::AllOf(vec!["a".into(), "b".into()]).admits(&stored));
        assert!(!Probe::AllOf(vec!["a".into(), "c".into()]).admits(&stored));
        assert!(Probe::AnyOf(vec!["c".into(), "b".into()]).admits(&stored));
    }

    fn dated(ty: PlainType, buckets: DateBuckets, exact: bool) -> ColumnSearch {
        ColumnSearch::new(spec(0, false, exact, Some(buckets)), key("born"), ty)
    }

    /// Orders two canonical AD values of one dated type (years may have more than 4 digits).
    fn compare(a: &str, b: &str) -> Ordering {
        let year = |s: &str| s.split('-').next().unwrap_or("").len();
        year(a).cmp(&year(b)).then_with(|| a.cmp(b))
    }

    /// A bound as the instant it stands for: a date compared with a timestamp is its midnight.
    fn instant(bound: &str, ty: PlainType) -> String {
        match ty {
            PlainType::Timestamp if bound.len() == 10 => format!("{bound} 00:00:00"),
            PlainType::Timestamptz if bound.len() == 10 => format!("{bound} 00:00:00+00"),
            _ => bound.to_string(),
        }
    }

    /// Canonical values of one dated type around bucket edges, with their BC and infinite
    /// neighbours.
    fn dated_values(ty: PlainType) -> Vec<String> {
        let mut dates = vec![];
        for year in [1, 2, 1999, 2000, 2023, 2024, 2025, 2030, 2100, 9999, 10000] {
            for (month, day) in [
                (1, 1),
                (1, 31),
                (2, 28),
                (2, 29),
                (6, 15),
                (11, 30),
                (12, 1),
                (12, 31),
            ] {
                let date = format!("{year:04}-{month:02}-{day:02}");
                if AdDate::parse(date.as_bytes()).is_some() {
                    dates.push(date);
                }
            }
        }
        let times: &[&str] = match ty {
            PlainType::Date => &[""],
            PlainType::Timestamp => &[" 00:00:00", " 12:30:00.5", " 23:59:59.999999"],
            _ => &[" 00:00:00+00", " 12:30:00.5+00", " 23:59:59.999999+00"],
        };
        let mut values: Vec<String> = dates
            .iter()
            .flat_map(|d| times.iter().map(move |t| format!("{d}{t}")))
            .collect();
        values.sort_by(|a, b| compare(a, b));
        values
    }

    #[test]
    fn range_probes_admit_every_value_in_range() {
        let mut checked = 0;
        for ty in [
            PlainType::Date,
            PlainType::Timestamp,
            PlainType::Timestamptz,
        ] {
            let values = dated_values(ty);
            let specials = ["infinity", "-infinity", "0044-03-15 BC", "0001-12-31 BC"];
            for buckets in [DateBuckets::Year, DateBuckets::Month] {
                let column = dated(ty, buckets, false);
                let stored: Vec<Vec<String>> = values
                    .iter()
                    .map(|v| column.stored_tokens(v.as_bytes()))
                    .collect();
                let special_stored: Vec<Vec<String>> = specials
                    .iter()
                    .map(|v| column.stored_tokens(v.as_bytes()))
                    .collect();
                // Bounds: every other value, plus dates given to timestamp columns.
                let mut bounds: Vec<String> = values.iter().step_by(4).cloned().collect();
                bounds.extend(["2024-12-31", "2025-01-01", "2024-06-15"].map(String::from));
                for low in &bounds {
                    for high in &bounds {
                        for (low_inclusive, high_inclusive) in
                            [(true, true), (false, false), (true, false), (false, true)]
                        {
                            let probe = column.range(
                                Some((low.as_bytes(), low_inclusive)),
                                Some((high.as_bytes(), high_inclusive)),
                            );
                            let Some(probe) = probe else { continue };
                            let (low_at, high_at) = (instant(low, ty), instant(high, ty));
                            for (value, tokens) in values.iter().zip(&stored) {
                                let above = match compare(value, &low_at) {
                                    Ordering::Greater => true,
                                    Ordering::Equal => low_inclusive,
                                    Ordering::Less => false,
                                };
                                let below = match compare(value, &high_at) {
                                    Ordering::Less => true,
                                    Ordering::Equal => high_inclusive,
                                    Ordering::Greater => false,
                                };
                                if above && below {
                                    checked += 1;
                                    assert!(
                                        probe.admits(tokens),
                                        "{ty:?} {buckets:?}: {value} in {low} {low_inclusive} \
                                         .. {high} {high_inclusive}"
                                    );
                                }
                            }
                            // No AD range holds a BC or infinite value, which have no bucket.
                            for tokens in &special_stored {
                                assert!(tokens.is_empty());
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 50_000, "{checked}");
    }

    #[test]
    fn range_probes_list_months_then_years_then_give_up() {
        let month = |y, m| format!("{y:04}-{m:02}");
        let months = dated(PlainType::Date, DateBuckets::Month, false);
        let token = |c: &ColumnSearch, kind, item: &str| c.token(kind, item.as_bytes());
        let range = |c: &ColumnSearch, low: &str, li, high: &str, hi| {
            c.range(Some((low.as_bytes(), li)), Some((high.as_bytes(), hi)))
        };
        assert_eq!(
            range(&months, "2024-11-15", true, "2025-02-01", true),
            Some(Probe::AnyOf(vec![
                token(&months, TokenKind::Month, &month(2024, 11)),
                token(&months, TokenKind::Month, &month(2024, 12)),
                token(&months, TokenKind::Month, &month(2025, 1)),
                token(&months, TokenKind::Month, &month(2025, 2)),
            ]))
        );
        // Exclusive bounds at a bucket's edge leave it out.
        assert_eq!(
            range(&months, "2024-11-30", false, "2025-02-01", false),
            Some(Probe::AnyOf(vec![
                token(&months, TokenKind::Month, &month(2024, 12)),
                token(&months, TokenKind::Month, &month(2025, 1)),
            ]))
        );
        // 64 months: months; 65: years.
        assert_eq!(
            range(&months, "2020-01-01", true, "2025-04-30", true)
                .unwrap()
                .tokens()
                .len(),
            64
        );
        assert_eq!(
            range(&months, "2020-01-01", true, "2025-05-01", true),
            Some(Probe::AnyOf(
                (2020..=2025)
                    .map(|y| token(&months, TokenKind::Year, &format!("{y}")))
                    .collect()
            ))
        );
        let years = dated(PlainType::Timestamp, DateBuckets::Year, false);
        assert_eq!(
            range(
                &years,
                "1990-01-01 00:00:00",
                true,
                "2053-12-31 00:00:00",
                true
            )
            .unwrap()
            .tokens()
            .len(),
            64
        );
        assert_eq!(
            range(
                &years,
                "1990-01-01 00:00:00",
                true,
                "2054-01-01 00:00:00",
                true
            ),
            None
        );
        // Empty ranges hold no row.
        assert_eq!(
            range(
                &years,
                "2025-01-01 00:00:00",
                true,
                "2024-12-31 00:00:00",
                true
            ),
            Some(Probe::AnyOf(vec![]))
        );
        assert_eq!(
            range(&months, "2024-12-31", false, "2025-01-01", false),
            Some(Probe::AnyOf(vec![]))
        );
        // BC, infinite and missing bounds: no probe.
        for (low, high) in [
            ("0044-03-15 BC", "2024-01-01"),
            ("2024-01-01", "infinity"),
            ("-infinity", "2024-01-01"),
            ("2024-01-01", "garbage"),
        ] {
            assert_eq!(range(&months, low, true, high, true), None, "{low} {high}");
        }
        assert_eq!(months.range(None, Some((b"2024-01-01", true))), None);
        assert_eq!(months.range(Some((b"2024-01-01", true)), None), None);
        let no_buckets = ColumnSearch::new(spec(0, false, true, None), key("d"), PlainType::Date);
        assert_eq!(
            no_buckets.range(Some((b"2024-01-01", true)), Some((b"2024-02-01", true))),
            None
        );
    }

    #[test]
    fn dated_equality_uses_the_exact_token_or_the_finest_bucket() {
        let exact = dated(PlainType::Date, DateBuckets::Month, true);
        let months = dated(PlainType::Date, DateBuckets::Month, false);
        let years = dated(PlainType::Timestamptz, DateBuckets::Year, false);
        assert_eq!(
            exact.equality(b"1985-05-17"),
            Some(Probe::AllOf(vec![
                exact.token(TokenKind::Exact, b"1985-05-17")
            ]))
        );
        assert_eq!(
            exact.equality(b"infinity"),
            Some(Probe::AllOf(vec![
                exact.token(TokenKind::Exact, b"infinity")
            ]))
        );
        assert!(
            exact
                .equality(b"infinity")
                .unwrap()
                .admits(&exact.stored_tokens(b"infinity"))
        );
        assert_eq!(
            months.equality(b"1985-05-17"),
            Some(Probe::AllOf(vec![
                months.token(TokenKind::Month, b"1985-05")
            ]))
        );
        assert_eq!(
            years.equality(b"1985-05-17 10:00:00+00"),
            Some(Probe::AllOf(vec![years.token(TokenKind::Year, b"1985")]))
        );
        assert_eq!(months.equality(b"infinity"), None);
        assert_eq!(months.equality(b"0044-03-15 BC"), None);
        for ty in [
            PlainType::Date,
            PlainType::Timestamp,
            PlainType::Timestamptz,
        ] {
            for buckets in [DateBuckets::Year, DateBuckets::Month] {
                let column = dated(ty, buckets, false);
                for value in dated_values(ty) {
                    let probe = column.equality(value.as_bytes()).unwrap();
                    assert!(probe.admits(&column.stored_tokens(value.as_bytes())));
                }
            }
        }
    }

    /// Text drawn from the characters that make folding and patterns interesting.
    fn tricky(max: usize) -> impl Strategy<Value = String> {
        let chars: Vec<char> = "abmrtAMRT -’éÉe\u{301}çÇﬁİıIΣσςß\t\u{a0}_%\\"
            .chars()
            .collect();
        prop::collection::vec(prop::sample::select(chars), 0..max)
            .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn generated_patterns_never_miss(
            value in tricky(14),
            pattern in tricky(8),
            prefix in 0u8..=8,
            trigram in any::<bool>(),
            exact in any::<bool>(),
            char_n in any::<bool>(),
        ) {
            let ty = if char_n { PlainType::Char(16) } else { PlainType::Text };
            let column = text_column(prefix, trigram, exact, ty);
            let orders = [TextOrder::bytes(), TextOrder::icu("tr-TR").unwrap()];
            let stored = column.stored_tokens(canonical(&value, &ty).as_bytes());
            for escape in [Escape::Backslash, Escape::Disabled, Escape::Char('%')] {
                if let Some(probe) = column.pattern(&pattern, escape)
                    && some_match(&value, &pattern, escape, &ty, &orders)
                {
                    prop_assert!(probe.admits(&stored), "{:?} {:?} {:?}", value, pattern, escape);
                }
            }
            // A value always satisfies the probe of its own equality and of itself as a
            // pattern (escaped so that it has no wildcard).
            if let Some(probe) = column.equality(canonical(&value, &ty).as_bytes()) {
                prop_assert!(probe.admits(&stored));
            }
            let escaped: String = value
                .chars()
                .flat_map(|c| ['\\', c])
                .collect();
            if let Some(probe) = column.pattern(&escaped, Escape::Backslash) {
                prop_assert!(probe.admits(&stored));
            }
        }

        #[test]
        fn no_input_panics(
            text in "\\PC{0,30}",
            bytes in prop::collection::vec(any::<u8>(), 0..30),
        ) {
            let types = [PlainType::Text, PlainType::Char(3), PlainType::Date, PlainType::Timestamptz];
            for ty in types {
                let column = ColumnSearch::new(
                    spec(8, true, true, Some(DateBuckets::Month)),
                    key("x"),
                    ty,
                );
                let _ = column.stored_tokens(&bytes);
                let _ = column.stored_tokens(text.as_bytes());
                let _ = column.equality(&bytes);
                let _ = column.pattern(&text, Escape::Backslash);
                let _ = column.pattern(&text, Escape::Char('a'));
                let _ = column.range(Some((&bytes, true)), Some((text.as_bytes(), false)));
            }
        }
    }
}
