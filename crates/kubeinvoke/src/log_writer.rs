//! The server's log writer: request threads append formatted lines to a shared buffer, a
//! thread of its own writes the buffer out once per batch window.
//!
//! Why not `tracing-appender`: its writer thread blocks on a channel, so under load every line
//! woke it (a futex wake, then `sched_yield`s and a context switch on two cores): a quarter of
//! a result read's cost. Here a request thread wakes the writer only when the buffer goes from
//! empty to not empty, and the writer then collects lines for [`BATCH_WINDOW`] before one
//! `write(2)`. Nothing is dropped: past [`MAX_PENDING`] bytes a request thread waits for the
//! writer; dropping the [`FlushOnDrop`] guard writes what is left.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer collects lines before writing them: short enough that a line is in the
/// file a moment after the request it records, long enough for one write per many lines.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Unwritten bytes past which a request thread waits for the writer instead of buffering more.
pub const MAX_PENDING: usize = 8 << 20;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer waits for a first line (not in its batch window): the next line wakes it.
    writer_idle: bool,
    /// Request threads waiting for room.
    waiting_for_room: usize,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    line_arrived: Condvar,
    room: Condvar,
    max_pending: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves plain bytes behind: still safe to write out.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cheap handle that appends lines; `tracing-subscriber` asks it for a writer per event.
#[derive(Clone)]
pub struct BatchedLog {
    shared: Arc<Shared>,
}

/// Writes out every pending line and stops the writer thread when dropped.
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl BatchedLog {
    /// Starts the writer thread over `out` (stderr for the server).
    pub fn start(out: impl Write + Send + 'static) -> (BatchedLog, FlushOnDrop) {
        Self::start_with(out, BATCH_WINDOW, MAX_PENDING)
    }

    fn start_with(mut out: impl Write + Send + 'static, window: Duration, max_pending: usize) -> (Self, FlushOnDrop) {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            line_arrived: Condvar::new(),
            room: Condvar::new(),
            max_pending,
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || write_batches(&shared, &mut out, window))
                .expect("spawning the log writer thread")
        };
        (BatchedLog { shared: shared.clone() }, FlushOnDrop { shared, writer: Some(writer) })
    }

    fn append(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut pending = shared.lock();
        while pending.lines.len() >= shared.max_pending && !pending.closing {
            pending.waiting_for_room += 1;
            pending = shared.room.wait(pending).unwrap_or_else(|p| p.into_inner());
            pending.waiting_for_room -= 1;
        }
        pending.lines.extend_from_slice(line);
        if pending.writer_idle {
            pending.writer_idle = false;
            shared.line_arrived.notify_one();
        }
    }
}

/// The writer thread: wait for a first line, let a batch gather, write it, repeat; on closing,
/// write what is left and stop.
fn write_batches(shared: &Shared, out: &mut dyn Write, window: Duration) {
    let mut spare = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.lines.is_empty() && !pending.closing {
            pending.writer_idle = true;
            pending = shared.line_arrived.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        pending.writer_idle = false;
        if pending.lines.is_empty() {
            // Closing, and every line is out.
            return;
        }
        if !pending.closing {
            drop(pending);
            std::thread::sleep(window);
            pending = shared.lock();
        }
        std::mem::swap(&mut pending.lines, &mut spare);
        if pending.waiting_for_room > 0 {
            shared.room.notify_all();
        }
        drop(pending);
        // A log that cannot be written (a closed stderr) must not stop the server.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        recycle(&mut spare);
    }
}

/// A batch buffer's usual size: a 20 ms batch of a busy server is a few hundred KiB.
const KEEP_CAPACITY: usize = 1 << 20;

/// Empties a written batch for reuse, giving back what a burst grew it to (up to
/// [`MAX_PENDING`] in each of the two buffers): a burst must not leave the server's memory higher
/// for the rest of its life (the soak's flat-memory check saw it climb in steps).
fn recycle(buffer: &mut Vec<u8>) {
    buffer.clear();
    buffer.shrink_to(KEEP_CAPACITY);
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        {
            let mut pending = self.shared.lock();
            pending.closing = true;
            self.shared.line_arrived.notify_one();
            self.shared.room.notify_all();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// One event's formatted line, handed over whole.
pub struct LineWriter<'a> {
    log: &'a BatchedLog,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.log.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedLog {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { log: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test can read, counting the writes it got.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn write_lines(log: &BatchedLog, thread: usize, count: usize) {
        for n in 0..count {
            let mut writer = tracing_subscriber::fmt::MakeWriter::make_writer(log);
            writer.write_all(format!("thread {thread} line {n}\n").as_bytes()).unwrap();
        }
    }

    #[test]
    fn every_line_arrives_in_order_per_thread_in_few_writes() {
        let sink = Sink::default();
        let (log, guard) = BatchedLog::start_with(sink.clone(), Duration::from_millis(20), MAX_PENDING);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let log = log.clone();
                scope.spawn(move || write_lines(&log, thread, 5_000));
            }
        });
        drop(guard);
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        for thread in 0..4 {
            let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("thread {thread} "))).collect();
            let expected: Vec<String> = (0..5_000).map(|n| format!("thread {thread} line {n}")).collect();
            assert_eq!(mine, expected, "thread {thread}'s lines, all and in order");
        }
        assert!(*sink.writes.lock().unwrap() < 1_000, "20,000 lines in batches, not a write each");
    }

    #[test]
    fn a_line_is_written_within_the_window_while_the_server_runs() {
        let sink = Sink::default();
        let (log, _guard) = BatchedLog::start_with(sink.clone(), Duration::from_millis(20), MAX_PENDING);
        write_lines(&log, 0, 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.bytes.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line never reached the output");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*sink.bytes.lock().unwrap(), b"thread 0 line 0\n");
    }

    #[test]
    fn a_full_buffer_makes_writers_wait_and_loses_nothing() {
        let sink = Sink::default();
        // Room for a few lines only: writers must wait for the writer thread again and again.
        let (log, guard) = BatchedLog::start_with(sink.clone(), Duration::from_millis(1), 64);
        std::thread::scope(|scope| {
            for thread in 0..2 {
                let log = log.clone();
                scope.spawn(move || write_lines(&log, thread, 500));
            }
        });
        drop(guard);
        assert_eq!(String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap().lines().count(), 1_000);
    }

    #[test]
    fn a_burst_leaves_no_oversized_buffer_behind() {
        let mut burst = Vec::with_capacity(4 * KEEP_CAPACITY);
        burst.extend_from_slice(b"line\n");
        recycle(&mut burst);
        assert!(burst.is_empty());
        assert!(burst.capacity() <= KEEP_CAPACITY, "{}", burst.capacity());
        let mut usual = Vec::with_capacity(KEEP_CAPACITY / 4);
        let kept = usual.as_ptr();
        usual.extend_from_slice(b"line\n");
        recycle(&mut usual);
        assert_eq!(usual.as_ptr(), kept, "a usual batch keeps its allocation");
    }
}
