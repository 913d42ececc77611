//! COPY data through a protected session: rows into a sealed table have their sealed fields
//! sealed on the way in; rows out of one have them rendered in the role's view on the way out.
//! Text and CSV formats, rows split across CopyData messages as they come (memory holds at
//! most one partial row).

use std::sync::Arc;

use bytes::BytesMut;
use pgseal_policies::{ClassId, View};

use crate::analyze::{CopyFormat, CopyPlan};
use crate::error::SessionError;
use crate::protect::Protection;
use crate::protect::catalog::{DatabaseCatalog, SealedField};
use crate::protect::date_settings::DateSettings;
use crate::protect::values::Format;
use crate::wire::extended;

/// How COPY rows are written.
#[derive(Clone, Debug)]
struct Dialect {
    csv: bool,
    delimiter: u8,
    null: Vec<u8>,
    quote: u8,
    escape: u8,
    header: bool,
}

impl Dialect {
    fn of(plan: &CopyPlan) -> Dialect {
        let csv = plan.format == CopyFormat::Csv;
        let delimiter = plan
            .delimiter
            .map(|c| c as u8)
            .unwrap_or(if csv { b',' } else { b'\t' });
        let null = plan
            .null
            .clone()
            .unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
        let quote = plan.quote.map(|c| c as u8).unwrap_or(b'"');
        Dialect {
            csv,
            delimiter,
            null: null.into_bytes(),
            quote,
            escape: plan.escape.map(|c| c as u8).unwrap_or(quote),
            header: plan.header,
        }
    }

    /// The end of the row starting at `data[0]`, if it is complete: the index of its newline.
    fn row_end(&self, data: &[u8]) -> Option<usize> {
        if !self.csv {
            return data.iter().position(|b| *b == b'\n');
        }
        let mut quoted = false;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            if quoted {
                if b == self.escape
                    && self.escape != self.quote
                    && data.get(i + 1) == Some(&self.quote)
                {
                    i += 2;
                    continue;
                }
                if b == self.quote {
                    if self.escape == self.quote && data.get(i + 1) == Some(&self.quote) {
                        i += 2;
                        continue;
                    }
                    quoted = false;
                }
            } else if b == self.quote {
                quoted = true;
            } else if b == b'\n' {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// Splits a row (without its newline) into raw fields.
    fn split<'a>(&self, row: &'a [u8]) -> Vec<&'a [u8]> {
        let mut fields = Vec::new();
        let mut start = 0;
        let mut quoted = false;
        let mut i = 0;
        while i < row.len() {
            let b = row[i];
            if self.csv && quoted {
                if b == self.escape
                    && self.escape != self.quote
                    && row.get(i + 1) == Some(&self.quote)
                {
                    i += 2;
                    continue;
                }
                if b == self.quote {
                    if self.escape == self.quote && row.get(i + 1) == Some(&self.quote) {
                        i += 2;
                        continue;
                    }
                    quoted = false;
                }
            } else if self.csv && b == self.quote {
                quoted = true;
            } else if !self.csv && b == b'\\' {
                i += 2;
                continue;
            } else if b == self.delimiter {
                fields.push(&row[start..i]);
                start = i + 1;
            }
            i += 1;
        }
        fields.push(&row[start..row.len().min(row.len())]);
        fields
    }

