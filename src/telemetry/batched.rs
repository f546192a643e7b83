//! The log's writer: lines gathered in memory, written out in batches by a thread of their own.
//!
//! A line is appended to a shared buffer under a short lock: no system call and, while lines keep
//! coming, no thread to wake. The writer thread sleeps until the first line arrives in an empty
//! buffer, gives the batch [`GATHER_FOR`] to fill (or until [`WAKE_AT`] bytes wait), and writes it
//! with one call. `tracing-appender`'s non-blocking writer, used before, hands each line to its
//! thread through a channel and wakes the thread for each one: at tens of thousands of lines a
//! second, those wake-ups cost a fifth of `/healthz`'s throughput (BENCHMARKS.md, issue 19).
//!
//! When the output cannot keep up (standard error blocked or far too slow) and [`HOLD_AT_MOST`]
//! bytes wait, new lines are dropped, counted, and the count is written once the output moves
//! again: the service is never slowed by its log. The [`Guard`] writes what is still waiting when
//! it is dropped: hold it until exit. A line written in the last [`GATHER_FOR`] before the process
//! is killed (not stopped) is lost, as a queued line was before.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How long the first line of a batch waits for others to join it.
pub(crate) const GATHER_FOR: Duration = Duration::from_millis(50);
/// A batch this large is written without waiting out [`GATHER_FOR`].
const WAKE_AT: usize = 256 * 1024;
/// Lines beyond this many waiting bytes are dropped.
const HOLD_AT_MOST: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Waiting {
    bytes: Vec<u8>,
    dropped: u64,
    /// The writer thread is asleep until a first line arrives.
    idle: bool,
    closing: bool,
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<Waiting>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` of the log's lines; see the module's documentation.
#[derive(Clone)]
pub(crate) struct Batched(Arc<Shared>);

/// Writes what is waiting, then stops the writer thread, when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A batched writer to `out`, and the guard that flushes it.
pub(crate) fn batched(out: impl Write + Send + 'static) -> (Batched, Guard) {
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("allot-log".to_owned())
            .spawn(move || write_batches(&shared, out))
            .ok()
    };
    (Batched(Arc::clone(&shared)), Guard { shared, thread })
}

/// The writer thread: waits for a first line, lets the batch gather, writes it; until closed.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    let mut waiting = shared.lock();
    loop {
        while waiting.bytes.is_empty() && !waiting.closing {
            waiting.idle = true;
            waiting = shared
                .wake
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let until = Instant::now() + GATHER_FOR;
        while waiting.bytes.len() < WAKE_AT && !waiting.closing {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            waiting = shared
                .wake
                .wait_timeout(waiting, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let batch = std::mem::replace(&mut waiting.bytes, std::mem::take(&mut spare));
        let dropped = std::mem::take(&mut waiting.dropped);
        let closing = waiting.closing;
        drop(waiting);
        // Nothing can be done about an output that refuses a write but to go on (a closed
        // standard error must not stop the service).
        if dropped > 0 {
            let _ = writeln!(
                out,
                "allot: {dropped} log lines were dropped: the log's output could not keep up"
            );
        }
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        spare = batch;
        spare.clear();
        // A burst's buffer is not kept for ever.
        if spare.capacity() > 4 * WAKE_AT {
            spare = Vec::new();
        }
        waiting = shared.lock();
        if closing && waiting.bytes.is_empty() {
            return;
        }
    }
}

impl io::Write for Batched {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut waiting = self.0.lock();
        if waiting.bytes.len() + line.len() > HOLD_AT_MOST {
            waiting.dropped += 1;
            return Ok(line.len());
        }
        let before = waiting.bytes.len();
        waiting.bytes.extend_from_slice(line);
        let wake = std::mem::take(&mut waiting.idle)
            || (before < WAKE_AT && waiting.bytes.len() >= WAKE_AT);
        drop(waiting);
        if wake {
            self.0.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Batched;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read while the writer thread holds it.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Seen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_in_few_writes_and_the_guard_writes_the_rest() {
        let seen = Seen::default();
        let (writer, guard) = batched(seen.clone());
        for i in 0..10_000 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let writes = seen.0.lock().unwrap();
        let text: Vec<u8> = writes.concat();
        let expected: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(text).unwrap(), expected);
        assert!(
            writes.len() < 100,
            "{} writes for 10,000 lines",
            writes.len()
        );
    }

    #[test]
    fn a_lone_line_is_written_soon_without_the_guard() {
        let seen = Seen::default();
        let (writer, _guard) = batched(seen.clone());
        writer.make_writer().write_all(b"one\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.0.lock().unwrap().concat() != b"one\n" {
            assert!(Instant::now() < deadline, "the line was not written");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_beyond_the_limit_and_says_how_many() {
        /// Blocks its first write until released.
        struct Stuck(Arc<(Mutex<bool>, Condvar)>, Seen);
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let (released, cv) = &*self.0;
                let mut go = released.lock().unwrap();
                while !*go {
                    go = cv.wait(go).unwrap();
                }
                self.1.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let seen = Seen::default();
        let (writer, guard) = batched(Stuck(Arc::clone(&gate), seen.clone()));
        writer.make_writer().write_all(b"first\n").unwrap();
        // The first batch is being written (and blocks); fill the buffer past its limit behind it.
        std::thread::sleep(GATHER_FOR * 3);
        let line = vec![b'x'; 1023];
        let lines = HOLD_AT_MOST / 1024 + 10;
        for _ in 0..lines {
            writer
                .make_writer()
                .write_all(&[&line[..], b"\n"].concat())
                .unwrap();
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let text = String::from_utf8(seen.0.lock().unwrap().concat()).unwrap();
        assert!(text.starts_with("first\n"));
        let dropped = lines - HOLD_AT_MOST / 1024;
        assert!(
            text.contains(&format!("allot: {dropped} log lines were dropped")),
            "{}",
            &text[..200]
        );
    }
}
