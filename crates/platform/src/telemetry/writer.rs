//! The output behind the log layers: lines are appended to an in-memory batch on the calling thread,
//! and one writer thread per output writes the batch every [`FLUSH_INTERVAL`] (sooner once it passes
//! [`FLUSH_AT_BYTES`]), like nginx's `access_log … buffer= flush=`. A line per request through a
//! channel and a `write` per line (what `tracing_appender::non_blocking` does) cost the gateway a
//! syscall, a thread wake-up and a spinning receiver per request.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits in memory before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Pending bytes that wake the writer before the interval is over, so bursts go out in large writes.
const FLUSH_AT_BYTES: usize = 64 * 1024;
/// Pending bytes past which new lines are dropped (and counted) instead of growing memory without
/// bound when the output cannot keep up.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

struct Pending {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
}

struct Batch {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Batch {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends whole lines to a shared batch that a [`WriterThread`] writes out.
#[derive(Clone)]
pub(super) struct BatchWriter(Arc<Batch>);

impl BatchWriter {
    pub(super) fn spawn(mut sink: impl Write + Send + 'static, name: &str) -> (Self, WriterThread) {
        let batch = Arc::new(Batch {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(FLUSH_AT_BYTES * 2),
                dropped: 0,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let shared = batch.clone();
        let run = move || {
            // Swapped with the pending buffer on each round, so steady state allocates nothing.
            let mut out = Vec::with_capacity(FLUSH_AT_BYTES * 2);
            loop {
                let (dropped, closed) = {
                    let mut pending = shared.lock();
                    if !pending.closed && pending.lines.len() < FLUSH_AT_BYTES {
                        pending = shared
                            .wake
                            .wait_timeout(pending, FLUSH_INTERVAL)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    std::mem::swap(&mut pending.lines, &mut out);
                    (std::mem::take(&mut pending.dropped), pending.closed)
                };
                if dropped > 0 {
                    out.extend_from_slice(
                        format!(
                            "{{\"level\":\"warn\",\"target\":\"platform::telemetry\",\"message\":\"log lines dropped: the output could not keep up\",\"dropped\":{dropped}}}\n"
                        )
                        .as_bytes(),
                    );
                }
                if !out.is_empty() {
                    // Lines that cannot be written have nowhere else to go.
                    let _ = sink.write_all(&out).and_then(|()| sink.flush());
                    out.clear();
                }
                if closed {
                    break;
                }
            }
        };
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(run)
            .ok();
        let thread = WriterThread {
            batch: batch.clone(),
            handle,
        };
        (Self(batch), thread)
    }
}

impl Write for &BatchWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.0.lock();
        if pending.closed || pending.lines.len() + line.len() > MAX_PENDING_BYTES {
            pending.dropped += 1;
            return Ok(line.len());
        }
        let before = pending.lines.len();
        pending.lines.extend_from_slice(line);
        if before < FLUSH_AT_BYTES && pending.lines.len() >= FLUSH_AT_BYTES {
            self.0.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = &'a BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// The thread writing one output; dropping it writes what is pending and stops the thread.
pub(super) struct WriterThread {
    batch: Arc<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.batch.lock().closed = true;
        self.batch.wake.notify_one();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::captured::Captured;

    #[test]
    fn pending_lines_are_written_when_the_guard_is_dropped() {
        let sink = Captured::default();
        let (writer, thread) = BatchWriter::spawn(sink.clone(), "log-test");
        (&writer).write_all(b"one\n").expect("buffered");
        (&writer).write_all(b"two\n").expect("buffered");
        drop(thread);
        assert_eq!(sink.bytes(), b"one\ntwo\n");
    }
}
