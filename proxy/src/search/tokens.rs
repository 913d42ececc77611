//! The search tokens stored beside one sealed value: which items a column's [`SearchSpec`]
//! indexes, read from pgseal's canonical plaintext, each turned into a keyed token by the
//! column's [`SearchKey`].
//!
//! Items, by kind:
//! - **prefix** (character types): the first 1, 2, … `spec.prefix` characters of the folded
//!   value ([`fold()`]), as many as it has;
//! - **trigram** (character types): every three consecutive characters of the folded value,
//!   without padding (a value of fewer than three folded characters has none);
//! - **exact**: the folded value for character types, the canonical bytes for the others;
//! - **year** / **month** (dated types with `date` buckets): `YYYY` of the date, and for month
//!   buckets `YYYY-MM` too. BC dates (`0044-03-15 BC`) and `±infinity` get none: a range probe
//!   is only ever built between two AD dates ([`ColumnSearch::range`](super::ColumnSearch)),
//!   and no value outside them can satisfy it; equality with such a value asks for no bucket.
//!
//! `char(n)` values are compared blank-padded by `LIKE` (PostgreSQL's `bpcharlike` matches the
//! padded datum) and unpadded by `=`; pgseal's canonical text drops the padding. So prefixes and
//! trigrams are taken from the folded value followed by one space when it is shorter than `n`
//! (folding makes any padding one space), which holds the items of both readings; the exact
//! item is the unpadded folded value, as `=` sees it.

use pgseal_keys::{SearchKey, TokenKind};
use pgseal_policies::{DateBuckets, PlainType, SearchSpec};

use super::fold::{fold, push_folded};

/// One column's search indexes: what to index ([`SearchSpec`]), under which key, for values of
/// which plaintext type.
#[derive(Clone, Debug)]
pub struct ColumnSearch {
    spec: SearchSpec,
    key: SearchKey,
    plain_type: PlainType,
}

impl ColumnSearch {
    /// The indexes `spec` asks for on a column of `plain_type`, keyed by `key` (the column
    /// domain's [`pgseal_keys::Sealer::search_key`]).
    pub fn new(spec: SearchSpec, key: SearchKey, plain_type: PlainType) -> ColumnSearch {
        ColumnSearch {
            spec,
            key,
            plain_type,
        }
    }

    /// What the column indexes.
    pub fn spec(&self) -> &SearchSpec {
        &self.spec
    }

    /// The column's plaintext type.
    pub fn plain_type(&self) -> &PlainType {
        &self.plain_type
    }

    /// The tokens to store beside the value whose canonical plaintext is `canonical`, sorted
    /// and without duplicates. A character value that is not UTF-8 has none (the caller never
    /// sends one: canonical text of a character type is the database's UTF-8 text).
    pub fn stored_tokens(&self, canonical: &[u8]) -> Vec<String> {
        let mut tokens = Vec::new();
        if self.plain_type.is_character() {
            let Ok(text) = std::str::from_utf8(canonical) else {
                return tokens;
            };
            let indexed = self.indexed_form(text);
            if self.spec.prefix > 0 {
                let mut prefix = String::new();
                for c in indexed.chars().take(usize::from(self.spec.prefix)) {
                    prefix.push(c);
                    tokens.push(self.token(TokenKind::Prefix, prefix.as_bytes()));
                }
            }
            if self.spec.trigram {
                for trigram in trigrams(&indexed) {
                    tokens.push(self.token(TokenKind::Trigram, trigram.as_bytes()));
                }
            }
            if self.spec.exact {
                tokens.push(self.exact_text_token(text));
            }
        } else {
            if self.spec.exact {
                tokens.push(self.token(TokenKind::Exact, canonical));
            }
            if let Some(buckets) = self.date_buckets()
                && let Some(date) = AdDate::parse(canonical)
            {
                tokens.push(self.token(TokenKind::Year, date.year_item().as_bytes()));
                if buckets == DateBuckets::Month {
                    tokens.push(self.token(TokenKind::Month, date.month_item().as_bytes()));
                }
            }
        }
        tokens.sort_unstable();
        tokens.dedup();
        tokens
    }

    /// [`stored_tokens`](Self::stored_tokens) joined by `.` (empty when there are none), for
    /// the caller to append to the value's armor after a `~`.
    pub fn suffix(&self, canonical: &[u8]) -> String {
        self.stored_tokens(canonical).join(".")
    }

    /// The column's date buckets, when it has them and its values are dated.
    pub(crate) fn date_buckets(&self) -> Option<DateBuckets> {
        self.spec.date.filter(|_| self.plain_type.is_dated())
    }

    /// The token of `item` as a `kind`, truncated to the spec's bits.
    pub(crate) fn token(&self, kind: TokenKind, item: &[u8]) -> String {
        self.key.token(kind, item, self.spec.bits)
    }

    /// The exact token of a character value: its folded text, unpadded for `char(n)`.
    pub(crate) fn exact_text_token(&self, text: &str) -> String {
        self.token(TokenKind::Exact, fold(self.unpadded(text)).as_bytes())
    }

