//! Response compression on the proxy path, with the router's rules (`crate::compression`): gzip, br or
//! zstd by `Accept-Encoding`, at level 4, for bodies over [`crate::COMPRESS_ABOVE_BYTES`] that are not
//! images (SVG aside), gRPC or event streams and are not encoded already.

use std::io::Write;

use super::wire::{Kind, RawHeader};

/// Largest body compressed here, read whole first; a larger one passes through as it is.
pub(crate) const MAX_COMPRESSED_BODY: u64 = 4 * 1024 * 1024;
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
/// (as the router's compression layer picks), none for `q=0`.
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

/// Whether a response of this length with these headers (offsets into `buf`) is worth compressing.
pub(crate) fn worth_compressing(length: u64, headers: &[RawHeader], buf: &[u8]) -> bool {
    if length <= crate::COMPRESS_ABOVE_BYTES || length > MAX_COMPRESSED_BODY {
        return false;
    }
    headers.iter().all(|header| match header.kind {
        Kind::ContentEncoding | Kind::ContentRange => false,
        Kind::ContentType => {
            let value = &buf[header.value.clone()];
            let starts = |prefix: &[u8]| {
                value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix)
            };
            !(starts(b"application/grpc")
                || starts(b"text/event-stream")
                || (starts(b"image/") && !starts(b"image/svg+xml")))
        }
        _ => true,
    })
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
