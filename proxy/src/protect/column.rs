//! One sealed column's cryptography: sealing canonical plaintext into what the database stores,
//! the stored forms an equality lookup must match, opening stored values, and rendering each
//! view (plaintext, masked, pseudonym) in the declared type.

use std::borrow::Cow;

use bytes::BytesMut;
use pgseal_keys::{Domain, Keyring, Sealer};
use pgseal_policies::{ColumnId, PlainType, SealMode, SealedColumn, View};
use thiserror::Error;
use zeroize::Zeroizing;

use super::date_settings::DateSettings;
use super::values::{self, Format, ValueError};
use crate::search::ColumnSearch;
use pgseal_keys::search::TokenKind;

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
    /// A tokenized or pseudonym column marked `migrating`: its stored values cannot be told
    /// from plaintext, so nothing reads, writes or compares it until the migration is done.
    #[error(
        "{column} is being migrated by pgseal migrate (marked migrating in the policy); a \
         {mode} value cannot be told from plaintext, so pgseal refuses it until the migration is \
         done and the mark is removed"
    )]
    Migrating {
        /// The column.
        column: String,
        /// Its mode.
        mode: &'static str,
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
            ProtectError::Migrating { .. } => "55000",
        }
    }
}

/// A sealed column's search index: its tokens, and the names and tag that say in the database
/// that the index is complete.
pub struct ColumnIndex {
    /// The tokens of a value and the probes of a search.
    pub search: ColumnSearch,
    /// Names the index's settings and key: stored before the tokens of every value
    /// (`pgs1:…~TAG~tokens`), and required by the CHECK that says the index is complete.
    pub tag: String,
    /// The CHECK constraint requiring the tag: `pgseal_search_<column>`.
    pub constraint: String,
    /// The GIN index over the tokens: `pgseal_tokens_<column>`.
    pub index_name: String,
}

impl ColumnIndex {
    fn new(column: &SealedColumn, sealer: &Sealer) -> Result<Option<Self>, pgseal_keys::Error> {
        let Some(spec) = column.search else {
            return Ok(None);
        };
        let key = sealer.search_key()?;
        // The tag changes with every setting and with the key: tokens made otherwise do not
        // satisfy the CHECK, so the proxy never trusts an index built another way.
        // "v1": the token construction and folding; a change of either changes every tag.
        let fingerprint = format!("pgseal search index v1 {}", spec.fingerprint());
        let mark = key.token(TokenKind::Exact, fingerprint.as_bytes(), 30);
        let tag = format!("s{}", mark.get(1..).unwrap_or_default());
        Ok(Some(ColumnIndex {
            search: ColumnSearch::new(spec, key, column.plain_type),
            tag,
            constraint: crate::migrate::constraints::named("pgseal_search_", &column.column),
            index_name: crate::migrate::constraints::named("pgseal_tokens_", &column.column),
        }))
    }

    /// What follows the armor of a value whose plaintext is `canonical`: the tag and its tokens.
    fn stamp(&self, armored: String, canonical: &[u8]) -> String {
        let tokens = self.search.stored_tokens(canonical).join(".");
        pgseal_keys::armor::with_tokens(armored, &self.tag, &tokens)
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
    /// Marked `migrating` in the policy: the database may still hold plaintext values.
    pub migrating: bool,
    sealer: Sealer,
    index: Option<ColumnIndex>,
    /// The policy's column, to derive the search index again under another token version.
    spec: SealedColumn,
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
        let sealer = token_sealer(keyring.sealer(&key_domain(column)?))?;
        Ok(ColumnCrypto {
            id: column.id,
            name: column.qualified_name(),
            mode: column.mode,
            plain_type: column.plain_type,
            migrating: column.migrating,
            index: ColumnIndex::new(column, &sealer)?,
            sealer,
            spec: column.clone(),
        })
    }

    /// The column's search index, when the policy gives it one.
    pub fn index(&self) -> Option<&ColumnIndex> {
        self.index.as_ref()
    }