    /// A raw field's value: `None` for NULL.
    fn decode(&self, raw: &[u8]) -> Option<Vec<u8>> {
        if self.csv {
            if raw == self.null.as_slice() && !raw.starts_with(&[self.quote]) {
                return None;
            }
            if raw.first() == Some(&self.quote) && raw.len() >= 2 && raw.last() == Some(&self.quote)
            {
                let inner = &raw[1..raw.len() - 1];
                let mut out = Vec::with_capacity(inner.len());
                let mut i = 0;
                while i < inner.len() {
                    if inner[i] == self.escape && inner.get(i + 1) == Some(&self.quote) {
                        out.push(self.quote);
                        i += 2;
                    } else {
                        out.push(inner[i]);
                        i += 1;
                    }
                }
                return Some(out);
            }
            return Some(raw.to_vec());
        }
        if raw == self.null.as_slice() {
            return None;
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] != b'\\' || i + 1 == raw.len() {
                out.push(raw[i]);
                i += 1;
                continue;
            }
            let next = raw[i + 1];
            i += 2;
            match next {
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'v' => out.push(11),
                b'0'..=b'7' => {
                    let mut value = u32::from(next - b'0');
                    for _ in 0..2 {
                        match raw.get(i) {
                            Some(d @ b'0'..=b'7') => {
                                value = value * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    out.push((value & 0xff) as u8);
                }
                b'x' => {
                    let mut value = 0u32;
                    let mut digits = 0;
                    while digits < 2 {
                        match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                            Some(d) => {
                                value = value * 16 + d;
                                i += 1;
                                digits += 1;
                            }
                            None => break,
                        }
                    }
                    if digits == 0 {
                        out.push(b'x');
                    } else {
                        out.push(value as u8);
                    }
                }
                other => out.push(other),
            }
        }
        Some(out)
    }

    /// Writes a value as a field.
    fn encode(&self, value: Option<&[u8]>, out: &mut Vec<u8>) {
        let Some(value) = value else {
            out.extend_from_slice(&self.null);
            return;
        };
        if self.csv {
            let needs_quotes = value.is_empty()
                || value.iter().any(|b| {
                    *b == self.delimiter || *b == self.quote || *b == b'\n' || *b == b'\r'
                })
                || value == self.null.as_slice();
            if !needs_quotes {
                out.extend_from_slice(value);
                return;
            }
            out.push(self.quote);
            for b in value {
                if *b == self.quote {
                    out.push(self.escape);
                }
                out.push(*b);
            }
            out.push(self.quote);
            return;
        }
        for b in value {
            match *b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' if self.delimiter == b'\t' => out.extend_from_slice(b"\\t"),
                b if b == self.delimiter => {
                    out.push(b'\\');
                    out.push(b);
                }
                b => out.push(b),
            }
        }
    }
}

/// The sealed field at each position of a COPY's column list, or why it cannot be known.
fn map_columns(
    protection: &Protection,
    catalog: &DatabaseCatalog,
    plan: &CopyPlan,
) -> Result<Vec<Option<SealedField>>, String> {
    let table = &plan.table;
    match &plan.columns {
        Some(columns) => Ok(columns
            .iter()
            .map(|name| {
                protection.policy.column_id(&table.schema, &table.table, name).map(|column| SealedField {
                    column,
                    storage: catalog.storage(column),
                })
            })
            .collect()),
        None => catalog.table(&table.schema, &table.table).map(|t| t.sealed.clone()).ok_or_else(|| {
            format!(
                "pgseal does not know the column order of {}.{}; name the columns in the COPY statement",
                table.schema, table.table
            )
        }),
    }
}

/// COPY … FROM STDIN into a table with sealed columns.
pub struct CopyIn {
    protection: Arc<Protection>,
    dialect: Dialect,
    fields: Vec<Option<SealedField>>,
    pending: Vec<u8>,
    header_pending: bool,
    /// Set once pgseal has aborted the COPY; the client's remaining data is dropped.
    failed: bool,
    /// The session's DateStyle and TimeZone, which the server would read the rows in.
    dates: Arc<DateSettings>,
}

impl CopyIn {
    /// A transformer for `plan`, or `None` when none of its columns is sealed.
    pub fn new(
        protection: &Arc<Protection>,
        catalog: &DatabaseCatalog,
        plan: &CopyPlan,
        dates: Arc<DateSettings>,
    ) -> Option<CopyIn> {
        let dialect = Dialect::of(plan);
        let (fields, failed) = match map_columns(protection, catalog, plan) {
            Ok(fields) if fields.iter().all(Option::is_none) => return None,
            Ok(fields) => (fields, None),
            Err(message) => (Vec::new(), Some(message)),
        };
        let mut copy = CopyIn {
            protection: Arc::clone(protection),
            dates,
            header_pending: dialect.header,
            dialect,
            fields,
            pending: Vec::new(),
            failed: false,
        };
        if let Some(message) = failed {
            copy.pending = message.into_bytes();
            copy.failed = true;
        }
        Some(copy)
    }

