//! One sealed column's cryptography: sealing canonical plaintext into what the database stores,
//! the stored forms an equality lookup must match, opening stored values, and rendering each
//! view (plaintext, masked, pseudonym) in the declared type.

use pgseal_keys::{Domain, Keyring, Sealer};
use pgseal_policies::{ColumnId, PlainType, SealMode, SealedColumn, View};
use thiserror::Error;
use zeroize::Zeroizing;

use super::values::{self, Format, ValueError};

/// How the database stores a sealed column, from its catalog type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A character type: armored envelopes (`pgs1:…`), tokens or pseudonyms as text.
    Text,
    /// `bytea`: raw envelopes.
    Bytea,
}

/// What went wrong with one value of one column; never carries the value.
#[derive(Debug, Error)]
pub enum ProtectError {
    /// The value does not fit the declared type.
    #[error("{column}: {source}")]
    Value {
        /// The column, `schema.table.column`.
        column: String,
        /// Why.
        source: ValueError,
    },
    /// Sealing failed (a token input that is not well formed, the system RNG…).
    #[error("cannot seal a value for {column}: {source}")]
    Seal {
        /// The column.
        column: String,
        /// Why.
        source: pgseal_keys::Error,
    },
    /// A stored value could not be opened: tampered, another domain, another keyring, retired
    /// key, or plaintext where a sealed value belongs.
    #[error("a stored value of {column} could not be opened: {source}")]
    Open {
        /// The column.
        column: String,
        /// Why.
        source: pgseal_keys::Error,
    },
    /// The stored value is not even a sealed value (plaintext in a sealed column).
    #[error("a stored value of {column} is not sealed ({reason})")]
    NotSealed {
        /// The column.
        column: String,
        /// What was found instead.
        reason: &'static str,
    },
    /// An operation the column's mode cannot do (e.g. equality on a randomized column).
    #[error("{column} is sealed in {mode} mode, which cannot {what}")]
    Unsupported {
        /// The column.
        column: String,
        /// Its mode.
        mode: &'static str,
        /// What was asked.
        what: &'static str,
    },
}

impl ProtectError {
    /// The SQLSTATE the client is told.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ProtectError::Value { source, .. } => source.sqlstate(),
            ProtectError::Seal { source, .. } => match source {
                pgseal_keys::Error::InvalidNir(_) | pgseal_keys::Error::InvalidTokenInput(_) => {
                    "22P02"
                }
                _ => "XX000",
            },
            ProtectError::Open { .. } | ProtectError::NotSealed { .. } => "XX001",
            ProtectError::Unsupported { .. } => "0A000",
        }
    }
}

/// A sealed column with its keys.
pub struct ColumnCrypto {
    /// The column's id in the policy.
    pub id: ColumnId,
    /// `schema.table.column`.
    pub name: String,
    /// How it is sealed.
    pub mode: SealMode,
    /// The type the application sees.
    pub plain_type: PlainType,
    sealer: Sealer,
}

/// The key domain of a column: a named domain shared with other columns, or its own.
pub fn key_domain(column: &SealedColumn) -> Result<Domain, pgseal_keys::Error> {
    // Named domains have no dots (policy rule); a column's own domain is its qualified name.
    if column.domain.contains('.') {
        Domain::column(&column.schema, &column.table, &column.column)
    } else {
        Domain::shared(&column.domain)
    }
}

/// Tokens and pseudonyms carry no key version, so they stay under the oldest readable version:
/// a rotation (`pgseal keys rotate`) must not change what an existing token means. Only
/// re-tokenizing the column (`pgseal migrate rotate`) may move them to a newer version, before
/// the old one is retired.
fn token_sealer(sealer: Sealer) -> Result<Sealer, pgseal_keys::Error> {
    match sealer.readable_versions().last() {
        Some(oldest) if oldest != sealer.token_version() => sealer.with_token_version(oldest),
        _ => Ok(sealer),
    }
}

impl ColumnCrypto {
    /// The column's keys, derived from the keyring.
    pub fn new(column: &SealedColumn, keyring: &Keyring) -> Result<Self, pgseal_keys::Error> {
        Ok(ColumnCrypto {
            id: column.id,
            name: column.qualified_name(),
            mode: column.mode,
            plain_type: column.plain_type,
            sealer: token_sealer(keyring.sealer(&key_domain(column)?))?,
        })
    }

