//! The authentication relay: the server's authentication requests and the client's answers go
//! through as they are (trust, password, md5, SCRAM-SHA-256), so pgseal never holds a password.
//!
//! Two messages are changed on the way. The server's list of SASL mechanisms loses
//! `SCRAM-SHA-256-PLUS` when the client's TLS ends at pgseal with a certificate other than the
//! server's, since the client's channel binding would name pgseal's certificate and fail. And
//! the server's BackendKeyData is replaced by pgseal's own, so cancel requests come to pgseal.

use bytes::{Bytes, BytesMut};
use pgwire::messages::startup::{Authentication, BackendKeyData};
use pgwire::messages::{DecodeContext, Message, ProtocolVersion};
use tokio::io::AsyncWriteExt;

use super::Context;
use super::relay::read_frame;
use crate::cancel::{BackendKey, Registration};
use crate::error::SessionError;
use crate::protect::date_settings::DateSettings;
use crate::stream::{ClientStream, MaybeTls, ServerStream};
use crate::upstream::target::SessionReport;
use crate::wire::messages;

/// The largest frame either side sends during authentication (PostgreSQL's own bound for
/// backend messages libpq accepts before the session starts is 30000 bytes; GSSAPI tokens and
/// parameter values fit well within this).
const AUTH_FRAME_LIMIT: usize = 64 * 1024;

/// The sockets and buffers of a session being authenticated.
pub struct Login<'a> {
    pub context: &'a Context,
    /// The upstream host `server` is connected to (its index in the `--upstream` list).
    pub host: usize,
    pub client: &'a mut ClientStream,
    pub server: &'a mut ServerStream,
    pub client_buf: &'a mut BytesMut,
    pub server_buf: &'a mut BytesMut,
}

/// How authentication ended.
pub enum LoginEnd {
    /// ReadyForQuery reached the client; the session is open.
    Ready {
        /// The client's cancel key, registered for this session's backend.
        registration: Registration,
        /// Bytes relayed from the client so far.
        bytes_from_client: u64,
        /// Bytes sent to the client so far.
        bytes_to_client: u64,
        /// The settings the server reported that decide how SQL text and dates are read.
        settings: ServerSettings,
    },
    /// The server refused (bad password, unknown database…); its error reached the client.
    Refused,
}

/// The server settings that decide how SQL text is lexed, from its ParameterStatus messages.
/// pgseal's analysis assumes PostgreSQL's defaults; a session that changes them is refused
/// statements until it restores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LexingSettings {
    /// `standard_conforming_strings` is on (backslashes are literal in '…').
    pub standard_strings: bool,
    /// `client_encoding` is UTF8.
    pub utf8: bool,
}

impl Default for LexingSettings {
    fn default() -> Self {
        LexingSettings {
            standard_strings: true,
            utf8: true,
        }
    }
}

/// A ParameterStatus frame's name and value.
fn parameter_status(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = frame.get(5..)?.split(|b| *b == 0);
    Some((parts.next()?, parts.next()?))
}

/// What the server reported of the settings pgseal follows: how SQL text is lexed, and how
/// dates and times read and print (unknown until reported).
#[derive(Clone, Debug, Default)]
pub struct ServerSettings {
    /// `standard_conforming_strings` and `client_encoding`.
    pub lexing: LexingSettings,
    /// `DateStyle` and `TimeZone` (unknown until reported).
    pub dates: DateSettings,
}

impl ServerSettings {
    /// Applies a ParameterStatus frame, if it names one of these settings.
    pub fn apply(&mut self, frame: &[u8]) {
        self.lexing.apply(frame);
        apply_date_status(&mut self.dates, frame);
    }
}

/// Applies a ParameterStatus frame to a session's date settings, if it names `DateStyle` or
/// `TimeZone` (a value that is not UTF-8 makes the setting unknown).
pub(crate) fn apply_date_status(dates: &mut DateSettings, frame: &[u8]) {
    if let Some((name, value)) = parameter_status(frame)
        && let Ok(name) = std::str::from_utf8(name)
    {
        dates.apply(name, std::str::from_utf8(value).unwrap_or(""));
    }
}

