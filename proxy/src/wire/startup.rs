//! The untagged packets a client may open a connection with: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage.

use bytes::{Bytes, BytesMut};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::Startup;
use pgwire::messages::{DecodeContext, Message, ProtocolVersion};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::messages::{CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE};

/// The largest startup-phase packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// One packet of the startup phase, classified.
#[derive(Debug)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// The client asks to cancel the query running on another connection.
    Cancel {
        /// The process id the client was given.
        pid: i32,
        /// The secret key the client was given.
        secret: Bytes,
    },
    /// The StartupMessage that opens a session.
    Startup(StartupMessage),
}

/// A StartupMessage: its parameters, and its bytes to forward as they came.
#[derive(Debug)]
pub struct StartupMessage {
    /// The protocol version the client asked for, as (major, minor).
    pub version: (u16, u16),
    /// The role the client connects as.
    pub user: String,
    /// The database (PostgreSQL defaults it to the user name).
    pub database: String,
    /// The `application_name` parameter, if the client sent one.
    pub application_name: Option<String>,
    /// The packet as received, length included.
    pub raw: Bytes,
}

/// A startup packet that is not one PostgreSQL would accept.
#[derive(Debug, Error)]
pub enum StartupError {
    /// The length field is outside 8..=10000.
    #[error("invalid startup packet length {0}")]
    InvalidLength(i32),
    /// The packet is not one of the four known kinds, or is malformed.
    #[error("invalid startup packet: {0}")]
    Invalid(String),
    /// The protocol version is not 3.x.
    #[error("unsupported frontend protocol {0}.{1}: pgseal speaks protocol 3")]
    UnsupportedProtocol(u16, u16),
    /// The StartupMessage names no user.
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUser,
    /// The connection closed before its first byte (a port probe, a health check).
    #[error("the connection closed before a startup packet")]
    NoData,
    /// The connection failed or closed.
    #[error("reading the startup packet: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one startup-phase packet, exactly: not a byte more, so that a TLS handshake that
/// follows an SSLRequest starts on a clean stream (no plaintext can be injected before it).
pub async fn read_packet<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<StartupPacket, StartupError> {
    let mut length = [0u8; 4];
    if stream.read(&mut length[..1]).await? == 0 {
        return Err(StartupError::NoData);
    }
    stream.read_exact(&mut length[1..]).await?;
    let length = i32::from_be_bytes(length);
    if !(8..=MAX_STARTUP_PACKET as i32).contains(&length) {
        return Err(StartupError::InvalidLength(length));
    }
    let mut packet = BytesMut::zeroed(length as usize);
    packet[..4].copy_from_slice(&length.to_be_bytes());
    stream.read_exact(&mut packet[4..]).await?;
    classify(packet)
}

fn classify(packet: BytesMut) -> Result<StartupPacket, StartupError> {
    let code = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    match code {
        SSL_REQUEST_CODE => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            // Decoded as protocol 3.2 so that secrets of any valid length (4 to 256 bytes) are
            // kept as bytes.
            let context = DecodeContext::new(ProtocolVersion::PROTOCOL3_2);
            let mut buf = packet;
            match CancelRequest::decode(&mut buf, &context) {
                Ok(Some(cancel)) => Ok(StartupPacket::Cancel {
                    pid: cancel.pid,
                    secret: cancel.secret_key.to_bytes(),
                }),
                Ok(None) => Err(StartupError::Invalid("truncated cancel request".into())),
                Err(e) => Err(StartupError::Invalid(format!("cancel request: {e}"))),
            }
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol(major, minor));
            }
            let raw = packet.clone().freeze();
            let mut buf = packet;
            let startup = match Startup::decode(&mut buf, &DecodeContext::default()) {
                Ok(Some(startup)) => startup,
                Ok(None) => return Err(StartupError::Invalid("truncated startup message".into())),
                Err(e) => return Err(StartupError::Invalid(format!("startup message: {e}"))),
            };
            let user = startup
                .parameters
                .get("user")
                .filter(|u| !u.is_empty())
                .cloned()
                .ok_or(StartupError::NoUser)?;
            let database = startup
                .parameters
                .get("database")
                .filter(|d| !d.is_empty())
                .cloned()
                .unwrap_or_else(|| user.clone());
            Ok(StartupPacket::Startup(StartupMessage {
                version: (major, minor),
                application_name: startup.parameters.get("application_name").cloned(),
                user: as_server_reads(user),
                database: as_server_reads(database),
                raw,
            }))
        }
    }
}

