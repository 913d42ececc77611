//! From sqlparser's line/column locations to byte offsets, and the token stream used to find
//! the exact extent of values (casts, typed strings, parentheses, a leading minus).
//!
//! sqlparser counts lines on `\n` and columns in characters, from 1. A [`Source`] keeps the
//! byte offset of every line start, so a location converts to a byte offset by walking at most
//! one line's characters: multi-byte UTF-8 before a literal does not shift it.
//!
//! Spans sqlparser gives for values are those of their tokens; spans of casts and typed strings
//! cover only the inner value. So every extent used for a seal site is checked against the
//! token stream, and where a wrapper's end is not marked by a token (the type of `::type`),
//! candidate extents are re-parsed and compared with the AST node: an extent is only used when
//! the text it covers parses back to the same expression.

use std::ops::Range;

use sqlparser::ast::Expr;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};

/// Deepest recursion the re-parsing checks allow (they parse short slices only).
const REPARSE_MAX_TOKENS: usize = 24;

/// One non-whitespace token and its byte range.
#[derive(Clone, Debug)]
pub(crate) struct Tok {
    /// The token.
    pub token: Token,
    /// Its bytes in the text.
    pub range: Range<usize>,
}

/// A statement text with its line index and tokens.
pub(crate) struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// For each line holding non-ASCII text, the byte offset (from the line start) of each
    /// character, so a column converts in O(1) whatever the line's length (an application's
    /// multi-row INSERT is one long line).
    char_offsets: Vec<Option<Vec<usize>>>,
    tokens: Vec<Tok>,
}

