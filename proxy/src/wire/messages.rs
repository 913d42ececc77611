//! The messages pgseal writes on its own account: errors, its own BackendKeyData, cancel and
//! TLS requests, Terminate.

use bytes::{Bytes, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{BackendKeyData, SecretKey};

/// The code of an SSLRequest packet.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// The code of a GSSENCRequest packet.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// The code of a CancelRequest packet.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// How serious an error pgseal reports is, as PostgreSQL names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An ErrorResponse frame with a severity, a SQLSTATE and a message (and an optional hint).
pub fn error_response(
    severity: Severity,
    sqlstate: &str,
    message: &str,
    hint: Option<&str>,
) -> Bytes {
    let mut fields = vec![
        (b'S', severity.as_str().to_string()),
        (b'V', severity.as_str().to_string()),
        (b'C', sqlstate.to_string()),
        (b'M', message.to_string()),
    ];
    if let Some(hint) = hint {
        fields.push((b'H', hint.to_string()));
    }
    encode(&ErrorResponse::new(fields))
}

/// The BackendKeyData pgseal gives its client in place of the server's.
pub fn backend_key_data(pid: i32, secret: &[u8]) -> Bytes {
    encode(&BackendKeyData::new(
        pid,
        SecretKey::Bytes(Bytes::copy_from_slice(secret)),
    ))
}

/// A CancelRequest packet for a server backend.
pub fn cancel_request(pid: i32, secret: &[u8]) -> Bytes {
    encode(&CancelRequest::new(
        pid,
        SecretKey::Bytes(Bytes::copy_from_slice(secret)),
    ))
}

/// An SSLRequest packet.
pub fn ssl_request() -> [u8; 8] {
    let mut packet = [0u8; 8];
    packet[..4].copy_from_slice(&8i32.to_be_bytes());
    packet[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    packet
}

/// A Terminate frame.
pub const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

fn encode(message: &impl Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(message.message_length() + 1);
    // pgwire refuses only secret keys outside 4..=256 bytes and messages over its size limits,
    // neither of which pgseal builds; an empty frame (nothing sent) is the safe outcome anyway.
    match message.encode(&mut buf) {
        Ok(()) => buf.freeze(),
        Err(_) => {
            debug_assert!(false, "pgseal built an unencodable message");
            Bytes::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::messages::DecodeContext;

    #[test]
    fn error_response_round_trips_through_pgwire() {
        let frame = error_response(
            Severity::Fatal,
            "53300",
            "sorry, too many clients already",
            None,
        );
        let mut buf = BytesMut::from(&frame[..]);
        let decoded = ErrorResponse::decode(&mut buf, &DecodeContext::default())
            .unwrap()
            .unwrap();
        assert!(decoded.fields.contains(&(b'C', "53300".to_string())));
        assert!(decoded.fields.contains(&(b'S', "FATAL".to_string())));
    }

    #[test]
    fn backend_key_data_has_the_given_pid_and_secret() {
        let frame = backend_key_data(4242, &[1, 2, 3, 4]);
        assert_eq!(
            &frame[..],
            &[b'K', 0, 0, 0, 12, 0, 0, 0x10, 0x92, 1, 2, 3, 4]
        );
    }

    #[test]
    fn ssl_request_is_the_documented_packet() {
        assert_eq!(ssl_request(), [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    }
}
