//! A streaming line reader for Singer input.
//!
//! Real taps print lines of tens of MiB (Meltano's own cap is 50 MiB), so the cap here is generous
//! and explicit; every line carries its number so that every error downstream can name it.

use std::io::{self, BufRead};

use crate::message::{parse_message, Message, MessageError};

/// Lines longer than this are refused rather than buffered without bound.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// One non-blank input line, without its line terminator.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// 1-based, counting blank lines too, as an editor would.
    pub number: u64,
    pub bytes: &'a [u8],
}

impl<'a> Line<'a> {
    /// Parses the line as a Singer message, naming the line on error.
    pub fn message(&self) -> Result<Message<'a>, ReadError> {
        parse_message(self.bytes).map_err(|source| ReadError::Message {
            line: self.number,
            source,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading input after line {line}: {source}")]
    Io { line: u64, source: io::Error },
    #[error("line {line} is longer than the {max} byte limit")]
    TooLong { line: u64, max: usize },
    #[error("line {line}: {source}")]
    Message { line: u64, source: MessageError },
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    line: u64,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_max_line_bytes(inner, DEFAULT_MAX_LINE_BYTES)
    }

    pub fn with_max_line_bytes(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            line: 0,
            max,
        }
    }

    /// The number of the last line returned (0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// The next non-blank line, or `None` at end of input.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>, ReadError> {
        loop {
            self.buf.clear();
            let line = self.line + 1;
            let complete =
                read_line_capped(&mut self.inner, &mut self.buf, self.max).map_err(|source| {
                    ReadError::Io {
                        line: self.line,
                        source,
                    }
                })?;
            if self.buf.is_empty() && !complete {
                return Ok(None);
            }
            self.line = line;
            if self.buf.len() > self.max {
                return Err(ReadError::TooLong {
                    line,
                    max: self.max,
                });
            }
            let mut end = self.buf.len();
            while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            if self.buf[..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Line {
                number: line,
                bytes: &self.buf[..end],
            }));
        }
    }
}

/// Reads up to and including `\n`, stopping early (with more than `max` bytes buffered) when the
/// line is too long. Returns whether a newline ended the line.
fn read_line_capped<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(false);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..take]);
        r.consume(take);
        if done {
            return Ok(true);
        }
        if buf.len() > max {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lines_and_skips_blanks() {
        let input = b"{\"a\":1}\r\n\n  \n{\"b\":2}";
        let mut r = LineReader::new(&input[..]);
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.number, l.bytes), (1, &b"{\"a\":1}"[..]));
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.number, l.bytes), (4, &b"{\"b\":2}"[..]));
        assert!(r.next_line().unwrap().is_none());
    }

    #[test]
    fn accepts_a_64_mib_line_and_refuses_one_over_the_cap() {
        let mut big = Vec::with_capacity(65 << 20);
        big.extend_from_slice(b"{\"type\":\"STATE\",\"value\":\"");
        big.resize(64 << 20, b'x');
        big.extend_from_slice(b"\"}\n{}\n");
        let mut r = LineReader::new(&big[..]);
        let l = r.next_line().unwrap().unwrap();
        assert!(l.bytes.len() > 64 << 20);
        assert!(matches!(l.message().unwrap(), Message::State(_)));
        let mut r = LineReader::with_max_line_bytes(&big[..], 1 << 20);
        let e = r.next_line().unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1 is longer than the 1048576 byte limit"
        );
    }

    #[test]
    fn message_errors_name_the_line() {
        let mut r = LineReader::new(&b"\n{\"type\":\"RECORD\"}\n"[..]);
        let e = r.next_line().unwrap().unwrap().message().unwrap_err();
        assert_eq!(e.to_string(), "line 2: RECORD message has no \"record\"");
    }
}
