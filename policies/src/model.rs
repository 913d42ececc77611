//! The compiled policy's building blocks: seal modes, views, sealed columns and role classes.
//!
//! These are the types the proxy reads. They are plain data, built once when a policy is loaded
//! and never changed afterwards (a reload builds a new [`crate::CompiledPolicy`]).

use std::fmt;

use crate::budget::Budget;
use crate::ident::quote_qualified;
use crate::mask::Mask;
use crate::search::SearchSpec;
use crate::source::Location;
use crate::types::PlainType;

/// The index of a sealed column in a [`crate::CompiledPolicy`] (dense, from 0, in file order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnId(pub(crate) u32);

impl ColumnId {
    /// The id as an index into [`crate::CompiledPolicy::columns`] and [`RoleClass::views`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The index of a role class in a [`crate::CompiledPolicy`]; [`ClassId::DEFAULT`] is the class
/// of roles the policy does not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassId(pub(crate) u32);

impl ClassId {
    /// The class of every role the policy does not name (fail-closed).
    pub const DEFAULT: ClassId = ClassId(0);

    /// The id as an index into [`crate::CompiledPolicy::classes`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a sealed column is stored in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SealMode {
    /// AES-256-GCM-SIV with a random nonce: equal plaintexts give different ciphertexts, so the
    /// column can be read back but not searched. Stored as `text` (armored) or `bytea`.
    Randomized,
    /// AES-256-GCM-SIV with a nonce derived from the plaintext: equal plaintexts give equal
    /// ciphertexts, so `=`, `IN`, joins and `GROUP BY` work. Stored as `text` or `bytea`.
    Deterministic,
    /// Format-preserving token of a NIR: a valid-looking NIR with a correct key, in the column's
    /// own type. Equality and joins work.
    TokenizeNir,
    /// Format-preserving token of a string of digits, same length, in the column's own type.
    TokenizeDigits,
    /// Format-preserving token of a string of letters and digits, same length and classes.
    TokenizeAlnum,
    /// Irreversible: the database stores a keyed hash (HMAC-SHA256) of the plaintext, as `text`.
    /// Nobody, not even the proxy, can read the plaintext back; equality and joins work.
    Pseudonym,
}

impl SealMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [SealMode; 6] = [
        SealMode::Randomized,
        SealMode::Deterministic,
        SealMode::TokenizeNir,
        SealMode::TokenizeDigits,
        SealMode::TokenizeAlnum,
        SealMode::Pseudonym,
    ];

    /// Parses a mode as a policy writes it (`tokenize-nir`).
    pub fn parse(written: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == written)
    }

    /// The mode as a policy writes it.
    pub fn name(&self) -> &'static str {
        match self {
            SealMode::Randomized => "randomized",
            SealMode::Deterministic => "deterministic",
            SealMode::TokenizeNir => "tokenize-nir",
            SealMode::TokenizeDigits => "tokenize-digits",
            SealMode::TokenizeAlnum => "tokenize-alnum",
            SealMode::Pseudonym => "pseudonym",
        }
    }

    /// True for the token modes, whose stored value keeps the plaintext's type.
    pub fn is_token(&self) -> bool {
        matches!(
            self,
            SealMode::TokenizeNir | SealMode::TokenizeDigits | SealMode::TokenizeAlnum
        )
    }

    /// True when equal plaintexts are stored equal, so `=`, `IN` and joins can be sealed.
    pub fn supports_equality(&self) -> bool {
        !matches!(self, SealMode::Randomized)
    }

    /// False for [`SealMode::Pseudonym`], whose plaintext cannot be recovered.
    pub fn is_reversible(&self) -> bool {
        !matches!(self, SealMode::Pseudonym)
    }

    /// Whether values of a declared plaintext type can be sealed this way; the error explains
    /// what the mode needs.
    pub fn check_type(&self, ty: &PlainType) -> Result<(), String> {
        match self {
            SealMode::TokenizeNir => match ty {
                PlainType::Text | PlainType::Varchar(None) | PlainType::Char(15) => Ok(()),
                PlainType::Varchar(Some(n)) if *n >= 15 => Ok(()),
                _ => Err("a NIR token needs text, varchar(n) with n >= 15, or char(15)".into()),
            },
            SealMode::TokenizeDigits | SealMode::TokenizeAlnum => {
                if ty.is_character() {
                    Ok(())
                } else {
                    Err(
                        "a token is a string of the same length: declare text, varchar(n) or \
                         char(n) (and store it so)"
                            .into(),
                    )
                }
            }
            SealMode::Randomized | SealMode::Deterministic | SealMode::Pseudonym => Ok(()),
        }
    }
}

impl fmt::Display for SealMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one role class sees of one sealed column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// The decrypted (or detokenized) value, in the declared type.
    Plaintext,
    /// The decrypted value passed through a masking rule; sent as `text`.
    Masked(Mask),
    /// A stable keyed hash of the plaintext in the column's domain (equal for equal values, also
    /// across the columns of a shared domain); sent as `text`. For a column stored in
    /// `pseudonym` mode it is the stored value.
    Pseudonym,
    /// The value as stored: the armored envelope, or the token for tokenized columns.
    Ciphertext,
    /// The statement is refused with SQLSTATE 42501 naming the column.
    Denied,
}