impl<'a> Source<'a> {
    /// Tokenizes `text` the way the parser does (PostgreSQL dialect). Fails only where the
    /// parser would fail too.
    pub fn new(text: &'a str) -> Result<Self, String> {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let char_offsets = line_starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = line_starts.get(i + 1).copied().unwrap_or(text.len());
                let line = text.get(start..end).unwrap_or("");
                (!line.is_ascii()).then(|| line.char_indices().map(|(at, _)| at).collect())
            })
            .collect();
        let mut source = Source {
            text,
            line_starts,
            char_offsets,
            tokens: Vec::new(),
        };
        let raw = Tokenizer::new(&PostgreSqlDialect {}, text)
            .tokenize_with_location()
            .map_err(|e| e.to_string())?;
        let mut tokens = Vec::with_capacity(raw.len());
        for t in raw {
            if matches!(t.token, Token::Whitespace(_)) {
                continue;
            }
            // A token whose location cannot be converted is dropped: nothing can be located
            // against it, so any site that needs it is refused.
            if let Some(range) = source.range(t.span) {
                tokens.push(Tok {
                    token: t.token,
                    range,
                });
            }
        }
        source.tokens = tokens;
        Ok(source)
    }

    /// The whole text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The non-whitespace tokens, in order.
    pub fn tokens(&self) -> &[Tok] {
        &self.tokens
    }

    /// The byte offset of a location; `None` for the empty location (line 0) or one outside
    /// the text.
    pub fn offset(&self, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(line)?;
        let end = self
            .line_starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.text.len());
        match self.char_offsets.get(line)? {
            None if start + column <= end => Some(start + column),
            None => None,
            Some(offsets) => match offsets.get(column) {
                Some(at) => Some(start + at),
                // Just past the last character of the line (an end location).
                None if offsets.len() == column => Some(end),
                None => None,
            },
        }
    }

    /// The byte range of a span; `None` when either end is unknown or they are reversed.
    pub fn range(&self, span: Span) -> Option<Range<usize>> {
        let start = self.offset(span.start)?;
        let end = self.offset(span.end)?;
        (start <= end).then_some(start..end)
    }

    /// The index of the token starting exactly at `start`.
    pub fn token_at(&self, start: usize) -> Option<usize> {
        self.tokens
            .binary_search_by(|t| t.range.start.cmp(&start))
            .ok()
    }

    /// The index of the token ending exactly at `end`.
    pub fn token_ending_at(&self, end: usize) -> Option<usize> {
        let i = self.tokens.partition_point(|t| t.range.end < end);
        (self.tokens.get(i)?.range.end == end).then_some(i)
    }

    /// The token at an index.
    pub fn tok(&self, index: usize) -> Option<&Tok> {
        self.tokens.get(index)
    }

    /// The text of a byte range (empty if the range is not on character boundaries).
    pub fn slice(&self, range: &Range<usize>) -> &'a str {
        self.text.get(range.clone()).unwrap_or("")
    }

    /// The extent of `( inner )`: the parentheses tokens just around `inner`.
    pub fn parenthesized(&self, inner: &Range<usize>) -> Option<Range<usize>> {
        let first = self.token_at(inner.start)?;
        let last = self.token_ending_at(inner.end)?;
        let open = self.tok(first.checked_sub(1)?)?;
        let close = self.tok(last + 1)?;
        (open.token == Token::LParen && close.token == Token::RParen)
            .then_some(open.range.start..close.range.end)
    }

    /// The extent of `inner::type` (type included), checked by re-parsing against `cast`.
    pub fn double_colon_cast_end(&self, inner: &Range<usize>, cast: &Expr) -> Option<usize> {
        let last = self.token_ending_at(inner.end)?;
        if self.tok(last + 1)?.token != Token::DoubleColon {
            return None;
        }
        let limit = (last + 2 + REPARSE_MAX_TOKENS).min(self.tokens.len());
        (last + 2..limit)
            .map(|j| self.tokens[j].range.end)
            .find(|&end| self.parses_to(&(inner.start..end), cast))
    }

    /// The extent of `CAST( inner AS type )`, checked by re-parsing against `cast`.
    pub fn cast_call_extent(&self, inner: &Range<usize>, cast: &Expr) -> Option<Range<usize>> {
        let first = self.token_at(inner.start)?;
        let open = first.checked_sub(1)?;
        let keyword = open.checked_sub(1)?;
        if self.tok(open)?.token != Token::LParen {
            return None;
        }
        match &self.tok(keyword)?.token {
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("cast") => {}
            _ => return None,
        }
        let mut depth = 1usize;
        let mut close = None;
        for (i, t) in self.tokens.iter().enumerate().skip(first) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let extent = self.tokens[keyword].range.start..self.tokens[close?].range.end;
        self.parses_to(&extent, cast).then_some(extent)
    }

    /// The start of `TYPE 'literal'` (the type's first token), checked by re-parsing.
    pub fn typed_string_start(&self, literal: &Range<usize>, typed: &Expr) -> Option<usize> {
        let first = self.token_at(literal.start)?;
        (first.saturating_sub(8)..first)
            .rev()
            .map(|j| self.tokens[j].range.start)
            .find(|&start| self.parses_to(&(start..literal.end), typed))
    }

    /// The start of the `-` sign token just before `number`.
    pub fn minus_before(&self, number: &Range<usize>) -> Option<usize> {
        let first = self.token_at(number.start)?;
        let sign = self.tok(first.checked_sub(1)?)?;
        (sign.token == Token::Minus).then_some(sign.range.start)
    }

    /// True when the text of `range` parses, whole, to an expression equal to `expected`
    /// (spans are ignored by sqlparser's equality).
    fn parses_to(&self, range: &Range<usize>, expected: &Expr) -> bool {
        let Some(slice) = self.text.get(range.clone()) else {
            return false;
        };
        let Ok(mut parser) = Parser::new(&PostgreSqlDialect {}).try_with_sql(slice) else {
            return false;
        };
        match parser.parse_expr() {
            Ok(parsed) => parser.peek_token().token == Token::EOF && parsed == *expected,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(line: u64, column: u64) -> Location {
        Location { line, column }
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        let text = "SELECT 'é😀' ,\n  'x'";
        let source = Source::new(text).unwrap();
        // 'x' starts on line 2, column 3.
        let start = source.offset(loc(2, 3)).unwrap();
        assert_eq!(&text[start..start + 3], "'x'");
        // The comma after a 2-char literal holding multi-byte characters.
        let comma = source.offset(loc(1, 13)).unwrap();
        assert_eq!(&text[comma..comma + 1], ",");
        assert_eq!(source.offset(loc(0, 0)), None);
        assert_eq!(source.offset(loc(9, 1)), None);
        assert_eq!(source.offset(loc(2, 6)), Some(text.len()));
        assert_eq!(source.offset(loc(2, 7)), None);
    }

    #[test]
    fn tokens_have_exact_byte_ranges() {
        let text = "select 'àé' /* ü */ , \"Ü\"";
        let source = Source::new(text).unwrap();
        let texts: Vec<&str> = source
            .tokens()
            .iter()
            .map(|t| &text[t.range.clone()])
            .collect();
        assert_eq!(texts, ["select", "'àé'", ",", "\"Ü\""]);
    }
}
