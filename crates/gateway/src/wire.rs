//! HTTP/1.1 framing for the direct path (both its sides, [`crate::proxy::direct`] and
//! [`crate::upstream::connections`], which the router path's requests go through too): request and
//! response heads read with `httparse` into offsets of the connection's buffer (nothing is copied or
//! allocated per header), each header's [`Kind`] by the one header policy ([`crate::headers`]), how a
//! response's body is framed, and header lines written.

use std::ops::Range;

use axum::http::Method;

use crate::headers::{Kind, classify};

/// Most headers a head may have; a request with more goes to the router path, which refuses it.
pub(crate) const MAX_HEADERS: usize = 64;

/// A header as offsets into the buffer its head was read into.
#[derive(Debug, Clone)]
pub(crate) struct RawHeader {
    pub(crate) name: Range<usize>,
    pub(crate) value: Range<usize>,
    pub(crate) kind: Kind,
}

/// Where a slice borrowed from `buf` lies in it.
fn offsets(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// A request head the direct path can forward as it is.
#[derive(Debug)]
pub(crate) struct RequestHead {
    /// Bytes of the head, the blank line included; the body follows.
    pub(crate) len: usize,
    pub(crate) method: Method,
    /// The origin-form target (path and query).
    pub(crate) target: Range<usize>,
    /// The path part of the target.
    pub(crate) path: Range<usize>,
    pub(crate) content_length: usize,
    /// The client asked to close the connection after this exchange.
    pub(crate) close: bool,
}

/// What reading a request head gave.
#[derive(Debug)]
pub(crate) enum RequestParse {
    Complete(RequestHead),
    /// More bytes are needed.
    Partial,
    /// Valid or not, something the direct path leaves to the router path: HTTP/1.0, `Expect`,
    /// `Upgrade`, a chunked body, `CONNECT`, an absolute-form target, a `Connection` header naming other
    /// headers, too many headers, or a head the parser refuses (the router path answers it).
    General,
}

/// Reads a request head from the start of `buf`, filling `headers` (cleared first).
pub(crate) fn parse_request(buf: &[u8], headers: &mut Vec<RawHeader>) -> RequestParse {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return RequestParse::Partial,
        Err(_) => return RequestParse::General,
    };
    if request.version != Some(1) {
        return RequestParse::General;
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return RequestParse::General;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return RequestParse::General;
    };
    // The same check the router path's URI parser makes, so both paths accept the same targets.
    if method == Method::CONNECT
        || !target.starts_with('/')
        || axum::http::uri::PathAndQuery::try_from(target).is_err()
    {
        return RequestParse::General;
    }
    let target_range = offsets(buf, target.as_bytes());
    let path_len = target.find('?').unwrap_or(target.len());
    let path = target_range.start..target_range.start + path_len;

    headers.clear();
    let mut content_length: Option<usize> = None;
    let mut close = false;
    for header in request.headers.iter() {
        let kind = classify(header.name.as_bytes());
        match kind {
            Kind::TransferEncoding | Kind::Expect | Kind::Upgrade => return RequestParse::General,
            Kind::ContentLength => {
                let Some(length) = parse_length(header.value) else {
                    return RequestParse::General;
                };
                if content_length.is_some_and(|known| known != length) {
                    return RequestParse::General;
                }
                content_length = Some(length);
            }
            Kind::Connection => match connection_option(header.value) {
                Some(ConnectionOption::Close) => close = true,
                Some(ConnectionOption::KeepAlive) => {}
                None => return RequestParse::General,
            },
            _ => {}
        }
        headers.push(RawHeader {
            name: offsets(buf, header.name.as_bytes()),
            value: offsets(buf, header.value),
            kind,
        });
    }
    RequestParse::Complete(RequestHead {
        len,
        method,
        target: target_range,
        path,
        content_length: content_length.unwrap_or(0),
        close,
    })
}

/// A decimal `Content-Length`, as RFC 9110 §8.6 allows it: digits only.
pub(crate) fn parse_length(value: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

enum ConnectionOption {
    Close,
    KeepAlive,
}

/// The one `Connection` value the direct path handles itself; `None` for a list naming headers, which
/// the router path strips along with the headers named.
fn connection_option(value: &[u8]) -> Option<ConnectionOption> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.eq_ignore_ascii_case("close") {
        Some(ConnectionOption::Close)
    } else if text.eq_ignore_ascii_case("keep-alive") {
        Some(ConnectionOption::KeepAlive)
    } else {
        None
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a response to `HEAD`, or 204 or 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A response head read from an upstream.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) len: usize,
    pub(crate) status: u16,
    pub(crate) reason: Range<usize>,
    pub(crate) framing: Framing,
    /// The declared length of a response to `HEAD`, passed on as it is.
    pub(crate) head_length: Option<Range<usize>>,
    /// The connection can carry another request afterwards.
    pub(crate) reusable: bool,
}

