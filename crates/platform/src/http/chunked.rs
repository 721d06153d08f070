//! Where a chunked body (RFC 9112 §7.1) ends, found without decoding it: the gateway relays such bodies
//! as they are, and the connection guard follows request bodies to know where the next head starts.

/// Follows a chunked body (RFC 9112 §7.1) byte by byte to find where it ends, chunk extensions and
/// trailers included, so it can be passed on as it is and the connection used again.
#[derive(Debug, Default)]
pub struct ChunkedScanner {
    state: ChunkState,
    size: u64,
    /// Bytes of a trailer line seen so far; 0 at the start of a line.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    Done,
}

impl ChunkedScanner {
    /// Consumes bytes from `input` up to the end of the body: how many belong to it, or an error for a
    /// malformed body.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, &'static str> {
        let mut at = 0;
        while at < input.len() && self.state != ChunkState::Done {
            if self.state == ChunkState::Data {
                let take = (input.len() - at).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                at += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let byte = input[at];
            at += 1;
            self.state = match self.state {
                ChunkState::Size => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(digit))
                            .ok_or("chunk size overflow")?;
                        ChunkState::Size
                    }
                    b';' | b' ' | b'\t' => ChunkState::Extension,
                    b'\r' => ChunkState::SizeLf,
                    _ => return Err("invalid chunk size"),
                },
                ChunkState::Extension => match byte {
                    b'\r' => ChunkState::SizeLf,
                    b'\n' => return Err("bare LF in chunk extension"),
                    _ => ChunkState::Extension,
                },
                ChunkState::SizeLf => match byte {
                    b'\n' if self.size == 0 => {
                        self.line = 0;
                        ChunkState::Trailer
                    }
                    b'\n' => ChunkState::Data,
                    _ => return Err("invalid chunk size line"),
                },
                ChunkState::DataCr => match byte {
                    b'\r' => ChunkState::DataLf,
                    _ => return Err("chunk data longer than its size"),
                },
                ChunkState::DataLf => match byte {
                    b'\n' => ChunkState::Size,
                    _ => return Err("invalid chunk end"),
                },
                ChunkState::Trailer => match byte {
                    b'\r' => ChunkState::TrailerLf,
                    b'\n' => return Err("bare LF in trailer"),
                    _ => {
                        self.line += 1;
                        ChunkState::Trailer
                    }
                },
                ChunkState::TrailerLf => match byte {
                    // An empty line ends the trailers and the body.
                    b'\n' if self.line == 0 => ChunkState::Done,
                    b'\n' => {
                        self.line = 0;
                        ChunkState::Trailer
                    }
                    _ => return Err("invalid trailer line"),
                },
                ChunkState::Data | ChunkState::Done => self.state,
            };
        }
        Ok(at)
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunked_scanner_finds_the_end_across_any_split() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n";
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let first = scanner
                .feed(&body[..split])
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(first, split);
            let mut rest = body[split..].to_vec();
            rest.extend_from_slice(b"HTTP/1.1 next");
            let second = scanner.feed(&rest).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(split + second, body.len(), "split at {split}");
            assert!(scanner.is_done());
        }
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for body in [
            &b"x\r\n"[..],
            b"4\r\nWikiX",
            b"4\nWiki",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(ChunkedScanner::default().feed(body).is_err(), "{body:?}");
        }
    }
}
