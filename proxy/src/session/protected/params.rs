//! A Bind's parameters for sealed columns, sealed before the Bind goes on to the server.
//!
//! While they are sealed, the client and the server both wait: a multi-row INSERT binding
//! thousands of values would leave the machine's other cores idle through it. Past
//! [`PARALLEL_MIN`] sealed values per thread, the parameters are split into contiguous ranges
//! sealed on several threads (`parallel.rs`) and put back in order; the first refusal in
//! parameter order wins, as on one thread.

use std::borrow::Cow;
use std::ops::Range;

use zeroize::Zeroize;

use super::parallel;
use super::plan::{self, single_form};
use super::state::{Prepared, Refusal};
use crate::protect::Protection;
use crate::protect::catalog::DatabaseCatalog;
use crate::protect::date_settings::DateSettings;
use crate::protect::values::Format;
use crate::wire::extended::Bind;

/// Sealed values per thread below which one thread does it all: starting a thread costs about
/// as much as sealing a few dozen values.
pub const PARALLEL_MIN: usize = 128;

/// The parameters' formats and values as they go to the server: the sealed ones owned, the
/// others borrowed from the client's Bind.
pub type SealedParams<'a> = (Vec<i16>, Vec<Option<Cow<'a, [u8]>>>);

/// Seals the parameters bound for sealed columns; the others keep their value and format.
pub fn seal<'a>(
    protection: &Protection,
    bind: &Bind<'a>,
    statement: &Prepared,
    catalog: &DatabaseCatalog,
    dates: &DateSettings,
) -> Result<SealedParams<'a>, Refusal> {
    let count = bind.params.len();
    let sealed = statement
        .params
        .iter()
        .take(count)
        .filter(|p| p.is_some())
        .count();
    let threads = (sealed / PARALLEL_MIN).clamp(1, parallel::threads());
    if threads == 1 {
        return seal_range(protection, bind, statement, catalog, dates, 0..count);
    }
    let mut sealed: SealedParams<'a> = (Vec::with_capacity(count), Vec::with_capacity(count));
    for part in parallel::map_ranges(parallel::split(count, threads), |range| {
        seal_range(protection, bind, statement, catalog, dates, range)
    }) {
        let (formats, values) = part?;
        sealed.0.extend(formats);
        sealed.1.extend(values);
    }
    Ok(sealed)
}

/// Seals the parameters of `range`.
fn seal_range<'a>(
    protection: &Protection,
    bind: &Bind<'a>,
    statement: &Prepared,
    catalog: &DatabaseCatalog,
    dates: &DateSettings,
    range: Range<usize>,
) -> Result<SealedParams<'a>, Refusal> {
    let mut formats = Vec::with_capacity(range.len());
    let mut values = Vec::with_capacity(range.len());
    for index in range {
        let value = bind.params[index];
        let format = bind.param_format(index);
        let seal = statement.params.get(index).copied().flatten();
        let (Some(seal), Some(value)) = (seal, value) else {
            formats.push(format);
            values.push(value.map(Cow::Borrowed));
            continue;
        };
        let crypto = protection.column(seal.column);
        let client_type = statement.client_types.get(index).copied().unwrap_or(0);
        if seal.each {
            let stored =
                seal_elements(protection, seal, client_type, format, value, catalog, dates)?;
            formats.push(0);
            values.push(Some(Cow::Owned(stored)));
            continue;
        }
        let canonical = WipedOnDrop(
            crypto
                .canonical_as(client_type, Format::from_code(format), value, dates)
                .map_err(|e| Refusal::new(e.sqlstate(), e.to_string()))?,
        );
        let canonical = &*canonical.0;
        let storage = catalog.storage(seal.column);
        let stored = if seal.compare {
            let forms = crypto
                .match_forms(canonical, storage)
                .map_err(|e| Refusal::new(e.sqlstate(), e.to_string()))?;
            if seal.array {
                plan::array_literal(&forms)
            } else {
                single_form(forms, &crypto.name)?
            }
        } else {
            crypto
                .seal(canonical, storage)
                .map_err(|e| Refusal::new(e.sqlstate(), e.to_string()))?
        };
        formats.push(0);
        values.push(Some(Cow::Owned(stored)));
    }
    Ok((formats, values))
}

/// An array bound for `UNNEST($n::T[])`, every element sealed for the column: the stored
/// forms as a text array literal. The elements are read as the array's element type (the
/// client's declared `T[]`, or the column's type when it declared none).
fn seal_elements(
    protection: &Protection,
    seal: super::state::ParamSeal,
    client_type: u32,
    format: i16,
    value: &[u8],
    catalog: &DatabaseCatalog,
    dates: &DateSettings,
) -> Result<Vec<u8>, Refusal> {
    let crypto = protection.column(seal.column);
    let storage = catalog.storage(seal.column);
    let element_type = pgseal_policies::types::array_element_oid(client_type).unwrap_or(0);
    let format = Format::from_code(format);
    let elements = crate::evaluate::composite::array_elements(value, format).map_err(|_| {
        Refusal::new(
            "22P02",
            format!(
                "the array bound for sealed column {} is not a one-dimensional array pgseal reads",
                crypto.name
            ),
        )
    })?;
    let mut sealed = Vec::with_capacity(elements.len());
    for element in elements {
        let Some(mut element) = element else {
            sealed.push(None);
            continue;
        };
        // The element's plaintext is wiped once sealed (a canonical form pgseal made, when
        // dropped).
        let stored = crypto
            .canonical_as(element_type, format, &element, dates)
            .map(WipedOnDrop)
            .and_then(|canonical| crypto.seal(&canonical.0, storage))
            .map_err(|e| Refusal::new(e.sqlstate(), e.to_string()));
        element.zeroize();
        sealed.push(Some(stored?));
    }
    Ok(plan::array_of_items(&sealed))
}

/// A parameter's canonical plaintext: when pgseal had to make it (a date, a number), the copy
/// is wiped once sealed or refused; a borrowed one is the client's own frame.
struct WipedOnDrop<'a>(Cow<'a, [u8]>);

impl Drop for WipedOnDrop<'_> {
    fn drop(&mut self) {
        if let Cow::Owned(plain) = &mut self.0 {
            plain.zeroize();
        }
    }
}
