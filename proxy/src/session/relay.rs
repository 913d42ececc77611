//! The relay of an open session: two pumps, client → server and server → client, run side by
//! side so each direction flows on its own, as it would on a direct connection (a client
//! pipelining queries while the server streams results never deadlocks).
//!
//! A pump forwards every byte it reads at once, in one write per read, without decoding: it
//! only walks the frame headers to check their lengths, to notice the client's Terminate, and
//! to know whether it stands between two frames (where pgseal may speak itself). A frame larger
//! than what has arrived so far is streamed through as its bytes come, so memory stays flat
//! whatever the size of a row or of a result.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::wake_gate::Gates;
use crate::config::ServeConfig;
use crate::error::SessionError;
use crate::stream::{ClientStream, ClientTls, ReadPart, ServerStream, ServerTls, WritePart};
use crate::wire::messages::{self, Severity, error_response};
use crate::wire::{FrameError, FrameHeader};

/// How much a pump asks the kernel for per read.
pub const READ_CHUNK: usize = 32 * 1024;

/// Below this much room left in its buffer, a pump makes [`READ_CHUNK`] of room before it
/// reads.
const READ_ROOM_MIN: usize = READ_CHUNK / 4;

/// Server frames are not bounded by pgseal (they stream through); only their header is checked.
const SERVER_FRAME_LIMIT: usize = i32::MAX as usize;

/// Why a pump stopped.
#[derive(Debug)]
pub enum PumpEnd {
    /// The source closed its side.
    Closed,
    /// The client's Terminate was forwarded.
    Terminated,
}

/// Why a pump failed.
#[derive(Debug)]
pub enum PumpError {
    /// A frame header that cannot be valid.
    Frame(FrameError),
    /// Reading from the source failed.
    Read(io::Error),
    /// Writing to the destination failed.
    Write(io::Error),
    /// The filter refused a frame.
    Filter(SessionError),
    /// The source left a message half sent past the message timeout.
    MessageTimeout(std::time::Duration),
    /// The source sent nothing past the idle timeout.
    IdleTimeout(std::time::Duration),
}

impl PumpError {
    /// The session error for a failure of the client → server pump.
    pub fn into_client_error(self) -> SessionError {
        match self {
            PumpError::Frame(e) => SessionError::ClientFrame(e),
            PumpError::Read(e) => SessionError::ClientIo(e),
            PumpError::Write(e) => SessionError::ServerIo(e),
            PumpError::Filter(e) => e,
            PumpError::MessageTimeout(after) => SessionError::MessageTimeout(after),
            PumpError::IdleTimeout(after) => SessionError::IdleTimeout(after),
        }
    }

    /// The session error for a failure of the server → client pump.
    pub fn into_server_error(self) -> SessionError {
        match self {
            PumpError::Frame(e) => SessionError::ServerFrame(e),
            PumpError::Read(e) => SessionError::ServerIo(e),
            PumpError::Write(e) => SessionError::ClientIo(e),
            PumpError::Filter(e) => e,
            // The server pump has no read deadlines.
            PumpError::MessageTimeout(_) | PumpError::IdleTimeout(_) => {
                SessionError::ServerIo(io::ErrorKind::TimedOut.into())
            }
        }
    }
}

/// Deadlines on reads from a pump's source (the client's: the server pump has none).
#[derive(Clone, Copy, Debug, Default)]
struct ReadDeadlines {
    /// For the rest of a message whose first bytes have arrived.
    message: Option<std::time::Duration>,
    /// For the first byte of the next message.
    idle: Option<std::time::Duration>,
}

/// While a pump holds a frame, it keeps reading its source (so that a peer that leaves is
/// noticed and its session freed) as long as its buffer holds less than this.
const HOLD_READ_LIMIT: usize = 2 * READ_CHUNK;

/// How an open session ended without error.
#[derive(Debug)]
pub enum RelayEnd {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its connection without Terminate.
    ClientClosed,
    /// The server closed the connection (after a FATAL error, or when it was shut down).
    ServerClosed,
}

/// What a pump does with the frames it forwards: the passthrough forwards them all as bytes;
/// a protected session decodes and rewrites some.
pub trait Filter {
    /// Whether frames of type `tag` must be seen whole by [`Filter::on_frame`] (asked in frame
    /// order, so state set by earlier frames can decide).
    fn inspects(&mut self, tag: u8) -> bool;