#[derive(Debug)]
pub(crate) enum ResponseParse {
    Complete(ResponseHead),
    Partial,
    /// An interim (1xx) response, this long: skipped, the real one follows.
    Interim(usize),
    Invalid(&'static str),
}

/// Reads a response head from the start of `buf` for a request made with `method`, filling `headers`.
pub(crate) fn parse_response(
    buf: &[u8],
    method: &Method,
    headers: &mut Vec<RawHeader>,
) -> ResponseParse {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return ResponseParse::Partial,
        Err(_) => return ResponseParse::Invalid("malformed response head"),
    };
    let (Some(status), Some(version)) = (response.code, response.version) else {
        return ResponseParse::Invalid("malformed status line");
    };
    if status == 101 {
        return ResponseParse::Invalid("switching protocols without an upgrade request");
    }
    if (100..200).contains(&status) {
        return ResponseParse::Interim(len);
    }
    let reason = offsets(buf, response.reason.unwrap_or("").as_bytes());
    headers.clear();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut reusable = version == 1;
    let mut head_length = None;
    for header in response.headers.iter() {
        let kind = classify(header.name.as_bytes());
        match kind {
            Kind::ContentLength => {
                let Some(value) = parse_length(header.value) else {
                    return ResponseParse::Invalid("invalid content-length");
                };
                if length.is_some_and(|known| known != value as u64) {
                    return ResponseParse::Invalid("conflicting content-length");
                }
                length = Some(value as u64);
                head_length = Some(offsets(buf, header.value));
            }
            Kind::TransferEncoding => {
                // Only `chunked` last is a framing a proxy can pass on (RFC 9112 §6.3).
                let text = std::str::from_utf8(header.value).unwrap_or("");
                let last = text.rsplit(',').next().unwrap_or("").trim();
                if !last.eq_ignore_ascii_case("chunked") {
                    return ResponseParse::Invalid("transfer-encoding other than chunked");
                }
                chunked = true;
            }
            Kind::Connection => {
                let text = std::str::from_utf8(header.value).unwrap_or("");
                if text
                    .split(',')
                    .any(|option| option.trim().eq_ignore_ascii_case("close"))
                {
                    reusable = false;
                }
            }
            _ => {}
        }
        headers.push(RawHeader {
            name: offsets(buf, header.name.as_bytes()),
            value: offsets(buf, header.value),
            kind,
        });
    }
    let framing = if *method == Method::HEAD || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        reusable = false;
        Framing::UntilClose
    };
    ResponseParse::Complete(ResponseHead {
        len,
        status,
        reason,
        framing,
        head_length: head_length.filter(|_| framing == Framing::Empty),
        reusable,
    })
}