    /// `text` without the trailing spaces `char(n)` ignores (unchanged for other types).
    pub(crate) fn unpadded<'a>(&self, text: &'a str) -> &'a str {
        match self.plain_type {
            PlainType::Char(_) => text.trim_end_matches(' '),
            _ => text,
        }
    }

    /// The folded form prefixes and trigrams are taken from: for `char(n)`, with the padding
    /// `LIKE` sees (one space once folded) when the value is shorter than `n`.
    fn indexed_form(&self, text: &str) -> String {
        let mut folded = fold(text);
        if let PlainType::Char(n) = self.plain_type {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if self.unpadded(text).chars().count() < n {
                push_folded(' ', &mut folded);
            }
        }
        folded
    }
}

/// Every run of three consecutive characters of `folded`, in order (repeats included).
pub(crate) fn trigrams(folded: &str) -> Vec<&str> {
    let starts: Vec<usize> = folded
        .char_indices()
        .map(|(i, _)| i)
        .chain([folded.len()])
        .collect();
    starts
        .windows(4)
        .filter_map(|w| folded.get(w[0]..w[3]))
        .collect()
}

/// The date of a dated canonical value, when it is an AD date (`YYYY-MM-DD…` with a year of at
/// least 1 and no ` BC`); `infinity`, `-infinity` and BC dates are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AdDate {
    pub(crate) year: u32,
    pub(crate) month: u32,
    pub(crate) day: u32,
}

impl AdDate {
    /// Reads the date at the start of a canonical `date`, `timestamp` or `timestamptz` value.
    pub(crate) fn parse(canonical: &[u8]) -> Option<AdDate> {
        let text = std::str::from_utf8(canonical).ok()?;
        if text.ends_with(" BC") {
            return None;
        }
        let (date, _time) = text.split_once(' ').unwrap_or((text, ""));
        let mut parts = date.split('-');
        let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || year.len() < 4
            || month.len() != 2
            || day.len() != 2
            || ![year, month, day]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let date = AdDate {
            year: year.parse().ok()?,
            month: month.parse().ok()?,
            day: day.parse().ok()?,
        };
        let valid = date.year >= 1
            && (1..=12).contains(&date.month)
            && date.day >= 1
            && date.day <= days_in_month(date.year, date.month);
        valid.then_some(date)
    }

    /// The year bucket's item: `YYYY` (more digits past 9999).
    pub(crate) fn year_item(&self) -> String {
        format!("{:04}", self.year)
    }

