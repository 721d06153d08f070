//! The upstream side of both proxy paths, and the readiness probe's: HTTP/1.1 keep-alive connections
//! kept per instance and per worker (a worker only ever takes its own, so a connection is driven by the
//! runtime that opened it and never waits on a lock another thread holds), one attempt of a request on
//! one of them, and the response head it gives. An instance has this one pool: the router path's
//! requests ([`super::UpstreamClient::send`]) and the probe use the connections the direct path does.

use std::io::IoSlice;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::BoxError;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use http_body_util::{BodyExt, LengthLimitError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::WriteHalf;

use super::{AttemptResponse, Endpoint, MAX_CONNECT_TIMEOUT, POOL_IDLE_TIMEOUT, SendError};
use crate::wire::{RawHeader, ResponseHead, ResponseParse, parse_response};

/// Largest upstream response head; a bigger one is a failed attempt (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const READ_BUFFER: usize = 8 * 1024;

/// An open connection to an instance, with what was read from it and not consumed yet.
pub(crate) struct UpstreamConnection {
    stream: TcpStream,
    pub(crate) buf: BytesMut,
    idle_since: Instant,
}

impl UpstreamConnection {
    /// Reads what the upstream sent next into the buffer: how many bytes, 0 at the end of the stream.
    pub(crate) async fn read_more(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_BUFFER);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads as [`Self::read_more`] does while sending what it can of `upload` until it is sent whole:
    /// a server may answer before it has read the whole body, and one that streams its answer (a mirror,
    /// say) must be read for it to go on reading the body.
    pub(crate) async fn read_sending(&mut self, upload: &mut Upload) -> Result<usize, StreamError> {
        self.buf.reserve(READ_BUFFER);
        let (mut reader, mut writer) = self.stream.split();
        while !upload.is_finished() {
            // Both are cancel safe: the branch that loses has read or written nothing.
            tokio::select! {
                read = reader.read_buf(&mut self.buf) => return read.map_err(StreamError::Read),
                sent = upload.send_some(&mut writer) => match sent {
                    // A server that answers before reading the whole body may close its side: what it
                    // sent before is still the answer, if it can be read.
                    Err(StreamError::Write(error)) => {
                        return match reader.read_buf(&mut self.buf).await {
                            Ok(read) if read > 0 => Ok(read),
                            _ => Err(StreamError::Write(error)),
                        };
                    }
                    other => other?,
                },
            }
        }
        reader
            .read_buf(&mut self.buf)
            .await
            .map_err(StreamError::Read)
    }

    /// Whether an idle connection can carry a request: not too old, and nothing to read on it. Bytes
    /// or an end of stream on an idle connection mean the server closed it or broke the framing. The
    /// socket is asked only when its readiness changed since the last read, so a quiet connection
    /// costs no system call.
    fn is_usable(&mut self) -> bool {
        if self.idle_since.elapsed() > POOL_IDLE_TIMEOUT || !self.buf.is_empty() {
            return false;
        }
        match self.stream.ready(Interest::READABLE).now_or_never() {
            None => true,
            Some(Err(_)) => false,
            Some(Ok(_)) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// An instance's idle connections: one list per dedicated worker, and one for any other thread.
pub(crate) struct IdleConnections {
    slots: Box<[Mutex<Vec<UpstreamConnection>>]>,
    max_per_slot: usize,
}

impl IdleConnections {
    pub(crate) fn new(workers: usize, max_per_slot: usize) -> Self {
        Self {
            slots: (0..=workers).map(|_| Mutex::new(Vec::new())).collect(),
            max_per_slot,
        }
    }

    fn slot(&self) -> &Mutex<Vec<UpstreamConnection>> {
        let shared = self.slots.len() - 1;
        let index = platform::http::worker_index().map_or(shared, |i| i.min(shared));
        &self.slots[index]
    }

    /// The most recently used usable connection, if any; unusable ones met on the way are closed.
    fn take(&self) -> Option<UpstreamConnection> {
        let mut idle = self.slot().lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut connection) = idle.pop() {
            if connection.is_usable() {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps a connection whose last response was read to its end for the next request.
    pub(crate) fn put(&self, mut connection: UpstreamConnection) {
        connection.idle_since = Instant::now();
        let mut idle = self.slot().lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_per_slot {
            idle.push(connection);
        }
    }
}

/// An upstream's answer: its head, read into the connection's buffer, and the connection to read the
/// body from.
pub(crate) struct UpstreamResponse {
    pub(crate) head: ResponseHead,
    pub(crate) headers: Vec<RawHeader>,
    pub(crate) connection: UpstreamConnection,
    /// Where the connection goes back to once the body is read.
    pub(crate) endpoint: Arc<Endpoint>,
    /// The streamed request body, when it was not sent whole before the head came: it goes on being
    /// sent while the response body is read ([`UpstreamConnection::read_sending`]), and until it is
    /// the connection cannot be used again. Always `None` for a request given whole (the direct path's).
    pub(crate) upload: Option<Upload>,
}

impl AttemptResponse for UpstreamResponse {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.head.status).unwrap_or(StatusCode::BAD_GATEWAY)
    }
}

/// Why an attempt failed after the connection was made.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("connection to {0} timed out")]
    ConnectTimeout(String),
    #[error("the connection closed before a complete response head")]
    Closed,
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    #[error("the response head is larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
}

/// The request line and `Host` header of a request to `endpoint`: the instance's base path before
/// `target`, the caller's path and query. Every request to an upstream starts with it.
pub(crate) fn request_line(method: &Method, endpoint: &Endpoint, target: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(
        target.len() + endpoint.prefix().len() + endpoint.authority().len() + 32,
    );
    line.extend_from_slice(method.as_str().as_bytes());
    line.push(b' ');
    line.extend_from_slice(endpoint.prefix().as_bytes());
    line.extend_from_slice(target);
    line.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    line.extend_from_slice(endpoint.authority().as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// Sends a request to `endpoint` on a pooled connection or a new one, and reads the response head.
/// `request` is the request's bytes, written together: its [`request_line`], its other headers and the
/// blank line, and its body when it is given whole. A `streamed` body follows them as chunks (the head
/// must have said `transfer-encoding: chunked`), sent as it arrives while the head is awaited; what is
/// left of it when the head comes is in the response's `upload`. `timeout` bounds a connect; the caller
/// bounds the whole attempt.
pub(crate) async fn attempt<const N: usize>(
    endpoint: Arc<Endpoint>,
    method: &Method,
    request: [&[u8]; N],
    streamed: Option<Body>,
    timeout: Duration,
) -> Result<UpstreamResponse, SendError> {
    let mut connection = match endpoint.idle().take() {
        Some(connection) => connection,
        None => connect(&endpoint, timeout).await?,
    };
    write_all_vectored(&mut connection.stream, &mut request.map(IoSlice::new))
        .await
        .map_err(|e| SendError::Other(e.into()))?;
    let mut upload = streamed.map(Upload::new);
    let mut headers = Vec::with_capacity(16);
    loop {
        match parse_response(&connection.buf, method, &mut headers) {
            ResponseParse::Complete(head) => {
                return Ok(UpstreamResponse {
                    head,
                    headers,
                    connection,
                    endpoint,
                    upload,
                });
            }
            ResponseParse::Interim(len) => {
                let _ = connection.buf.split_to(len);
                continue;
            }
            ResponseParse::Invalid(reason) => {
                return Err(SendError::Other(AttemptError::Invalid(reason).into()));
            }
            ResponseParse::Partial if connection.buf.len() >= MAX_RESPONSE_HEAD => {
                return Err(SendError::Other(AttemptError::HeadTooLarge.into()));
            }
            ResponseParse::Partial => {}
        }
        let read = match &mut upload {
            None => connection
                .read_more()
                .await
                .map_err(|e| SendError::Other(e.into())),
            Some(upload) => connection
                .read_sending(upload)
                .await
                .map_err(SendError::from),
        };
        if read? == 0 {
            return Err(SendError::Other(AttemptError::Closed.into()));
        }
    }
}

/// A request body sent as it arrives, each data frame as one chunk (RFC 9112 §7.1), then the last
/// chunk; trailers are not passed on.
pub(crate) struct Upload {
    body: Body,
    /// What is left to write of the current chunk: its size line, its data and its end.
    pending: [Bytes; 3],
    /// The body has ended: `pending` holds the last chunk, or nothing once it is written.
    ended: bool,
}

impl Upload {
    fn new(body: Body) -> Self {
        Self {
            body,
            pending: Default::default(),
            ended: false,
        }
    }

    /// The whole body and the last chunk are written: the request is complete.
    pub(crate) fn is_finished(&self) -> bool {
        self.ended && self.pending.iter().all(Bytes::is_empty)
    }

    /// Writes some of the current chunk, or waits for the body's next frame when it is all written.
    async fn send_some(&mut self, writer: &mut WriteHalf<'_>) -> Result<(), StreamError> {
        if self.pending.iter().any(|part| !part.is_empty()) {
            let slices = self.pending.each_ref().map(|part| IoSlice::new(part));
            let mut written = writer
                .write_vectored(&slices)
                .await
                .map_err(StreamError::Write)?;
            if written == 0 {
                return Err(StreamError::Write(std::io::ErrorKind::WriteZero.into()));
            }
            for part in &mut self.pending {
                let taken = written.min(part.len());
                part.advance(taken);
                written -= taken;
            }
            return Ok(());
        }
        match self.body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    let size = Bytes::from(format!("{:x}\r\n", data.len()));
                    self.pending = [size, data, Bytes::from_static(b"\r\n")];
                }
            }
            Some(Err(e)) => return Err(StreamError::Body(e.into())),
            None => {
                self.ended = true;
                self.pending[0] = Bytes::from_static(b"0\r\n\r\n");
            }
        }
        Ok(())
    }
}

/// Why an exchange with a streamed request body broke off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("reading the upstream's response failed")]
    Read(#[source] std::io::Error),
    #[error("the request body could not be read")]
    Body(#[source] BoxError),
    #[error("sending the request body failed")]
    Write(#[source] std::io::Error),
}

impl From<StreamError> for SendError {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Body(source) if caused_by_body_limit(&*source) => SendError::BodyTooLarge,
            other => SendError::Other(other.into()),
        }
    }
}

/// Whether a body error is `Limited`'s: the caller's body went over the limit.
fn caused_by_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Writes every slice, in one system call when the socket takes it all.
async fn write_all_vectored(
    stream: &mut TcpStream,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        let written = stream.write_vectored(slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<UpstreamConnection, SendError> {
    let limit = timeout.min(MAX_CONNECT_TIMEOUT);
    let stream = tokio::time::timeout(limit, TcpStream::connect(endpoint.authority()))
        .await
        .map_err(|_| {
            SendError::Connect(AttemptError::ConnectTimeout(endpoint.authority().to_owned()).into())
        })?
        .map_err(|e| SendError::Connect(e.into()))?;
    // Requests are written whole; without this a small one can wait for the previous one's ACK.
    stream
        .set_nodelay(true)
        .map_err(|e| SendError::Connect(e.into()))?;
    Ok(UpstreamConnection {
        stream,
        buf: BytesMut::with_capacity(READ_BUFFER),
        idle_since: Instant::now(),
    })
}
