//! A raw protocol client for tests that must send what no driver would: malformed frames,
//! oversized messages, half a COPY, or nothing at all.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message: its type byte and body.
#[derive(Clone, Debug)]
pub struct Message {
    /// The type byte.
    pub tag: u8,
    /// The body, after the length field.
    pub body: Vec<u8>,
}

impl Message {
    /// The SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn sqlstate(&self) -> Option<String> {
        self.field(b'C')
    }

    /// One field of an ErrorResponse or NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        self.body
            .split(|b| *b == 0)
            .find(|f| f.first() == Some(&code))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
    }
}

/// A client socket speaking the protocol by hand.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Opens a TCP connection.
    pub async fn connect(address: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(address).await.expect("connect");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a StartupMessage for a role that needs no password, and reads up to ReadyForQuery.
    pub async fn startup_trusted(&mut self, user: &str, database: &str) -> Vec<Message> {
        self.send(&startup_packet(user, database)).await;
        let messages = self.read_until(b'Z').await;
        assert!(
            messages.iter().any(|m| m.tag == b'Z'),
            "no ReadyForQuery after startup: {messages:?}"
        );
        messages
    }

    /// Sends the concatenation of `frames` in one write (a pipeline).
    pub async fn send_frames(&mut self, frames: &[Vec<u8>]) {
        self.send(&frames.concat()).await;
    }

    /// Writes bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes bytes, tolerating a connection the peer already closed.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one message; `None` when the connection closes (or after 30 s of silence).
    pub async fn read_message(&mut self) -> Option<Message> {
        loop {
            if self.buf.len() >= 5 {
                let length =
                    i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let total = 1 + length as usize;
                if self.buf.len() >= total {
                    let frame: Vec<u8> = self.buf.drain(..total).collect();
                    return Some(Message {
                        tag: frame[0],
                        body: frame[5..].to_vec(),
                    });
                }
            }
            // Straight into the buffer: a chunk array here would sit in every future that
            // awaits a read (tests await dozens), overflowing a test thread's stack.
            self.buf.reserve(65536);
            let read =
                tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf))
                    .await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Reads messages up to and including the first of type `tag`, or until the connection closes.
    pub async fn read_until(&mut self, tag: u8) -> Vec<Message> {
        let mut messages = Vec::new();
        while let Some(message) = self.read_message().await {
            let done = message.tag == tag;
            messages.push(message);
            if done {
                break;
            }
        }
        messages
    }

    /// Reads messages up to and including the first of any of `tags`, or until the connection
    /// closes.
    pub async fn read_until_any(&mut self, tags: &[u8]) -> Vec<Message> {
        let mut messages = Vec::new();
        while let Some(message) = self.read_message().await {
            let done = tags.contains(&message.tag);
            messages.push(message);
            if done {
                break;
            }
        }
        messages
    }

    /// Whether the peer has closed the connection (reads EOF within `timeout`).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A protocol 3.0 StartupMessage.
pub fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (key, value) in [
        ("user", user),
        ("database", database),
        ("application_name", "raw-test"),
    ] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// A frame of type `tag` around `body`.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple-protocol Query frame.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    frame(b'Q', &body)
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// `Parse` of `sql` as statement `name`, with no parameter types given.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    parse_typed(name, sql, &[])
}

/// `Parse` of `sql` as statement `name`, with parameter type OIDs.
pub fn parse_typed(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, sql);
    body.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        body.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &body)
}

/// `Bind` of `statement` to `portal` without parameters, results in text.
pub fn bind(portal: &str, statement: &str) -> Vec<u8> {
    bind_params(portal, statement, &[], &[])
}

/// `Bind` with parameter formats and values (`None`: NULL), results in text.
pub fn bind_params(
    portal: &str,
    statement: &str,
    formats: &[i16],
    params: &[Option<&[u8]>],
) -> Vec<u8> {
    bind_with(portal, statement, formats, params, &[])
}

/// `Bind` without parameters, results in `result_formats` (one code: every column).
pub fn bind_formats(portal: &str, statement: &str, result_formats: &[i16]) -> Vec<u8> {
    bind_with(portal, statement, &[], &[], result_formats)
}

/// `Bind` with parameter formats and values (`None`: NULL) and result formats.
pub fn bind_with(
    portal: &str,
    statement: &str,
    formats: &[i16],
    params: &[Option<&[u8]>],
    result_formats: &[i16],
) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    cstr(&mut body, statement);
    body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v);
            }
        }
    }
    body.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    frame(b'B', &body)
}

/// `Execute` of `portal`, at most `max_rows` rows (0: all).
pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    body.extend_from_slice(&max_rows.to_be_bytes());
    frame(b'E', &body)
}

/// `Describe` of a statement (`kind` `S`) or portal (`P`).
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    cstr(&mut body, name);
    frame(b'D', &body)
}

/// `Close` of a statement (`kind` `S`) or portal (`P`).
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    cstr(&mut body, name);
    frame(b'C', &body)
}

/// `Sync`.
pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

/// `Flush`.
pub fn flush() -> Vec<u8> {
    frame(b'H', &[])
}

/// `CopyData`.
pub fn copy_data(data: &[u8]) -> Vec<u8> {
    frame(b'd', data)
}

/// `CopyDone`.
pub fn copy_done() -> Vec<u8> {
    frame(b'c', &[])
}

/// The SQLSTATEs of the ErrorResponses among `messages`.
pub fn errors(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.tag == b'E')
        .map(|m| m.sqlstate().unwrap_or_default())
        .collect()
}

/// DataRows and CopyData messages among `messages`.
pub fn data_rows(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter(|m| m.tag == b'D' || m.tag == b'd')
        .count()
}

/// The text values of the DataRows among `messages`.
pub fn text_rows(messages: &[Message]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let b = &m.body;
            let n = i16::from_be_bytes([b[0], b[1]]) as usize;
            let mut at = 2;
            let mut values = Vec::new();
            for _ in 0..n {
                let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                at += 4;
                if len < 0 {
                    values.push(None);
                } else {
                    let len = len as usize;
                    values.push(Some(String::from_utf8_lossy(&b[at..at + len]).into_owned()));
                    at += len;
                }
            }
            values
        })
        .collect()
}