    /// Handles one CopyData body: forwards the complete rows it ends, sealed.
    pub fn data(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), SessionError> {
        if self.failed {
            return self.abort_once(out);
        }
        self.pending.extend_from_slice(data);
        let mut sealed_rows = Vec::with_capacity(self.pending.len() + self.pending.len() / 2);
        let mut start = 0;
        while let Some(end) = self.dialect.row_end(&self.pending[start..]) {
            let row = &self.pending[start..start + end];
            start += end + 1;
            if self.header_pending {
                self.header_pending = false;
                sealed_rows.extend_from_slice(row);
                sealed_rows.push(b'\n');
                continue;
            }
            if let Err(message) = self.seal_row(row, &mut sealed_rows) {
                self.pending = message.into_bytes();
                self.failed = true;
                return self.abort_once(out);
            }
        }
        self.pending.drain(..start);
        if !sealed_rows.is_empty() {
            extended::put_copy_data(out, &sealed_rows);
        }
        Ok(())
    }

    /// At CopyDone: a last row without a newline is sealed too.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), SessionError> {
        if self.failed || self.pending.is_empty() {
            return Ok(());
        }
        let row = std::mem::take(&mut self.pending);
        let mut sealed = Vec::new();
        if let Err(message) = self.seal_row(&row, &mut sealed) {
            self.pending = message.into_bytes();
            self.failed = true;
            return self.abort_once(out);
        }
        extended::put_copy_data(out, &sealed);
        Ok(())
    }

    /// Whether pgseal has aborted this COPY (the client's CopyDone must then be dropped).
    pub fn aborted(&self) -> bool {
        self.failed
    }

    /// Sends CopyFail once, with the reason held in `pending`.
    fn abort_once(&mut self, out: &mut BytesMut) -> Result<(), SessionError> {
        if !self.pending.is_empty() {
            let message = std::mem::take(&mut self.pending);
            extended::put_frame(out, b'f', |b| {
                b.extend_from_slice(b"pgseal: ");
                b.extend_from_slice(&message);
                b.extend_from_slice(&[0]);
            });
        }
        Ok(())
    }

    fn seal_row(&self, row: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let (row, cr) = match row.strip_suffix(b"\r") {
            Some(stripped) => (stripped, true),
            None => (row, false),
        };
        if !self.dialect.csv && row == b"\\." {
            out.extend_from_slice(row);
            if cr {
                out.push(b'\r');
            }
            out.push(b'\n');
            return Ok(());
        }
        let raw_fields = self.dialect.split(row);
        if raw_fields.len() != self.fields.len() {
            // Let the server report the wrong field count; nothing sealed is at stake, but
            // forwarding would put a sealed column's plaintext in the wrong place: refuse.
            return Err(format!(
                "a COPY row has {} fields where {} columns were named",
                raw_fields.len(),
                self.fields.len()
            ));
        }
        for (i, (raw, field)) in raw_fields.iter().zip(&self.fields).enumerate() {
            if i > 0 {
                out.push(self.dialect.delimiter);
            }
            let Some(field) = field else {
                out.extend_from_slice(raw);
                continue;
            };
            let Some(value) = self.dialect.decode(raw) else {
                out.extend_from_slice(raw);
                continue;
            };
            let crypto = self.protection.column(field.column);
            let text = std::str::from_utf8(&value)
                .map_err(|_| format!("{}: not valid UTF-8", crypto.name))?;
            let canonical = crypto
                .canonical_text(text, &self.dates)
                .map_err(|e| e.to_string())?;
            let stored = crypto
                .seal(&canonical, field.storage)
                .map_err(|e| e.to_string())?;
            self.dialect.encode(Some(&stored), out);
        }
        if cr {
            out.push(b'\r');
        }
        out.push(b'\n');
        Ok(())
    }
}

/// COPY … TO STDOUT of a table with sealed columns: each row rendered in the role's view.
pub struct CopyOut {
    protection: Arc<Protection>,
    dialect: Dialect,
    fields: Vec<Option<(SealedField, View)>>,
    header_pending: bool,
    /// The session's DateStyle and TimeZone, which the server prints the rows in.
    dates: Arc<DateSettings>,
}

