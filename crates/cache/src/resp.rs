//! Just enough RESP3 to read what a tracking connection receives: replies to our few commands and
//! `invalidate` pushes. redis-rs hides the socket of its connections, and the near cache needs the socket
//! itself (see `near.rs`), so this one connection speaks the protocol directly.

/// One decoded value. Only what the tracking connection acts on keeps its content.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// An out-of-band message (`>`), e.g. `invalidate`.
    Push(Vec<Frame>),
    Array(Vec<Frame>),
    Bulk(Vec<u8>),
    Error(String),
    Null,
    /// Simple strings, numbers, booleans, maps and sets: replies whose content we do not need.
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed RESP3 from redis: {0}")]
pub(crate) struct ProtocolError(&'static str);

/// Deepest nesting accepted; Redis's own replies here are at most two deep.
const MAX_DEPTH: usize = 16;

/// Decodes the first complete frame of `buf`: the frame and how many bytes it took, or `None` when `buf`
/// ends inside it.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let mut at = 0;
    Ok(frame(buf, &mut at, 0)?.map(|f| (f, at)))
}

fn line<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *at += end + 2;
    Some(&rest[..end])
}

fn number(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("bad length"))
}

fn blob(buf: &[u8], at: &mut usize, len: i64) -> Result<Option<Vec<u8>>, ProtocolError> {
    let len = usize::try_from(len).map_err(|_| ProtocolError("negative length"))?;
    let Some(body) = buf.get(*at..*at + len + 2) else {
        return Ok(None);
    };
    if &body[len..] != b"\r\n" {
        return Err(ProtocolError("blob not followed by CRLF"));
    }
    *at += len + 2;
    Ok(Some(body[..len].to_vec()))
}

fn items(
    buf: &[u8],
    at: &mut usize,
    count: i64,
    depth: usize,
) -> Result<Option<Vec<Frame>>, ProtocolError> {
    let count = usize::try_from(count).map_err(|_| ProtocolError("negative count"))?;
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        match frame(buf, at, depth + 1)? {
            Some(f) => out.push(f),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn frame(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Frame>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("nested too deep"));
    }
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    *at += 1;
    let Some(head) = line(buf, at) else {
        return Ok(None);
    };
    let frame = match kind {
        b'+' | b':' | b'#' | b',' | b'(' => Frame::Other,
        b'-' => Frame::Error(String::from_utf8_lossy(head).into_owned()),
        b'_' => Frame::Null,
        b'$' | b'=' | b'!' => {
            let len = number(head)?;
            if len < 0 {
                Frame::Null
            } else {
                let Some(body) = blob(buf, at, len)? else {
                    return Ok(None);
                };
                match kind {
                    b'!' => Frame::Error(String::from_utf8_lossy(&body).into_owned()),
                    _ => Frame::Bulk(body),
                }
            }
        }
        b'*' | b'>' | b'~' | b'%' | b'|' => {
            let count = number(head)?;
            if count < 0 {
                Frame::Null
            } else {
                let count = if matches!(kind, b'%' | b'|') {
                    count.saturating_mul(2)
                } else {
                    count
                };
                let Some(items) = items(buf, at, count, depth)? else {
                    return Ok(None);
                };
                match kind {
                    b'*' => Frame::Array(items),
                    b'>' => Frame::Push(items),
                    // Attributes annotate the value that follows them: skip to it.
                    b'|' => return frame(buf, at, depth + 1),
                    _ => Frame::Other,
                }
            }
        }
        _ => return Err(ProtocolError("unknown type byte")),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_invalidation_pushes_and_replies() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\nc:a\r\n$3\r\nc:b\r\n";
        assert_eq!(
            parse(push).expect("valid"),
            Some((
                Frame::Push(vec![
                    bulk("invalidate"),
                    Frame::Array(vec![bulk("c:a"), bulk("c:b")])
                ]),
                push.len()
            ))
        );
        let flush = b">2\r\n$10\r\ninvalidate\r\n_\r\n";
        assert_eq!(
            parse(flush).expect("valid").map(|(f, _)| f),
            Some(Frame::Push(vec![bulk("invalidate"), Frame::Null]))
        );
        assert_eq!(parse(b"+PONG\r\n").expect("valid"), Some((Frame::Other, 7)));
        assert_eq!(
            parse(b"-ERR unknown\r\n").expect("valid"),
            Some((Frame::Error("ERR unknown".into()), 14))
        );
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
        assert_eq!(
            parse(hello).expect("valid"),
            Some((Frame::Other, hello.len()))
        );
        let annotated = b"|1\r\n+ttl\r\n:3\r\n$1\r\nx\r\n";
        assert_eq!(
            parse(annotated).expect("valid"),
            Some((bulk("x"), annotated.len()))
        );
    }

    #[test]
    fn a_frame_cut_anywhere_is_incomplete_not_wrong() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$5\r\nc:key\r\n+OK\r\n";
        let first = push.len() - 5;
        for cut in 0..first {
            assert_eq!(
                parse(&push[..cut]).expect("a prefix is valid"),
                None,
                "{cut}"
            );
        }
        let (_, used) = parse(push).expect("valid").expect("complete");
        assert_eq!(used, first);
        assert_eq!(
            parse(&push[used..]).expect("valid"),
            Some((Frame::Other, 5))
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b"$x\r\n").is_err());
        assert!(parse(b"$1\r\nab\r\n").is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
