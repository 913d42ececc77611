//! The first packets of a connection: TLS (by SSLRequest, or PostgreSQL 17's direct TLS),
//! refusal of GSSAPI encryption, and the StartupMessage or CancelRequest that follows.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::Context;
use crate::error::SessionError;
use crate::stream::{ClientStream, MaybeTls};
use crate::wire::startup::{StartupPacket, read_packet};

/// The first byte of a TLS handshake record: a client using direct TLS sends it at once.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A failure, with the client stream when there is one to tell the client on.
pub type NegotiationError = (Option<ClientStream>, SessionError);

/// Runs the negotiation and returns the client stream (TLS or not) and its StartupMessage or
/// CancelRequest.
pub async fn negotiate(
    context: &Context,
    socket: TcpStream,
) -> Result<(ClientStream, StartupPacket), NegotiationError> {
    let mut client = ClientStream::Plain(socket);
    // A client asks for GSSAPI at most once and TLS at most once before its startup packet.
    for _round in 0..3 {
        if let (MaybeTls::Plain(socket), Some(_)) = (&client, &context.client_tls) {
            let mut first = [0u8; 1];
            let peeked = socket
                .peek(&mut first)
                .await
                .map_err(|e| (None, SessionError::ClientIo(e)))?;
            if peeked == 1 && first[0] == TLS_HANDSHAKE_RECORD {
                client = start_tls(context, client).await?;
                continue;
            }
        }
        let packet = match read_packet(&mut client).await {
            Ok(packet) => packet,
            Err(e) => return Err((Some(client), SessionError::Startup(e))),
        };
        match packet {
            StartupPacket::SslRequest if client.is_tls() => {
                return Err((
                    Some(client),
                    SessionError::ClientProtocol("SSLRequest inside TLS".into()),
                ));
            }
            StartupPacket::SslRequest => match context.client_tls {
                Some(_) => {
                    reply(&mut client, b'S').await?;
                    client = start_tls(context, client).await?;
                }
                None => reply(&mut client, b'N').await?,
            },
            StartupPacket::GssEncRequest => reply(&mut client, b'N').await?,
            packet => return Ok((client, packet)),
        }
    }
    Err((
        Some(client),
        SessionError::ClientProtocol("too many negotiation requests".into()),
    ))
}

async fn reply(client: &mut ClientStream, answer: u8) -> Result<(), NegotiationError> {
    let result = async {
        client.write_all(&[answer]).await?;
        client.flush().await
    };
    result.await.map_err(|e| (None, SessionError::ClientIo(e)))
}

async fn start_tls(
    context: &Context,
    client: ClientStream,
) -> Result<ClientStream, NegotiationError> {
    let (MaybeTls::Plain(socket), Some(tls)) = (client, &context.client_tls) else {
        return Err((None, SessionError::TlsUnavailable));
    };
    match tls.acceptor.accept(socket).await {
        Ok(stream) => Ok(MaybeTls::Tls(Box::new(stream))),
        Err(e) => Err((None, SessionError::ClientTls(e))),
    }
}
