//! Search indexes of sealed columns (issue 15): keyed, truncated tokens stored beside each
//! sealed value, so that the database can use a GIN index to hand back a superset of the rows a
//! search can match; pgseal then checks every candidate exactly, as it does without an index.
//!
//! The pure building blocks, with no SQL and no wire:
//! - [`fold`](mod@fold): the normalised form tokens are computed from, coarse enough that
//!   whatever PostgreSQL's `=`, `LIKE`, `ILIKE`, `lower()` find equal folds equal;
//! - [`tokens`]: [`ColumnSearch`], a column's spec, key and type, and the tokens stored for one
//!   value ([`ColumnSearch::stored_tokens`], [`ColumnSearch::suffix`]);
//! - [`probe`]: what a predicate asks of the index ([`Probe`]): equality, `LIKE`/`ILIKE`
//!   patterns, date ranges.
//!
//! The tokens themselves (HMAC-SHA256 under a per-domain key, truncated to the policy's `bits`)
//! are [`pgseal_keys::search`]'s.
//!
//! **The one rule.** A probe must admit every row whose value satisfies the predicate: false
//! positives cost a check, a false negative is a wrong answer. Each module says why its part
//! holds, and the tests check it over generated values, patterns and ranges against the exact
//! evaluation of [`crate::evaluate::like`].

pub mod fold;
pub mod probe;
pub mod tokens;

pub use fold::fold;
pub use probe::{MAX_PROBE_TOKENS, MAX_PROBE_TRIGRAMS, MAX_RANGE_BUCKETS, Probe};
pub use tokens::ColumnSearch;
