//! Input lines read on their own thread, so that a quiet tap cannot hold buffered rows past
//! `max_batch_age_seconds` (the message loop waits for lines with a timeout), and so that
//! reading overlaps parsing.
//!
//! The reader hands over whatever lines it has each time the loop asks; it stops reading once
//! [`PUMP_BYTES`] are waiting, which bounds the memory between the two threads.

use std::io::BufRead;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use singer::reader::{LineReader, ReadError};

/// Bytes of input lines that may wait for the message loop.
pub const PUMP_BYTES: usize = 8 * 1024 * 1024;

/// What the message loop gets from [`Pump::next`].
pub enum Chunk {
    /// Lines with their numbers, in input order.
    Lines(Vec<(u64, Vec<u8>)>),
    /// Nothing arrived before the timeout.
    Timeout,
    /// End of input, or the error that ended it.
    End(Option<ReadError>),
}

#[derive(Default)]
struct State {
    lines: Vec<(u64, Vec<u8>)>,
    bytes: usize,
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
        let shared: Shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let theirs = shared.clone();
        std::thread::spawn(move || read_lines(input, &theirs));
        Pump { shared }
    }

    /// Waits for lines (at most `timeout`, or forever when `None`) and takes all that wait.
    pub fn next(&self, timeout: Option<Duration>) -> Chunk {
        let (m, cv) = &*self.shared;
        let mut st = lock(m);
        loop {
            if !st.lines.is_empty() {
                st.bytes = 0;
                let lines = std::mem::take(&mut st.lines);
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
}

impl Drop for Pump {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        lock(m).consumer_gone = true;
        cv.notify_all();
    }
}

fn read_lines<R: BufRead>(input: R, shared: &Shared) {
    let (m, cv) = &**shared;
    let mut reader = LineReader::new(input);
    loop {
        let next = reader.next_line();
        let mut st = lock(m);
        match next {
            Ok(Some(line)) => {
                while st.bytes >= PUMP_BYTES && !st.consumer_gone {
                    st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.consumer_gone {
                    return;
                }
                st.bytes += line.bytes.len();
                st.lines.push((line.number, line.bytes.to_vec()));
                if st.consumer_waiting {
                    cv.notify_all();
                }
            }
            Ok(None) => {
                st.end = Some(None);
                cv.notify_all();
                return;
            }
            Err(e) => {
                st.end = Some(Some(e));
                cv.notify_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_over_every_line_then_the_end() {
        let pump = Pump::spawn(std::io::Cursor::new(b"a\n\nb\nc".to_vec()));
        let mut got = Vec::new();
        loop {
            match pump.next(Some(Duration::from_secs(5))) {
                Chunk::Lines(l) => got.extend(l),
                Chunk::Timeout => panic!("input is all there"),
                Chunk::End(e) => {
                    assert!(e.is_none());
                    break;
                }
            }
        }
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