/// The longest role or database name PostgreSQL keeps (`NAMEDATALEN - 1` bytes).
pub const MAX_NAME_BYTES: usize = 63;

/// A role or database name as the server reads it from the startup packet: cut to
/// [`MAX_NAME_BYTES`] bytes (PostgreSQL cuts bytes, even inside a character), so that pgseal's
/// policy lookups name what the server connects to. A cut inside a character leaves a
/// replacement character, which no valid name matches.
fn as_server_reads(name: String) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    String::from_utf8_lossy(&name.as_bytes()[..MAX_NAME_BYTES]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup_bytes(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend(body);
        packet
    }

    #[tokio::test]
    async fn reads_a_startup_message_and_keeps_its_bytes() {
        let bytes = startup_bytes(&[("user", "ehr_app"), ("application_name", "psql")]);
        let packet = read_packet(&mut &bytes[..]).await.unwrap();
        let StartupPacket::Startup(startup) = packet else {
            panic!("not a startup: {packet:?}")
        };
        assert_eq!(startup.user, "ehr_app");
        assert_eq!(startup.database, "ehr_app");
        assert_eq!(startup.application_name.as_deref(), Some("psql"));
        assert_eq!(&startup.raw[..], &bytes[..]);
    }

    #[tokio::test]
    async fn reads_ssl_and_cancel_requests() {
        let ssl = crate::wire::messages::ssl_request();
        assert!(matches!(
            read_packet(&mut &ssl[..]).await,
            Ok(StartupPacket::SslRequest)
        ));
        let cancel = crate::wire::messages::cancel_request(77, &[9, 9, 9, 9]);
        match read_packet(&mut &cancel[..]).await.unwrap() {
            StartupPacket::Cancel { pid, secret } => {
                assert_eq!(pid, 77);
                assert_eq!(&secret[..], &[9, 9, 9, 9]);
            }
            other => panic!("not a cancel: {other:?}"),
        }
    }

    #[tokio::test]
    async fn long_names_are_cut_as_the_server_cuts_them() {
        let long = format!("{}TRAILING", "d".repeat(63));
        let bytes = startup_bytes(&[
            ("user", &format!("é{}", "u".repeat(70))),
            ("database", &long),
        ]);
        let Ok(StartupPacket::Startup(startup)) = read_packet(&mut &bytes[..]).await else {
            panic!("a startup message");
        };
        assert_eq!(startup.database, "d".repeat(63));
        assert_eq!(startup.user, format!("é{}", "u".repeat(61)));
        // A cut inside a character matches no valid name.
        let bytes = startup_bytes(&[("user", &format!("{}é", "u".repeat(62)))]);
        let Ok(StartupPacket::Startup(startup)) = read_packet(&mut &bytes[..]).await else {
            panic!("a startup message");
        };
        assert_eq!(startup.user, format!("{}\u{FFFD}", "u".repeat(62)));
        assert_eq!(startup.database, startup.user);
    }

    #[tokio::test]
    async fn refuses_bad_lengths_protocols_and_missing_user() {
        let huge = 1_000_000i32.to_be_bytes();
        assert!(matches!(
            read_packet(&mut &huge[..]).await,
            Err(StartupError::InvalidLength(1_000_000))
        ));
        let mut v2 = startup_bytes(&[("user", "x")]);
        v2[4..8].copy_from_slice(&131_072i32.to_be_bytes());
        assert!(matches!(
            read_packet(&mut &v2[..]).await,
            Err(StartupError::UnsupportedProtocol(2, 0))
        ));
        let nouser = startup_bytes(&[("database", "x")]);
        assert!(matches!(
            read_packet(&mut &nouser[..]).await,
            Err(StartupError::NoUser)
        ));
        let truncated = &startup_bytes(&[("user", "x")])[..10];
        assert!(matches!(
            read_packet(&mut &truncated[..]).await,
            Err(StartupError::Io(_))
        ));
    }
}
