//! The messages pgseal decodes and rewrites once a session is protected: the frontend's
//! Query, Parse, Bind, Describe, Execute and Close, and the backend's RowDescription,
//! DataRow, ParameterDescription, CommandComplete and COPY responses.
//!
//! These decoders borrow from the frame (no allocation per field) and check every length
//! against the frame, so a truncated or lying message is an error, never a panic. (pgwire's
//! decoders for these messages index past short buffers and decode strings lossily, which a
//! proxy facing arbitrary peers cannot afford; pgwire still encodes what pgseal writes on its
//! own account, in `messages`.)

use bytes::{BufMut, BytesMut};
use smallvec::SmallVec;
use thiserror::Error;

/// A message whose body does not match its type.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("malformed {message} message: {problem}")]
pub struct Malformed {
    /// The message's name.
    pub message: &'static str,
    /// What is wrong.
    pub problem: &'static str,
}

/// A cursor over a message body.
struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `frame`'s body (after the type byte and length).
    fn new(frame: &'a [u8], message: &'static str) -> Result<Self, Malformed> {
        let body = frame.get(5..).ok_or(Malformed {
            message,
            problem: "shorter than its header",
        })?;
        Ok(Reader { buf: body, message })
    }

    fn fail<T>(&self, problem: &'static str) -> Result<T, Malformed> {
        Err(Malformed {
            message: self.message,
            problem,
        })
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return self.fail("truncated");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.bytes(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn count(&mut self) -> Result<usize, Malformed> {
        let n = self.i16()?;
        if n < 0 {
            return self.fail("negative count");
        }
        Ok(n as usize)
    }

    fn i32(&mut self) -> Result<i32, Malformed> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(self.i32()? as u32)
    }

    /// A count, then that many format codes.
    fn formats(&mut self) -> Result<Formats, Malformed> {
        let n = self.count()?;
        let mut formats = Formats::with_capacity(n.min(self.buf.len() / 2));
        for _ in 0..n {
            formats.push(self.i16()?);
        }
        Ok(formats)
    }

    /// A NUL-terminated string, as bytes (without the NUL).
    fn cstr(&mut self) -> Result<&'a [u8], Malformed> {
        let Some(end) = self.buf.iter().position(|b| *b == 0) else {
            return self.fail("unterminated string");
        };
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// A length-prefixed value: `None` for SQL NULL (length -1).
    fn value(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => self.fail("negative value length"),
            n => self.bytes(n as usize).map(Some),
        }
    }

    fn finish(&self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.fail("trailing bytes")
        }
    }
}

/// Appends a frame: type byte, length, then whatever `body` writes.
pub fn put_frame(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u8(tag);
    out.put_i32(0);
    body(out);
    let length = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&length.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

/// `Query`: a simple-protocol query string.
pub fn decode_query(frame: &[u8]) -> Result<&[u8], Malformed> {
    let mut r = Reader::new(frame, "Query")?;
    let sql = r.cstr()?;
    r.finish()?;
    Ok(sql)
}

/// Appends a `Query` frame.
pub fn put_query(out: &mut BytesMut, sql: &[u8]) {
    put_frame(out, b'Q', |b| put_cstr(b, sql));
}

/// `Parse`: a statement to prepare.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    /// The statement's name (empty: the unnamed statement).
    pub name: &'a [u8],
    /// The SQL text.
    pub sql: &'a [u8],
    /// Parameter type OIDs the client specified (0: let the server infer).
    pub param_types: Vec<u32>,
}

impl<'a> Parse<'a> {
    /// Decodes a Parse frame.
    pub fn decode(frame: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(frame, "Parse")?;
        let name = r.cstr()?;
        let sql = r.cstr()?;
        let n = r.count()?;
        let mut param_types = Vec::with_capacity(n.min(r.buf.len() / 4));
        for _ in 0..n {
            param_types.push(r.u32()?);
        }
        r.finish()?;
        Ok(Parse {
            name,
            sql,
            param_types,
        })
    }

