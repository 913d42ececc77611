//! Search indexes of sealed columns (issue 15): keyed, truncated tokens stored beside each
//! sealed value, so that the database can use a GIN index to hand back a superset of the rows a
//! search can match; pgseal then checks every candidate exactly, as it does without an index.
//!
//! - [`fold`](mod@fold): the normalised form tokens are computed from, coarse enough that
//!   whatever PostgreSQL's `=`, `LIKE`, `ILIKE`, `lower()` find equal folds equal.

pub mod fold;

pub use fold::fold;
