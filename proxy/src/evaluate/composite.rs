//! PostgreSQL's one-dimensional arrays and anonymous records as the server sends them, in text
//! (`array_out`, `record_out`) and binary (`array_send`, `record_send`): how pgseal reads back
//! the rows of a subquery it filters, which it asks the server for as
//! `ARRAY(SELECT ROW(…) …)`.
//!
//! The parsers take the server's own output, so they accept exactly its forms and refuse
//! anything else (a multidimensional array, a lower bound other than 1, a truncated value)
//! with an error that never quotes the value.

use crate::protect::values::Format;

/// A value the server sent that is not the array or record pgseal asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} from the server: {reason}")]
pub struct CompositeError {
    what: &'static str,
    reason: &'static str,
}

fn array_error(reason: &'static str) -> CompositeError {
    CompositeError {
        what: "array",
        reason,
    }
}

fn record_error(reason: &'static str) -> CompositeError {
    CompositeError {
        what: "record",
        reason,
    }
}

/// One element or field: its bytes in the format it came in, or `None` for SQL NULL.
pub type Item = Option<Vec<u8>>;

/// The elements of a one-dimensional array.
pub fn array_elements(value: &[u8], format: Format) -> Result<Vec<Item>, CompositeError> {
    match format {
        Format::Text => array_text(value),
        Format::Binary => array_binary(value),
    }
}

/// The fields of a record.
pub fn record_fields(value: &[u8], format: Format) -> Result<Vec<Item>, CompositeError> {
    match format {
        Format::Text => record_text(value),
        Format::Binary => record_binary(value),
    }
}

/// `{a,"b c",NULL}`: elements separated by commas; a quoted element takes `\` as an escape.
fn array_text(value: &[u8]) -> Result<Vec<Item>, CompositeError> {
    let inner = value
        .strip_prefix(b"{")
        .and_then(|v| v.strip_suffix(b"}"))
        .ok_or_else(|| array_error("not a one-dimensional array in braces"))?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Ok(out);
    }
    let mut at = 0;
    loop {
        let (item, next) = if inner.get(at) == Some(&b'"') {
            let mut bytes = Vec::new();
            let mut i = at + 1;
            loop {
                match inner.get(i) {
                    None => return Err(array_error("an unterminated quoted element")),
                    Some(b'\\') => {
                        let escaped = inner
                            .get(i + 1)
                            .ok_or_else(|| array_error("an escape at the end"))?;
                        bytes.push(*escaped);
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(b) => {
                        bytes.push(*b);
                        i += 1;
                    }
                }
            }
            (Some(bytes), i + 1)
        } else {
            let end = inner[at..]
                .iter()
                .position(|b| *b == b',')
                .map_or(inner.len(), |p| at + p);
            let raw = &inner[at..end];
            if raw.is_empty() || raw.contains(&b'{') || raw.contains(&b'"') {
                return Err(array_error("an empty or nested element"));
            }
            let item = (!raw.eq_ignore_ascii_case(b"NULL")).then(|| raw.to_vec());
            (item, end)
        };
        out.push(item);
        match inner.get(next) {
            None => return Ok(out),
            Some(b',') => at = next + 1,
            Some(_) => return Err(array_error("text after a quoted element")),
        }
    }
}

/// `(a,"b,c",)`: fields separated by commas, an empty one NULL; inside quotes `""` is a quote,
/// and `\` escapes the next byte anywhere.
fn record_text(value: &[u8]) -> Result<Vec<Item>, CompositeError> {
    let inner = value
        .strip_prefix(b"(")
        .and_then(|v| v.strip_suffix(b")"))
        .ok_or_else(|| record_error("not a record in parentheses"))?;
    let mut out = Vec::new();
    let mut field = Vec::new();
    let mut quoted_field = false;
    let mut in_quotes = false;
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        match b {
            b'\\' => {
                let escaped = inner
                    .get(i + 1)
                    .ok_or_else(|| record_error("an escape at the end"))?;
                field.push(*escaped);
                i += 2;
                continue;
            }
            b'"' if !in_quotes => {
                in_quotes = true;
                quoted_field = true;
            }
            b'"' if inner.get(i + 1) == Some(&b'"') => {
                field.push(b'"');
                i += 2;
                continue;
            }
            b'"' => in_quotes = false,
            b',' if !in_quotes => {
                out.push(finish_field(&mut field, quoted_field));
                quoted_field = false;
            }
            _ => field.push(b),
        }
        i += 1;
    }
    if in_quotes {
        return Err(record_error("an unterminated quoted field"));
    }
    out.push(finish_field(&mut field, quoted_field));
    Ok(out)
}

/// A field read so far: NULL when nothing at all was written for it.
fn finish_field(field: &mut Vec<u8>, quoted: bool) -> Item {
    let bytes = std::mem::take(field);
    (quoted || !bytes.is_empty()).then_some(bytes)
}

/// Reads big-endian integers and length-prefixed values, never past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    error: fn(&'static str) -> CompositeError,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CompositeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| (self.error)("shorter than its header says"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32, CompositeError> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A length-prefixed value (`-1`: NULL).
    fn item(&mut self) -> Result<Item, CompositeError> {
        match self.i32()? {
            -1 => Ok(None),
            n => {
                let n = usize::try_from(n).map_err(|_| (self.error)("a negative length"))?;
                Ok(Some(self.take(n)?.to_vec()))
            }
        }
    }

    fn finished(&self) -> Result<(), CompositeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err((self.error)("bytes after its last item"))
        }
    }
}

