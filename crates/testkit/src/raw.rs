//! Raw HTTP/1.1 over TCP, for tests of what an HTTP client library would not do: half-sent requests,
//! clients that never read, connections held open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection to `address` that has sent `bytes`.
pub async fn send(address: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {address}: {e}"));
    stream
        .write_all(bytes)
        .await
        .unwrap_or_else(|e| panic!("cannot write to {address}: {e}"));
    stream
}

/// Everything the server sends until it closes the connection (a reset counts as a close), and when
/// it closed; panics if it is still open after `deadline`.
pub async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let read_all = async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if tokio::time::timeout(deadline, read_all).await.is_err() {
        panic!("the server kept the connection open for {deadline:?}");
    }
    (received, Instant::now())
}

/// Reads one response whose body has a `content-length`, leaving the connection open.
pub async fn read_response(stream: &mut TcpStream, deadline: Duration) -> Response {
    let mut received = Vec::new();
    let read = async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            if let Some(response) = Response::parse(&received)
                && response.body.len() >= response.content_length()
            {
                return Some(response);
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Some(response)) => response,
        Ok(None) => panic!(
            "the connection closed before a whole response: {:?}",
            String::from_utf8_lossy(&received)
        ),
        Err(_) => panic!("no whole response within {deadline:?}"),
    }
}

/// A response as it came over the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Every whole response in `bytes`, in order (pipelined responses sized by `content-length`).
    pub fn parse_all(mut bytes: &[u8]) -> Vec<Self> {
        let mut responses = Vec::new();
        while let Some(mut response) = Self::parse(bytes) {
            let length = response.content_length();
            if response.body.len() < length {
                break;
            }
            let rest = response.body.split_off(length);
            bytes = &bytes[bytes.len() - rest.len()..];
            responses.push(response);
        }
        responses
    }

    /// The response at the start of `bytes`, if its head is complete; its body is all that follows.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..end]);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Some(Self {
            status,
            headers,
            body: bytes[end + 4..].to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The body as JSON, panicking with it when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a problem+json response with `status` and `code` whose `request_id` is the
    /// `x-request-id` header's; returns the problem.
    pub fn assert_problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], status, "{problem}");
        let id = problem["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{problem}");
        assert_eq!(self.header("x-request-id"), Some(id));
        problem
    }
}