    /// Appends this message as a frame.
    pub fn encode(&self, out: &mut BytesMut) {
        put_frame(out, b'P', |b| {
            put_cstr(b, self.name);
            put_cstr(b, self.sql);
            b.put_i16(self.param_types.len() as i16);
            for oid in &self.param_types {
                b.put_u32(*oid);
            }
        });
    }
}

/// `Bind`: a portal from a prepared statement and parameter values.
#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    /// The portal's name.
    pub portal: &'a [u8],
    /// The statement's name.
    pub statement: &'a [u8],
    /// Parameter format codes: none (all text), one (for all) or one per parameter.
    pub param_formats: Formats,
    /// Parameter values (`None`: NULL).
    pub params: SmallVec<[Option<&'a [u8]>; 8]>,
    /// Result format codes: none (all text), one (for all) or one per column.
    pub result_formats: Formats,
}

/// A Bind's names and result formats, without its parameters ([`Bind::head`]).
#[derive(Debug, PartialEq, Eq)]
pub struct BindHead<'a> {
    /// The portal's name.
    pub portal: &'a [u8],
    /// The statement's name.
    pub statement: &'a [u8],
    /// Result format codes: none (all text), one (for all) or one per column.
    pub result_formats: Formats,
}

/// Format codes, kept inline when there are few (a Bind is decoded for every statement run;
/// most give none or one code for all).
pub type Formats = SmallVec<[i16; 4]>;

/// A RowDescription's fields: inline up to eight, so that describing a usual result
/// allocates nothing.
pub type Fields<'a> = SmallVec<[Field<'a>; 8]>;

impl<'a> Bind<'a> {
    /// The name of the statement a Bind frame binds, read without decoding the rest (its
    /// parameters are checked by [`Bind::decode`]).
    pub fn statement_name(frame: &'a [u8]) -> Result<&'a [u8], Malformed> {
        let mut r = Reader::new(frame, "Bind")?;
        let _portal = r.cstr()?;
        r.cstr()
    }

    /// Decodes a Bind frame.
    pub fn decode(frame: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(frame, "Bind")?;
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let param_formats = r.formats()?;
        let n = r.count()?;
        let mut params = SmallVec::with_capacity(n.min(r.buf.len() / 4));
        for _ in 0..n {
            params.push(r.value()?);
        }
        let result_formats = r.formats()?;
        r.finish()?;
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// What a Bind of a statement with nothing to seal or evaluate needs: its names and
    /// result formats. The frame is checked as [`Bind::decode`] checks it (the same errors),
    /// but its parameters are only walked over, not collected.
    pub fn head(frame: &'a [u8]) -> Result<BindHead<'a>, Malformed> {
        let mut r = Reader::new(frame, "Bind")?;
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let n = r.count()?;
        r.bytes(2 * n)?;
        for _ in 0..r.count()? {
            r.value()?;
        }
        let result_formats = r.formats()?;
        r.finish()?;
        Ok(BindHead {
            portal,
            statement,
            result_formats,
        })
    }

    /// The format code of parameter `index` (0-based).
    pub fn param_format(&self, index: usize) -> i16 {
        format_at(&self.param_formats, index)
    }
}

/// The format code at `index` under the protocol's rule: no codes means text, one code applies
/// to all.
pub fn format_at(codes: &[i16], index: usize) -> i16 {
    match codes.len() {
        0 => 0,
        1 => codes[0],
        _ => codes.get(index).copied().unwrap_or(0),
    }
}

/// Appends a Bind frame with owned parameter values and per-parameter formats.
pub fn put_bind(
    out: &mut BytesMut,
    portal: &[u8],
    statement: &[u8],
    param_formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) {
    put_frame(out, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, statement);
        b.put_i16(param_formats.len() as i16);
        for f in param_formats {
            b.put_i16(*f);
        }
        b.put_i16(params.len() as i16);
        for p in params {
            match p {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
            }
        }
        b.put_i16(result_formats.len() as i16);
        for f in result_formats {
            b.put_i16(*f);
        }
    });
}

/// `Describe` or `Close`: a kind (`S` statement or `P` portal) and a name.
pub fn decode_target<'a>(
    frame: &'a [u8],
    message: &'static str,
) -> Result<(u8, &'a [u8]), Malformed> {
    let mut r = Reader::new(frame, message)?;
    let kind = r.u8()?;
    if kind != b'S' && kind != b'P' {
        return r.fail("kind is neither S nor P");
    }
    let name = r.cstr()?;
    r.finish()?;
    Ok((kind, name))
}