    fn value_error(&self, source: ValueError) -> ProtectError {
        ProtectError::Value {
            column: self.name.clone(),
            source,
        }
    }

    fn seal_error(&self, source: pgseal_keys::Error) -> ProtectError {
        ProtectError::Seal {
            column: self.name.clone(),
            source,
        }
    }

    fn open_error(&self, source: pgseal_keys::Error) -> ProtectError {
        ProtectError::Open {
            column: self.name.clone(),
            source,
        }
    }

    /// Canonical plaintext from a client's value in `format`.
    pub fn canonical(&self, format: Format, value: &[u8]) -> Result<Vec<u8>, ProtectError> {
        values::canonical_from_wire(&self.plain_type, format, value)
            .map_err(|e| self.value_error(e))
    }

    /// Canonical plaintext from a Bind parameter the client encoded as `client_type` (an OID;
    /// 0 when it left the type to the server, which then described the declared type).
    pub fn canonical_as(
        &self,
        client_type: u32,
        format: Format,
        value: &[u8],
    ) -> Result<Vec<u8>, ProtectError> {
        match values::plain_type_of_oid(client_type) {
            Some(sent) if sent.oid() != self.plain_type.oid() && sent != PlainType::Bytea => {
                let text = values::canonical_from_wire(&sent, format, value)
                    .map_err(|e| self.value_error(e))?;
                let text = String::from_utf8(text).map_err(|_| {
                    self.value_error(ValueError {
                        type_name: self.plain_type.sql_name(),
                        reason: "not valid UTF-8",
                    })
                })?;
                self.canonical_text(&text)
            }
            _ => self.canonical(format, value),
        }
    }

    /// The type OID the server is told for a parameter bound for this column: the storage type
    /// for envelopes, 0 (let the server infer the column's own type) for tokens and pseudonyms.
    pub fn storage_type_oid(&self, storage: Storage) -> u32 {
        match (self.mode, storage) {
            (SealMode::Randomized | SealMode::Deterministic, Storage::Text) => 25,
            (SealMode::Randomized | SealMode::Deterministic, Storage::Bytea) => 17,
            _ => 0,
        }
    }

    /// Canonical plaintext from text (a SQL literal or a COPY field).
    pub fn canonical_text(&self, text: &str) -> Result<Vec<u8>, ProtectError> {
        if self.plain_type == PlainType::Bytea {
            return values::bytea_from_text(text.as_bytes()).ok_or_else(|| {
                self.value_error(ValueError {
                    type_name: "bytea".into(),
                    reason: "not a bytea literal",
                })
            });
        }
        values::canonical_from_text(&self.plain_type, text)
            .map(String::into_bytes)
            .map_err(|e| self.value_error(e))
    }

