//! The client → server side of a statement pgseal evaluates: the bound parameters pgseal reads
//! (kept as text for the backend), the ones only pgseal reads sent to the server as NULL, and
//! result formats for the hidden columns.

use pgseal_policies::PlainType;

use super::state::{Prepared, Refusal};
use crate::analyze::evaluation::Evaluation;
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
                let canonical = values::canonical_from_wire(&ty, Format::Binary, value)
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
