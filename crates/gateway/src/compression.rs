//! Response compression, the one decision both proxy paths take: gzip, br or zstd by `Accept-Encoding`
//! ([`negotiate`]), at level 4, for bodies of known length over [`COMPRESS_ABOVE_BYTES`] and up to
//! [`MAX_COMPRESSED_BODY`] that are not images (SVG aside), gRPC or event streams and are not encoded
//! already ([`worth_compressing`]). The direct path applies it to the raw response; the router path
//! through [`CompressionLayer`].

use std::io::Write;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use futures::future::BoxFuture;
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{Layer, Service};

/// Smallest response worth compressing: below about a kilobyte the saving is a few bytes and the CPU cost
/// (brotli allocates and clears large windows per response) dominates the request.
pub(crate) const COMPRESS_ABOVE_BYTES: u64 = 1024;
/// Largest body compressed, read whole first; a larger one passes through as it is, and so does one of
/// unknown length.
pub(crate) const MAX_COMPRESSED_BODY: u64 = 4 * 1024 * 1024;
/// Each algorithm's default (brotli's is 11, its slowest) costs far more CPU per request than the
/// proxying itself; 4 is meant for dynamic responses.
const LEVEL: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    pub(crate) fn compress(self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        let out = Vec::with_capacity(body.len() / 2);
        match self {
            Encoding::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(out, flate2::Compression::new(LEVEL));
                encoder.write_all(body)?;
                encoder.finish()
            }
            Encoding::Brotli => {
                let mut encoder = brotli::CompressorWriter::new(out, 4096, LEVEL, 22);
                encoder.write_all(body)?;
                encoder.flush()?;
                Ok(encoder.into_inner())
            }
            Encoding::Zstd => zstd::bulk::compress(body, LEVEL as i32),
        }
    }
}

/// The encoding the client prefers among those supported: the highest `q`, the last named on a tie
/// (as tower-http's compression layer does), none for `q=0`.
pub(crate) fn negotiate(accept_encoding: &[u8]) -> Option<Encoding> {
    let text = std::str::from_utf8(accept_encoding).ok()?;
    let mut best: Option<(Encoding, f32)> = None;
    for item in text.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let encoding =
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                Encoding::Gzip
            } else if coding.eq_ignore_ascii_case("br") {
                Encoding::Brotli
            } else if coding.eq_ignore_ascii_case("zstd") {
                Encoding::Zstd
            } else {
                continue;
            };
        let mut quality = 1.0;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = value.trim().parse().unwrap_or(0.0);
            }
        }
        if quality > 0.0 && best.is_none_or(|(_, q)| quality >= q) {
            best = Some((encoding, quality));
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// Whether a response is worth compressing: its body's length, its `Content-Type`, and whether it
/// carries a `Content-Encoding` or `Content-Range` (an encoded body or a part of one is left alone).
pub(crate) fn worth_compressing(length: u64, content_type: Option<&[u8]>, encoded: bool) -> bool {
    if encoded || length <= COMPRESS_ABOVE_BYTES || length > MAX_COMPRESSED_BODY {
        return false;
    }
    let Some(value) = content_type else {
        return true;
    };
    let starts = |prefix: &[u8]| {
        value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    !(starts(b"application/grpc")
        || starts(b"text/event-stream")
        || (starts(b"image/") && !starts(b"image/svg+xml")))
}

/// The router path's compression: the same decision, taken on the response the router made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompressionLayer;

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Compression<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Compression<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let encoding = request
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|value| negotiate(value.as_bytes()));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match encoding {
                Some(encoding) => compress_response(response, encoding).await,
                None => response,
            })
        })
    }
}

async fn compress_response(response: Response<Body>, encoding: Encoding) -> Response<Body> {
    let headers = response.headers();
    let worth = response.body().size_hint().exact().is_some_and(|length| {
        worth_compressing(
            length,
            headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
            headers.contains_key(header::CONTENT_ENCODING)
                || headers.contains_key(header::CONTENT_RANGE),
        )
    });
    if !worth {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let plain = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The body broke off (an upstream went away mid-response): the client's connection is cut
        // too, as the direct path does, rather than sent a response that looks whole.
        Err(e) => {
            return Response::from_parts(
                parts,
                Body::from_stream(futures::stream::once(
                    async move { Err::<bytes::Bytes, _>(e) },
                )),
            );
        }
    };
    let compressed = match encoding.compress(&plain) {
        Ok(compressed) => compressed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot compress a response; sending it as it is");
            return Response::from_parts(parts, Body::from(plain));
        }
    };
    parts.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.name()),
    );
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    parts.headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(compressed.len() as u64),
    );
    Response::from_parts(parts, Body::from(compressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_supported_encoding_is_chosen() {
        assert_eq!(negotiate(b"gzip"), Some(Encoding::Gzip));
        assert_eq!(negotiate(b"gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(negotiate(b"br;q=0.5, gzip;q=0.9"), Some(Encoding::Gzip));
        assert_eq!(negotiate(b"gzip;q=0, identity"), None);
        assert_eq!(negotiate(b"deflate"), None);
    }

    #[test]
    fn every_encoding_round_trips() {
        let body = "{\"sku\":\"A-1\"},".repeat(200);
        let gzip = Encoding::Gzip.compress(body.as_bytes()).unwrap_or_default();
        let mut decoded = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut decoded)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, body);
        let zstd = Encoding::Zstd.compress(body.as_bytes()).unwrap_or_default();
        assert_eq!(
            zstd::decode_all(&zstd[..]).unwrap_or_default(),
            body.as_bytes()
        );
        let br = Encoding::Brotli
            .compress(body.as_bytes())
            .unwrap_or_default();
        let mut decoded = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut decoded).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, body.as_bytes());
        assert!(gzip.len() < body.len() / 4);
    }
}