    /// The same column with tokens and pseudonyms under key `version` instead of the oldest
    /// readable one (for `pgseal migrate rotate`, which re-tokenizes a column under the active
    /// version). Refuses unknown and retired versions.
    pub fn with_token_version(&self, version: u32) -> Result<Self, pgseal_keys::Error> {
        let sealer = self.sealer.with_token_version(version)?;
        Ok(ColumnCrypto {
            id: self.id,
            name: self.name.clone(),
            mode: self.mode,
            plain_type: self.plain_type,
            migrating: self.migrating,
            index: ColumnIndex::new(&self.spec, &sealer)?,
            sealer,
            spec: self.spec.clone(),
        })
    }

    /// The key version tokens and pseudonyms of this column are made under.
    pub fn token_version(&self) -> u32 {
        self.sealer.token_version()
    }

    /// The key version new envelopes are sealed under.
    pub fn active_version(&self) -> u32 {
        self.sealer.active_version()
    }

    /// Whether stored values are envelopes, which say by themselves that they are sealed (and
    /// under which key version); tokens and pseudonyms do not.
    pub fn has_marker(&self) -> bool {
        matches!(self.mode, SealMode::Randomized | SealMode::Deterministic)
    }

    /// Whether stored plaintext is read as such (an envelope column marked `migrating`).
    pub fn reads_plaintext(&self) -> bool {
        self.migrating && self.has_marker()
    }

