//! The HMAC chain: how a record becomes a line, and how a line is checked.
//!
//! A record's *body* is a JSON object beginning `{"seq":N,"type":…`. Its line is the body with
//! `,"mac":"<64 hex digits>"}` in place of the closing brace, where
//! `mac = HMAC-SHA256(audit key, previous line's mac ‖ body)`; the first record of a new chain
//! follows 32 zero bytes. Checking a line needs no JSON re-serialisation: the body is the line
//! minus its last 74 bytes, plus `}` — so any edited byte, anywhere, breaks the MAC.

use pgseal_keys::{AUDIT_MAC_LEN, AuditKey};

/// The MAC a new chain's first record follows.
pub(crate) const GENESIS: [u8; AUDIT_MAC_LEN] = [0; AUDIT_MAC_LEN];
/// `,"mac":"` + 64 hex digits + `"}`.
const SUFFIX_LEN: usize = 8 + 2 * AUDIT_MAC_LEN + 2;

/// The body of a record: `{"seq":N,"type":"KIND"` then the fields of `object` (a serialised
/// JSON object), or nothing more when it is empty.
pub(crate) fn body(seq: u64, kind: &str, object: &str) -> String {
    let fields = object
        .strip_prefix('{')
        .and_then(|o| o.strip_suffix('}'))
        .unwrap_or("");
    if fields.trim().is_empty() {
        format!("{{\"seq\":{seq},\"type\":\"{kind}\"}}")
    } else {
        format!("{{\"seq\":{seq},\"type\":\"{kind}\",{fields}}}")
    }
}

/// Seals a body into its line (without the newline), returning the line and its MAC.
pub(crate) fn seal(
    key: &AuditKey,
    previous: &[u8; AUDIT_MAC_LEN],
    body: &str,
) -> (String, [u8; AUDIT_MAC_LEN]) {
    let mac = key.mac(&[previous, body.as_bytes()]);
    let mut line = String::with_capacity(body.len() + SUFFIX_LEN);
    line.push_str(&body[..body.len() - 1]);
    line.push_str(",\"mac\":\"");
    line.push_str(&hex(&mac));
    line.push_str("\"}");
    (line, mac)
}

/// Splits a line into its body and the MAC it carries; `None` when it does not end with one.
pub(crate) fn split(line: &str) -> Option<(String, [u8; AUDIT_MAC_LEN])> {
    if line.len() < SUFFIX_LEN + 2 || !line.is_char_boundary(line.len() - SUFFIX_LEN) {
        return None;
    }
    let (head, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    let digits = suffix.strip_prefix(",\"mac\":\"")?.strip_suffix("\"}")?;
    let mac = unhex(digits)?;
    Some((format!("{head}}}"), mac))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Exactly 64 lower-case hex digits into a MAC.
pub(crate) fn unhex(text: &str) -> Option<[u8; AUDIT_MAC_LEN]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * AUDIT_MAC_LEN {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; AUDIT_MAC_LEN];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let key = pgseal_keys::Keyring::from_root_key_str(&"A".repeat(43))
            .unwrap()
            .audit_key();
        let b = body(7, "statement", r#"{"role":"x","rows":3}"#);
        assert_eq!(b, r#"{"seq":7,"type":"statement","role":"x","rows":3}"#);
        assert_eq!(body(1, "start", "{}"), r#"{"seq":1,"type":"start"}"#);
        let (line, mac) = seal(&key, &GENESIS, &b);
        assert!(line.starts_with(r#"{"seq":7,"type":"statement","role":"x","rows":3,"mac":""#));
        let (back, carried) = split(&line).unwrap();
        assert_eq!(back, b);
        assert_eq!(carried, mac);
        assert!(key.verify(&[&GENESIS, back.as_bytes()], &carried));
        for bad in [
            "",
            "{}",
            &line[..line.len() - 1],
            &line.replace("\"mac\"", "\"mak\""),
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
        assert_eq!(unhex(&hex(&mac)), Some(mac));
        assert_eq!(unhex(&hex(&mac).to_uppercase()), None);
    }
}