    /// Handles one whole frame that [`Filter::inspects`] asked for: appends what to forward in
    /// its place to `out` (nothing, the frame itself, or other frames), or holds it.
    fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError>;

    /// What ends a [`Flow::Hold`] early: the other direction signals it when what the held
    /// frame waits for has happened (a result ended), so the wait costs no timer tick.
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Whether the server still owes answers to what the client sent (a statement running, a
    /// result being paced): the client's silence is then no idleness. Filters that do not
    /// follow the protocol say no.
    fn busy(&self) -> bool {
        false
    }
}

/// What a filter did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Handled: its replacement (if any) is in `out`.
    Done,
    /// Handled, and the frame itself goes on after what the filter appended to `out` (often
    /// nothing): the pump forwards it from where it was read, with no copy when nothing else
    /// in the batch changed.
    Unchanged,
    /// Not handled yet: offer the same frame again after this long (what the filter appended
    /// to `out` goes ahead of it). The pump stops reading meanwhile, so the source is held back
    /// by TCP (an export budget's pacing, the rest of a pipeline waiting for a result).
    Hold(std::time::Duration),
}

/// The filter of a session without protection: every frame goes through as bytes.
pub struct Passthrough;

impl Filter for Passthrough {
    #[inline]
    fn inspects(&mut self, _tag: u8) -> bool {
        false
    }

    fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
        out.extend_from_slice(frame);
        Ok(Flow::Done)
    }
}

/// The most a pump's scratch buffer keeps between frames.
const SCRATCH_KEPT: usize = 64 * 1024;

/// What a scan of the buffer found ready to go.
struct Batch {
    /// Bytes at the front of the buffer that are done with.
    consumed: usize,
    /// Whether the bytes to write are `out` (some frames were rewritten) rather than the
    /// consumed bytes themselves.
    assembled: bool,
    /// Whether the batch ends with the client's Terminate.
    terminated: bool,
    /// The filter holds the frame after the batch: wait this long before offering it again.
    hold: Option<std::time::Duration>,
}