impl View {
    /// The view's name as a policy writes it (`masked` without its rule).
    pub fn name(&self) -> &'static str {
        match self {
            View::Plaintext => "plaintext",
            View::Masked(_) => "masked",
            View::Pseudonym => "pseudonym",
            View::Ciphertext => "ciphertext",
            View::Denied => "denied",
        }
    }

    /// True when the proxy must decrypt (or detokenize) the stored value to produce the view.
    pub fn needs_plaintext(&self) -> bool {
        matches!(self, View::Plaintext | View::Masked(_) | View::Pseudonym)
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            View::Masked(mask) => write!(f, "masked ({mask})"),
            other => f.write_str(other.name()),
        }
    }
}

/// A sealed column, as the policy declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedColumn {
    /// This column's id.
    pub id: ColumnId,
    /// Schema name, as in `pg_namespace.nspname`.
    pub schema: String,
    /// Table name, as in `pg_class.relname`.
    pub table: String,
    /// Column name, as in `pg_attribute.attname`.
    pub column: String,
    /// How it is stored.
    pub mode: SealMode,
    /// The type the application sees.
    pub plain_type: PlainType,
    /// The key-derivation domain: the `domain` the policy gives, or `schema.table.column`
    /// (quoted as needed). Columns sharing a domain share keys, tokens and pseudonyms, so they
    /// can be joined.
    pub domain: String,
    /// The column's masking rule, used by classes that see it `masked` without a rule of their
    /// own.
    pub mask: Option<Mask>,
    /// `migrating = true`: the database may still hold plaintext values of this column, while
    /// `pgseal migrate` seals (or opens) them. For randomized and deterministic columns the
    /// proxy reads both forms (an envelope is recognisable), seals stored plaintext on the fly
    /// for `ciphertext` views and matches both forms in lookups. Tokens and pseudonyms carry no
    /// marker, so a stored value cannot be told from plaintext: the proxy refuses statements on
    /// such a column while it is marked.
    pub migrating: bool,
    /// `search = { … }`: the keyed, truncated tokens stored beside each sealed value so that
    /// the database can filter candidates for pgseal's evaluation.
    pub search: Option<SearchSpec>,
    /// Where the policy declares it.
    pub declared_at: Location,
}

impl SealedColumn {
    /// `schema.table.column`, each part quoted when it needs to be.
    pub fn qualified_name(&self) -> String {
        quote_qualified(&[&self.schema, &self.table, &self.column])
    }
}

/// A sealed table: a table with at least one sealed column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedTable {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Its sealed columns, in file order.
    pub columns: Vec<ColumnId>,
}

/// A role named as a class member, with where the policy names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The role's name, as in `pg_roles.rolname`.
    pub role: String,
    /// Where the policy lists it.
    pub declared_at: Location,
}

/// A role class: member roles, their view of every sealed column, and their budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleClass {
    /// This class's id.
    pub id: ClassId,
    /// The class's name in the policy (`default` for roles in no class).
    pub name: String,
    /// Member roles (empty for the default class, which holds every other role).
    pub members: Vec<Member>,
    /// The view of each sealed column, indexed by [`ColumnId::index`].
    pub views: Vec<View>,
    /// The export budget each member role is held to.
    pub budget: Budget,
    /// The budget each end user of a member role is held to, on top of the role's own
    /// (`[classes.NAME.end_user_budget]`, scope [`crate::BudgetScope::EndUser`]); `None` when
    /// end users share the role's budget only.
    pub end_user_budget: Option<Budget>,
    /// Whether the application must declare its end user for statements that touch sealed
    /// tables (`require_end_user = true`); always false for the default class.
    pub require_end_user: bool,
    /// Per sealed column (by [`ColumnId::index`]): whether the class may write it although
    /// its view is not plaintext (`blind_writes`). Such a column's equality-revealing stored
    /// form is never shown to the class (its view is `denied` or, for randomized columns, any
    /// view but plaintext), so a value it writes cannot be compared with the stored ones.
    pub blind_writes: Vec<bool>,
    /// Per sealed column (by [`ColumnId::index`]): whether the class may look the column up by
    /// value although its view is not plaintext (`lookups`). Each lookup tests one guess.
    pub lookups: Vec<bool>,
    /// Where the policy declares the class (`None` for a default class the policy leaves out).
    pub declared_at: Option<Location>,
}

/// How a role class may write a sealed column through pgseal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteAccess {
    /// It reads the column as plaintext, so writing it reveals nothing it could not read.
    Reader,
    /// It writes without reading (`blind_writes`): every comparison involving the column is
    /// refused to it, and it never sees the column's stored form when that reveals equality.
    Blind,
    /// It may not write the column: its own guesses, sealed with the stored values' keys,
    /// could be compared with the stored values (a guessing oracle).
    Refused,
}