impl LexingSettings {
    /// Applies a ParameterStatus frame, if it names one of these settings.
    pub fn apply(&mut self, frame: &[u8]) {
        let Some((name, value)) = parameter_status(frame) else {
            return;
        };
        match name {
            b"standard_conforming_strings" => {
                self.standard_strings = value.eq_ignore_ascii_case(b"on")
            }
            b"client_encoding" => {
                self.utf8 =
                    value.eq_ignore_ascii_case(b"UTF8") || value.eq_ignore_ascii_case(b"UTF-8")
            }
            _ => {}
        }
    }

    /// Whether pgseal's analysis reads SQL as the server does.
    pub fn standard(&self) -> bool {
        self.standard_strings && self.utf8
    }
}

/// The SQLSTATE (`C` field) of an ErrorResponse frame.
fn error_code(frame: &[u8]) -> Option<&[u8]> {
    let mut fields = frame.get(5..)?;
    while let Some((&kind, rest)) = fields.split_first() {
        if kind == 0 {
            return None;
        }
        let end = rest.iter().position(|b| *b == 0)?;
        if kind == b'C' {
            return Some(&rest[..end]);
        }
        fields = rest.get(end + 1..)?;
    }
    None
}

/// Authentication request codes after which the client must answer with one message.
fn expects_answer(code: i32) -> bool {
    // 3 cleartext, 5 md5, 7 GSS, 8 GSS continue, 9 SSPI, 10 SASL, 11 SASL continue.
    matches!(code, 3 | 5 | 7 | 8 | 9 | 10 | 11)
}

impl Login<'_> {
    /// Relays until the server's first ReadyForQuery, or its refusal.
    pub async fn run(mut self) -> Result<LoginEnd, SessionError> {
        let mut out = BytesMut::new();
        let mut registration = None;
        let mut plus_stripped = false;
        let mut settings = ServerSettings::default();
        let mut report = SessionReport::default();
        let (mut from_client, mut to_client) = (0u64, 0u64);
        loop {
            if !self.server_has_frame() {
                to_client += self.send_to_client(&mut out).await?;
            }
            let frame = read_frame(&mut *self.server, &mut *self.server_buf, AUTH_FRAME_LIMIT)
                .await
                .map_err(|e| e.into_server_error())?
                .ok_or_else(|| SessionError::ServerIo(std::io::ErrorKind::UnexpectedEof.into()))?;
            match frame[0] {
                b'R' => {
                    let code = auth_code(&frame)?;
                    if code == 10 && self.must_strip_plus() {
                        out.extend_from_slice(&strip_plus(frame)?);
                        plus_stripped = true;
                    } else {
                        out.extend_from_slice(&frame);
                    }
                    if expects_answer(code) {
                        to_client += self.send_to_client(&mut out).await?;
                        let answer =
                            read_frame(&mut *self.client, &mut *self.client_buf, AUTH_FRAME_LIMIT)
                                .await
                                .map_err(|e| e.into_client_error())?
                                .ok_or_else(|| {
                                    SessionError::ClientIo(std::io::ErrorKind::UnexpectedEof.into())
                                })?;
                        if answer[0] != b'p' {
                            return Err(SessionError::ClientProtocol(format!(
                                "expected a password or SASL message, got type {:?}",
                                char::from(answer[0])
                            )));
                        }
                        if code == 10
                            && plus_stripped
                            && self.context.upstream.uses_tls()
                            && gs2_flag(&answer) == Some(b'y')
                        {
                            // PostgreSQL over TLS refuses a client that supports channel
                            // binding but did not see it offered (downgrade protection); say
                            // why, instead of its generic negotiation error.
                            return Err(SessionError::ChannelBinding);
                        }
                        from_client += answer.len() as u64;
                        self.server
                            .write_all(&answer)
                            .await
                            .map_err(SessionError::ServerIo)?;
                        self.server.flush().await.map_err(SessionError::ServerIo)?;
                    }
                }
                b'K' => {
                    let mut backend = backend_key(frame)?;
                    backend.host = self.host;
                    let mine = self.context.cancels.register(backend);
                    out.extend_from_slice(&messages::backend_key_data(mine.pid, &mine.secret));
                    registration = Some(mine);
                }
                b'E' => {
                    if error_code(&frame) == Some(&b"57P03"[..]) {
                        self.context.upstream.not_accepting(self.host);
                    }
                    out.extend_from_slice(&frame);
                    self.send_to_client(&mut out).await?;
                    return Ok(LoginEnd::Refused);
                }
                b'Z' => {
                    if let Err(wrong) = self.context.upstream.admit(self.host, &report) {
                        // Not the kind of server asked for: the client is told (08001) instead
                        // of ReadyForQuery, and the server's session ends cleanly.
                        let _ = self.server.write_all(&messages::TERMINATE).await;
                        let _ = self.server.flush().await;
                        return Err(wrong);
                    }
                    out.extend_from_slice(&frame);
                    to_client += self.send_to_client(&mut out).await?;
                    let registration = registration.ok_or_else(|| {
                        SessionError::ServerProtocol("ReadyForQuery before BackendKeyData".into())
                    })?;
                    return Ok(LoginEnd::Ready {
                        registration,
                        bytes_from_client: from_client,
                        bytes_to_client: to_client,
                        settings,
                    });
                }
                b'S' => {
                    settings.apply(&frame);
                    if let Some((name, value)) = parameter_status(&frame) {
                        report.apply(name, value);
                    }
                    out.extend_from_slice(&frame);
                }
                // NoticeResponse, NegotiateProtocolVersion, and anything else.
                _ => out.extend_from_slice(&frame),
            }
        }
    }

    fn server_has_frame(&self) -> bool {
        super::relay::has_whole_frame(self.server_buf)
    }

    /// The client cannot bind to the server's TLS channel when its own TLS ends at pgseal under
    /// another certificate. With the very same certificate the binding data match, and
    /// SCRAM-SHA-256-PLUS passes through.
    fn must_strip_plus(&self) -> bool {
        let client_tls = self.client.is_tls();
        let same_certificate = match (&self.server, &self.context.client_tls) {
            (MaybeTls::Tls(server), Some(mine)) => server
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .is_some_and(|theirs| theirs.as_ref() == mine.certificate.as_ref()),
            _ => false,
        };
        client_tls && !same_certificate
    }

    async fn send_to_client(&mut self, out: &mut BytesMut) -> Result<u64, SessionError> {
        if out.is_empty() {
            return Ok(0);
        }
        self.client
            .write_all(out)
            .await
            .map_err(SessionError::ClientIo)?;
        self.client.flush().await.map_err(SessionError::ClientIo)?;
        let sent = out.len() as u64;
        out.clear();
        Ok(sent)
    }
}

