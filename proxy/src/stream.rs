//! A TCP connection that may or may not be wrapped in TLS, for either side of a session, or a
//! Unix-domain socket to a PostgreSQL server on the same host; and its split into a reading and
//! a writing half, one for each of the relay's pumps.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// TLS ending at pgseal, from a client.
pub type ClientTls = tokio_rustls::server::TlsStream<TcpStream>;
/// TLS started by pgseal, to PostgreSQL.
pub type ServerTls = tokio_rustls::client::TlsStream<TcpStream>;
/// The client's connection: plain TCP or TLS ending at pgseal.
pub type ClientStream = MaybeTls<ClientTls>;
/// The connection to PostgreSQL: plain TCP or TLS started by pgseal.
pub type ServerStream = MaybeTls<ServerTls>;

/// A TCP stream, in the clear or inside TLS, or a Unix-domain socket.
pub enum MaybeTls<T> {
    /// No TLS.
    Plain(TcpStream),
    /// TLS over TCP (boxed: TLS state is large, plain streams should stay small).
    Tls(Box<T>),
    /// A Unix-domain socket (pgseal beside PostgreSQL: `--upstream /var/run/postgresql`);
    /// never TLS, as libpq does not use it there.
    Unix(UnixStream),
}

impl<T> MaybeTls<T> {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// The stream's reading and writing halves, to be used from two futures at once.
    ///
    /// A socket's halves are independent (tokio keeps a waker per direction), so a plain or
    /// Unix stream splits into halves that share the socket and nothing else. A TLS stream's
    /// two directions share its TLS state (a read may write an alert), so its halves take a
    /// lock around it, which plain streams must not pay on every read and write.
    pub fn into_split(self) -> (ReadPart<T>, WritePart<T>)
    where
        T: AsyncRead + AsyncWrite,
    {
        match self {
            MaybeTls::Plain(s) => {
                let (read, write) = s.into_split();
                (ReadPart::Plain(read), WritePart::Plain(write))
            }
            MaybeTls::Unix(s) => {
                let (read, write) = s.into_split();
                (ReadPart::Unix(read), WritePart::Unix(write))
            }
            MaybeTls::Tls(s) => {
                let (read, write) = tokio::io::split(*s);
                (ReadPart::Tls(read), WritePart::Tls(write))
            }
        }
    }
}

/// The reading half of a [`MaybeTls`] stream.
pub enum ReadPart<T> {
    /// Of a plain TCP stream.
    Plain(tcp::OwnedReadHalf),
    /// Of a TLS stream (behind the lock it shares with its writing half).
    Tls(tokio::io::ReadHalf<T>),
    /// Of a Unix-domain socket.
    Unix(unix::OwnedReadHalf),
}

/// The writing half of a [`MaybeTls`] stream.
pub enum WritePart<T> {
    /// Of a plain TCP stream.
    Plain(tcp::OwnedWriteHalf),
    /// Of a TLS stream (behind the lock it shares with its reading half).
    Tls(tokio::io::WriteHalf<T>),
    /// Of a Unix-domain socket.
    Unix(unix::OwnedWriteHalf),
}

/// Passes one call on to the stream a `Plain`, `Tls` or `Unix` variant holds.
macro_rules! each_variant {
    ($value:expr, $stream:ident => $call:expr) => {
        match $value {
            Self::Plain($stream) => $call,
            Self::Tls($stream) => $call,
            Self::Unix($stream) => $call,
        }
    };
}

/// `AsyncRead` for an enum of streams, each call passed on to the one it holds.
macro_rules! delegate_read {
    ($name:ident $(, $bound:path)?) => {
        impl<T: AsyncRead $(+ $bound)?> AsyncRead for $name<T> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                each_variant!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
            }
        }
    };
}

/// `AsyncWrite` for an enum of streams, each call passed on to the one it holds.
macro_rules! delegate_write {
    ($name:ident $(, $bound:path)?) => {
        impl<T: AsyncWrite $(+ $bound)?> AsyncWrite for $name<T> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                each_variant!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                each_variant!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                each_variant!(self, s => s.is_write_vectored())
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_variant!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_variant!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
            }
        }
    };
}

// A whole stream's TLS variant is boxed, and a box of a stream reads and writes when the
// stream is `Unpin`; a TLS half is `Unpin` whatever it splits.
delegate_read!(MaybeTls, Unpin);
delegate_write!(MaybeTls, Unpin);
delegate_read!(ReadPart);
delegate_write!(WritePart);