impl CopyOut {
    /// A transformer for `plan` and a role class, or `None` when nothing needs rendering.
    pub fn new(
        protection: &Arc<Protection>,
        catalog: &DatabaseCatalog,
        class: ClassId,
        plan: &CopyPlan,
        dates: Arc<DateSettings>,
    ) -> Option<CopyOut> {
        let fields = map_columns(protection, catalog, plan).ok()?;
        let fields: Vec<Option<(SealedField, View)>> = fields
            .into_iter()
            .map(|f| {
                f.and_then(|sealed| {
                    let view = protection.policy.view(class, sealed.column);
                    let migrating = protection.column(sealed.column).migrating;
                    (view.needs_plaintext() || migrating).then_some((sealed, view))
                })
            })
            .collect();
        if fields.iter().all(Option::is_none) {
            return None;
        }
        let dialect = Dialect::of(plan);
        Some(CopyOut {
            protection: Arc::clone(protection),
            dates,
            header_pending: dialect.header,
            dialect,
            fields,
        })
    }

    /// Renders the rows of one CopyData body (PostgreSQL sends one row per message).
    pub fn data(
        &mut self,
        data: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), crate::protect::column::ProtectError> {
        let mut rendered = Vec::with_capacity(data.len());
        let mut start = 0;
        while start < data.len() {
            let end = self
                .dialect
                .row_end(&data[start..])
                .map(|e| start + e)
                .unwrap_or(data.len());
            let row = &data[start..end];
            start = end + 1;
            if self.header_pending {
                self.header_pending = false;
                rendered.extend_from_slice(row);
                rendered.push(b'\n');
                continue;
            }
            let raw_fields = self.dialect.split(row);
            for (i, raw) in raw_fields.iter().enumerate() {
                if i > 0 {
                    rendered.push(self.dialect.delimiter);
                }
                match (
                    self.fields.get(i).copied().flatten(),
                    self.dialect.decode(raw),
                ) {
                    (Some((sealed, view)), Some(stored)) => {
                        let crypto = self.protection.column(sealed.column);
                        let value = crypto.read(
                            &stored,
                            Format::Text,
                            sealed.storage,
                            &view,
                            &self.dates,
                        )?;
                        self.dialect.encode(Some(&value), &mut rendered);
                    }
                    _ => rendered.extend_from_slice(raw),
                }
            }
            rendered.push(b'\n');
        }
        extended::put_copy_data(out, &rendered);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Dialect {
        Dialect {
            csv: false,
            delimiter: b'\t',
            null: b"\\N".to_vec(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    fn csv() -> Dialect {
        Dialect {
            csv: true,
            delimiter: b',',
            null: Vec::new(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    #[test]
    fn text_fields_split_decode_and_encode() {
        let d = text();
        let fields = d.split(b"1\ta\\tb\\\\c\t\\N\t\\101\\x41");
        assert_eq!(fields.len(), 4);
        assert_eq!(d.decode(fields[1]).unwrap(), b"a\tb\\c");
        assert_eq!(d.decode(fields[2]), None);
        assert_eq!(d.decode(fields[3]).unwrap(), b"AA");
        let mut out = Vec::new();
        d.encode(Some(b"x\ty\\z\n"), &mut out);
        assert_eq!(out, b"x\\ty\\\\z\\n");
        assert_eq!(d.row_end(b"a\\nb\nc"), Some(4));
    }

    #[test]
    fn csv_fields_with_quotes_and_newlines() {
        let d = csv();
        let data = b"1,\"a,\"\"b\"\"\nc\",,\"\"\n2";
        let end = d.row_end(data).unwrap();
        let fields = d.split(&data[..end]);
        assert_eq!(fields.len(), 4);
        assert_eq!(d.decode(fields[1]).unwrap(), b"a,\"b\"\nc");
        assert_eq!(d.decode(fields[2]), None);
        assert_eq!(d.decode(fields[3]).unwrap(), b"");
        let mut out = Vec::new();
        d.encode(Some(b"say \"hi\", ok"), &mut out);
        assert_eq!(out, b"\"say \"\"hi\"\", ok\"");
        let mut empty = Vec::new();
        d.encode(Some(b""), &mut empty);
        assert_eq!(empty, b"\"\"");
    }

    #[test]
    fn malformed_fields_never_panic() {
        for d in [text(), csv()] {
            for input in [
                &b"\\"[..],
                b"\"",
                b"\\x",
                b"\\7",
                b"\"\"\"",
                b",,\\",
                b"\\\\\\",
            ] {
                let _ = d.row_end(input);
                for field in d.split(input) {
                    let _ = d.decode(field);
                }
            }
        }
    }
}