fn auth_code(frame: &[u8]) -> Result<i32, SessionError> {
    let code: [u8; 4] = frame
        .get(5..9)
        .and_then(|c| c.try_into().ok())
        .ok_or_else(|| SessionError::ServerProtocol("authentication request too short".into()))?;
    Ok(i32::from_be_bytes(code))
}

/// Re-encodes an AuthenticationSASL request without the `-PLUS` mechanisms.
fn strip_plus(frame: BytesMut) -> Result<Bytes, SessionError> {
    let mut buf = frame;
    let request = Authentication::decode(&mut buf, &DecodeContext::default())
        .map_err(|e| SessionError::ServerProtocol(format!("SASL request: {e}")))?;
    let Some(Authentication::SASL(mechanisms)) = request else {
        return Err(SessionError::ServerProtocol(
            "malformed SASL request".into(),
        ));
    };
    let kept: Vec<String> = mechanisms
        .into_iter()
        .filter(|m| !m.ends_with("-PLUS"))
        .collect();
    if kept.is_empty() {
        return Err(SessionError::ServerProtocol(
            "the server offers only channel-bound SASL mechanisms".into(),
        ));
    }
    let mut out = BytesMut::new();
    Authentication::SASL(kept)
        .encode(&mut out)
        .map_err(|e| SessionError::ServerProtocol(format!("SASL request: {e}")))?;
    Ok(out.freeze())
}