/// One direction of a session.
struct Pump<R, W, F> {
    from: R,
    to: W,
    filter: F,
    buf: BytesMut,
    /// What to write when the filter rewrote frames.
    out: BytesMut,
    /// What the filter wrote for one frame while bytes before it were still to be copied to
    /// `out` (they go first).
    scratch: BytesMut,
    /// Bound on the length field of frames from `from`.
    limit: usize,
    /// Bound on frames the filter must hold whole.
    inspect_limit: usize,
    /// Bytes of a frame already partly forwarded that are still to come.
    streaming: usize,
    /// Whether a write was under way (if the pump is dropped there, the destination may hold
    /// part of a frame).
    writing: bool,
    /// Whether to stop after forwarding a Terminate frame.
    stop_at_terminate: bool,
    /// Deadlines on reads from `from`.
    deadlines: ReadDeadlines,
    /// The timer of those deadlines, made at the first read that needs one and moved later at
    /// each next one: moving a timer later is one atomic operation, where making one per read
    /// would take the timer thread's lock (and wake it) for every read of a large result.
    deadline_timer: Option<Pin<Box<Sleep>>>,
    /// The timer of [`Pump::hold`], kept the same way: a pipeline held for each counted result
    /// holds once per statement, and consecutive holds of the same length only move it later.
    hold_timer: Option<Pin<Box<Sleep>>>,
    forwarded: u64,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin, F: Filter> Pump<R, W, F> {
    fn new(
        from: R,
        to: W,
        filter: F,
        buf: BytesMut,
        limits: (usize, usize),
        stop_at_terminate: bool,
    ) -> Self {
        Pump {
            from,
            to,
            filter,
            buf,
            out: BytesMut::new(),
            scratch: BytesMut::new(),
            limit: limits.0,
            inspect_limit: limits.1,
            streaming: 0,
            writing: false,
            stop_at_terminate,
            deadlines: ReadDeadlines::default(),
            deadline_timer: None,
            hold_timer: None,
            forwarded: 0,
        }
    }

    /// Whether the destination stands between two frames, where pgseal may write its own.
    fn at_frame_boundary(&self) -> bool {
        self.streaming == 0 && !self.writing
    }

    async fn run(&mut self) -> Result<PumpEnd, PumpError> {
        loop {
            let batch = self.scan()?;
            let pending = if batch.assembled {
                self.out.len()
            } else {
                batch.consumed
            };
            if pending > 0 {
                self.writing = true;
                let bytes = if batch.assembled {
                    &self.out[..]
                } else {
                    &self.buf[..batch.consumed]
                };
                self.to.write_all(bytes).await.map_err(PumpError::Write)?;
                self.to.flush().await.map_err(PumpError::Write)?;
                self.writing = false;
                self.forwarded += pending as u64;
                self.out.clear();
            }
            if batch.consumed == self.buf.len() {
                // All of it is done with: the next read lands at the start of the buffer
                // again, in cache lines still warm, with all its room (`advance` would move the
                // start on, each read landing on lines not touched since the last pass).
                self.buf.clear();
            } else {
                self.buf.advance(batch.consumed);
            }
            if batch.terminated {
                return Ok(PumpEnd::Terminated);
            }
            if let Some(hold) = batch.hold {
                if self.hold(hold).await? {
                    return Ok(PumpEnd::Closed);
                }
                continue;
            }
            if batch.consumed > 0 {
                // Look again before reading: what is left may be a bad header to report now.
                continue;
            }
            // Room is made only when little is left: `reserve` moves the unread bytes back to
            // the front of the buffer, work a buffer emptied by the last write does not need.
            if self.buf.capacity() - self.buf.len() < READ_ROOM_MIN {
                self.buf.reserve(READ_CHUNK);
            }
            let mid_message = self.streaming > 0 || !self.buf.is_empty();
            let deadline = match (mid_message, self.deadlines) {
                (true, ReadDeadlines { message, .. }) => message.map(|after| (after, false)),
                (false, ReadDeadlines { idle, .. }) => idle.map(|after| (after, true)),
            };
            let mut read = std::pin::pin!(self.from.read_buf(&mut self.buf));
            let read = match deadline {
                None => read.await,
                Some((after, idle)) => loop {
                    let timer = self
                        .deadline_timer
                        .get_or_insert_with(|| Box::pin(crate::timer::sleep(after)));
                    timer.as_mut().reset(Instant::now() + after);
                    tokio::select! {
                        biased;
                        read = &mut read => break read,
                        () = timer.as_mut() => {}
                    }
                    // Waiting on the server (a long statement, a paced export) is not
                    // idleness: look again after another period.
                    if idle && self.filter.busy() {
                        continue;
                    }
                    return Err(if idle {
                        PumpError::IdleTimeout(after)
                    } else {
                        PumpError::MessageTimeout(after)
                    });
                },
            };
            if read.map_err(PumpError::Read)? == 0 {
                return Ok(PumpEnd::Closed);
            }
        }
    }

    /// Waits while the filter holds a frame: until `delay` has passed or the filter's wake
    /// fires. Meanwhile the source is still read, up to [`HOLD_READ_LIMIT`] buffered, so a
    /// peer that goes away is noticed at once (its session and server connection are freed)
    /// rather than when the hold ends, which may be never if what it waits for never comes.
    /// Returns whether the source closed.
    async fn hold(&mut self, delay: std::time::Duration) -> Result<bool, PumpError> {
        let wake = self.filter.wake();
        let woken = async {
            match &wake {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let timer = self
            .hold_timer
            .get_or_insert_with(|| Box::pin(crate::timer::sleep(delay)));
        timer.as_mut().reset(Instant::now() + delay);
        if self.buf.len() >= HOLD_READ_LIMIT {
            tokio::select! {
                () = timer.as_mut() => {}
                () = woken => {}
            }
            return Ok(false);
        }
        self.buf.reserve(READ_CHUNK);
        tokio::select! {
            () = timer.as_mut() => Ok(false),
            () = woken => Ok(false),
            read = self.from.read_buf(&mut self.buf) => Ok(read.map_err(PumpError::Read)? == 0),
        }
    }

    /// Walks the frames in the buffer: passes the ones the filter does not inspect (streaming
    /// the tail of a partial one), hands whole inspected frames to the filter. A bad header is
    /// reported once the bytes before it are forwarded.
    fn scan(&mut self) -> Result<Batch, PumpError> {
        let mut pos = self.streaming.min(self.buf.len());
        self.streaming -= pos;
        // Start of the bytes that pass as they are, not yet copied to `out`.
        let mut passing_from = 0;
        let mut assembled = false;
        let mut terminated = false;
        let mut hold = None;
        if self.streaming == 0 {
            loop {
                let header = match FrameHeader::parse(&self.buf[pos..], self.limit) {
                    None => break,
                    Some(Ok(header)) => header,
                    Some(Err(_)) if pos > 0 => break,
                    Some(Err(e)) => return Err(PumpError::Frame(e)),
                };
                let available = self.buf.len() - pos;
                let frame_len = header.frame_len();
                if self.filter.inspects(header.tag) {
                    if header.length > self.inspect_limit {
                        return Err(PumpError::Frame(FrameError::TooLarge {
                            tag: char::from(header.tag),
                            length: header.length,
                            limit: self.inspect_limit,
                        }));
                    }
                    if available < frame_len {
                        break;
                    }
                    let frame = &self.buf[pos..pos + frame_len];
                    // With nothing waiting to be copied before it, the filter writes straight
                    // into `out` (which holds only what was assembled so far).
                    let direct = passing_from == pos;
                    let written_from = self.out.len();
                    self.scratch.clear();
                    let target = if direct {
                        &mut self.out
                    } else {
                        &mut self.scratch
                    };
                    let flow = self
                        .filter
                        .on_frame(frame, target)
                        .map_err(PumpError::Filter)?;
                    let wrote = if direct {
                        self.out.len() > written_from
                    } else {
                        !self.scratch.is_empty()
                    };
                    if matches!(flow, Flow::Unchanged) && !wrote {
                        // It passes with the bytes around it.
                        pos += frame_len;
                        continue;
                    }
                    if !direct {
                        self.out.extend_from_slice(&self.buf[passing_from..pos]);
                        self.out.extend_from_slice(&self.scratch);
                        if self.scratch.capacity() > SCRATCH_KEPT {
                            // A large rewrite (a sorted result) is not kept for the session.
                            self.scratch = BytesMut::new();
                        }
                    }
                    assembled = true;
                    passing_from = pos;
                    match flow {
                        Flow::Hold(delay) => {
                            hold = Some(delay);
                            break;
                        }
                        // After what the filter wrote ahead of it.
                        Flow::Unchanged => {}
                        Flow::Done => passing_from = pos + frame_len,
                    }
                    pos += frame_len;
                    continue;
                }
                if available < frame_len {
                    self.streaming = frame_len - available;
                    pos = self.buf.len();
                    break;
                }
                pos += frame_len;
                if self.stop_at_terminate && header.tag == b'X' {
                    terminated = true;
                    break;
                }
            }
        }
        if assembled {
            self.out.extend_from_slice(&self.buf[passing_from..pos]);
        }
        Ok(Batch {
            consumed: pos,
            assembled,
            terminated,
            hold,
        })
    }
}

/// An open session's two pumps, with the filters `U` (client → server) and `D` (server →
/// client).
pub struct Relay<U, D> {
    upstream: Pump<ReadPart<ClientTls>, WritePart<ServerTls>, U>,
    downstream: Pump<ReadPart<ServerTls>, WritePart<ClientTls>, D>,
}

impl<U: Filter, D: Filter> Relay<U, D> {
    /// A relay over the session's sockets, starting with what the startup phase had buffered.
    pub fn new(
        client: ClientStream,
        server: ServerStream,
        (client_buf, server_buf): (BytesMut, BytesMut),
        (upstream_filter, downstream_filter): (U, D),
        config: &ServeConfig,
    ) -> Self {
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let limit = config.max_message_size;
        let mut upstream = Pump::new(
            client_read,
            server_write,
            upstream_filter,
            client_buf,
            (limit, limit),
            true,
        );
        upstream.deadlines = ReadDeadlines {
            message: Some(config.message_timeout),
            idle: config.idle_timeout,
        };
        Relay {
            upstream,
            downstream: Pump::new(
                server_read,
                client_write,
                downstream_filter,
                server_buf,
                (SERVER_FRAME_LIMIT, limit),
                false,
            ),
        }
    }

    /// Relays until either side ends or `shutdown` fires; returns the outcome and the bytes
    /// relayed from and to the client.
    pub async fn run(
        mut self,
        shutdown: &CancellationToken,
    ) -> (Result<RelayEnd, SessionError>, u64, u64) {
        let outcome = match until_one_ends(
            self.upstream.run(),
            self.downstream.run(),
            shutdown.cancelled(),
        )
        .await
        {
            Ended::Upstream(Ok(PumpEnd::Terminated)) => Ok(RelayEnd::ClientTerminated),
            Ended::Upstream(Ok(PumpEnd::Closed)) => Ok(RelayEnd::ClientClosed),
            Ended::Upstream(Err(e)) => Err(e.into_client_error()),
            Ended::Downstream(Ok(_)) => Ok(RelayEnd::ServerClosed),
            Ended::Downstream(Err(e)) => Err(e.into_server_error()),
            Ended::Shutdown => Err(SessionError::Shutdown),
        };
        if let Err(error) = &outcome {
            self.tell_client(error).await;
            if matches!(error, SessionError::Shutdown | SessionError::ClientFrame(_)) {
                self.tell_server_goodbye().await;
            }
        }
        let _ = self.downstream.to.shutdown().await;
        let _ = self.upstream.to.shutdown().await;
        (outcome, self.upstream.forwarded, self.downstream.forwarded)
    }

    /// Sends the client an ErrorResponse, when the error has one and the client's stream stands
    /// between two frames.
    async fn tell_client(&mut self, error: &SessionError) {
        let Some(sqlstate) = error.sqlstate() else {
            return;
        };
        if !self.downstream.at_frame_boundary() {
            return;
        }
        let frame = error_response(
            Severity::Fatal,
            sqlstate,
            &error.client_message(),
            error.hint(),
        );
        let _ = self.downstream.to.write_all(&frame).await;
        let _ = self.downstream.to.flush().await;
    }

    /// Ends the server backend cleanly with Terminate, when its stream stands between frames.
    async fn tell_server_goodbye(&mut self) {
        if self.upstream.at_frame_boundary() {
            let _ = self.upstream.to.write_all(&messages::TERMINATE).await;
            let _ = self.upstream.to.flush().await;
        }
    }
}

/// Which of [`until_one_ends`]'s futures ended first, with its output.
#[derive(Debug, PartialEq)]
enum Ended<T> {
    /// The client → server pump.
    Upstream(T),
    /// The server → client pump.
    Downstream(T),
    /// The shutdown token fired.
    Shutdown,
}

/// Polls the two pumps and the shutdown future until one of them ends.
///
/// Each of the three is polled only when what it waits on woke the task: a message from one
/// side does not also poll the other side's socket and the shutdown token. Each socket
/// direction has one user (a pump reads one socket and writes the other; rustls writes from a
/// read only for a last alert, when the read fails and the session ends), so no two share a
/// wake slot. The pumps take turns going first: one that spends the task's whole budget (a
/// client flooding COPY data) would otherwise leave the other nothing on every poll.
async fn until_one_ends<T>(
    upstream: impl Future<Output = T>,
    downstream: impl Future<Output = T>,
    shutdown: impl Future<Output = ()>,
) -> Ended<T> {
    let gates = Gates::<3>::new();
    let mut upstream = std::pin::pin!(upstream);
    let mut downstream = std::pin::pin!(downstream);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut downstream_first = true;
    std::future::poll_fn(|cx| {
        let woken = gates.woken(cx);
        downstream_first = !downstream_first;
        let order = if downstream_first { [1, 0] } else { [0, 1] };
        for pump in order {
            if !woken.has(pump) {
                continue;
            }
            if pump == 0 {
                if let Poll::Ready(end) = upstream.as_mut().poll(&mut gates.context(0)) {
                    return Poll::Ready(Ended::Upstream(end));
                }
            } else if let Poll::Ready(end) = downstream.as_mut().poll(&mut gates.context(1)) {
                return Poll::Ready(Ended::Downstream(end));
            }
        }
        if woken.has(2) && shutdown.as_mut().poll(&mut gates.context(2)).is_ready() {
            return Poll::Ready(Ended::Shutdown);
        }
        Poll::Pending
    })
    .await
}

/// Whether `buf` starts with a whole frame.
pub fn has_whole_frame(buf: &[u8]) -> bool {
    match FrameHeader::parse(buf, usize::MAX) {
        Some(Ok(header)) => buf.len() >= header.frame_len(),
        Some(Err(_)) => true,
        None => false,
    }
}

/// Reads one whole frame (for the startup phase, where frames are few and small).
/// `Ok(None)` when the stream closes between frames.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<BytesMut>, PumpError> {
    loop {
        if let Some(header) = FrameHeader::parse(buf, limit) {
            let header = header.map_err(PumpError::Frame)?;
            if buf.len() >= header.frame_len() {
                return Ok(Some(buf.split_to(header.frame_len())));
            }
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await.map_err(PumpError::Read)? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(PumpError::Read(io::ErrorKind::UnexpectedEof.into()))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(
        buf: &[u8],
        limit: usize,
        stop_at_terminate: bool,
    ) -> Pump<&'static [u8], Vec<u8>, Passthrough> {
        Pump::new(
            &[][..],
            Vec::new(),
            Passthrough,
            BytesMut::from(buf),
            (limit, limit),
            stop_at_terminate,
        )
    }

    fn ready(p: &mut Pump<&'static [u8], Vec<u8>, Passthrough>) -> (usize, bool) {
        let batch = p.scan().unwrap();
        assert!(!batch.assembled);
        (batch.consumed, batch.terminated)
    }

    #[test]
    fn whole_frames_are_ready_and_a_partial_one_streams() {
        // Sync (5 bytes) then the first 7 of a 15-byte Query.
        let mut p = pump(b"S\0\0\0\x04Q\0\0\0\x0eSE", 1024, true);
        assert_eq!(ready(&mut p), (12, false));
        assert_eq!(p.streaming, 8);
        assert!(!p.at_frame_boundary());
        p.buf.advance(12);
        p.buf.extend_from_slice(b"LECT 1;\0Z");
        // The rest of the Query goes; the lone 'Z' waits for its header.
        assert_eq!(ready(&mut p), (8, false));
        assert!(p.at_frame_boundary());
    }

    #[test]
    fn terminate_stops_the_client_pump_only() {
        let mut client = pump(b"X\0\0\0\x04Q\0\0\0\x05x", 1024, true);
        assert_eq!(ready(&mut client), (5, true));
        let mut server = pump(b"X\0\0\0\x04", 1024, false);
        assert_eq!(ready(&mut server), (5, false));
    }

    #[test]
    fn a_bad_header_is_reported_after_the_good_frames() {
        let mut p = pump(b"S\0\0\0\x04Q\0\0\0\x02", 1024, true);
        assert_eq!(ready(&mut p), (5, false));
        p.buf.advance(5);
        assert!(matches!(
            p.scan(),
            Err(PumpError::Frame(FrameError::InvalidLength { .. }))
        ));
        let mut big = pump(b"d\0\x10\0\0", 1024, true);
        assert!(matches!(
            big.scan(),
            Err(PumpError::Frame(FrameError::TooLarge { .. }))
        ));
    }

    /// Rewrites every Query to `SELECT 2` and drops Syncs.
    struct Rewriter;

    impl Filter for Rewriter {
        fn inspects(&mut self, tag: u8) -> bool {
            tag == b'Q' || tag == b'S'
        }

        fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
            if frame[0] == b'Q' {
                out.extend_from_slice(b"Q\0\0\0\x0dSELECT 2\0");
            }
            Ok(Flow::Done)
        }
    }

    #[tokio::test]
    async fn a_filter_rewrites_what_it_inspects_and_the_rest_passes() {
        // Flush, Query, Sync, then half of another Query.
        let input: &'static [u8] = b"H\0\0\0\x04Q\0\0\0\x0dSELECT 1\0S\0\0\0\x04Q\0\0";
        let mut p = Pump::new(
            input,
            Vec::new(),
            Rewriter,
            BytesMut::new(),
            (1024, 1024),
            true,
        );
        assert!(matches!(p.run().await.unwrap(), PumpEnd::Closed));
        assert_eq!(p.to, b"H\0\0\0\x04Q\0\0\0\x0dSELECT 2\0");
        // The incomplete inspected frame waits in the buffer; nothing of it was written.
        assert_eq!(&p.buf[..], b"Q\0\0");
        // An inspected frame over the inspect limit is refused before it is buffered whole.
        let mut small = Pump::new(
            &[][..],
            Vec::new(),
            Rewriter,
            BytesMut::from(&b"Q\0\0\x10\0"[..]),
            (1 << 20, 1024),
            true,
        );
        assert!(matches!(
            small.scan(),
            Err(PumpError::Frame(FrameError::TooLarge { .. }))
        ));
    }

    /// Leaves `SELECT 1` as it is, puts a Flush before `SELECT 2` and leaves it, rewrites
    /// `SELECT 3` into `SELECT 4`.
    struct Marker;

    impl Filter for Marker {
        fn inspects(&mut self, tag: u8) -> bool {
            tag == b'Q'
        }

        fn on_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<Flow, SessionError> {
            match &frame[5..] {
                b"SELECT 1\0" => Ok(Flow::Unchanged),
                b"SELECT 2\0" => {
                    out.extend_from_slice(b"H\0\0\0\x04");
                    Ok(Flow::Unchanged)
                }
                _ => {
                    out.extend_from_slice(b"Q\0\0\0\x0dSELECT 4\0");
                    Ok(Flow::Done)
                }
            }
        }
    }

    #[tokio::test]
    async fn frames_left_unchanged_keep_their_place_among_rewritten_ones() {
        let q = |n: u8| [&b"Q\0\0\0\x0dSELECT "[..], &[n, 0]].concat();
        let flush: &[u8] = b"H\0\0\0\x04";
        let sync: &[u8] = b"S\0\0\0\x04";
        let input = [
            flush,
            &q(b'1'),
            &q(b'2'),
            &q(b'1'),
            &q(b'3'),
            &q(b'1'),
            sync,
        ]
        .concat();
        let input: &'static [u8] = Box::leak(input.into_boxed_slice());
        let mut p = Pump::new(
            input,
            Vec::new(),
            Marker,
            BytesMut::new(),
            (1024, 1024),
            true,
        );
        assert!(matches!(p.run().await.unwrap(), PumpEnd::Closed));
        let expected = [
            flush,
            &q(b'1'),
            flush,
            &q(b'2'),
            &q(b'1'),
            &q(b'4'),
            &q(b'1'),
            sync,
        ]
        .concat();
        assert_eq!(p.to, expected);

        // Only unchanged frames: the batch is written from the buffer, not copied.
        let mut p = Pump::new(
            &[][..],
            Vec::new(),
            Marker,
            BytesMut::from(&[flush, &q(b'1'), sync, &q(b'1')].concat()[..]),
            (1024, 1024),
            true,
        );
        let batch = p.scan().unwrap();
        assert!(!batch.assembled);
        assert_eq!(batch.consumed, p.buf.len());
    }

    #[tokio::test]
    async fn the_pump_forwards_everything_it_reads() {
        let input: &'static [u8] = b"Q\0\0\0\x0eSELECT 1;\0X\0\0\0\x04";
        let mut p = Pump::new(
            input,
            Vec::new(),
            Passthrough,
            BytesMut::new(),
            (1024, 1024),
            true,
        );
        assert!(matches!(p.run().await.unwrap(), PumpEnd::Terminated));
        assert_eq!(p.to, input);
        assert_eq!(p.forwarded, input.len() as u64);
    }

    /// A future that never ends and spends the task's whole budget on every poll, as a pump
    /// does while its source is always ready (a client flooding COPY data).
    async fn greedy() -> &'static str {
        loop {
            tokio::task::coop::consume_budget().await;
            if std::hint::black_box(false) {
                return "greedy";
            }
        }
    }

    /// A future that ends the first time it is polled with budget left.
    async fn patient() -> &'static str {
        tokio::task::coop::consume_budget().await;
        "patient"
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pump_spending_the_whole_budget_does_not_starve_the_other() {
        // Each way round: whichever pump would be polled first on every wake.
        let limit = std::time::Duration::from_secs(10);
        let ended = crate::timer::timeout(
            limit,
            until_one_ends(greedy(), patient(), std::future::pending()),
        )
        .await;
        assert_eq!(ended, Ok(Ended::Downstream("patient")));
        let ended = crate::timer::timeout(
            limit,
            until_one_ends(patient(), greedy(), std::future::pending()),
        )
        .await;
        assert_eq!(ended, Ok(Ended::Upstream("patient")));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn shutdown_ends_the_relay_while_a_pump_spends_the_whole_budget() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let ended = crate::timer::timeout(
            std::time::Duration::from_secs(10),
            until_one_ends(greedy(), std::future::pending(), shutdown.cancelled()),
        )
        .await;
        assert_eq!(ended, Ok(Ended::Shutdown));
    }
}
