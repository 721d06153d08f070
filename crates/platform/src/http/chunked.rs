//! Where a chunked body (RFC 9112 §7.1) ends, and what data it carries: the gateway's direct path relays
//! such bodies as they are and the connection guard follows request bodies to know where the next head
//! starts ([`ChunkedScanner::feed`]), while the router path decodes an upstream's chunked response into
//! data for hyper to frame again ([`ChunkedScanner::decode`]).

use std::ops::Range;

/// Follows a chunked body (RFC 9112 §7.1) byte by byte to find where it ends, chunk extensions and
/// trailers included, so it can be passed on as it is (or its data taken out) and the connection used
/// again.
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
                at += self.take_data(input.len() - at);
                continue;
            }
            self.step(input[at])?;
            at += 1;
        }
        Ok(at)
    }

    /// Decodes the body: consumes bytes from `input` up to the end of the first run of chunk data in it
    /// (or of the body, or of `input`), and says how many and where that data lies in `input` (an empty
    /// range when none came before the end of `input`). Chunk extensions and trailers are consumed and
    /// dropped. Data comes out as it arrives, never waiting for a chunk to be complete.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Range<usize>), &'static str> {
        let mut at = 0;
        while at < input.len() && self.state != ChunkState::Done {
            if self.state == ChunkState::Data {
                let start = at;
                at += self.take_data(input.len() - at);
                return Ok((at, start..at));
            }
            self.step(input[at])?;
            at += 1;
        }
        Ok((at, at..at))
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Takes up to `available` bytes of the current chunk's data: how many.
    fn take_data(&mut self, available: usize) -> usize {
        let take = available.min(usize::try_from(self.size).unwrap_or(usize::MAX));
        self.size -= take as u64;
        if self.size == 0 {
            self.state = ChunkState::DataCr;
        }
        take
    }

    /// Follows one byte of framing (anything but chunk data).
    fn step(&mut self, byte: u8) -> Result<(), &'static str> {
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
        Ok(())
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

    /// Decodes `input` in two pieces cut at `split`, as data would arrive: the data, and the bytes used.
    fn decode_split(body: &[u8], split: usize) -> Result<(Vec<u8>, usize), &'static str> {
        let mut scanner = ChunkedScanner::default();
        let mut data = Vec::new();
        let mut used = 0;
        for piece in [&body[..split], &body[split..]] {
            let mut at = 0;
            while at < piece.len() && !scanner.is_done() {
                let (taken, range) = scanner.decode(&piece[at..])?;
                data.extend_from_slice(&piece[at..][range]);
                at += taken;
            }
            used += at;
        }
        assert!(scanner.is_done(), "split at {split}");
        Ok((data, used))
    }

    #[test]
    fn the_decoder_gives_the_data_alone_across_any_split() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n";
        let mut followed = body.to_vec();
        followed.extend_from_slice(b"HTTP/1.1 next");
        for split in 0..=body.len() {
            let (data, used) = decode_split(&followed, split).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.", "split at {split}");
            assert_eq!(used, body.len(), "split at {split}");
        }
    }

    #[test]
    fn the_decoder_stops_after_each_run_of_data() {
        let mut scanner = ChunkedScanner::default();
        let body = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(scanner.decode(body), Ok((6, 3..6)));
        assert_eq!(scanner.decode(&body[6..]), Ok((7, 5..7)));
        assert_eq!(scanner.decode(&body[13..]), Ok((7, 7..7)));
        assert!(scanner.is_done());
    }

    #[test]
    fn the_decoder_refuses_a_malformed_chunk_size_wherever_it_is_split() {
        for body in [&b"3\r\nabc\r\nz\r\n"[..], b"3x\r\nabc", b"3\r\nabcd\r\n"] {
            for split in 0..=body.len() {
                let mut scanner = ChunkedScanner::default();
                let refused = [&body[..split], &body[split..]].into_iter().any(|piece| {
                    let mut at = 0;
                    loop {
                        match scanner.decode(&piece[at..]) {
                            Err(_) => return true,
                            Ok((0, _)) => return false,
                            Ok((taken, _)) => at += taken,
                        }
                    }
                });
                assert!(refused, "{body:?} split at {split}");
            }
        }
    }
}