/// `array_send`: dimensions, flags, element type, then each dimension's size and lower bound,
/// then the elements.
fn array_binary(value: &[u8]) -> Result<Vec<Item>, CompositeError> {
    let mut r = Reader {
        bytes: value,
        at: 0,
        error: array_error,
    };
    let dimensions = r.i32()?;
    let _flags = r.i32()?;
    let _element_type = r.i32()?;
    let count = match dimensions {
        0 => 0,
        1 => {
            let size = r.i32()?;
            let lower = r.i32()?;
            if lower != 1 {
                return Err(array_error("a lower bound other than 1"));
            }
            usize::try_from(size).map_err(|_| array_error("a negative size"))?
        }
        _ => return Err(array_error("more than one dimension")),
    };
    // Each element takes at least its 4-byte length: a count past that is a lie.
    if count > value.len() / 4 {
        return Err(array_error("more elements than bytes"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(r.item()?);
    }
    r.finished()?;
    Ok(out)
}

/// `record_send`: the field count, then each field's type and value.
fn record_binary(value: &[u8]) -> Result<Vec<Item>, CompositeError> {
    let mut r = Reader {
        bytes: value,
        at: 0,
        error: record_error,
    };
    let count = usize::try_from(r.i32()?).map_err(|_| record_error("a negative field count"))?;
    if count > value.len() / 8 {
        return Err(record_error("more fields than bytes"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let _type = r.i32()?;
        out.push(r.item()?);
    }
    r.finished()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Item {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn text_arrays_of_records_as_the_server_writes_them() {
        // SELECT ARRAY(SELECT ROW(v, b) FROM (VALUES ('a,b', true), (NULL, false),
        //   ('q"\', NULL)) t(v, b))
        let array = br#"{"(\"a,b\",t)","(,f)","(\"q\"\"\\\\\",)"}"#;
        let elements = array_elements(array, Format::Text).unwrap();
        assert_eq!(elements.len(), 3);
        let fields: Vec<Vec<Item>> = elements
            .iter()
            .map(|e| record_fields(e.as_deref().unwrap(), Format::Text).unwrap())
            .collect();
        assert_eq!(fields[0], vec![some("a,b"), some("t")]);
        assert_eq!(fields[1], vec![None, some("f")]);
        assert_eq!(fields[2], vec![some("q\"\\"), None]);
        assert_eq!(array_elements(b"{}", Format::Text).unwrap(), vec![]);
        assert_eq!(
            array_elements(b"{NULL,x}", Format::Text).unwrap(),
            vec![None, some("x")]
        );
        // An empty string is quoted, so it is not NULL.
        assert_eq!(
            record_fields(br#"("")"#, Format::Text).unwrap(),
            vec![some("")]
        );
    }

    #[test]
    fn binary_arrays_and_records() {
        let mut record = Vec::new();
        record.extend(2i32.to_be_bytes());
        record.extend(17i32.to_be_bytes());
        record.extend(3i32.to_be_bytes());
        record.extend(b"abc");
        record.extend(16i32.to_be_bytes());
        record.extend((-1i32).to_be_bytes());
        let mut array = Vec::new();
        for n in [1i32, 0, 2249, 1, 1] {
            array.extend(n.to_be_bytes());
        }
        array.extend(i32::try_from(record.len()).unwrap().to_be_bytes());
        array.extend(&record);
        let elements = array_elements(&array, Format::Binary).unwrap();
        assert_eq!(elements.len(), 1);
        let fields = record_fields(elements[0].as_deref().unwrap(), Format::Binary).unwrap();
        assert_eq!(fields, vec![some("abc"), None]);
        let empty = [0i32, 0, 2249]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .collect::<Vec<_>>();
        assert!(array_elements(&empty, Format::Binary).unwrap().is_empty());
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a",
            b"{\"a\"x}",
            b"{{1}}",
            b"[0:1]={a,b}",
            b"{a,,b}",
            b"{\"a\\",
        ] {
            assert!(array_elements(bad, Format::Text).is_err(), "{bad:?}");
        }
        for bad in [&b""[..], b"(", b"(\"a)", b"(a\\"] {
            assert!(record_fields(bad, Format::Text).is_err(), "{bad:?}");
        }
        let mut huge = Vec::new();
        for n in [1i32, 0, 25, i32::MAX, 1] {
            huge.extend(n.to_be_bytes());
        }
        assert!(array_elements(&huge, Format::Binary).is_err());
        for cut in 0..20 {
            let mut short = Vec::new();
            for n in [1i32, 0, 25, 1, 1, 3] {
                short.extend(n.to_be_bytes());
            }
            short.extend(b"ab");
            short.truncate(cut);
            assert!(array_elements(&short, Format::Binary).is_err());
        }
        let mut negative = Vec::new();
        negative.extend((-5i32).to_be_bytes());
        assert!(record_fields(&negative, Format::Binary).is_err());
    }

    #[test]
    fn errors_never_quote_the_value() {
        let error = array_elements(b"{\"secret", Format::Text).unwrap_err();
        assert!(!error.to_string().contains("secret"));
    }
}
