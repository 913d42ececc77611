//! What one stored value becomes: sealed, re-sealed under the active key version, opened back to
//! plaintext, or left alone. Values arrive and leave in PostgreSQL's text form of the storage
//! type (armored envelopes, tokens, `\x` hex for `bytea`), and plaintext goes through the
//! proxy's own canonical forms (`ColumnCrypto::canonical_text`), so what the migrator seals is
//! byte for byte what pgseal would seal for the same value written through it.

use pgseal_policies::PlainType;
use zeroize::Zeroizing;

use super::Operation;
use super::plan::ColumnPlan;
use crate::protect::column::{ProtectError, Storage};
use crate::protect::date_settings::DateSettings;
use crate::protect::values::{self, Format, ValueError};

/// The new stored value (text form) of `stored` for `operation`, or `None` when it stays: an
/// envelope already sealed (encrypt) or under the active version (rotate), plaintext already
/// (decrypt). Tokens and pseudonyms are always rewritten: the caller only hands over rows the
/// progress store says are not done.
pub fn transform(
    operation: Operation,
    column: &ColumnPlan,
    stored: &str,
) -> Result<Option<String>, ProtectError> {
    let crypto = &column.crypto;
    let marker = crypto.has_marker();
    let is_sealed =
        marker && crypto.is_sealed_stored(stored.as_bytes(), Format::Text, column.storage);
    let canonical: Zeroizing<Vec<u8>> = match operation {
        Operation::Encrypt => {
            if is_sealed {
                // Left alone only if it is this column's: an envelope of another mode or key
                // domain (sealed under an earlier policy) would otherwise stay, unreadable.
                if !crypto.envelope_in_mode(stored.as_bytes(), Format::Text, column.storage) {
                    return Err(ProtectError::NotSealed {
                        column: column.name.clone(),
                        reason: "it is an envelope of another mode than the policy's; open it \
                                 with `pgseal migrate decrypt` under the policy it was sealed \
                                 with",
                    });
                }
                crypto.open(
                    stored.as_bytes(),
                    Format::Text,
                    column.storage,
                    DateSettings::canonical(),
                )?;
                return Ok(None);
            }
            plaintext_canonical(column, stored)?
        }
        Operation::Rotate => {
            if marker {
                match crypto.envelope_version(stored.as_bytes(), Format::Text, column.storage) {
                    None => {
                        return Err(ProtectError::NotSealed {
                            column: column.name.clone(),
                            reason: "plaintext; run pgseal migrate encrypt first",
                        });
                    }
                    Some(v) if v == column.target.active_version() => return Ok(None),
                    Some(_) => {}
                }
            }
            crypto.open(
                stored.as_bytes(),
                Format::Text,
                column.storage,
                DateSettings::canonical(),
            )?
        }
        Operation::Decrypt => {
            if marker && !is_sealed {
                return Ok(None);
            }
            let canonical = crypto.open(
                stored.as_bytes(),
                Format::Text,
                column.storage,
                DateSettings::canonical(),
            )?;
            return Ok(Some(plaintext_stored(column, &canonical)?));
        }
    };
    let sealed = column.target.seal(&canonical, column.storage)?;
    Ok(Some(text(column, sealed)?))
}

/// Canonical plaintext from a stored plaintext value in text form.
fn plaintext_canonical(
    column: &ColumnPlan,
    stored: &str,
) -> Result<Zeroizing<Vec<u8>>, ProtectError> {
    let crypto = &column.crypto;
    match column.storage {
        Storage::Text => crypto
            .canonical_text(stored, DateSettings::canonical())
            .map(Zeroizing::new),
        Storage::Bytea => {
            let raw = Zeroizing::new(
                values::bytea_from_text(stored.as_bytes())
                    .ok_or_else(|| value_error(column, "not a bytea value"))?,
            );
            if column.plain_type == PlainType::Bytea {
                return Ok(raw);
            }
            let text = std::str::from_utf8(&raw).map_err(|_| value_error(column, "not UTF-8"))?;
            crypto
                .canonical_text(text, DateSettings::canonical())
                .map(Zeroizing::new)
        }
    }
}

/// How canonical plaintext is stored once opened (before the declared type is restored).
fn plaintext_stored(column: &ColumnPlan, canonical: &[u8]) -> Result<String, ProtectError> {
    let stored = if column.plain_type == PlainType::Bytea {
        // `\x` hex in text storage too: `types::restore` decodes it into the bytea column.
        values::bytea_to_text(canonical).into_bytes()
    } else {
        column.crypto.stored_plaintext(canonical, column.storage)
    };
    text(column, stored)
}

fn text(column: &ColumnPlan, bytes: Vec<u8>) -> Result<String, ProtectError> {
    String::from_utf8(bytes).map_err(|_| value_error(column, "not valid UTF-8"))
}

fn value_error(column: &ColumnPlan, reason: &'static str) -> ProtectError {
    ProtectError::Value {
        column: column.name.clone(),
        source: ValueError {
            type_name: column.plain_type.sql_name(),
            reason,
            code: "22P02",
        },
    }
}
