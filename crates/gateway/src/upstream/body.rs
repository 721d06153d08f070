//! Upstream responses as the router path and the readiness probe get them: an `http::Response` whose
//! body streams from the upstream connection as the head's framing says (a chunked one decoded, for
//! hyper's server frames it again), the connection going back to its instance's pool once the body was
//! read to its end; and a body that keeps its request counted as outstanding on its instance until it
//! is finished, so least-outstanding balancing sees long downloads too.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body::{Frame, SizeHint};
use platform::http::ChunkedScanner;

use super::SendError;
use super::connections::{StreamError, Upload, UpstreamConnection, UpstreamResponse};
use super::endpoints::{Endpoint, InFlight};
use crate::wire::Framing;

/// The response as an `http::Response`: status, headers (hop-by-hop ones included; the router path
/// strips them) and a body read from the connection. Fails on a header `http` refuses.
pub(crate) fn into_http(response: UpstreamResponse) -> Result<Response<Body>, SendError> {
    let UpstreamResponse {
        head,
        headers,
        mut connection,
        endpoint,
        upload,
    } = response;
    let status = StatusCode::from_u16(head.status).map_err(|e| SendError::Other(e.into()))?;
    let raw = connection.buf.split_to(head.len);
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in &headers {
        let name = HeaderName::from_bytes(&raw[header.name.clone()])
            .map_err(|e| SendError::Other(e.into()))?;
        let value = HeaderValue::from_bytes(&raw[header.value.clone()])
            .map_err(|e| SendError::Other(e.into()))?;
        map.append(name, value);
    }
    let left = match head.framing {
        Framing::Empty => Left::Length(0),
        Framing::Length(length) => Left::Length(length),
        Framing::Chunked => Left::Chunked(ChunkedScanner::default()),
        Framing::UntilClose => Left::UntilClose,
    };
    let mut reading = Reading {
        connection: Some(connection),
        endpoint,
        upload,
        reusable: head.reusable,
        left,
    };
    // A body known to be empty is over now: hyper need not poll it (it does not for `HEAD`) for the
    // connection to go back to the pool.
    let body = match reading.left {
        Left::Length(0) => {
            reading.finish();
            Body::empty()
        }
        Left::Length(length) => Body::new(UpstreamBody::new(reading, Some(length))),
        Left::Chunked(_) | Left::UntilClose => Body::new(UpstreamBody::new(reading, None)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = map;
    Ok(response)
}

/// A response body read from its connection, of known size when the head declared a length (the
/// compression layer and hyper's server go by it).
struct UpstreamBody {
    data: BoxStream<'static, Result<Bytes, StreamError>>,
    /// Bytes yet to come, when known.
    remaining: Option<u64>,
}

impl UpstreamBody {
    fn new(reading: Reading, remaining: Option<u64>) -> Self {
        let data = futures::stream::unfold(Some(reading), |state| async move {
            let mut reading = state?;
            match reading.next().await {
                Ok(Some(data)) => Some((Ok(data), Some(reading))),
                Ok(None) => None,
                // Nothing follows an error: the connection is dropped, and with it closed.
                Err(e) => Some((Err(e), None)),
            }
        });
        Self {
            data: data.boxed(),
            remaining,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.data.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(data))) = &polled
            && let Some(remaining) = &mut self.remaining
        {
            *remaining = remaining.saturating_sub(data.len() as u64);
        }
        polled.map(|next| next.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// What is left of a response body.
enum Left {
    Length(u64),
    Chunked(ChunkedScanner),
    UntilClose,
}

/// A response body being read from its connection.
struct Reading {
    /// `None` once the body is over (the connection went back to the pool or was closed).
    connection: Option<UpstreamConnection>,
    endpoint: Arc<Endpoint>,
    upload: Option<Upload>,
    /// The head allows another request on the connection.
    reusable: bool,
    left: Left,
}

impl Reading {
    /// The body's next data, `None` at its end. The connection is given back as soon as the end is
    /// read, before the last data goes out: a client that has it all may send its next request at once.
    async fn next(&mut self) -> Result<Option<Bytes>, StreamError> {
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return Ok(None);
            };
            let buf = &mut connection.buf;
            let (data, done) = match &mut self.left {
                Left::Length(left) => {
                    let take = (buf.len() as u64).min(*left) as usize;
                    *left -= take as u64;
                    (buf.split_to(take).freeze(), *left == 0)
                }
                Left::Chunked(scanner) => {
                    let (used, data) = scanner.decode(buf).map_err(|e| {
                        StreamError::Read(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                    })?;
                    (buf.split_to(used).freeze().slice(data), scanner.is_done())
                }
                Left::UntilClose => (buf.split().freeze(), false),
            };
            if done {
                self.finish();
                return Ok((!data.is_empty()).then_some(data));
            }
            if !data.is_empty() {
                return Ok(Some(data));
            }
            let read = match &mut self.upload {
                Some(upload) if !upload.is_finished() => connection.read_sending(upload).await?,
                _ => connection.read_more().await.map_err(StreamError::Read)?,
            };
            if read == 0 {
                if matches!(self.left, Left::UntilClose) {
                    self.connection = None;
                    return Ok(None);
                }
                return Err(StreamError::Read(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before the end of the body",
                )));
            }
        }
    }

    /// The body was read to its end: the connection goes back to the pool if the request was sent whole
    /// and the head allows another one; otherwise it is closed.
    fn finish(&mut self) {
        let sent = self.upload.take().is_none_or(|upload| upload.is_finished());
        if let Some(connection) = self.connection.take()
            && self.reusable
            && sent
        {
            self.endpoint.idle().put(connection);
        }
    }
}

/// A response body that keeps its request counted on its instance until it is finished or dropped.
pub(crate) struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    pub(crate) fn new(inner: Body, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
