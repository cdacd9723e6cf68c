//! Input lines read on their own thread, so that a quiet tap cannot hold buffered rows past
//! `max_batch_age_seconds` (the message loop waits for lines with a timeout), and so that
//! reading overlaps parsing.
//!
//! The reader splits its input with `singer::reader::LineSplitter` (the one rule for Singer
//! input lines) into a shared [`Lines`] block (one buffer for many lines: no allocation per line) and hands the whole block over each time the loop asks; emptied blocks
//! come back for reuse. It stops reading once [`PUMP_BYTES`] are waiting, which bounds the
//! memory between the two threads.

use std::io::BufRead;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use singer::reader::Lines;
use singer::reader::{LineSplitter, ReadError, DEFAULT_MAX_LINE_BYTES};

/// Bytes of input lines that may wait for the message loop.
pub const PUMP_BYTES: usize = 8 * 1024 * 1024;

/// What the message loop gets from [`Pump::next`].
pub enum Chunk {
    /// Lines in input order; give the block back with [`Pump::recycle`] once read.
    Lines(Lines),
    /// Nothing arrived before the timeout.
    Timeout,
    /// End of input, or the error that ended it.
    End(Option<ReadError>),
}

#[derive(Default)]
struct State {
    lines: Lines,
    /// An emptied block for the reader's next batch of lines (keeps its capacity).
    spare: Option<Lines>,
    end: Option<Option<ReadError>>,
    consumer_waiting: bool,
    consumer_gone: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic on the other side cannot leave the queue half-updated: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Pump {
    shared: Shared,
}

impl Pump {
    pub fn spawn<R: BufRead + Send + 'static>(input: R) -> Pump {
        Pump::spawn_with_max(input, DEFAULT_MAX_LINE_BYTES)
    }

    /// [`Pump::spawn`] with a line length limit of `max` bytes.
    pub fn spawn_with_max<R: BufRead + Send + 'static>(input: R, max: usize) -> Pump {
        let shared: Shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let theirs = shared.clone();
        std::thread::spawn(move || read_lines(input, &theirs, max));
        Pump { shared }
    }

    /// Waits for lines (at most `timeout`, or forever when `None`) and takes all that wait.
    pub fn next(&self, timeout: Option<Duration>) -> Chunk {
        let (m, cv) = &*self.shared;
        let mut st = lock(m);
        loop {
            if !st.lines.is_empty() {
                let next = st.spare.take().unwrap_or_default();
                let lines = std::mem::replace(&mut st.lines, next);
                cv.notify_all(); // the reader may be waiting for room
                return Chunk::Lines(lines);
            }
            if let Some(end) = st.end.take() {
                st.end = Some(None);
                return Chunk::End(end);
            }
            st.consumer_waiting = true;
            st = match timeout {
                Some(t) => {
                    let (st, res) = cv.wait_timeout(st, t).unwrap_or_else(|p| p.into_inner());
                    let mut st = st;
                    st.consumer_waiting = false;
                    if res.timed_out() && st.lines.is_empty() && st.end.is_none() {
                        return Chunk::Timeout;
                    }
                    st
                }
                None => {
                    let mut st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                    st.consumer_waiting = false;
                    st
                }
            };
        }
    }

    /// Gives a block read by the loop back to the reader, so its buffer is reused.
    pub fn recycle(&self, mut lines: Lines) {
        if lines.capacity() > 2 * PUMP_BYTES {
            return; // after a huge line: do not keep its buffer around
        }
        lines.clear();
        let (m, _) = &*self.shared;
        let mut st = lock(m);
        if st.spare.is_none() {
            st.spare = Some(lines);
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        lock(m).consumer_gone = true;
        cv.notify_all();
    }
}

