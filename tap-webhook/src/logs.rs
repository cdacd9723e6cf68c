//! `serve`'s log lines, written by a thread of their own: a request formats its line and queues
//! it, and the thread writes whatever is queued in one system call (one call per line was ~10%
//! of the receiver's CPU per durable POST, `bench/receiver.sh`).
//!
//! Never lossy, at run time or at exit: a full queue makes the logger wait (as a blocked stderr
//! made each request wait before), and [`LogThread::finish`] returns only once every line queued
//! before it is written, however slowly stderr is read (tracing-appender's guard gave up after
//! a second, losing the rest and cutting the last line in the middle). A line logged after it
//! is written directly.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Lines queued at most (about 25 MB of 200-byte lines) before a logger waits.
const QUEUED_LINES: usize = 128_000;

enum Msg {
    Line(Vec<u8>),
    /// Everything before is written: the thread flushes and ends.
    Finish,
}

/// Hands lines to the log thread (`tracing_subscriber`'s writer).
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Msg>,
}

/// The log thread; [`LogThread::finish`] writes what is queued and stops it.
pub struct LogThread {
    tx: SyncSender<Msg>,
    handle: JoinHandle<()>,
}

/// Starts the thread writing to stderr.
pub fn start() -> std::io::Result<(Queue, LogThread)> {
    let (tx, rx) = sync_channel(QUEUED_LINES);
    let handle = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_queued(&rx, &mut std::io::BufWriter::new(std::io::stderr())))?;
    Ok((Queue { tx: tx.clone() }, LogThread { tx, handle }))
}

fn write_queued(rx: &Receiver<Msg>, out: &mut impl Write) {
    // Write errors (stderr closed) cannot be logged anywhere: the lines go, the queue drains.
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Msg::Finish => {
                    let _ = out.flush();
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

impl LogThread {
    /// Waits until every line queued before this call is written.
    pub fn finish(self) {
        if self.tx.send(Msg::Finish).is_ok() {
            let _ = self.handle.join();
        }
    }
}

/// One line being formatted; queued whole when dropped.
pub struct Line {
    buf: Vec<u8>,
    tx: SyncSender<Msg>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        // After `finish`, or if the thread is gone: written here.
        if let Err(std::sync::mpsc::SendError(Msg::Line(line))) = self.tx.send(Msg::Line(line)) {
            let _ = std::io::stderr().write_all(&line);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Queue {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::with_capacity(256),
            tx: self.tx.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_lines_are_written_in_order_and_finish_writes_them_all() {
        let (tx, rx) = sync_channel(4);
        let writer = std::thread::spawn(move || {
            let mut out = Vec::new();
            write_queued(&rx, &mut out);
            out
        });
        for n in 0..100 {
            let mut line = Line {
                buf: Vec::new(),
                tx: tx.clone(),
            };
            writeln!(line, "line {n}").unwrap();
        }
        tx.send(Msg::Finish).unwrap();
        let out = String::from_utf8(writer.join().unwrap()).unwrap();
        let expected: String = (0..100).map(|n| format!("line {n}\n")).collect();
        assert_eq!(out, expected);
    }
}
