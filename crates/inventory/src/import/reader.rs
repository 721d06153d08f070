//! A reader that counts the bytes going through it, reports progress, and stops at a size limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The error a [`CountingReader`] fails with past its limit.
#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "input larger than {} bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

/// The limit, when `error` is a [`CountingReader`] refusing to read past it.
pub fn too_large(error: &io::Error) -> Option<u64> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TooLarge>())
        .map(|t| t.0)
}

/// Wraps `inner`, calling `progress(bytes read so far)` after each read and failing once more than
/// `limit` bytes came through.
pub struct CountingReader<R, F> {
    inner: Pin<Box<R>>,
    read: u64,
    limit: u64,
    progress: F,
}

impl<R, F> CountingReader<R, F> {
    pub fn new(inner: R, limit: u64, progress: F) -> Self {
        Self {
            inner: Box::pin(inner),
            read: 0,
            limit,
            progress,
        }
    }
}

impl<R: AsyncRead, F: Fn(u64) + Unpin> AsyncRead for CountingReader<R, F> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match this.inner.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read += (buf.filled().len() - before) as u64;
                if this.read > this.limit {
                    // A failed read must hand back no data.
                    buf.set_filled(before);
                    return Poll::Ready(Err(io::Error::other(TooLarge(this.limit))));
                }
                (this.progress)(this.read);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn progress_is_reported_and_the_limit_enforced() {
        let seen = AtomicU64::new(0);
        let mut reader = CountingReader::new(&b"0123456789"[..], 100, |n| {
            seen.store(n, Ordering::Relaxed);
        });
        let mut out = Vec::new();
        let read = reader.read_to_end(&mut out).await.ok();
        assert_eq!(read, Some(10));
        assert_eq!(seen.load(Ordering::Relaxed), 10);

        let mut small = CountingReader::new(&b"0123456789"[..], 4, |_| {});
        let error = small.read_to_end(&mut Vec::new()).await.err();
        assert_eq!(error.as_ref().and_then(too_large), Some(4));
    }
}