/// `Execute`: a portal and a row limit (0: all).
pub fn decode_execute(frame: &[u8]) -> Result<(&[u8], i32), Malformed> {
    let mut r = Reader::new(frame, "Execute")?;
    let portal = r.cstr()?;
    let limit = r.i32()?;
    r.finish()?;
    Ok((portal, limit))
}

/// One field of a RowDescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// Column name (as the client will see it).
    pub name: &'a [u8],
    /// OID of the table the column comes from (0: not a table column).
    pub table_oid: u32,
    /// Its attribute number in that table.
    pub column: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type size (negative: variable).
    pub type_size: i16,
    /// Type modifier.
    pub type_modifier: i32,
    /// Format code (0 text, 1 binary; 0 in a statement Describe).
    pub format: i16,
}

/// Decodes a RowDescription frame.
pub fn decode_row_description(frame: &[u8]) -> Result<Fields<'_>, Malformed> {
    let mut r = Reader::new(frame, "RowDescription")?;
    let n = r.count()?;
    let mut fields = Fields::with_capacity(n.min(r.buf.len() / 19));
    for _ in 0..n {
        fields.push(Field {
            name: r.cstr()?,
            table_oid: r.u32()?,
            column: r.i16()?,
            type_oid: r.u32()?,
            type_size: r.i16()?,
            type_modifier: r.i32()?,
            format: r.i16()?,
        });
    }
    r.finish()?;
    Ok(fields)
}

/// Appends a RowDescription frame.
pub fn put_row_description(out: &mut BytesMut, fields: &[Field<'_>]) {
    put_frame(out, b'T', |b| {
        b.put_i16(fields.len() as i16);
        for f in fields {
            put_cstr(b, f.name);
            b.put_u32(f.table_oid);
            b.put_i16(f.column);
            b.put_u32(f.type_oid);
            b.put_i16(f.type_size);
            b.put_i32(f.type_modifier);
            b.put_i16(f.format);
        }
    });
}

/// Decodes a DataRow frame into its values, borrowed.
pub fn decode_data_row<'a>(
    frame: &'a [u8],
    values: &mut Vec<Option<&'a [u8]>>,
) -> Result<(), Malformed> {
    let mut r = Reader::new(frame, "DataRow")?;
    let n = r.count()?;
    values.clear();
    for _ in 0..n {
        values.push(r.value()?);
    }
    r.finish()
}

/// A DataRow written value by value straight into an output buffer, so that rewritten values
/// need no buffer of their own: [`DataRowWriter::begin`], one `put` or `put_with` per value,
/// then [`DataRowWriter::finish`]. A writer dropped before `finish` (an error, an early
/// return) takes its partial row back out of the buffer, so half a row, with the values already
/// written into it, can never be sent.
#[must_use = "a DataRow is only kept once finished"]
pub struct DataRowWriter<'a> {
    out: &'a mut BytesMut,
    start: usize,
    finished: bool,
}

/// A row that grew past the protocol's 2 GiB frame limit as it was rewritten.
#[derive(Debug, PartialEq, Eq)]
pub struct RowTooLarge;

impl<'a> DataRowWriter<'a> {
    /// Starts a row of `columns` values at the end of `out`.
    pub fn begin(out: &'a mut BytesMut, columns: i16) -> Self {
        let start = out.len();
        out.put_u8(b'D');
        out.put_i32(0);
        out.put_i16(columns);
        DataRowWriter {
            out,
            start,
            finished: false,
        }
    }

