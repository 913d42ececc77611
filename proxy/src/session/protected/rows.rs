//! DataRows of sealed columns, opened and rendered in the role's view — one at a time, or a
//! batch at once on several threads.
//!
//! Opening is the read path's cost (AES-GCM-SIV or FF1 per value, several per row) while the
//! server and the client mostly wait, so the backend filter collects the DataRows of one read
//! from the server into a [`RowBatch`] and renders them together: past [`PARALLEL_MIN`] values
//! per thread, contiguous runs of rows go to several threads (`parallel.rs`) and their bytes
//! are put back in row order. The
//! first row that fails to open ends the batch there, as it ends the statement: the rows before
//! it are sent, none after it.

use std::sync::Arc;

use bytes::BytesMut;
use pgseal_policies::ColumnId;

use super::parallel;
use super::state::{FieldPlan, Shape};
use crate::protect::Protection;
use crate::protect::column::ProtectError;
use crate::protect::values::Format;
use crate::wire::extended::{self, Malformed};

/// Values per thread below which the session's own thread renders a batch alone: starting a thread
/// costs about as much as opening a few dozen values.
pub const PARALLEL_MIN: usize = 128;

/// Rows held in a batch before it is rendered anyway, and the bytes they may take.
pub const MAX_ROWS: usize = 4096;
const MAX_BYTES: usize = 1 << 20;

/// Why a row could not be rendered.
#[derive(Debug)]
pub enum RowError {
    /// The server sent a malformed DataRow.
    Malformed(Malformed),
    /// A sealed value did not open (or render) for the role.
    Open {
        /// Its column.
        column: ColumnId,
        /// What went wrong.
        error: ProtectError,
    },
}

/// Renders one DataRow of a result shaped `shape` (formats per column `formats`) into `out`.
pub fn render(
    protection: &Protection,
    shape: &Shape,
    formats: &[i16],
    frame: &[u8],
    out: &mut BytesMut,
) -> Result<(), RowError> {
    let mut values = Vec::with_capacity(shape.fields.len());
    extended::decode_data_row(frame, &mut values).map_err(RowError::Malformed)?;
    let mut rendered: Vec<Option<Vec<u8>>> = vec![None; values.len()];
    for (i, (value, plan)) in values.iter().zip(&shape.fields).enumerate() {
        let (FieldPlan::Open { sealed, view }, Some(stored)) = (plan, value) else {
            continue;
        };
        let format = Format::from_code(formats.get(i).copied().unwrap_or(0));
        let crypto = protection.column(sealed.column);
        rendered[i] = Some(
            crypto
                .read(stored, format, sealed.storage, view)
                .map_err(|error| RowError::Open {
                    column: sealed.column,
                    error,
                })?,
        );
    }
    let merged = values
        .iter()
        .zip(&rendered)
        .map(|(original, new)| match new {
            Some(new) => Some(new.as_slice()),
            None => *original,
        });
    extended::put_data_row(out, merged);
    Ok(())
}

/// DataRows of one result waiting to be rendered together.
pub struct RowBatch {
    shape: Arc<Shape>,
    formats: Vec<i16>,
    /// The frames, one after another.
    frames: Vec<u8>,
    /// Where each frame ends in `frames`.
    ends: Vec<usize>,
}

impl RowBatch {
    /// An empty batch for a result's rows.
    pub fn new(shape: Arc<Shape>, formats: Vec<i16>) -> Self {
        RowBatch {
            shape,
            formats,
            frames: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, frame: &[u8]) {
        self.frames.extend_from_slice(frame);
        self.ends.push(self.frames.len());
    }

    /// Whether it should be rendered now rather than grow.
    pub fn is_full(&self) -> bool {
        self.ends.len() >= MAX_ROWS || self.frames.len() >= MAX_BYTES
    }

    fn frame(&self, row: usize) -> &[u8] {
        let start = if row == 0 { 0 } else { self.ends[row - 1] };
        &self.frames[start..self.ends[row]]
    }

    /// Renders rows `range` into `out`, stopping at the first that fails.
    fn render_rows(
        &self,
        protection: &Protection,
        range: std::ops::Range<usize>,
        out: &mut BytesMut,
    ) -> Result<(), RowError> {
        for row in range {
            render(protection, &self.shape, &self.formats, self.frame(row), out)?;
        }
        Ok(())
    }

    /// Renders every row into `out` in order; on a failure, the rows before the failing one
    /// are in `out` and the error is returned.
    pub fn render(&self, protection: &Protection, out: &mut BytesMut) -> Result<(), RowError> {
        let rows = self.ends.len();
        let opened = self
            .shape
            .fields
            .iter()
            .filter(|f| matches!(f, FieldPlan::Open { .. }))
            .count();
        let threads = (rows * opened / PARALLEL_MIN).clamp(1, parallel::threads());
        if threads == 1 {
            return self.render_rows(protection, 0..rows, out);
        }
        let parts = parallel::map_ranges(parallel::split(rows, threads), |range| {
            let mut part = BytesMut::new();
            let result = self.render_rows(protection, range, &mut part);
            (part, result)
        });
        for (part, result) in parts {
            out.extend_from_slice(&part);
            result?;
        }
        Ok(())
    }
}
