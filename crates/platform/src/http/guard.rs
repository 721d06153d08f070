//! The guard between a client connection and hyper: it follows the requests' framing (head, then a
//! body of `Content-Length` bytes or chunks) so that it knows what each byte is, hands hyper only whole
//! heads that keep the limits, and times every wait by what it waits for — the next request
//! (`keep_alive_timeout`), the rest of a head (`header_read_timeout`), the next piece of a body
//! (`body_read_timeout`); writes carry the write timeout ([`TimedIo`]).
//!
//! Hyper answers a head it cannot take with an empty 400/414/431 and closes; the guard answers first,
//! with problem+json and a request id. To end a connection it stops feeding hyper and fires `ending`:
//! the server then shuts hyper down gracefully (the request in flight, if any, is answered first) and,
//! when hyper closes the connection, the guard writes its refusal before the close, then reads and
//! drops what the client still sends for a moment (a lingering close, as nginx does): closing with
//! unread bytes would reset the connection, and the client could lose the refusal.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::chunked::ChunkedScanner;
use super::limits::{ConnectionLimits, HeadRefusal};
use super::timed::TimedIo;

/// Most headers a request may have, as hyper's default; more is a 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// How long a refused connection is drained before it closes.
const LINGER: Duration = Duration::from_secs(2);

/// What the guard expects next from the peer.
enum Phase {
    Head,
    Body(u64),
    Chunked(ChunkedScanner),
    /// The guard ended the connection: hyper gets nothing more.
    Ended,
}

pub struct GuardedIo<S> {
    io: TimedIo<S>,
    limits: ConnectionLimits,
    phase: Phase,
    /// Read from the peer and not handed to hyper yet.
    pending: BytesMut,
    /// How many bytes at the front of `pending` hyper may have: a whole head, or body bytes.
    cleared: usize,
    /// When the head being read began: the accept for a connection's first request, the head's first
    /// byte for the others; `None` while a keep-alive connection waits for its next request.
    head_started: Option<Instant>,
    ending: CancellationToken,
    /// The response to write before the connection closes, and how much of it went out.
    refusal: Vec<u8>,
    written: usize,
    /// The refusal is out and the write side closed: draining until the linger ends.
    lingering: bool,
}

impl<S> GuardedIo<S> {
    /// Guards a connection accepted just now.
    pub fn new(inner: S, limits: ConnectionLimits) -> Self {
        Self {
            io: TimedIo::new(inner, limits.write_timeout),
            limits,
            phase: Phase::Head,
            pending: BytesMut::new(),
            cleared: 0,
            head_started: Some(Instant::now()),
            ending: CancellationToken::new(),
            refusal: Vec::new(),
            written: 0,
            lingering: false,
        }
    }

    /// Counts the first head's time from `started` rather than from now: for a connection whose
    /// first bytes were read by someone else first.
    pub fn head_started_at(mut self, started: Instant) -> Self {
        self.head_started = Some(started);
        self
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Fires when the guard wants the connection closed.
    pub(crate) fn ending(&self) -> CancellationToken {
        self.ending.clone()
    }

    fn end(&mut self, refusal: Option<HeadRefusal>) {
        self.phase = Phase::Ended;
        if let Some(refusal) = refusal {
            self.refusal = refusal.response(&self.limits);
        }
        self.ending.cancel();
    }

    /// Moves the framing on over `pending`: whether more of it was cleared for hyper.
    fn advance(&mut self) -> Result<bool, Stop> {
        match &mut self.phase {
            Phase::Head => {
                if self.pending.is_empty() {
                    return Ok(false);
                }
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut request = httparse::Request::new(&mut storage);
                match request.parse(&self.pending) {
                    Ok(httparse::Status::Partial) => {
                        self.limits.check_partial(&self.pending)?;
                        Ok(false)
                    }
                    Ok(httparse::Status::Complete(len)) => {
                        let target = request.path.map_or(0, str::len);
                        self.limits.check_complete(len, target)?;
                        self.phase = body_of(request.headers)?;
                        self.cleared = len;
                        self.head_started = None;
                        Ok(true)
                    }
                    Err(httparse::Error::TooManyHeaders) => Err(HeadRefusal::TooLarge.into()),
                    Err(_) => Err(HeadRefusal::Malformed.into()),
                }
            }
            Phase::Body(remaining) => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(self.pending.len());
                if take == 0 {
                    return Ok(false);
                }
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.phase = Phase::Head;
                }
                self.cleared = take;
                Ok(true)
            }
            Phase::Chunked(scanner) => {
                let take = scanner.feed(&self.pending).map_err(|_| Stop::BadBody)?;
                if scanner.is_done() {
                    self.phase = Phase::Head;
                }
                self.cleared = take;
                Ok(take > 0)
            }
            Phase::Ended => Ok(false),
        }
    }

    /// How long the read about to be made may wait.
    fn read_deadline(&self) -> Instant {
        match (&self.phase, self.head_started) {
            (Phase::Head, Some(started)) => started + self.limits.header_read_timeout,
            (Phase::Head, None) => self.io.last_progress() + self.limits.keep_alive_timeout,
            _ => self.io.last_progress() + self.limits.body_read_timeout,
        }
    }
}