    /// Appends one value as it is (`None` is NULL).
    pub fn put(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.out.put_i32(-1),
            Some(v) => {
                // A length past i32 also makes the frame too large: `finish` refuses it.
                self.out.put_i32(v.len() as i32);
                self.out.put_slice(v);
            }
        }
    }

    /// Appends one value that `write` appends to the buffer; its length is filled in after.
    pub fn put_with<E>(
        &mut self,
        write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = self.out.len();
        self.out.put_i32(0);
        write(self.out)?;
        // A length past i32 also makes the frame too large: `finish` refuses it.
        let length = (self.out.len() - at - 4) as i32;
        self.out[at..at + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// Fills in the frame's length and keeps the row; a row over the frame limit is taken back.
    pub fn finish(mut self) -> Result<(), RowTooLarge> {
        let length = i32::try_from(self.out.len() - self.start - 1).map_err(|_| RowTooLarge)?;
        self.out[self.start + 1..self.start + 5].copy_from_slice(&length.to_be_bytes());
        self.finished = true;
        Ok(())
    }
}

impl Drop for DataRowWriter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.truncate(self.start);
        }
    }
}

/// Decodes a ParameterDescription frame.
pub fn decode_parameter_description(frame: &[u8]) -> Result<Vec<u32>, Malformed> {
    let mut r = Reader::new(frame, "ParameterDescription")?;
    let n = r.count()?;
    let mut oids = Vec::with_capacity(n.min(r.buf.len() / 4));
    for _ in 0..n {
        oids.push(r.u32()?);
    }
    r.finish()?;
    Ok(oids)
}

/// Appends a ParameterDescription frame.
pub fn put_parameter_description(out: &mut BytesMut, oids: &[u32]) {
    put_frame(out, b't', |b| {
        b.put_i16(oids.len() as i16);
        for oid in oids {
            b.put_u32(*oid);
        }
    });
}

/// Decodes a CommandComplete frame into its tag.
pub fn decode_command_complete(frame: &[u8]) -> Result<&[u8], Malformed> {
    let mut r = Reader::new(frame, "CommandComplete")?;
    let tag = r.cstr()?;
    r.finish()?;
    Ok(tag)
}

/// A CopyInResponse or CopyOutResponse: overall format and per-column formats.
pub fn decode_copy_response(frame: &[u8]) -> Result<(u8, Vec<i16>), Malformed> {
    let mut r = Reader::new(frame, "CopyResponse")?;
    let format = r.u8()?;
    let formats = r.formats()?.into_vec();
    r.finish()?;
    Ok((format, formats))
}

/// The body of a CopyData frame.
pub fn copy_data(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or(&[])
}

/// Appends a CopyData frame.
pub fn put_copy_data(out: &mut BytesMut, data: &[u8]) {
    put_frame(out, b'd', |b| b.put_slice(data));
}

