//! Positions in a policy file and the diagnostics that point at them.
//!
//! Every problem found in a policy is a [`Diagnostic`]: a file name, a 1-based line and column
//! when the problem relates to a place in the file, and a message. They print as
//! `FILE:LINE:COL: message`, the form editors and CI logs understand.

use std::fmt;
use std::ops::Range;

/// A 1-based position in a file; the column counts characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number in characters, starting at 1.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem found in a policy file (or between a policy and a database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in, as it was named when loading.
    pub file: String,
    /// Where in the file, when the problem relates to one place.
    pub location: Option<Location>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{}:{}: {}", self.file, at, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in one policy file, in file order; never empty when returned as an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A policy file's name and text, with an index of line starts to turn byte offsets into
/// [`Location`]s.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    name: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap {
            name,
            text,
            line_starts,
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.name
    }

    /// The location of a byte offset (clamped to the text, moved back to a character boundary).
    pub(crate) fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        Location {
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    /// A diagnostic at the start of a span.
    pub(crate) fn at(&self, span: &Range<usize>, message: impl Into<String>) -> Spotted {
        Spotted {
            offset: span.start,
            diagnostic: Diagnostic {
                file: self.name.to_owned(),
                location: Some(self.location(span.start)),
                message: message.into(),
            },
        }
    }
}

/// A diagnostic together with the byte offset it was found at, so a list can be sorted into file
/// order before it is shown.
#[derive(Debug)]
pub(crate) struct Spotted {
    pub(crate) offset: usize,
    pub(crate) diagnostic: Diagnostic,
}

/// Sorts spotted diagnostics into file order (stable for equal offsets) and drops the offsets.
pub(crate) fn in_file_order(mut spotted: Vec<Spotted>) -> Diagnostics {
    spotted.sort_by_key(|s| s.offset);
    Diagnostics(spotted.into_iter().map(|s| s.diagnostic).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters() {
        let map = SourceMap::new("p.toml", "a = 1\nnom = \"Élodie\" x\n\nz");
        assert_eq!(map.location(0), Location { line: 1, column: 1 });
        assert_eq!(map.location(4), Location { line: 1, column: 5 });
        assert_eq!(map.location(6), Location { line: 2, column: 1 });
        // "Élodie" has a two-byte first character: the x after it is character 16, byte 17.
        let x = "a = 1\nnom = \"Élodie\" x".find('x').unwrap();
        assert_eq!(
            map.location(x),
            Location {
                line: 2,
                column: 16
            }
        );
        assert_eq!(map.location(x + 2), Location { line: 3, column: 1 });
        // Inside a multi-byte character: moved back to its start.
        let e = "a = 1\nnom = \"".len() + 1;
        assert_eq!(map.location(e), Location { line: 2, column: 8 });
        // Past the end: clamped.
        assert_eq!(map.location(10_000), Location { line: 4, column: 2 });
    }

    #[test]
    fn diagnostics_print_file_line_column() {
        let map = SourceMap::new("p.toml", "a = 1\nb = 2\n");
        let d = map.at(&(6..7), "bad b").diagnostic;
        assert_eq!(d.to_string(), "p.toml:2:1: bad b");
        let no_place = Diagnostic {
            file: "p.toml".into(),
            location: None,
            message: "empty".into(),
        };
        assert_eq!(no_place.to_string(), "p.toml: empty");
        let all = in_file_order(vec![map.at(&(6..7), "second"), map.at(&(0..1), "first")]);
        assert_eq!(all.to_string(), "p.toml:1:1: first\np.toml:2:1: second");
    }
}
