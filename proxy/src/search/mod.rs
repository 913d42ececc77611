//! Search indexes of sealed columns (issue 15): keyed, truncated tokens stored beside each
//! sealed value, so that the database can use a GIN index to hand back a superset of the rows a
//! search can match; pgseal then checks every candidate exactly, as it does without an index.
//!
//! - [`fold`](mod@fold): the normalised form tokens are computed from, coarse enough that
//!   whatever PostgreSQL's `=`, `LIKE`, `ILIKE`, `lower()` find equal folds equal;
//! - [`tokens`]: [`ColumnSearch`], a column's spec, key and type, and the tokens stored for one
//!   value ([`ColumnSearch::stored_tokens`], [`ColumnSearch::suffix`]).

pub mod fold;
pub mod tokens;

pub use fold::fold;
pub use tokens::ColumnSearch;