    fn token_input<'a>(&self, canonical: &'a [u8]) -> Result<&'a str, ProtectError> {
        std::str::from_utf8(canonical)
            .map_err(|_| self.seal_error(pgseal_keys::Error::InvalidTokenInput("not UTF-8".into())))
    }

    /// Seals canonical plaintext; returns the stored value as the server reads it in text
    /// format (armored text, `\x` hex for bytea, or the token / pseudonym).
    pub fn seal(&self, canonical: &[u8], storage: Storage) -> Result<Vec<u8>, ProtectError> {
        let text = match self.mode {
            SealMode::Randomized | SealMode::Deterministic => {
                let sealed = if self.mode == SealMode::Randomized {
                    self.sealer.seal_randomized(canonical)
                } else {
                    self.sealer.seal_deterministic(canonical)
                }
                .map_err(|e| self.seal_error(e))?;
                return Ok(match storage {
                    Storage::Text => sealed.to_armored().into_bytes(),
                    Storage::Bytea => values::bytea_to_text(sealed.as_bytes()).into_bytes(),
                });
            }
            SealMode::TokenizeNir => self.sealer.tokenize_nir(self.token_input(canonical)?),
            SealMode::TokenizeDigits => self.sealer.tokenize_digits(self.token_input(canonical)?),
            SealMode::TokenizeAlnum => self.sealer.tokenize_alnum(self.token_input(canonical)?),
            SealMode::Pseudonym => Ok(self.sealer.pseudonym(canonical)),
        };
        text.map(String::into_bytes).map_err(|e| self.seal_error(e))
    }

    /// How many stored forms one plaintext has for lookups: one per readable key version for
    /// deterministic envelopes, one for tokens and pseudonyms (they stay under one version).
    pub fn match_form_count(&self) -> usize {
        match self.mode {
            SealMode::Deterministic => self.sealer.readable_versions().count(),
            _ => 1,
        }
    }

    /// Every stored form equal to this plaintext, for `=` and `IN`: one per readable key
    /// version for deterministic envelopes, the token or pseudonym otherwise.
    pub fn match_forms(
        &self,
        canonical: &[u8],
        storage: Storage,
    ) -> Result<Vec<Vec<u8>>, ProtectError> {
        match self.mode {
            SealMode::Randomized => Err(ProtectError::Unsupported {
                column: self.name.clone(),
                mode: self.mode.name(),
                what: "be compared for equality",
            }),
            SealMode::Deterministic => {
                let forms = self
                    .sealer
                    .sealed_forms_all_versions(canonical)
                    .map_err(|e| self.seal_error(e))?;
                Ok(forms
                    .into_iter()
                    .map(|sealed| match storage {
                        Storage::Text => sealed.to_armored().into_bytes(),
                        Storage::Bytea => values::bytea_to_text(sealed.as_bytes()).into_bytes(),
                    })
                    .collect())
            }
            _ => Ok(vec![self.seal(canonical, storage)?]),
        }
    }

    /// Opens a stored value as the server sent it (`server_format` of the storage type) into
    /// canonical plaintext. For pseudonym storage this is the pseudonym itself.
    pub fn open(
        &self,
        stored: &[u8],
        server_format: Format,
        storage: Storage,
    ) -> Result<Zeroizing<Vec<u8>>, ProtectError> {
        match self.mode {
            SealMode::Randomized | SealMode::Deterministic => {
                let opened = match (storage, server_format) {
                    (Storage::Text, _) => {
                        let text =
                            std::str::from_utf8(stored).map_err(|_| ProtectError::NotSealed {
                                column: self.name.clone(),
                                reason: "not text",
                            })?;
                        if !text.starts_with("pgs1:") {
                            return Err(ProtectError::NotSealed {
                                column: self.name.clone(),
                                reason: "no pgs1: prefix",
                            });
                        }
                        self.sealer.open_armored(text)
                    }
                    (Storage::Bytea, Format::Binary) => self.sealer.open(stored),
                    (Storage::Bytea, Format::Text) => {
                        let raw =
                            values::bytea_from_text(stored).ok_or(ProtectError::NotSealed {
                                column: self.name.clone(),
                                reason: "not a bytea value",
                            })?;
                        self.sealer.open(&raw)
                    }
                };
                opened.map_err(|e| self.open_error(e))
            }
            SealMode::TokenizeNir | SealMode::TokenizeDigits | SealMode::TokenizeAlnum => {
                let token = self.token_input(stored)?;
                let plain = match self.mode {
                    SealMode::TokenizeNir => self.sealer.detokenize_nir(token),
                    SealMode::TokenizeDigits => self.sealer.detokenize_digits(token),
                    _ => self.sealer.detokenize_alnum(token),
                };
                plain
                    .map(|p| Zeroizing::new(p.into_bytes()))
                    .map_err(|e| self.open_error(e))
            }
            SealMode::Pseudonym => Ok(Zeroizing::new(stored.to_vec())),
        }
    }

    /// What a role with `view` reads of a value whose plaintext is `canonical`, in the client's
    /// `format`. Masks and pseudonyms are text.
    pub fn render(
        &self,
        view: &View,
        canonical: &[u8],
        format: Format,
    ) -> Result<Vec<u8>, ProtectError> {
        match view {
            View::Plaintext if self.mode == SealMode::Pseudonym => Ok(canonical.to_vec()),
            View::Plaintext => values::wire_from_canonical(&self.plain_type, format, canonical)
                .map_err(|e| self.value_error(e)),
            View::Masked(mask) => {
                let text = String::from_utf8_lossy(canonical);
                Ok(mask.apply(&text).into_bytes())
            }
            View::Pseudonym if self.mode == SealMode::Pseudonym => Ok(canonical.to_vec()),
            View::Pseudonym => Ok(self.sealer.pseudonym(canonical).into_bytes()),
            // Ciphertext and denied values never reach here: the caller passes ciphertext as
            // stored and refuses denied columns.
            View::Ciphertext | View::Denied => Err(ProtectError::Unsupported {
                column: self.name.clone(),
                mode: self.mode.name(),
                what: "render this view",
            }),
        }
    }
}
