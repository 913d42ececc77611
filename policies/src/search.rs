//! Search indexes of a sealed column (`search = { … }` in the policy): which keyed, truncated
//! tokens pgseal stores beside each sealed value so that the database can hand back a small
//! superset of the rows a search can match (pgseal then checks each candidate exactly).
//!
//! Plain data: the proxy computes the tokens and the candidate filters; this module only says
//! which kinds a column has and how far tokens are truncated.

use std::fmt;

/// The smallest `bits` a policy may give: fewer would make every token match most rows.
pub const MIN_BITS: u8 = 4;
/// The largest `bits`: past it, tokens of whole values approach a unique fingerprint.
pub const MAX_BITS: u8 = 24;
/// `bits` when the policy leaves it out: 4,096 tokens per kind.
pub const DEFAULT_BITS: u8 = 12;
/// The longest prefix a policy may index, in characters of the folded value.
pub const MAX_PREFIX: u8 = 8;

/// How coarse the date buckets of a dated column are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DateBuckets {
    /// One token per year.
    Year,
    /// One token per year and one per month (long ranges use years, short ones months).
    Month,
}

impl DateBuckets {
    /// As a policy writes it.
    pub fn name(&self) -> &'static str {
        match self {
            DateBuckets::Year => "year",
            DateBuckets::Month => "month",
        }
    }

    /// Parses `"year"` or `"month"`.
    pub fn parse(written: &str) -> Option<Self> {
        match written {
            "year" => Some(DateBuckets::Year),
            "month" => Some(DateBuckets::Month),
            _ => None,
        }
    }
}

/// The search indexes of one sealed column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SearchSpec {
    /// Prefixes of the folded value of 1 to `prefix` characters (0: none), for `LIKE 'dup%'`.
    pub prefix: u8,
    /// Every three-character run of the folded value, for `LIKE '%dup%'`.
    pub trigram: bool,
    /// The whole (folded) value, for `=` and `IN` on a randomized column.
    pub exact: bool,
    /// Year (and month) buckets of a dated value, for ranges.
    pub date: Option<DateBuckets>,
    /// How many bits of each keyed token are kept: 2^bits distinct tokens per kind.
    pub bits: u8,
}

impl SearchSpec {
    /// A stable text naming every setting (`prefix=4,trigram,exact,date=month,bits=12`): stored
    /// beside a built index so that a policy change is noticed and the index rebuilt.
    pub fn fingerprint(&self) -> String {
        self.to_string()
    }

    /// True when the spec asks for no token at all.
    pub fn is_empty(&self) -> bool {
        self.prefix == 0 && !self.trigram && !self.exact && self.date.is_none()
    }
}

impl fmt::Display for SearchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.prefix > 0 {
            parts.push(format!("prefix={}", self.prefix));
        }
        if self.trigram {
            parts.push("trigram".to_owned());
        }
        if self.exact {
            parts.push("exact".to_owned());
        }
        if let Some(date) = self.date {
            parts.push(format!("date={}", date.name()));
        }
        parts.push(format!("bits={}", self.bits));
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_names_every_setting_in_one_order() {
        let spec = SearchSpec {
            prefix: 4,
            trigram: true,
            exact: false,
            date: None,
            bits: 12,
        };
        assert_eq!(spec.fingerprint(), "prefix=4,trigram,bits=12");
        let dated = SearchSpec {
            prefix: 0,
            trigram: false,
            exact: true,
            date: Some(DateBuckets::Month),
            bits: 10,
        };
        assert_eq!(dated.fingerprint(), "exact,date=month,bits=10");
        assert!(!dated.is_empty());
    }
}
