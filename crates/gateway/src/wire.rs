//! HTTP/1.1 framing for the direct path (both its sides, [`crate::proxy::direct`] and
//! [`crate::upstream::connections`]): request and response heads read with `httparse` into offsets
//! of the connection's buffer (nothing is copied or allocated per header), each header's [`Kind`] by the
//! one header policy ([`crate::headers`]), and how a response's body is framed.

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

#[cfg(test)]
mod tests {
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
    fn requests_the_general_server_handles_are_left_to_it() {
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
}