    /// The refusal for any statement reading, writing or comparing this column: a tokenized or
    /// pseudonym column marked `migrating` (its stored values cannot be told from plaintext).
    pub fn migration_refusal(&self) -> Option<ProtectError> {
        (self.migrating && !self.has_marker()).then(|| ProtectError::Migrating {
            column: self.name.clone(),
            mode: self.mode.name(),
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

    fn not_sealed(&self, reason: &'static str) -> ProtectError {
        ProtectError::NotSealed {
            column: self.name.clone(),
            reason,
        }
    }

    fn open_error(&self, source: pgseal_keys::Error) -> ProtectError {
        ProtectError::Open {
            column: self.name.clone(),
            source,
        }
    }

    /// Canonical plaintext from a client's value in `format` (a date or time in text read in
    /// the session's `dates` settings).
    pub fn canonical(
        &self,
        format: Format,
        value: &[u8],
        dates: &DateSettings,
    ) -> Result<Vec<u8>, ProtectError> {
        values::canonical_from_wire(&self.plain_type, format, value, dates)
            .map_err(|e| self.value_error(e))
    }

    /// Canonical plaintext from a Bind parameter the client encoded as `client_type` (an OID;
    /// 0 when it left the type to the server, which then described the declared type).
    /// Borrowed when the value already is its canonical form (text written as text).
    pub fn canonical_as<'v>(
        &self,
        client_type: u32,
        format: Format,
        value: &'v [u8],
        dates: &DateSettings,
    ) -> Result<Cow<'v, [u8]>, ProtectError> {
        let declared = client_type == 0 || client_type == self.plain_type.oid();
        if declared && values::is_canonical_as_is(&self.plain_type, format, value) {
            return Ok(Cow::Borrowed(value));
        }
        self.canonical_converted(client_type, format, value, dates)
            .map(Cow::Owned)
    }

    fn canonical_converted(
        &self,
        client_type: u32,
        format: Format,
        value: &[u8],
        dates: &DateSettings,
    ) -> Result<Vec<u8>, ProtectError> {
        match values::plain_type_of_oid(client_type) {
            Some(sent) if sent.oid() != self.plain_type.oid() && sent != PlainType::Bytea => {
                let text = values::canonical_from_wire(&sent, format, value, dates)
                    .map_err(|e| self.value_error(e))?;
                let text = String::from_utf8(text).map_err(|_| {
                    self.value_error(ValueError {
                        type_name: self.plain_type.sql_name(),
                        reason: "not valid UTF-8",
                        code: "22P02",
                    })
                })?;
                self.canonical_text(&text, dates)
            }
            _ => self.canonical(format, value, dates),
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

    /// Canonical plaintext from text (a SQL literal or a COPY field), a date or time read in
    /// the session's `dates` settings.
    pub fn canonical_text(
        &self,
        text: &str,
        dates: &DateSettings,
    ) -> Result<Vec<u8>, ProtectError> {
        if self.plain_type == PlainType::Bytea {
            return values::bytea_from_text(text.as_bytes()).ok_or_else(|| {
                self.value_error(ValueError {
                    type_name: "bytea".into(),
                    reason: "not a bytea literal",
                    code: "22P02",
                })
            });
        }
        values::canonical_from_text(&self.plain_type, text, dates)
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
        if let Some(refusal) = self.migration_refusal() {
            return Err(refusal);
        }
        let text = match self.mode {
            SealMode::Randomized | SealMode::Deterministic => {
                let sealed = if self.mode == SealMode::Randomized {
                    self.sealer.seal_randomized(canonical)
                } else {
                    self.sealer.seal_deterministic(canonical)
                }
                .map_err(|e| self.seal_error(e))?;
                return Ok(match (storage, &self.index) {
                    (Storage::Text, Some(index)) => {
                        index.stamp(sealed.to_armored(), canonical).into_bytes()
                    }
                    (Storage::Text, None) => sealed.to_armored().into_bytes(),
                    (Storage::Bytea, _) => values::bytea_to_text(sealed.as_bytes()).into_bytes(),
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
            SealMode::Deterministic => {
                self.sealer.readable_versions().count() + usize::from(self.migrating)
            }
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
                let mut forms: Vec<Vec<u8>> = forms
                    .into_iter()
                    .map(|sealed| match storage {
                        Storage::Text => sealed.to_armored().into_bytes(),
                        Storage::Bytea => values::bytea_to_text(sealed.as_bytes()).into_bytes(),
                    })
                    .collect();
                if self.migrating {
                    // Rows the migration has not reached yet hold the canonical plaintext.
                    forms.push(self.stored_plaintext(canonical, storage));
                }
                Ok(forms)
            }
            _ => {
                if let Some(refusal) = self.migration_refusal() {
                    return Err(refusal);
                }
                Ok(vec![self.seal(canonical, storage)?])
            }
        }
    }

    /// A stored armored value with the search tag and tokens this policy gives it (`None` when
    /// it has them already, or the column has no index): the envelope is kept as it is, only
    /// what follows it is remade, from the value opened. For `pgseal migrate index`.
    pub fn restamp(&self, stored: &str) -> Result<Option<String>, ProtectError> {
        let Some(index) = &self.index else {
            return Ok(None);
        };
        if pgseal_keys::armor::search_tag(stored.as_bytes()) == Some(index.tag.as_bytes()) {
            return Ok(None);
        }
        if !pgseal_keys::is_sealed_text(stored) {
            return Err(self.not_sealed("no pgs1: armor"));
        }
        let canonical = self.open(
            stored.as_bytes(),
            Format::Text,
            Storage::Text,
            DateSettings::canonical(),
        )?;
        let (armor, _) = pgseal_keys::armor::split_tokens(stored.as_bytes());
        let armor = String::from_utf8_lossy(armor).into_owned();
        Ok(Some(index.stamp(armor, &canonical)))
    }

    /// How canonical plaintext is stored before it is sealed, as the server reads it in text
    /// format: the text itself, or `\x` hex for bytea (what `pgseal migrate decrypt` writes).
    pub fn stored_plaintext(&self, canonical: &[u8], storage: Storage) -> Vec<u8> {
        match storage {
            Storage::Text => canonical.to_vec(),
            Storage::Bytea => values::bytea_to_text(canonical).into_bytes(),
        }
    }

    /// Whether a stored value (as the server sent it in `server_format`) is an envelope. Tokens
    /// and pseudonyms are never told apart from plaintext: false for them.
    pub fn is_sealed_stored(&self, stored: &[u8], server_format: Format, storage: Storage) -> bool {
        if !self.has_marker() {
            return false;
        }
        match (storage, server_format) {
            (Storage::Text, _) => {
                std::str::from_utf8(stored).is_ok_and(pgseal_keys::is_sealed_text)
            }
            (Storage::Bytea, Format::Binary) => pgseal_keys::is_sealed(stored),
            (Storage::Bytea, Format::Text) => {
                values::bytea_from_text(stored).is_some_and(|raw| pgseal_keys::is_sealed(&raw))
            }
        }
    }

    /// The key version an envelope names, without opening it (`None` when it is not one).
    pub fn envelope_version(
        &self,
        stored: &[u8],
        server_format: Format,
        storage: Storage,
    ) -> Option<u32> {
        let raw = self.envelope_bytes(stored, server_format, storage)?;
        pgseal_keys::envelope::key_version(&raw).ok()
    }

    /// Whether a stored envelope was sealed in this column's mode (false when it is not an
    /// envelope, or one of the other mode).
    pub fn envelope_in_mode(&self, stored: &[u8], server_format: Format, storage: Storage) -> bool {
        let expected = match self.mode {
            SealMode::Randomized => pgseal_keys::Mode::Randomized,
            SealMode::Deterministic => pgseal_keys::Mode::Deterministic,
            _ => return false,
        };
        self.envelope_bytes(stored, server_format, storage)
            .and_then(|raw| pgseal_keys::envelope::mode(&raw).ok())
            == Some(expected)
    }

    /// The binary envelope of a stored value, when it is one.
    fn envelope_bytes(
        &self,
        stored: &[u8],
        server_format: Format,
        storage: Storage,
    ) -> Option<Vec<u8>> {
        if !self.is_sealed_stored(stored, server_format, storage) {
            return None;
        }
        match (storage, server_format) {
            (Storage::Text, _) => {
                pgseal_keys::armor::decode(std::str::from_utf8(stored).ok()?).ok()
            }
            (Storage::Bytea, Format::Binary) => Some(stored.to_vec()),
            (Storage::Bytea, Format::Text) => values::bytea_from_text(stored),
        }
    }

    /// Canonical plaintext from a stored value that is not sealed, in a column marked
    /// `migrating` (see [`ColumnCrypto::open`]).
    fn stored_plaintext_to_canonical(
        &self,
        stored: &[u8],
        server_format: Format,
        storage: Storage,
        dates: &DateSettings,
    ) -> Result<Vec<u8>, ProtectError> {
        let not_sealed = |reason| self.not_sealed(reason);
        let raw: Vec<u8> = match (storage, server_format) {
            (Storage::Bytea, Format::Text) => {
                values::bytea_from_text(stored).ok_or_else(|| not_sealed("not a bytea value"))?
            }
            _ => stored.to_vec(),
        };
        if self.plain_type == PlainType::Bytea {
            return Ok(raw);
        }
        let binary_native = storage == Storage::Text && server_format == Format::Binary;
        if binary_native {
            // Before `pgseal migrate encrypt` changes its storage to text, the column has its
            // declared type, and a binary result is that type's binary form.
            match self.plain_type {
                PlainType::Int2
                | PlainType::Int4
                | PlainType::Int8
                | PlainType::Float4
                | PlainType::Float8
                | PlainType::Numeric(_) => {
                    return Err(not_sealed(
                        "a plaintext number in binary format, which could be its text or its \
                         binary form while the column migrates: read it in text format",
                    ));
                }
                PlainType::Jsonb if raw.first() == Some(&1) => {
                    return self.canonical(Format::Binary, &raw, dates);
                }
                _ => {}
            }
        }
        let text = std::str::from_utf8(&raw).ok();
        match text.map(|t| self.canonical_text(t, dates)) {
            Some(Ok(canonical)) => Ok(canonical),
            _ if binary_native => self.canonical(Format::Binary, &raw, dates),
            Some(Err(e)) => Err(e),
            None => Err(not_sealed("not text")),
        }
    }

    /// Opens a stored value as the server sent it (`server_format` of the storage type) into
    /// canonical plaintext. For pseudonym storage this is the pseudonym itself. A plaintext
    /// date or time not sealed yet (a migrating column) is read in the session's `dates`
    /// settings, which the server printed it in.
    pub fn open(
        &self,
        stored: &[u8],
        server_format: Format,
        storage: Storage,
        dates: &DateSettings,
    ) -> Result<Zeroizing<Vec<u8>>, ProtectError> {
        if let Some(refusal) = self.migration_refusal() {
            return Err(refusal);
        }
        if self.reads_plaintext() && !self.is_sealed_stored(stored, server_format, storage) {
            return self
                .stored_plaintext_to_canonical(stored, server_format, storage, dates)
                .map(Zeroizing::new);
        }
        match self.mode {
            SealMode::Randomized | SealMode::Deterministic => {
                let opened = match (storage, server_format) {
                    (Storage::Text, _) => {
                        // The armor is ASCII: anything else fails to decode, so UTF-8 is
                        // checked only then, to say what was found.
                        let not_text = || std::str::from_utf8(stored).is_err();
                        if !stored.starts_with(pgseal_keys::armor::PREFIX.as_bytes()) {
                            return Err(self.not_sealed(if not_text() {
                                "not text"
                            } else {
                                "no pgs1: prefix"
                            }));
                        }
                        match self.sealer.open_armored_bytes(stored) {
                            Err(pgseal_keys::Error::Malformed(_)) if not_text() => {
                                return Err(self.not_sealed("not text"));
                            }
                            opened => opened,
                        }
                    }
                    (Storage::Bytea, Format::Binary) => self.sealer.open(stored),
                    (Storage::Bytea, Format::Text) => {
                        let raw = values::bytea_from_text(stored)
                            .ok_or_else(|| self.not_sealed("not a bytea value"))?;
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

    /// What a role with `view` reads of a stored value the server sent in `format`: opened and
    /// rendered for views that need the plaintext; for `ciphertext` (asked only of columns marked
    /// `migrating`), the envelope as stored, or stored plaintext sealed on the fly, always as
    /// armored text so that a role that sees ciphertext never reads a plaintext value.
    pub fn read(
        &self,
        stored: &[u8],
        format: Format,
        storage: Storage,
        view: &View,
        dates: &DateSettings,
    ) -> Result<Vec<u8>, ProtectError> {
        let mut out = BytesMut::new();
        self.read_into(stored, format, storage, view, dates, &mut out)?;
        Ok(out.into())
    }

    /// [`ColumnCrypto::read`], appending to `out` (a DataRow being built) instead of returning
    /// a buffer: the opened plaintext lives only in one zeroized buffer and in `out`.
    pub fn read_into(
        &self,
        stored: &[u8],
        format: Format,
        storage: Storage,
        view: &View,
        dates: &DateSettings,
        out: &mut BytesMut,
    ) -> Result<(), ProtectError> {
        if *view != View::Ciphertext {
            let plain = self.open(stored, format, storage, dates)?;
            return self.render_into(view, &plain, format, dates, out);
        }
        if let Some(refusal) = self.migration_refusal() {
            return Err(refusal);
        }
        if !self.has_marker() {
            out.extend_from_slice(stored);
            return Ok(());
        }
        if self.is_sealed_stored(stored, format, storage) {
            match (storage, format) {
                (Storage::Text, _) => out.extend_from_slice(stored),
                (Storage::Bytea, Format::Binary) => out.extend_from_slice(&armored(stored)),
                (Storage::Bytea, Format::Text) => out.extend_from_slice(&armored(
                    &values::bytea_from_text(stored).unwrap_or_default(),
                )),
            }
            return Ok(());
        }
        let canonical =
            Zeroizing::new(self.stored_plaintext_to_canonical(stored, format, storage, dates)?);
        out.extend_from_slice(&self.seal(&canonical, Storage::Text)?);
        Ok(())
    }

    /// What a role with `view` reads of a value whose plaintext is `canonical`, in the client's
    /// `format`, appended to `out`. Masks and pseudonyms are text.
    pub fn render_into(
        &self,
        view: &View,
        canonical: &[u8],
        format: Format,
        dates: &DateSettings,
        out: &mut BytesMut,
    ) -> Result<(), ProtectError> {
        match view {
            View::Plaintext | View::Pseudonym if self.mode == SealMode::Pseudonym => {
                out.extend_from_slice(canonical);
            }
            View::Plaintext => {
                values::put_wire_from_canonical(&self.plain_type, format, canonical, dates, out)
                    .map_err(|e| self.value_error(e))?;
            }
            View::Masked(mask) => {
                let text = String::from_utf8_lossy(canonical);
                out.extend_from_slice(Zeroizing::new(mask.apply(&text)).as_bytes());
            }
            View::Pseudonym => out.extend_from_slice(self.sealer.pseudonym(canonical).as_bytes()),
            // Ciphertext and denied values never reach here: the caller passes ciphertext as
            // stored and refuses denied columns.
            View::Ciphertext | View::Denied => {
                return Err(ProtectError::Unsupported {
                    column: self.name.clone(),
                    mode: self.mode.name(),
                    what: "render this view",
                });
            }
        }
        Ok(())
    }
}

/// The armored text (`pgs1:…`) of a binary envelope the caller checked: the envelope after its
/// magic and format byte, in URL-safe base64 without padding (see `pgseal_keys::armor`).
fn armored(envelope: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = String::from(pgseal_keys::armor::PREFIX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode_string(envelope.get(4..).unwrap_or_default(), &mut out);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgseal_policies::CompiledPolicy;

    /// `public.t.name`, deterministic text, under a fixed key.
    fn name_column() -> ColumnCrypto {
        let policy = CompiledPolicy::from_toml(
            "policy.toml",
            "version = 1\n[columns.\"public.t.name\"]\nmode = \"deterministic\"\ntype = \"text\"\n\
             [default]\nview = \"ciphertext\"\n",
        )
        .unwrap();
        let key = pgseal_keys::RootKey::from_bytes([9; 32]).to_base64();
        let keyring = Keyring::from_toml_str(&format!(
            "format = 1\n[[version]]\nnumber = 1\nstate = \"active\"\n\
             created = \"2025-01-01T00:00:00Z\"\nkey = \"{}\"\n",
            &*key
        ))
        .unwrap();
        let id = policy.column_id("public", "t", "name").unwrap();
        ColumnCrypto::new(policy.column(id), &keyring).unwrap()
    }

    fn reason(result: Result<Zeroizing<Vec<u8>>, ProtectError>) -> String {
        match result {
            Ok(_) => "opened".into(),
            Err(ProtectError::NotSealed { reason, .. }) => format!("not sealed: {reason}"),
            Err(ProtectError::Open { source, .. }) => format!("open: {source:?}"),
            Err(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn stored_text_opens_or_says_what_it_is() {
        let column = name_column();
        let stored = column.seal("Éloïse".as_bytes(), Storage::Text).unwrap();
        let open = |value: &[u8]| {
            reason(column.open(
                value,
                Format::Text,
                Storage::Text,
                DateSettings::canonical(),
            ))
        };
        assert_eq!(
            &*column
                .open(
                    &stored,
                    Format::Text,
                    Storage::Text,
                    DateSettings::canonical()
                )
                .unwrap(),
            "Éloïse".as_bytes()
        );
        assert_eq!(open(b"Eloise"), "not sealed: no pgs1: prefix");
        assert_eq!(open(b"\xffEloise"), "not sealed: not text");
        assert_eq!(open(b"pgs1:\xff\xfe"), "not sealed: not text");
        assert!(open(b"pgs1:not*base64").starts_with("open: Malformed"));
        let mut tampered = stored.clone();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(open(&tampered).starts_with("open: "), "{}", open(&tampered));
        assert_ne!(open(&tampered), "opened");
    }
}
