//! `LIKE` and `ILIKE` as PostgreSQL 15 evaluates them in a UTF-8 database
//! (`src/backend/utils/adt/like.c` and `like_match.c`).
//!
//! `%` matches any sequence of characters, `_` exactly one character (a code point), and the
//! escape character (backslash unless an `ESCAPE` clause says otherwise; none with
//! `ESCAPE ''`) makes the next character literal. As in PostgreSQL, an `ESCAPE` clause is
//! first turned into a backslash pattern (`like_escape`), then matched; `ILIKE` lowers both the
//! value and that pattern with the collation's `lower()` and matches them case-sensitively, so
//! under C only ASCII letters fold (`'É' ILIKE 'é'` is false there, true under ICU).
//!
//! A pattern ending with the escape character is an error (22025) only where PostgreSQL's
//! matcher reaches that character with text left to match: `'abc' LIKE 'abc\'` is false,
//! `'abcd' LIKE 'abc\'` is the error. The matcher here follows PostgreSQL's search — each
//! `%` takes the leftmost place where the literal run after it matches, the same places
//! PostgreSQL commits to — but iteratively: the work is bounded by the value's length times
//! the pattern's, with no recursion and no exponential backtracking. Patterns come from
//! clients, so they are limited to [`MAX_PATTERN_BYTES`].

use std::borrow::Cow;

use thiserror::Error;
use zeroize::Zeroize;

use super::collation::TextOrder;

/// The longest pattern pgseal evaluates, in bytes (PostgreSQL has no such limit; the matcher's
/// work grows with the pattern's length times the value's).
pub const MAX_PATTERN_BYTES: usize = 16 * 1024;

/// Why a pattern cannot be matched, with PostgreSQL's SQLSTATE ([`PatternError::sqlstate`]).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PatternError {
    /// The matcher reached an escape character that ends the pattern.
    #[error("LIKE pattern must not end with escape character")]
    TrailingEscape,
    /// An `ESCAPE` clause of more than one character.
    #[error("invalid escape string: escape string must be empty or one character")]
    InvalidEscape,
    /// A pattern longer than [`MAX_PATTERN_BYTES`].
    #[error(
        "LIKE pattern too long for pgseal to evaluate ({0} bytes, at most {MAX_PATTERN_BYTES})"
    )]
    TooLong(usize),
}

impl PatternError {
    /// The SQLSTATE PostgreSQL reports for the same pattern (22025 for both escape errors),
    /// or 54000 (program limit exceeded) for a pattern past pgseal's limit.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            PatternError::TrailingEscape | PatternError::InvalidEscape => "22025",
            PatternError::TooLong(_) => "54000",
        }
    }
}

/// The escape character of a pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escape {
    /// No `ESCAPE` clause: backslash.
    #[default]
    Backslash,
    /// `ESCAPE ''`: no escape character, backslash is an ordinary character.
    Disabled,
    /// `ESCAPE 'c'`.
    Char(char),
}

impl Escape {
    /// The escape of an `ESCAPE` clause's text: empty disables escaping, one character is the
    /// escape, more is PostgreSQL's "invalid escape string" (22025).
    pub fn from_clause(text: &str) -> Result<Escape, PatternError> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (None, _) => Ok(Escape::Disabled),
            (Some(c), None) => Ok(Escape::Char(c)),
            (Some(_), Some(_)) => Err(PatternError::InvalidEscape),
        }
    }
}

/// `value LIKE pattern [ESCAPE …]`.
pub fn like(value: &str, pattern: &str, escape: Escape) -> Result<bool, PatternError> {
    Pattern::new(pattern, escape, None)?.is_match(value, None)
}

/// `value ILIKE pattern [ESCAPE …]` under `order`: both lowered with `order.lower()`, then
/// matched as `LIKE`.
pub fn ilike(
    value: &str,
    pattern: &str,
    escape: Escape,
    order: &TextOrder,
) -> Result<bool, PatternError> {
    Pattern::new(pattern, escape, Some(order))?.is_match(value, Some(order))
}

/// A `LIKE` or `ILIKE` pattern read once, to match many values: its `ESCAPE` applied and, for
/// `ILIKE`, lowered under the collation. (A search box's pattern is the same for every row.)
#[derive(Debug)]
pub struct Pattern {
    tokens: Vec<Token>,
    /// `ILIKE`: values are lowered before matching.
    insensitive: bool,
}