/// The GS2 channel-binding flag (`n`, `y` or `p`) of a SASLInitialResponse.
fn gs2_flag(frame: &[u8]) -> Option<u8> {
    let body = frame.get(5..)?;
    let mechanism_end = body.iter().position(|b| *b == 0)?;
    // After the mechanism name: a 4-byte length, then the client-first-message.
    body.get(mechanism_end + 1 + 4).copied()
}

/// The server's cancel key, from its BackendKeyData.
fn backend_key(frame: BytesMut) -> Result<BackendKey, SessionError> {
    // Protocol 3.2 decoding keeps the key as bytes whatever its valid length (4 to 256).
    let context = DecodeContext::new(ProtocolVersion::PROTOCOL3_2);
    if frame.len() < 13 {
        return Err(SessionError::ServerProtocol(
            "BackendKeyData too short".into(),
        ));
    }
    let mut buf = frame;
    match BackendKeyData::decode(&mut buf, &context) {
        Ok(Some(key)) => Ok(BackendKey {
            pid: key.pid,
            secret: key.secret_key.to_bytes(),
            host: 0,
        }),
        Ok(None) => Err(SessionError::ServerProtocol(
            "BackendKeyData truncated".into(),
        )),
        Err(e) => Err(SessionError::ServerProtocol(format!("BackendKeyData: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_request(mechanisms: &[&str]) -> BytesMut {
        let mut out = BytesMut::new();
        Authentication::SASL(mechanisms.iter().map(|m| m.to_string()).collect())
            .encode(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn lexing_settings_follow_parameter_status() {
        let status = |name: &str, value: &str| {
            let mut frame = vec![b'S', 0, 0, 0, 0];
            frame.extend_from_slice(name.as_bytes());
            frame.push(0);
            frame.extend_from_slice(value.as_bytes());
            frame.push(0);
            frame
        };
        let mut settings = LexingSettings::default();
        settings.apply(&status("standard_conforming_strings", "off"));
        assert!(!settings.standard());
        settings.apply(&status("standard_conforming_strings", "on"));
        settings.apply(&status("client_encoding", "SJIS"));
        assert!(!settings.standard());
        settings.apply(&status("client_encoding", "UTF8"));
        settings.apply(&status("TimeZone", "UTC"));
        assert!(settings.standard());
        settings.apply(b"S");
        assert!(settings.standard());
    }

    #[test]
    fn an_error_response_gives_its_sqlstate() {
        let frame = messages::error_response(
            messages::Severity::Fatal,
            "57P03",
            "the database system is shutting down",
            None,
        );
        assert_eq!(error_code(&frame), Some(&b"57P03"[..]));
        assert_eq!(error_code(&frame[..8]), None);
        assert_eq!(error_code(b"E\0\0\0\x05\0"), None);
    }

    #[test]
    fn plus_mechanisms_are_stripped() {
        let stripped = strip_plus(sasl_request(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])).unwrap();
        assert_eq!(&stripped[..], &sasl_request(&["SCRAM-SHA-256"])[..]);
        assert!(strip_plus(sasl_request(&["SCRAM-SHA-256-PLUS"])).is_err());
    }

    #[test]
    fn the_gs2_flag_is_found_and_truncation_is_harmless() {
        let mut frame = vec![b'p', 0, 0, 0, 0];
        frame.extend_from_slice(b"SCRAM-SHA-256\0");
        frame.extend_from_slice(&20i32.to_be_bytes());
        frame.extend_from_slice(b"y,,n=,r=abcdef");
        assert_eq!(gs2_flag(&frame), Some(b'y'));
        assert_eq!(gs2_flag(&frame[..20]), None);
        assert_eq!(gs2_flag(b"p"), None);
    }

    #[test]
    fn backend_keys_of_both_protocol_versions_decode() {
        let short = messages::backend_key_data(12, &[1, 2, 3, 4]);
        let key = backend_key(BytesMut::from(&short[..])).unwrap();
        assert_eq!((key.pid, &key.secret[..]), (12, &[1u8, 2, 3, 4][..]));
        let long = messages::backend_key_data(13, &[5u8; 32]);
        assert_eq!(
            backend_key(BytesMut::from(&long[..])).unwrap().secret.len(),
            32
        );
        assert!(backend_key(BytesMut::from(&b"K\0\0\0\x08\0\0\0\x01"[..])).is_err());
    }
}
