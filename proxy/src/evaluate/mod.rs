//! Evaluation inside pgseal of what the database cannot do on sealed values: when a statement
//! filters or sorts on a sealed column, the server only sees ciphertext, so pgseal fetches a
//! superset, opens the values and decides itself, exactly as PostgreSQL would have decided on
//! the plaintext.
//!
//! These are the pure primitives of that evaluation, each a function of its inputs alone:
//! [`collation`] (how a database orders text and folds its case), [`like`] (`LIKE` and
//! `ILIKE`), [`scalar`] (typed plaintext values, compared and tested for equality as
//! PostgreSQL's operators do). `tests/tests/evaluation_primitives.rs` checks them against a
//! real server. [`candidates`] plans what a search index lets the server filter first.

pub mod candidates;
pub mod collation;
pub mod composite;
pub mod like;
pub mod rows;
pub mod scalar;
pub mod unaccent;
