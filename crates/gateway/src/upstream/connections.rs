//! The direct path's upstream side: HTTP/1.1 keep-alive connections kept per instance and per worker (a
//! worker only ever takes its own, so a connection is driven by the runtime that opened it and never
//! waits on a lock another thread holds), one attempt of a request on one of them, and the response
//! head it gives.

use std::io::IoSlice;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

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

/// Sends a request to `endpoint` on a pooled connection or a new one, and reads the response head:
/// `line` is its request line and `Host` header, `rest` its other headers and body, sent together.
/// `timeout` bounds a connect; the caller bounds the whole attempt.
pub(crate) async fn attempt(
    endpoint: Arc<Endpoint>,
    method: &Method,
    line: &[u8],
    rest: &[u8],
    timeout: Duration,
) -> Result<UpstreamResponse, SendError> {
    let mut connection = match endpoint.idle().take() {
        Some(connection) => connection,
        None => connect(&endpoint, timeout).await?,
    };
    write_all_vectored(
        &mut connection.stream,
        &mut [IoSlice::new(line), IoSlice::new(rest)],
    )
    .await
    .map_err(|e| SendError::Other(e.into()))?;
    let mut headers = Vec::with_capacity(16);
    loop {
        match parse_response(&connection.buf, method, &mut headers) {
            ResponseParse::Complete(head) => {
                return Ok(UpstreamResponse {
                    head,
                    headers,
                    connection,
                    endpoint,
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
        match connection.read_more().await {
            Ok(0) => return Err(SendError::Other(AttemptError::Closed.into())),
            Ok(_) => {}
            Err(e) => return Err(SendError::Other(e.into())),
        }
    }
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
