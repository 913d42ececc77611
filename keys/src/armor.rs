//! Text armor for envelopes stored in `text` columns.
//!
//! `pgs1:` followed by the envelope *after* its 4-byte magic and format (`pgs` 0x01, which the
//! prefix already says), in URL-safe base64 without padding (RFC 4648 §5: `A–Z a–z 0–9 - _`).
//! The armor contains no quote, backslash, comma, space, tab or newline, so it travels unchanged
//! inside SQL string literals, `COPY` text and CSV, JSON and URLs. Decoding is canonical (no
//! padding, no stray trailing bits), so one envelope has exactly one armor and deterministic
//! values can be compared as text.
//!
//! A column with search indexes stores its search tokens after the armor: `~`, a tag naming
//! the index settings and key the tokens were made with, `~`, then the tokens joined by `.`
//! (`pgs1:…~sQ3x_~pAb.tXy`). Tag and tokens use the same URL-safe alphabet, so the whole value
//! keeps the armor's travelling properties; opening a value ignores them, and the database
//! reads the tokens with `string_to_array(split_part(value, '~', 3), '.')` for its index and
//! the tag with `split_part(value, '~', 2)` for the CHECK saying the index is complete.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::envelope::{self, FORMAT_VERSION, MAGIC};
use crate::error::{Error, Result};

/// The prefix of every armored value of the current format.
pub const PREFIX: &str = "pgs1:";

/// What separates the armor, the search tag and the search tokens.
pub const TOKENS_SEPARATOR: char = '~';

/// What separates two search tokens.
pub const TOKEN_SEPARATOR: char = '.';

/// Appends a search tag and its tokens (already joined by [`TOKEN_SEPARATOR`], possibly none)
/// to an armored envelope.
pub fn with_tokens(mut armored: String, tag: &str, tokens: &str) -> String {
    armored.reserve(tag.len() + tokens.len() + 2);
    armored.push(TOKENS_SEPARATOR);
    armored.push_str(tag);
    armored.push(TOKENS_SEPARATOR);
    armored.push_str(tokens);
    armored
}

