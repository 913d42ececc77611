//! The client → server side of a statement pgseal evaluates: the bound parameters pgseal reads
//! (kept as text for the backend), the ones only pgseal reads sent to the server as NULL, and
//! result formats for the hidden columns.

use std::borrow::Cow;

use pgseal_policies::PlainType;

use super::plan::CompleteIndexes;
use super::state::{Prepared, Refusal};
use crate::analyze::evaluation::Evaluation;
use crate::evaluate::candidates::{self, BoundProbe};
use crate::protect::Protection;
use crate::protect::catalog::DatabaseCatalog;
use crate::protect::date_settings::DateSettings;
use crate::protect::values::{self, Format};
use crate::wire::extended::Bind;

/// The text of each parameter pgseal reads (`$1` first; `None` for NULL or unread ones).
pub fn read_params(
    bind: &Bind<'_>,
    statement: &Prepared,
    evaluation: &Evaluation,
) -> Result<Vec<Option<String>>, Refusal> {
    let mut out = vec![None; bind.params.len()];
    for index in evaluation.read_params() {
        let slot = usize::from(index) - 1;
        let Some(value) = bind.params.get(slot).copied() else {
            return Err(Refusal::new(
                "08P01",
                format!("the Bind gives no value for parameter ${index}"),
            ));
        };
        let Some(value) = value else {
            continue;
        };
        let text = match Format::from_code(bind.param_format(slot)) {
            Format::Text => std::str::from_utf8(value)
                .map_err(|_| {
                    Refusal::new("22021", format!("parameter ${index} is not valid UTF-8"))
                })?
                .to_string(),
            Format::Binary => {
                let ty = binary_type(statement, evaluation, index).ok_or_else(|| {
                    Refusal::new(
                        "0A000",
                        format!(
                            "pgseal cannot read parameter ${index} in binary without its type; \
                             declare it in Parse or send it as text"
                        ),
                    )
                })?;
                let canonical = values::canonical_from_wire(
                    &ty,
                    Format::Binary,
                    value,
                    crate::protect::date_settings::DateSettings::canonical(),
                )
                .map_err(|e| Refusal::new(e.sqlstate(), e.to_string()))?;
                String::from_utf8(canonical)
                    .map_err(|_| Refusal::new("22021", "a parameter is not valid text"))?
            }
        };
        if let Some(entry) = out.get_mut(slot) {
            *entry = Some(text);
        }
    }
    Ok(out)
}

/// The type a binary parameter is encoded in: the one the client declared, else the one the
/// server was told.
fn binary_type(statement: &Prepared, evaluation: &Evaluation, index: u16) -> Option<PlainType> {
    let declared = statement
        .client_types
        .get(usize::from(index) - 1)
        .copied()
        .unwrap_or(0);
    if declared != 0 {
        return values::plain_type_of_oid(declared);
    }
    evaluation
        .read_types
        .iter()
        .find(|(n, _)| *n == index)
        .and_then(|(_, ty)| PlainType::parse(ty).ok())
}

/// The values of pgseal's own parameters (search probes), as text.
pub fn probe_values(
    protection: &Protection,
    catalog: &DatabaseCatalog,
    dates: &DateSettings,
    probes: &[BoundProbe],
    params: &[Option<String>],
) -> Vec<(u16, Option<Vec<u8>>)> {
    let indexes = CompleteIndexes {
        protection,
        catalog,
        dates,
    };
    probes
        .iter()
        .map(|probe| {
            let value = candidates::bound_value(probe, &indexes, params);
            (probe.param, value.map(String::into_bytes))
        })
        .collect()
}

/// Appends pgseal's parameters to a Bind's: each at its number (the client's run short is
/// padded with NULL), in text format.
pub fn append_params<'v>(
    formats: &mut Vec<i16>,
    values: &mut Vec<Option<Cow<'v, [u8]>>>,
    added: Vec<(u16, Option<Vec<u8>>)>,
) {
    if added.is_empty() {
        return;
    }
    // One format code applies to every parameter: spelled out before others are added.
    if formats.len() == 1 {
        formats.resize(values.len(), formats[0]);
    }
    for (param, value) in added {
        let slot = usize::from(param).saturating_sub(1);
        if values.len() < slot {
            if !formats.is_empty() {
                formats.resize(slot, 0);
            }
            values.resize(slot, None);
        }
        if !formats.is_empty() {
            formats.push(0);
        }
        values.push(value.map(Cow::Owned));
    }
}

/// The result formats the server is asked for: one per client column comes with one (text)
/// per hidden column before them; none or one applies to all columns as it is.
pub fn result_formats(client: &[i16], evaluation: &Evaluation) -> Vec<i16> {
    if client.len() <= 1 {
        return client.to_vec();
    }
    let mut formats = vec![0; evaluation.hidden_count()];
    formats.extend_from_slice(client);
    formats
}
