//! A connection whose reads wait at most until a deadline its owner sets, and whose writes fail once
//! they have made no progress for the write timeout: the timers under both HTTP paths.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct TimedIo<S> {
    inner: S,
    write_timeout: Duration,
    /// Reads pending past this fail with `TimedOut`; `None` waits for ever.
    read_deadline: Option<Instant>,
    read_timer: Option<Pin<Box<Sleep>>>,
    /// When the write that is pending now started to wait.
    write_timer: Option<Pin<Box<Sleep>>>,
    write_stalled: bool,
    /// The last read or write that moved bytes.
    last_progress: Instant,
}

impl<S> TimedIo<S> {
    pub fn new(inner: S, write_timeout: Duration) -> Self {
        Self {
            inner,
            write_timeout,
            read_deadline: None,
            read_timer: None,
            write_timer: None,
            write_stalled: false,
            last_progress: Instant::now(),
        }
    }

    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        self.read_deadline = deadline;
    }

    /// When bytes last moved either way.
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Polls the write timer of a write that made no progress: ready with the error once it expired.
    fn poll_write_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = Instant::now() + self.write_timeout;
        if !self.write_stalled {
            self.write_stalled = true;
            match &mut self.write_timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.write_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match &mut self.write_timer {
            Some(timer) => {
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer did not read for the write timeout",
                ))
            }
            None => Poll::Pending,
        }
    }

    fn wrote<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.write_stalled = false;
                self.last_progress = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_write_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last_progress = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let Some(deadline) = this.read_deadline else {
                    return Poll::Pending;
                };
                let timer = match &mut this.read_timer {
                    Some(timer) => {
                        if timer.deadline() != deadline {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => this
                        .read_timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer sent nothing before the read deadline",
                )))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.wrote(result, cx)
    }
}