/// Splits a stored value into its armor and what follows it (`tag~tokens`, `None` when it has
/// no search tokens).
pub fn split_tokens(text: &[u8]) -> (&[u8], Option<&[u8]>) {
    match text.iter().position(|&b| b == TOKENS_SEPARATOR as u8) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

/// The search tag of a stored value (`None` when it has no search tokens).
pub fn search_tag(text: &[u8]) -> Option<&[u8]> {
    let (_, rest) = split_tokens(text);
    let rest = rest?;
    let end = rest
        .iter()
        .position(|&b| b == TOKENS_SEPARATOR as u8)
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn is_token_char(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'
}

/// Whether what follows an armor is well formed: a tag, `~`, then tokens of the URL-safe
/// alphabet joined by [`TOKEN_SEPARATOR`] (none empty; no token at all is allowed).
fn tokens_well_formed(rest: &[u8]) -> bool {
    let Some(at) = rest.iter().position(|&b| b == TOKENS_SEPARATOR as u8) else {
        return false;
    };
    let (tag, tokens) = (&rest[..at], &rest[at + 1..]);
    !tag.is_empty()
        && tag.iter().all(is_token_char)
        && (tokens.is_empty()
            || tokens
                .split(|&b| b == TOKEN_SEPARATOR as u8)
                .all(|token| !token.is_empty() && token.iter().all(is_token_char)))
}

/// Armors a binary envelope. The input must be an envelope (it starts with the magic).
pub(crate) fn encode(envelope: &[u8]) -> String {
    debug_assert!(envelope.starts_with(&MAGIC));
    let body = &envelope[MAGIC.len() + 1..];
    let mut out = String::with_capacity(PREFIX.len() + body.len().div_ceil(3) * 4);
    out.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(body, &mut out);
    out
}

/// Turns an armored value back into its binary envelope (shape only; nothing is decrypted).
pub fn decode(text: &str) -> Result<Vec<u8>> {
    decode_bytes(text.as_bytes())
}

/// [`decode`] of text given as bytes: anything but the ASCII armor is refused the same way.
/// Search tokens after the armor are ignored (they take no part in opening; their shape is
/// checked by [`is_sealed_text`], not on every read).
pub fn decode_bytes(text: &[u8]) -> Result<Vec<u8>> {
    let (text, _) = split_tokens(text);
    let rest = match text.strip_prefix(PREFIX.as_bytes()) {
        Some(rest) => rest,
        None => return Err(other_prefix_error(text)),
    };
    // What the base64 engine reserves before decoding, so that it never reallocates.
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + rest.len().div_ceil(4) * 3);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    URL_SAFE_NO_PAD
        .decode_vec(rest, &mut out)
        .map_err(|_| Error::Malformed("armor is not canonical URL-safe base64"))?;
    Ok(out)
}

/// Tells a future format (`pgs2:`…) from text that is not armored at all.
fn other_prefix_error(bytes: &[u8]) -> Error {
    if bytes.len() >= 5 && bytes.starts_with(b"pgs") && bytes[4] == b':' {
        if let Some(digit) = (bytes[3] as char).to_digit(10) {
            return Error::UnsupportedFormat(digit as u8);
        }
    }
    Error::Malformed("text does not start with the pgs1: armor prefix")
}

/// Whether `text` is an armored envelope this crate can read (prefix, base64 and envelope shape
/// are right). Like [`crate::is_sealed`], it needs no keys and tells sealed values from
/// plaintext, e.g. to migrate a `text` column in place.
pub fn is_sealed_text(text: &str) -> bool {
    let (_, tokens) = split_tokens(text.as_bytes());
    text.starts_with(PREFIX)
        && tokens.is_none_or(tokens_well_formed)
        && decode(text).is_ok_and(|bytes| envelope::is_sealed(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Mode, NONCE_LEN, TAG_LEN, write_header};

    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, Mode::Randomized, 7, [0xfb, 0xff], [0x3e, 0x3f]);
        out.extend((0..NONCE_LEN + TAG_LEN + len).map(|i| (i * 37) as u8));
        out
    }

    #[test]
    fn bytes_that_are_not_the_ascii_armor_are_refused_like_text() {
        let text = encode(&sample(3));
        assert_eq!(decode_bytes(text.as_bytes()).unwrap(), sample(3));
        let mut foreign = text.clone().into_bytes();
        foreign.push(0xe9);
        assert!(matches!(decode_bytes(&foreign), Err(Error::Malformed(_))));
        assert!(matches!(
            decode_bytes(b"pgs1:\xff\xfe"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_bytes(b"\xffpgs1:"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_bytes(b"pgs2:AAAA"),
            Err(Error::UnsupportedFormat(2))
        ));
    }

    #[test]
    fn round_trip_and_safe_alphabet() {
        for len in 0..40 {
            let env = sample(len);
            let text = encode(&env);
            assert!(text.starts_with(PREFIX));
            assert!(
                text[PREFIX.len()..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(decode(&text).unwrap(), env);
            assert!(is_sealed_text(&text));
        }
    }

    #[test]
    fn search_tokens_after_the_armor_are_ignored_when_opening() {
        let env = sample(5);
        let text = with_tokens(encode(&env), "sQ3x_", "pAb.tXy-_.e0");
        assert!(text.ends_with("~sQ3x_~pAb.tXy-_.e0"));
        assert_eq!(decode(&text).unwrap(), env);
        assert!(is_sealed_text(&text));
        assert_eq!(search_tag(text.as_bytes()), Some(&b"sQ3x_"[..]));
        assert_eq!(search_tag(encode(&env).as_bytes()), None);
        let none = with_tokens(encode(&env), "sQ3x_", "");
        assert!(none.ends_with("~sQ3x_~") && is_sealed_text(&none));
        let (armor, rest) = split_tokens(text.as_bytes());
        assert_eq!(armor, encode(&env).as_bytes());
        assert_eq!(rest, Some(&b"sQ3x_~pAb.tXy-_.e0"[..]));
        for bad in [
            "~", "~~", "~s", "~s~a..b", "~s~a.", "~s~a b", "~s~a~b", "~s~a,b", "~~a",
        ] {
            let text = format!("{}{bad}", encode(&env));
            // Opening ignores what follows the armor; telling a sealed value does not.
            assert_eq!(decode(&text).unwrap(), env, "{text}");
            assert!(!is_sealed_text(&text), "{text}");
        }
    }

    #[test]
    fn non_armor_is_told_apart() {
        assert!(!is_sealed_text("hello"));
        assert!(!is_sealed_text("pgs1:"));
        assert!(!is_sealed_text("pgs1:not base64!"));
        assert!(!is_sealed_text("pgs1:AAAA"));
        assert!(matches!(decode("hello"), Err(Error::Malformed(_))));
        assert!(matches!(
            decode("pgs2:AAAA"),
            Err(Error::UnsupportedFormat(2))
        ));
        // Non-canonical: padding, or the standard alphabet's '+' and '/'.
        let text = encode(&sample(1));
        assert!(matches!(
            decode(&format!("{text}=")),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode(&format!("{text}+/")),
            Err(Error::Malformed(_))
        ));
    }
}