impl Pattern {
    /// Reads a pattern: `LIKE`'s when `insensitive` is `None`, `ILIKE`'s under that collation.
    pub fn new(
        pattern: &str,
        escape: Escape,
        insensitive: Option<&TextOrder>,
    ) -> Result<Pattern, PatternError> {
        let pattern = backslash_pattern(pattern, escape)?;
        let tokens = match insensitive {
            Some(order) => {
                let lowered = order.lower(&pattern);
                check_length(&lowered)?;
                tokens(&lowered)
            }
            None => tokens(&pattern),
        };
        Ok(Pattern {
            tokens,
            insensitive: insensitive.is_some(),
        })
    }

    /// Whether `value` matches; an `ILIKE` pattern lowers it under `order` (the collation the
    /// pattern was lowered under; `None` matches it as written).
    pub fn is_match(&self, value: &str, order: Option<&TextOrder>) -> Result<bool, PatternError> {
        let Some(order) = order.filter(|_| self.insensitive) else {
            return matches(value, &self.tokens);
        };
        let lowered = order.lower(value);
        let result = matches(&lowered, &self.tokens);
        if let Cow::Owned(mut copy) = lowered {
            copy.zeroize();
        }
        result
    }
}

fn check_length(pattern: &str) -> Result<(), PatternError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        Err(PatternError::TooLong(pattern.len()))
    } else {
        Ok(())
    }
}

/// PostgreSQL's `like_escape`: the pattern rewritten with backslash as its escape. With no
/// escape, backslashes are doubled; with another character, its unescaped occurrences become
/// backslashes and literal backslashes are doubled.
fn backslash_pattern(pattern: &str, escape: Escape) -> Result<Cow<'_, str>, PatternError> {
    check_length(pattern)?;
    let escape = match escape {
        Escape::Backslash | Escape::Char('\\') => return Ok(Cow::Borrowed(pattern)),
        Escape::Disabled => None,
        Escape::Char(c) => Some(c),
    };
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut after_escape = false;
    for c in pattern.chars() {
        if Some(c) == escape && !after_escape {
            out.push('\\');
            after_escape = true;
        } else if c == '\\' {
            out.push('\\');
            if !after_escape {
                out.push('\\');
            }
            after_escape = false;
        } else {
            out.push(c);
            after_escape = false;
        }
    }
    check_length(&out)?;
    Ok(Cow::Owned(out))
}

/// One element of a backslash pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// A character to match literally (escaped or not).
    Literal(char),
    /// `_`.
    One,
    /// `%`.
    Any,
    /// A backslash ending the pattern.
    Dangling,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => chars.next().map_or(Token::Dangling, Token::Literal),
            '%' => Token::Any,
            '_' => Token::One,
            c => Token::Literal(c),
        });
    }
    out
}

/// How matching a run of the pattern at one place in the text ended (`MatchText`'s results).
enum Run {
    /// The whole value matches (`LIKE_TRUE`).
    Match,
    /// No match here, try further on (`LIKE_FALSE`).
    Mismatch,
    /// No match here nor anywhere later (`LIKE_ABORT`).
    Abort,
    /// The run matched up to a `%` with text left: PostgreSQL commits to this place.
    Percent {
        /// Byte offset in the text.
        at: usize,
        /// Index of the `%` token.
        token: usize,
    },
}

/// Matches the tokens from `token` against the text from byte `at`, anchored, up to the next
/// `%` (the main loop of PostgreSQL's `MatchText`).
fn run(text: &str, mut at: usize, tokens: &[Token], mut token: usize) -> Result<Run, PatternError> {
    loop {
        let rest = text.get(at..).unwrap_or_default();
        let Some(&current) = tokens.get(token) else {
            // End of pattern: a match only at the end of the text.
            return Ok(if rest.is_empty() {
                Run::Match
            } else {
                Run::Mismatch
            });
        };
        let Some(c) = rest.chars().next() else {
            // End of text: a match only if what remains of the pattern is all `%`.
            let all_any = tokens
                .get(token..)
                .unwrap_or_default()
                .iter()
                .all(|t| *t == Token::Any);
            return Ok(if all_any { Run::Match } else { Run::Abort });
        };
        match current {
            Token::Dangling => return Err(PatternError::TrailingEscape),
            Token::Any => return Ok(Run::Percent { at, token }),
            Token::One => {}
            Token::Literal(expected) => {
                if expected != c {
                    return Ok(Run::Mismatch);
                }
            }
        }
        at += c.len_utf8();
        token += 1;
    }
}