/// The transaction status of a ReadyForQuery frame (`I`, `T` or `E`).
pub fn ready_status(frame: &[u8]) -> Option<u8> {
    frame.get(5).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_row_written_value_by_value_decodes() {
        let mut out = BytesMut::from(&b"before"[..]);
        let mut row = DataRowWriter::begin(&mut out, 3);
        row.put(Some(b"kept"));
        row.put(None);
        row.put_with(|out| {
            out.extend_from_slice(b"rewritten");
            Ok::<(), ()>(())
        })
        .unwrap();
        row.finish().unwrap();
        let expected = b"before\
            D\0\0\0\x1f\0\x03\
            \0\0\0\x04kept\
            \xff\xff\xff\xff\
            \0\0\0\x09rewritten";
        assert_eq!(&out[..], &expected[..]);
        let mut values = Vec::new();
        decode_data_row(&out[6..], &mut values).unwrap();
        assert_eq!(values, [Some(&b"kept"[..]), None, Some(&b"rewritten"[..])]);

        // A value that fails, or a writer dropped unfinished, leaves nothing of its row.
        let mut row = DataRowWriter::begin(&mut out, 2);
        row.put(Some(b"partial plaintext"));
        let failed = row.put_with(|out| {
            out.extend_from_slice(b"half");
            Err("cannot open")
        });
        assert_eq!(failed, Err("cannot open"));
        drop(row);
        assert_eq!(&out[..], &expected[..]);
        let mut row = DataRowWriter::begin(&mut out, 1);
        row.put(Some(b"never finished"));
        drop(row);
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn parse_round_trips_and_rejects_truncation() {
        let parse = Parse {
            name: b"s1",
            sql: b"SELECT $1",
            param_types: vec![25, 1082],
        };
        let mut out = BytesMut::new();
        parse.encode(&mut out);
        assert_eq!(Parse::decode(&out).unwrap(), parse);
        for cut in 5..out.len() {
            let mut truncated = out[..cut].to_vec();
            let len = (cut - 1) as i32;
            truncated[1..5].copy_from_slice(&len.to_be_bytes());
            assert!(Parse::decode(&truncated).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bind_round_trips_with_nulls_and_formats() {
        let mut out = BytesMut::new();
        put_bind(&mut out, b"", b"s1", &[0, 1], &[Some(b"abc"), None], &[1]);
        let bind = Bind::decode(&out).unwrap();
        assert_eq!(bind.statement, b"s1");
        assert_eq!(bind.params.as_slice(), [Some(&b"abc"[..]), None]);
        assert_eq!(bind.param_format(1), 1);
        assert_eq!(format_at(&bind.result_formats, 7), 1);
        assert_eq!(format_at(&[], 3), 0);
    }

    #[test]
    fn a_bind_head_reads_what_decode_reads_and_rejects_what_it_rejects() {
        let mut out = BytesMut::new();
        put_bind(
            &mut out,
            b"p",
            b"s1",
            &[1],
            &[Some(b"abc"), None, Some(b"")],
            &[0, 1],
        );
        let bind = Bind::decode(&out).unwrap();
        let head = Bind::head(&out).unwrap();
        assert_eq!(
            (head.portal, head.statement, head.result_formats.as_slice()),
            (bind.portal, bind.statement, bind.result_formats.as_slice())
        );
        // Every truncation, and a trailing byte, fail both ways with the same error.
        for cut in 5..=out.len() + 1 {
            let mut frame = out.to_vec();
            frame.resize(cut, 0);
            let len = (cut - 1) as i32;
            frame[1..5].copy_from_slice(&len.to_be_bytes());
            let decoded = Bind::decode(&frame).map(|_| ());
            assert_eq!(Bind::head(&frame).map(|_| ()), decoded, "length {cut}");
            assert_eq!(decoded.is_ok(), cut == out.len(), "length {cut}");
        }
    }

    #[test]
    fn lying_counts_and_lengths_are_errors() {
        // A Bind claiming 30000 parameters in a few bytes.
        let mut frame = vec![b'B', 0, 0, 0, 0, 0, 0, 0, 0, 0x75, 0x30];
        let len = (frame.len() - 1) as i32;
        frame[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(Bind::decode(&frame).is_err());
        assert!(Bind::head(&frame).is_err());
        // A DataRow whose value claims more bytes than there are.
        let mut row = vec![b'D', 0, 0, 0, 0, 0, 1, 0, 0, 0x10, 0, b'x'];
        let len = (row.len() - 1) as i32;
        row[1..5].copy_from_slice(&len.to_be_bytes());
        let mut values = Vec::new();
        assert!(decode_data_row(&row, &mut values).is_err());
        assert!(decode_row_description(b"T").is_err());
    }

    #[test]
    fn row_description_and_data_row_round_trip() {
        let fields = vec![Field {
            name: b"nir",
            table_oid: 16384,
            column: 2,
            type_oid: 1043,
            type_size: -1,
            type_modifier: 19,
            format: 0,
        }];
        let mut out = BytesMut::new();
        put_row_description(&mut out, &fields);
        assert_eq!(
            decode_row_description(&out).unwrap().as_slice(),
            fields.as_slice()
        );
        let mut row = BytesMut::new();
        let mut writer = DataRowWriter::begin(&mut row, 2);
        writer.put(Some(b"x"));
        writer.put(None);
        writer.finish().unwrap();
        let mut values = Vec::new();
        decode_data_row(&row, &mut values).unwrap();
        assert_eq!(values, vec![Some(&b"x"[..]), None]);
    }
}
