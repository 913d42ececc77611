//! `pgseal-policies`: the policy model — which columns are sealed and how, what each database
//! role sees of them, and how many rows each may take out.
//!
//! It knows nothing of the wire protocol or of SQL; the proxy only reads its compiled form:
//!
//! ```
//! use pgseal_policies::{ClassId, CompiledPolicy, Mask, View};
//!
//! let policy = CompiledPolicy::from_toml("inline.toml", r#"
//!     [columns."public.patients.nir"]
//!     mode = "tokenize-nir"
//!     type = "varchar(15)"
//!     mask = "nir"
//!
//!     [classes.billing]
//!     roles = ["ehr_billing"]
//!     default = "masked"
//! "#).unwrap();
//!
//! let nir = policy.column_id("public", "patients", "nir").unwrap();
//! let billing = policy.class_of("ehr_billing");
//! assert_eq!(policy.view(billing, nir), View::Masked(Mask::Nir));
//! // A role the policy does not name sees ciphertext, with the strictest budget.
//! assert_eq!(policy.class_of("mallory"), ClassId::DEFAULT);
//! assert_eq!(policy.view_for("mallory", "public", "patients", "nir"), Some(View::Ciphertext));
//! // Columns that are not sealed pass as they are.
//! assert_eq!(policy.view_for("ehr_billing", "public", "patients", "city"), None);
//! ```
//!
//! The file format is described in `README.md` and `reference.toml` beside this crate.

#![forbid(unsafe_code)]

pub mod budget;
pub mod catalog;
mod compile;
pub mod ident;
pub mod leakage;
pub mod mask;
pub mod model;
mod policy;
mod read;
mod resolve;
pub mod search;
mod source;
pub mod types;

pub use budget::{Action, Budget, BudgetScope, Counting, Period, Rate};
pub use compile::FORMAT_VERSION;
pub use mask::Mask;
pub use model::{
    ClassId, ColumnId, Member, RoleClass, SealMode, SealedColumn, SealedTable, View, WriteAccess,
};
pub use policy::{CompiledPolicy, LoadError};
pub use search::{DateBuckets, SearchSpec};
pub use source::{Diagnostic, Diagnostics, Location};
pub use types::PlainType;
