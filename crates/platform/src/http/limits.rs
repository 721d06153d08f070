//! The limits every connection of every listener lives under, and the rules of a request head, in one
//! place: the hyper path ([`super::guard`]) and the gateway's own HTTP/1.1 path both apply these.

use std::time::Duration;

use axum::http::StatusCode;

use crate::config::HttpSettings;
use crate::problem::{PROBLEM_CONTENT_TYPE, Problem};

/// What one listener allows each connection (`[http]`, see `HttpSettings` for each value's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub body_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub max_uri_bytes: usize,
}

impl ConnectionLimits {
    pub fn from_settings(http: &HttpSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            keep_alive_timeout: Duration::from_millis(http.keep_alive_timeout_ms),
            body_read_timeout: Duration::from_millis(http.body_read_timeout_ms),
            write_timeout: Duration::from_millis(http.write_timeout_ms),
            max_connections: http.max_connections,
            max_head_bytes: http.max_head_bytes,
            max_uri_bytes: http.max_uri_bytes,
        }
    }

    /// The rule for a head the parser found complete: `head_len` bytes with a target of `target_len`.
    pub fn check_complete(&self, head_len: usize, target_len: usize) -> Result<(), HeadRefusal> {
        if target_len > self.max_uri_bytes {
            Err(HeadRefusal::UriTooLong)
        } else if head_len > self.max_head_bytes {
            Err(HeadRefusal::TooLarge)
        } else {
            Ok(())
        }
    }

    /// The rule for the start of a head that is not complete yet: refused as soon as what came shows it
    /// will break a limit, so a client cannot make a connection buffer more than the limits.
    pub fn check_partial(&self, buf: &[u8]) -> Result<(), HeadRefusal> {
        let target_len = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => request_target_len(&buf[..end]),
            // The request line is still coming: all of it but the method and version may be target.
            None => buf.len().saturating_sub(REQUEST_LINE_FRAME),
        };
        if target_len > self.max_uri_bytes {
            Err(HeadRefusal::UriTooLong)
        } else if buf.len() > self.max_head_bytes {
            Err(HeadRefusal::TooLarge)
        } else {
            Ok(())
        }
    }
}

/// What a request line holds besides its target, at most, as the partial check counts it: a method
/// (the longest registered one is 17 bytes), two spaces, `HTTP/1.1` and the line end.
const REQUEST_LINE_FRAME: usize = 32;

/// The length of the target of a request line (between its first and last space).
fn request_target_len(line: &[u8]) -> usize {
    let first = line.iter().position(|&b| b == b' ');
    let last = line.iter().rposition(|&b| b == b' ');
    match (first, last) {
        (Some(first), Some(last)) if last > first => last - first - 1,
        _ => line.len(),
    }
}

/// Why a request head is answered (and its connection closed) before any handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRefusal {
    /// Not an HTTP/1 request head.
    Malformed,
    /// The target is longer than `max_uri_bytes`.
    UriTooLong,
    /// The head is larger than `max_head_bytes` (or has too many headers).
    TooLarge,
    /// Part of a head came, the rest not within `header_read_timeout`.
    Timeout,
}

impl HeadRefusal {
    pub fn problem(self, limits: &ConnectionLimits) -> Problem {
        match self {
            Self::Malformed => Problem::bad_request(
                "MALFORMED_REQUEST",
                "the request is not a valid HTTP/1.1 request",
            ),
            Self::UriTooLong => Problem::new(
                StatusCode::URI_TOO_LONG,
                "URI_TOO_LONG",
                format!(
                    "the request target (path and query) is longer than {} bytes",
                    limits.max_uri_bytes
                ),
            ),
            Self::TooLarge => Problem::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "HEADERS_TOO_LARGE",
                format!(
                    "the request line and headers are larger than {} bytes",
                    limits.max_head_bytes
                ),
            ),
            Self::Timeout => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!(
                    "the request head did not arrive within {} ms",
                    limits.header_read_timeout.as_millis()
                ),
            ),
        }
    }

    /// The whole HTTP/1.1 response, as written on a connection no router answers any more: the
    /// problem with a fresh request id (in the body and `x-request-id`), closing the connection.
    pub fn response(self, limits: &ConnectionLimits) -> Vec<u8> {
        let id = crate::request_id::accept_or_new(None);
        let mut problem = self.problem(limits);
        problem.request_id = Some(id.clone());
        tracing::info!(
            request_id = %id,
            status = problem.status,
            code = %problem.code,
            "request refused before routing"
        );
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let status = problem.status_code();
        let mut out = Vec::with_capacity(body.len() + 200);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(PROBLEM_CONTENT_TYPE.as_bytes());
        out.extend_from_slice(b"\r\nx-request-id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            max_connections: 1,
            max_head_bytes: 2048,
            max_uri_bytes: 256,
        }
    }

    #[test]
    fn a_long_target_is_refused_as_soon_as_the_request_line_shows_it() {
        let limits = limits();
        let mut line = b"GET /".to_vec();
        line.extend(std::iter::repeat_n(b'a', 255));
        assert_eq!(limits.check_partial(&line), Ok(()));
        line.extend(std::iter::repeat_n(b'a', REQUEST_LINE_FRAME + 1));
        assert_eq!(limits.check_partial(&line), Err(HeadRefusal::UriTooLong));
        let complete = format!("GET /{} HTTP/1.1\r\n", "a".repeat(256));
        assert_eq!(
            limits.check_partial(complete.as_bytes()),
            Err(HeadRefusal::UriTooLong)
        );
        assert_eq!(
            limits.check_complete(100, 257),
            Err(HeadRefusal::UriTooLong)
        );
    }

    #[test]
    fn a_head_over_the_limit_is_refused_before_it_ends() {
        let limits = limits();
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        while head.len() <= 2048 {
            head.extend_from_slice(b"x-filler: 0123456789\r\n");
        }
        assert_eq!(limits.check_partial(&head), Err(HeadRefusal::TooLarge));
        assert_eq!(limits.check_complete(2049, 1), Err(HeadRefusal::TooLarge));
        assert_eq!(limits.check_complete(2048, 256), Ok(()));
    }

    #[test]
    fn a_refusal_is_a_problem_with_a_request_id_that_closes_the_connection() {
        let response = HeadRefusal::UriTooLong.response(&limits());
        let text = String::from_utf8(response).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains("connection: close"));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(problem["code"], "URI_TOO_LONG");
        let id = problem["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty());
        assert!(head.contains(&format!("x-request-id: {id}")));
    }
}