/// Writes a header line.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes a `Content-Length` line.
pub(crate) fn push_length(out: &mut Vec<u8>, length: u64) {
    push_header(
        out,
        b"content-length",
        itoa::Buffer::new().format(length).as_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use platform::http::ChunkedScanner;
    use proptest::prelude::*;

    use super::*;

    fn request(text: &str) -> RequestParse {
        parse_request(text.as_bytes(), &mut Vec::new())
    }

    #[test]
    fn a_plain_request_head_is_read_with_its_length_and_target() {
        let text = "POST /api/v1/orders?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
        let mut headers = Vec::new();
        let RequestParse::Complete(head) = parse_request(text.as_bytes(), &mut headers) else {
            panic!("not complete");
        };
        assert_eq!(head.len, text.len() - 2);
        assert_eq!(head.method, Method::POST);
        assert_eq!(&text[head.target.clone()], "/api/v1/orders?x=1");
        assert_eq!(&text[head.path.clone()], "/api/v1/orders");
        assert_eq!(head.content_length, 2);
        assert!(!head.close);
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].kind, Kind::Host);
    }

    #[test]
    fn requests_the_router_path_handles_are_left_to_it() {
        for text in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: x-secret\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            assert!(matches!(request(text), RequestParse::General), "{text:?}");
        }
        assert!(matches!(
            request("GET / HTTP/1.1\r\nHost: a\r\n"),
            RequestParse::Partial
        ));
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let frame = |text: &str, method: Method| match parse_response(
            text.as_bytes(),
            &method,
            &mut Vec::new(),
        ) {
            ResponseParse::Complete(head) => (head.framing, head.reusable),
            other => panic!("{other:?}"),
        };
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(frame(ok, Method::GET), (Framing::Length(5), true));
        assert_eq!(frame(ok, Method::HEAD), (Framing::Empty, true));
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(frame(chunked, Method::GET), (Framing::Chunked, true));
        let until_close = "HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(
            frame(until_close, Method::GET),
            (Framing::UntilClose, false)
        );
        let closing = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(frame(closing, Method::GET), (Framing::Length(0), false));
        let old = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(frame(old, Method::GET), (Framing::Length(0), false));
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 103 Early Hints\r\n\r\n",
                &Method::GET,
                &mut Vec::new()
            ),
            ResponseParse::Interim(28)
        ));
    }

    /// A request head the direct path forwards, as a client might send it.
    fn plain_request() -> impl Strategy<Value = (&'static str, String, Vec<(String, String)>, usize)>
    {
        let method = prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]);
        let target = "(/[a-zA-Z0-9._~%-]{0,12}){1,5}(\\?[a-z0-9=&]{0,20})?";
        let name = "x-[a-z]{1,10}|accept|authorization|idempotency-key|x-request-id|origin";
        let value = "[ -~]{0,40}";
        let headers = prop::collection::vec((name, value), 0..12);
        (method, target, headers, 0usize..4096)
    }

    fn head_text(
        method: &str,
        target: &str,
        headers: &[(String, String)],
        length: usize,
    ) -> String {
        let mut text = format!("{method} {target} HTTP/1.1\r\nHost: gateway\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {}\r\n", value.trim()));
        }
        text.push_str(&format!("Content-Length: {length}\r\n\r\n"));
        text
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_verdict_with_offsets_inside_the_buffer(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut headers = Vec::new();
            if let RequestParse::Complete(head) = parse_request(&bytes, &mut headers) {
                prop_assert!(head.len <= bytes.len());
                prop_assert!(head.target.end <= head.len && head.path.end <= head.target.end);
                for header in &headers {
                    prop_assert!(header.name.end <= head.len && header.value.end <= head.len);
                }
            }
            for method in [Method::GET, Method::HEAD] {
                if let ResponseParse::Complete(head) = parse_response(&bytes, &method, &mut headers) {
                    prop_assert!(head.len <= bytes.len() && head.reason.end <= head.len);
                }
            }
        }

        #[test]
        fn a_request_with_bytes_changed_anywhere_is_refused_or_read_within_its_bounds(
            (method, target, extra, length) in plain_request(),
            changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = head_text(method, &target, &extra, length).into_bytes();
            for (at, byte) in changes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let mut headers = Vec::new();
            if let RequestParse::Complete(head) = parse_request(&bytes, &mut headers) {
                prop_assert!(head.len <= bytes.len());
                prop_assert!(head.target.end <= head.len && head.path.end <= head.target.end);
                // What the direct path forwards passed the same URI check as the router path's.
                let target = std::str::from_utf8(&bytes[head.target.clone()]);
                prop_assert!(target.is_ok_and(|t| axum::http::uri::PathAndQuery::try_from(t).is_ok()));
                for header in &headers {
                    prop_assert!(header.name.end <= head.len && header.value.end <= head.len);
                    prop_assert!(!bytes[header.value.clone()].contains(&0));
                }
            }
        }

        #[test]
        fn a_plain_request_is_read_whole_and_every_shorter_prefix_is_partial(
            (method, target, extra, length) in plain_request(),
        ) {
            let text = head_text(method, &target, &extra, length);
            let mut headers = Vec::new();
            let RequestParse::Complete(head) = parse_request(text.as_bytes(), &mut headers) else {
                return Err(TestCaseError::fail(format!("not complete: {text:?}")));
            };
            prop_assert_eq!(head.len, text.len());
            prop_assert_eq!(head.method.as_str(), method);
            prop_assert_eq!(&text[head.target.clone()], target.as_str());
            prop_assert_eq!(&text[head.path.clone()], target.split('?').next().unwrap_or(""));
            prop_assert_eq!(head.content_length, length);
            prop_assert_eq!(headers.len(), extra.len() + 2);
            for (header, (name, value)) in headers[1..].iter().zip(&extra) {
                prop_assert_eq!(&text[header.name.clone()], name.as_str());
                prop_assert_eq!(&text[header.value.clone()], value.trim());
                prop_assert_eq!(header.kind, classify(name.as_bytes()));
            }
            for cut in 0..text.len() {
                prop_assert!(
                    matches!(parse_request(&text.as_bytes()[..cut], &mut headers), RequestParse::Partial),
                    "prefix of {} bytes", cut
                );
            }
        }

        #[test]
        fn a_response_is_framed_by_its_length_or_its_chunks_and_every_shorter_prefix_is_partial(
            status in 200u16..600,
            length in prop::option::of(0u64..1_000_000),
            close in any::<bool>(),
        ) {
            let mut text = format!("HTTP/1.1 {status} Whatever\r\nServer: upstream\r\n");
            match length {
                Some(length) => text.push_str(&format!("Content-Length: {length}\r\n")),
                None => text.push_str("Transfer-Encoding: chunked\r\n"),
            }
            if close {
                text.push_str("Connection: close\r\n");
            }
            text.push_str("\r\n");
            let mut headers = Vec::new();
            let ResponseParse::Complete(head) = parse_response(text.as_bytes(), &Method::GET, &mut headers) else {
                return Err(TestCaseError::fail(format!("not complete: {text:?}")));
            };
            prop_assert_eq!(head.len, text.len());
            prop_assert_eq!(head.status, status);
            let expected = if status == 204 || status == 304 {
                Framing::Empty
            } else {
                length.map_or(Framing::Chunked, Framing::Length)
            };
            prop_assert_eq!(head.framing, expected);
            prop_assert_eq!(head.reusable, !close);
            for cut in 0..text.len() {
                prop_assert!(matches!(
                    parse_response(&text.as_bytes()[..cut], &Method::GET, &mut headers),
                    ResponseParse::Partial
                ));
            }
        }

        #[test]
        fn a_chunked_body_ends_where_its_last_chunk_and_trailers_end_however_it_is_split(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..8),
            trailer in prop::option::of("[a-z]{1,8}: [a-z0-9]{0,8}"),
            splits in prop::collection::vec(1usize..64, 1..40),
            after in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut body = Vec::new();
            for chunk in &chunks {
                body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                body.extend_from_slice(chunk);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            if let Some(trailer) = &trailer {
                body.extend_from_slice(format!("{trailer}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            let end = body.len();
            body.extend_from_slice(&after);
            let mut scanner = ChunkedScanner::default();
            let mut at = 0;
            let mut sizes = splits.iter().cycle();
            while !scanner.is_done() && at < body.len() {
                let piece = (at + sizes.next().copied().unwrap_or(1)).min(body.len());
                let taken = scanner.feed(&body[at..piece]).map_err(TestCaseError::fail)?;
                prop_assert!(taken <= piece - at);
                at += taken;
                if taken < piece - at + taken {
                    prop_assert!(scanner.is_done(), "stopped early at {}", at);
                }
            }
            prop_assert!(scanner.is_done());
            prop_assert_eq!(at, end);
        }

        #[test]
        fn a_chunked_body_decodes_to_its_data_however_it_is_split(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..8),
            splits in prop::collection::vec(1usize..64, 1..40),
        ) {
            let mut body = Vec::new();
            for chunk in &chunks {
                body.extend_from_slice(format!("{:x};x=y\r\n", chunk.len()).as_bytes());
                body.extend_from_slice(chunk);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
            let mut scanner = ChunkedScanner::default();
            let mut data = Vec::new();
            let mut at = 0;
            let mut sizes = splits.iter().cycle();
            while !scanner.is_done() {
                let piece = (at + sizes.next().copied().unwrap_or(1)).min(body.len());
                let mut offset = at;
                while offset < piece && !scanner.is_done() {
                    let (taken, range) =
                        scanner.decode(&body[offset..piece]).map_err(TestCaseError::fail)?;
                    data.extend_from_slice(&body[offset..piece][range]);
                    offset += taken;
                }
                at = piece;
            }
            prop_assert_eq!(data, chunks.concat());
        }
    }
}