/// Whether `text` matches the pattern's tokens, as PostgreSQL's `MatchText` decides it.
fn matches(text: &str, tokens: &[Token]) -> Result<bool, PatternError> {
    let (mut at, mut token) = match run(text, 0, tokens, 0)? {
        Run::Match => return Ok(true),
        Run::Mismatch | Run::Abort => return Ok(false),
        Run::Percent { at, token } => (at, token),
    };
    loop {
        // A run of `%` and `_` after a `%`: the `_` take one character each.
        while let Some(&t) = tokens.get(token) {
            match t {
                Token::Any => {}
                Token::One => match text.get(at..).unwrap_or_default().chars().next() {
                    Some(c) => at += c.len_utf8(),
                    None => return Ok(false),
                },
                Token::Literal(_) | Token::Dangling => break,
            }
            token += 1;
        }
        let first = match tokens.get(token) {
            None => return Ok(true),
            Some(Token::Dangling) => return Err(PatternError::TrailingEscape),
            Some(Token::Literal(c)) => *c,
            Some(Token::Any | Token::One) => return Ok(false),
        };
        // The leftmost place where the run after the `%` matches.
        let mut next = None;
        for (offset, c) in text.get(at..).unwrap_or_default().char_indices() {
            if c != first {
                continue;
            }
            match run(text, at + offset, tokens, token)? {
                Run::Match => return Ok(true),
                Run::Abort => return Ok(false),
                Run::Mismatch => continue,
                Run::Percent { at, token } => {
                    next = Some((at, token));
                    break;
                }
            }
        }
        match next {
            Some((next_at, next_token)) => (at, token) = (next_at, next_token),
            None => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like_default(value: &str, pattern: &str) -> Result<bool, PatternError> {
        like(value, pattern, Escape::Backslash)
    }

    #[test]
    fn wildcards() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "%", true),
            ("", "%%", true),
            ("", "_", false),
            ("a", "", false),
            ("a", "_", true),
            ("é", "_", true),
            ("é", "__", false),
            ("日本", "__", true),
            ("Dupont", "Dup%", true),
            ("Dupont", "dup%", false),
            ("Dupont", "%ont", true),
            ("Dupont", "%pon%", true),
            ("Dupont", "D_p_n_", true),
            ("Dupont", "D%t", true),
            ("Dupont", "D%x", false),
            ("Dupontt", "%t", true),
            ("aaa", "%a%a%a%", true),
            ("aa", "%a%a%a%", false),
            ("abcabc", "%bc", true),
            ("abcabd", "%bc%d", true),
            ("Mississippi", "%ss%pp_", true),
            ("Mississippi", "M%ss_ss%", true),
            ("ab", "%_%_%_", false),
            ("abc", "%_%_%_", true),
            ("abc", "a%%%c", true),
            ("a%c", "a\\%c", true),
            ("abc", "a\\%c", false),
            ("a_c", "a\\_c", true),
            ("abc", "a\\_c", false),
            ("a\\c", "a\\\\c", true),
            ("abc", "\\a\\b\\c", true),
        ];
        for (value, pattern, expected) in cases {
            assert_eq!(
                like_default(value, pattern),
                Ok(*expected),
                "{value:?} LIKE {pattern:?}"
            );
        }
    }

    #[test]
    fn trailing_escape_is_an_error_only_where_the_matcher_reaches_it() {
        let cases: &[(&str, &str, Result<bool, PatternError>)] = &[
            ("abc", "abc\\", Ok(false)),
            ("abcd", "abc\\", Err(PatternError::TrailingEscape)),
            ("abc", "x\\", Ok(false)),
            ("", "\\", Ok(false)),
            ("a", "\\", Err(PatternError::TrailingEscape)),
            ("a", "%\\", Err(PatternError::TrailingEscape)),
            ("", "%\\", Ok(false)),
            ("abcd", "%c\\", Err(PatternError::TrailingEscape)),
            ("abc", "%c\\", Ok(false)),
            ("abc", "%x\\", Ok(false)),
            ("ab", "%__\\", Err(PatternError::TrailingEscape)),
            ("a", "%__\\", Ok(false)),
            ("abc", "abc%\\", Ok(false)),
            ("abcd", "abc%\\", Err(PatternError::TrailingEscape)),
        ];
        for (value, pattern, expected) in cases {
            assert_eq!(
                &like_default(value, pattern),
                expected,
                "{value:?} LIKE {pattern:?}"
            );
        }
        assert_eq!(PatternError::TrailingEscape.sqlstate(), "22025");
    }

    #[test]
    fn escape_clauses() {
        assert_eq!(Escape::from_clause(""), Ok(Escape::Disabled));
        assert_eq!(Escape::from_clause("#"), Ok(Escape::Char('#')));
        assert_eq!(Escape::from_clause("é"), Ok(Escape::Char('é')));
        assert_eq!(Escape::from_clause("ab"), Err(PatternError::InvalidEscape));
        assert_eq!(PatternError::InvalidEscape.sqlstate(), "22025");
        let none = Escape::Disabled;
        assert_eq!(like("a\\b", "a\\b", none), Ok(true));
        assert_eq!(like("a%", "a\\%", none), Ok(false));
        assert_eq!(like("a\\", "a\\", none), Ok(true));
        assert_eq!(like("a\\xyz", "a\\%", none), Ok(true));
        let hash = Escape::Char('#');
        assert_eq!(like("50%", "50#%", hash), Ok(true));
        assert_eq!(like("500", "50#%", hash), Ok(false));
        assert_eq!(like("a#", "a##", hash), Ok(true));
        assert_eq!(like("a\\b", "a\\b", hash), Ok(true));
        assert_eq!(like("a\\", "a#\\", hash), Ok(true));
        assert_eq!(like("ab", "a#", hash), Err(PatternError::TrailingEscape));
        let e = Escape::Char('é');
        assert_eq!(like("é%", "éé%", e), Ok(true));
        assert_eq!(like("x", "x", e), Ok(true));
        assert_eq!(like("a\\b", "a\\b", Escape::Char('\\')), Ok(false));
    }

    #[test]
    fn ilike_folds_with_the_collation() {
        let c = TextOrder::bytes();
        let icu = TextOrder::icu("fr-FR").expect("fr-FR");
        assert_eq!(ilike("Dupont", "dup%", Escape::Backslash, &c), Ok(true));
        assert_eq!(ilike("É", "é", Escape::Backslash, &c), Ok(false));
        assert_eq!(ilike("É", "é", Escape::Backslash, &icu), Ok(true));
        assert_eq!(ilike("ÉCOLE", "%cole", Escape::Backslash, &icu), Ok(true));
        // İ lowers to i and a combining dot under ICU: two characters.
        assert_eq!(ilike("İ", "_", Escape::Backslash, &icu), Ok(false));
        assert_eq!(ilike("İ", "__", Escape::Backslash, &icu), Ok(true));
        assert_eq!(
            ilike("straße", "STRASSE", Escape::Backslash, &icu),
            Ok(false)
        );
        // The escape is applied before lowering: an upper-case escape still escapes.
        assert_eq!(ilike("a%", "AX%", Escape::Char('X'), &icu), Ok(true));
        assert_eq!(ilike("ab", "AX%", Escape::Char('X'), &icu), Ok(false));
    }

    #[test]
    fn long_patterns_are_refused_and_hard_ones_stay_fast() {
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert_eq!(
            like_default("a", &long),
            Err(PatternError::TooLong(MAX_PATTERN_BYTES + 1))
        );
        assert_eq!(PatternError::TooLong(0).sqlstate(), "54000");
        // Doubling every backslash may push a pattern past the limit.
        let slashes = "\\".repeat(MAX_PATTERN_BYTES / 2 + 1);
        assert!(like("a", &slashes, Escape::Disabled).is_err());
        // Exponential for naive backtracking; here bounded by text length times pattern length.
        let text = "a".repeat(5_000);
        let pattern = format!("{}b", "%a".repeat(2_000));
        let started = std::time::Instant::now();
        assert_eq!(like_default(&text, &pattern), Ok(false));
        assert!(started.elapsed().as_secs() < 5);
    }
}