/// Why the guard stops following a connection.
enum Stop {
    /// A head it answers itself.
    Refuse(HeadRefusal),
    /// A body hyper already started on that cannot be framed: hyper's request fails.
    BadBody,
}

impl From<HeadRefusal> for Stop {
    fn from(refusal: HeadRefusal) -> Self {
        Self::Refuse(refusal)
    }
}

/// The body that follows a request head (RFC 9112 §6.3): chunked when that is the last transfer
/// coding, else `Content-Length` bytes (all of its values equal), else none.
fn body_of(headers: &[httparse::Header<'_>]) -> Result<Phase, HeadRefusal> {
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            for value in header.value.split(|&b| b == b',') {
                let value = value.trim_ascii();
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(HeadRefusal::Malformed)?;
                if length.is_some_and(|known| known != parsed) {
                    return Err(HeadRefusal::Malformed);
                }
                length = Some(parsed);
            }
        }
    }
    match (chunked, length) {
        (Some(true), _) => Ok(Phase::Chunked(ChunkedScanner::default())),
        (Some(false), _) => Err(HeadRefusal::Malformed),
        (None, Some(length)) if length > 0 => Ok(Phase::Body(length)),
        (None, _) => Ok(Phase::Head),
    }
}

fn timed_out(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::TimedOut
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.cleared > 0 {
                let n = this.cleared.min(out.remaining());
                out.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                this.cleared -= n;
                return Poll::Ready(Ok(()));
            }
            match this.advance() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(Stop::Refuse(refusal)) => {
                    this.end(Some(refusal));
                    return Poll::Pending;
                }
                Err(Stop::BadBody) => {
                    this.end(None);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed chunked request body",
                    )));
                }
            }
            if matches!(this.phase, Phase::Ended) {
                // The server is closing the connection; hyper has all it gets.
                return Poll::Pending;
            }
            let deadline = this.read_deadline();
            this.io.set_read_deadline(Some(deadline));
            this.pending.reserve(READ_SIZE);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.pending
            )) {
                // The peer is done. Hyper never saw any of a head cut short, so to it this is a
                // clean close.
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {
                    if matches!(this.phase, Phase::Head) && this.head_started.is_none() {
                        this.head_started = Some(Instant::now());
                    }
                }
                Err(e) if timed_out(&e) && matches!(this.phase, Phase::Head) => {
                    // Part of a head and then silence is a slow client, told why; an idle
                    // keep-alive connection simply closes.
                    let partial = !this.pending.is_empty();
                    tracing::debug!(partial, "closing a connection that sent no request in time");
                    this.end(partial.then_some(HeadRefusal::Timeout));
                    return Poll::Pending;
                }
                Err(e) => {
                    if timed_out(&e) {
                        tracing::debug!("closing a connection whose request body stalled");
                        this.end(None);
                    }
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

/// Bytes asked of the peer per read.
const READ_SIZE: usize = 8 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Hyper closes the connection: the guard's refusal, if any, goes out first, then the lingering
    /// close.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_empty() {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        }
        while this.written < this.refusal.len() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &this.refusal[this.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.written += n;
        }
        if !this.lingering {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.lingering = true;
            this.io.set_read_deadline(Some(Instant::now() + LINGER));
        }
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {}
                // The client closed, the connection broke or the linger is over.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}