/// Reads the input a buffer at a time and splits each into the shared block with singer's
/// [`LineSplitter`] (one copy per line, one lock per buffer, `memchr` for the newlines): the
/// rules of every Singer input line, a line over the byte limit ending the input with an error.
fn read_lines<R: BufRead>(mut input: R, shared: &Shared, max: usize) {
    let (m, cv) = &**shared;
    let finish = |end: Option<ReadError>| {
        let mut st = lock(m);
        st.end = Some(end);
        cv.notify_all();
    };
    let mut splitter = LineSplitter::new(max);
    loop {
        let chunk = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                let line = splitter.line_number();
                return finish(Some(ReadError::Io { line, source }));
            }
        };
        let n = chunk.len();
        let mut st = lock(m);
        while st.lines.bytes() >= PUMP_BYTES && !st.consumer_gone {
            st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.consumer_gone {
            return;
        }
        if n == 0 {
            // End of input: the last line may lack its newline.
            st.end = Some(splitter.finish(&mut st.lines).err());
            cv.notify_all();
            return;
        }
        let split = splitter.split(chunk, &mut st.lines);
        if let Err(e) = split {
            // The lines before the long one are handed over first.
            st.end = Some(Some(e));
            cv.notify_all();
            return;
        }
        if st.consumer_waiting && !st.lines.is_empty() {
            cv.notify_all();
        }
        drop(st);
        input.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(pump: &Pump) -> (Vec<(u64, Vec<u8>)>, Option<ReadError>) {
        let mut got = Vec::new();
        loop {
            match pump.next(Some(Duration::from_secs(5))) {
                Chunk::Lines(l) => {
                    got.extend(l.iter().map(|(n, b)| (n, b.to_vec())));
                    pump.recycle(l);
                }
                Chunk::Timeout => panic!("input is all there"),
                Chunk::End(e) => return (got, e),
            }
        }
    }

    #[test]
    fn lines_across_buffer_ends_crlf_blanks_and_the_limit() {
        let text = b"{\"a\":1}\r\n\n  \r\n{\"b\":\"long line\"}\n\t\n{\"c\":3}".to_vec();
        for cap in [1, 2, 3, 7, 64] {
            let input = std::io::BufReader::with_capacity(cap, std::io::Cursor::new(text.clone()));
            let (got, end) = drain(&Pump::spawn(input));
            assert!(end.is_none());
            let want: Vec<(u64, Vec<u8>)> = vec![
                (1, b"{\"a\":1}".to_vec()),
                (4, b"{\"b\":\"long line\"}".to_vec()),
                (6, b"{\"c\":3}".to_vec()),
            ];
            assert_eq!(got, want, "buffer of {cap} bytes");
        }
        // The same lines as singer's LineReader, which the limit also follows.
        let mut r = singer::reader::LineReader::new(&text[..]);
        let mut numbers = Vec::new();
        while let Some(l) = r.next_line().expect("line") {
            numbers.push(l.number);
        }
        assert_eq!(numbers, vec![1, 4, 6]);
        for cap in [2, 64] {
            let input = std::io::BufReader::with_capacity(
                cap,
                std::io::Cursor::new(b"abc\nabcdef\nx\n".to_vec()),
            );
            let (got, end) = drain(&Pump::spawn_with_max(input, 6));
            assert_eq!(got, vec![(1, b"abc".to_vec())]);
            assert_eq!(
                end.map(|e| e.to_string()).as_deref(),
                Some("line 2 is longer than the 6 byte limit")
            );
        }
        let (got, end) = drain(&Pump::spawn_with_max(
            std::io::Cursor::new(b"abcdef".to_vec()),
            6,
        ));
        assert!(end.is_none() && got == vec![(1, b"abcdef".to_vec())]);
    }

    #[test]
    fn hands_over_every_line_then_the_end() {
        let (got, end) = drain(&Pump::spawn(std::io::Cursor::new(b"a\n\nb\nc".to_vec())));
        assert!(end.is_none());
        let texts: Vec<(u64, &[u8])> = got.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        assert_eq!(texts, vec![(1, &b"a"[..]), (3, &b"b"[..]), (4, &b"c"[..])]);
    }

    #[test]
    fn times_out_on_a_quiet_input() {
        let (r, _w) = std::os::unix::net::UnixStream::pair().expect("pair");
        let pump = Pump::spawn(std::io::BufReader::new(r));
        assert!(matches!(
            pump.next(Some(Duration::from_millis(20))),
            Chunk::Timeout
        ));
    }
}