    /// The month bucket's item: `YYYY-MM`.
    pub(crate) fn month_item(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

/// Days in `month` of `year` (proleptic Gregorian).
pub(crate) fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pgseal_keys::{Domain, Keyring, RootKey};

    /// The search key of `public.patients.<column>` under a fixed root key.
    pub(crate) fn key(column: &str) -> SearchKey {
        let ring = Keyring::from_root_key_str(&RootKey::from_bytes([0x5e; 32]).to_base64())
            .expect("a root key");
        ring.sealer(&Domain::column("public", "patients", column).expect("a column"))
            .search_key()
            .expect("a search key")
    }

    pub(crate) fn spec(
        prefix: u8,
        trigram: bool,
        exact: bool,
        date: Option<DateBuckets>,
    ) -> SearchSpec {
        SearchSpec {
            prefix,
            trigram,
            exact,
            date,
            bits: 24,
        }
    }

    fn expected(search: &ColumnSearch, items: &[(TokenKind, &str)]) -> Vec<String> {
        let mut tokens: Vec<String> = items
            .iter()
            .map(|(kind, item)| search.token(*kind, item.as_bytes()))
            .collect();
        tokens.sort();
        tokens.dedup();
        tokens
    }

    #[test]
    fn character_values_store_prefixes_trigrams_and_the_folded_value() {
        let s = ColumnSearch::new(spec(3, true, true, None), key("last_name"), PlainType::Text);
        use TokenKind::*;
        assert_eq!(
            s.stored_tokens("Éloïse".as_bytes()),
            expected(
                &s,
                &[
                    (Prefix, "e"),
                    (Prefix, "el"),
                    (Prefix, "elo"),
                    (Trigram, "elo"),
                    (Trigram, "loi"),
                    (Trigram, "ois"),
                    (Trigram, "ise"),
                    (Exact, "eloise"),
                ]
            )
        );
        // Case and accents do not matter; repeated trigrams are stored once.
        assert_eq!(
            s.stored_tokens(b"ELOISE"),
            s.stored_tokens("éloïse".as_bytes())
        );
        assert_eq!(
            s.stored_tokens(b"aaaa"),
            expected(
                &s,
                &[
                    (Prefix, "a"),
                    (Prefix, "aa"),
                    (Prefix, "aaa"),
                    (Trigram, "aaa"),
                    (Exact, "aaaa")
                ]
            )
        );
        // Short values: as many prefixes as characters, no trigram.
        assert_eq!(
            s.stored_tokens(b"Li"),
            expected(&s, &[(Prefix, "l"), (Prefix, "li"), (Exact, "li")])
        );
        assert_eq!(s.stored_tokens(b""), expected(&s, &[(Exact, "")]));
        // Not UTF-8: nothing (the caller never sends such text).
        assert!(s.stored_tokens(b"\xff\xfe").is_empty());
        let tokens = s.stored_tokens("Marie-Thérèse".as_bytes());
        assert!(tokens.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s.suffix("Marie-Thérèse".as_bytes()), tokens.join("."));
    }

    #[test]
    fn char_n_values_index_their_padding_once() {
        use TokenKind::*;
        let s = ColumnSearch::new(spec(4, true, true, None), key("code"), PlainType::Char(5));
        assert_eq!(
            s.stored_tokens(b"ab"),
            expected(
                &s,
                &[
                    (Prefix, "a"),
                    (Prefix, "ab"),
                    (Prefix, "ab "),
                    (Trigram, "ab "),
                    (Exact, "ab")
                ]
            )
        );
        // A full value has no padding.
        assert_eq!(
            s.stored_tokens(b"abcde"),
            expected(
                &s,
                &[
                    (Prefix, "a"),
                    (Prefix, "ab"),
                    (Prefix, "abc"),
                    (Prefix, "abcd"),
                    (Trigram, "abc"),
                    (Trigram, "bcd"),
                    (Trigram, "cde"),
                    (Exact, "abcde"),
                ]
            )
        );
    }

    #[test]
    fn other_types_store_their_canonical_bytes_and_date_buckets() {
        use TokenKind::*;
        let s = ColumnSearch::new(
            spec(0, false, true, Some(DateBuckets::Month)),
            key("born"),
            PlainType::Date,
        );
        assert_eq!(
            s.stored_tokens(b"1985-05-17"),
            expected(
                &s,
                &[(Exact, "1985-05-17"), (Year, "1985"), (Month, "1985-05")]
            )
        );
        let years = ColumnSearch::new(
            spec(0, false, false, Some(DateBuckets::Year)),
            key("seen"),
            PlainType::Timestamptz,
        );
        assert_eq!(
            years.stored_tokens(b"2024-11-03 10:15:00.25+00"),
            expected(&years, &[(Year, "2024")])
        );
        assert_eq!(
            years.stored_tokens(b"12345-01-02 00:00:00+00"),
            expected(&years, &[(Year, "12345")])
        );
        // BC dates, infinities and what is not a date get no bucket.
        for canonical in [
            &b"0044-03-15 BC"[..],
            b"0001-12-31 10:00:00+00 BC",
            b"infinity",
            b"-infinity",
            b"0000-12-31",
            b"-044-03-15",
            b"1985-02-30",
            b"1985-5-17",
            b"",
            b"\xff",
        ] {
            assert!(years.stored_tokens(canonical).is_empty(), "{canonical:?}");
        }
        assert_eq!(
            s.stored_tokens(b"infinity"),
            expected(&s, &[(Exact, "infinity")])
        );
        // An integer column with an exact index: its canonical text.
        let n = ColumnSearch::new(spec(0, false, true, None), key("n"), PlainType::Int4);
        assert_eq!(n.stored_tokens(b"42"), expected(&n, &[(Exact, "42")]));
        // Date buckets on a type without dates, prefixes on one without characters: ignored.
        let odd = ColumnSearch::new(
            spec(3, true, false, Some(DateBuckets::Year)),
            key("n"),
            PlainType::Int8,
        );
        assert!(odd.stored_tokens(b"2024-01-01").is_empty());
        assert_eq!(odd.suffix(b"1"), "");
    }

    #[test]
    fn dates_are_read_as_postgres_prints_them() {
        assert_eq!(
            AdDate::parse(b"2024-02-29"),
            Some(AdDate {
                year: 2024,
                month: 2,
                day: 29
            })
        );
        assert_eq!(AdDate::parse(b"2023-02-29"), None);
        assert_eq!(AdDate::parse(b"1900-02-29"), None);
        assert_eq!(
            AdDate::parse(b"2000-02-29 23:59:59.999999+00"),
            Some(AdDate {
                year: 2000,
                month: 2,
                day: 29
            })
        );
        assert_eq!(
            AdDate::parse(b"5874897-12-31").map(|d| d.year),
            Some(5_874_897)
        );
        assert_eq!(AdDate::parse(b"99999999999-01-01"), None);
        assert_eq!(
            AdDate::parse(b"0001-01-01").map(|d| d.year_item()),
            Some("0001".into())
        );
    }

    #[test]
    fn trigrams_are_character_windows() {
        assert_eq!(trigrams("éloïse"), ["élo", "loï", "oïs", "ïse"]);
        assert_eq!(trigrams("ab"), Vec::<&str>::new());
        assert_eq!(trigrams("abc"), ["abc"]);
        assert_eq!(trigrams(""), Vec::<&str>::new());
    }
}
