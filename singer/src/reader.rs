//! Singer input cut into lines: [`LineSplitter`] holds the rule (numbering, blank lines, line
//! terminators, the length cap) and is fed a buffer at a time, by `target-warehouse`'s reading
//! thread or by [`LineReader`] over any [`BufRead`].
//!
//! Real taps print lines of tens of MiB (Meltano's own cap is 50 MiB), so the cap here is generous
//! and explicit; every line carries its number so that every error downstream can name it.

use std::io::{self, BufRead};
use std::ops::Range;

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

/// Lines with their numbers, in input order, stored back to back in one buffer (no allocation
/// per line).
#[derive(Debug, Default)]
pub struct Lines {
    data: Vec<u8>,
    spans: Vec<(u64, Range<usize>)>,
}

impl Lines {
    fn push(&mut self, number: u64, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.spans.push((number, start..self.data.len()));
    }

    /// Empties the block, keeping its buffers for the next lines.
    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes of line text held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Bytes the block can hold before it grows.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The `i`-th line.
    pub fn get(&self, i: usize) -> Option<Line<'_>> {
        let (number, range) = self.spans.get(i)?;
        Some(Line {
            number: *number,
            bytes: self.data.get(range.clone())?,
        })
    }

    /// Each line's number and bytes.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.spans
            .iter()
            .map(|(n, r)| (*n, &self.data[r.start..r.end]))
    }
}

/// Cuts input bytes, handed over a buffer at a time, into numbered lines: the one rule for
/// Singer input lines. Lines are numbered from 1 counting blank ones, as an editor would; the
/// line terminator and any CR before it are cut; blank lines are skipped; a line over the byte
/// limit (its newline counted) is an error naming it.
#[derive(Debug)]
pub struct LineSplitter {
    /// The start of a line the last buffer ended in, completed by the next one(s).
    partial: Vec<u8>,
    /// The number of the last line read (0 before the first).
    line: u64,
    max: usize,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            line: 0,
            max: max_line_bytes,
        }
    }

    /// The number of the last line read (0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// Adds the lines `chunk` completes to `out` (`memchr` finds the newlines; a line is copied
    /// once) and keeps the unfinished last one for the next call. On a line over the limit,
    /// the lines before it are in `out` and the input must end there.
    pub fn split(&mut self, chunk: &[u8], out: &mut Lines) -> Result<(), ReadError> {
        let mut start = 0;
        while let Some(i) = memchr::memchr(b'\n', &chunk[start..]) {
            let end = start + i;
            self.line += 1;
            // `>=`: the limit counts the newline.
            if self.partial.is_empty() {
                if end - start >= self.max {
                    return Err(self.too_long(self.line));
                }
                push_line(out, self.line, &chunk[start..end]);
            } else {
                self.partial.extend_from_slice(&chunk[start..end]);
                if self.partial.len() >= self.max {
                    return Err(self.too_long(self.line));
                }
                push_line(out, self.line, &self.partial);
                self.partial.clear();
            }
            start = end + 1;
        }
        self.partial.extend_from_slice(&chunk[start..]);
        if self.partial.len() > self.max {
            // Refused before the rest of it is buffered.
            return Err(self.too_long(self.line + 1));
        }
        Ok(())
    }

    /// The end of the input: a last line without its newline is added to `out`.
    pub fn finish(&mut self, out: &mut Lines) -> Result<(), ReadError> {
        if self.partial.is_empty() {
            return Ok(());
        }
        self.line += 1;
        if self.partial.len() > self.max {
            return Err(self.too_long(self.line));
        }
        push_line(out, self.line, &self.partial);
        self.partial.clear();
        Ok(())
    }

    fn too_long(&mut self, line: u64) -> ReadError {
        self.partial = Vec::new();
        ReadError::TooLong {
            line,
            max: self.max,
        }
    }
}

/// Adds one line (without its newline) unless it is blank; trailing CRs are cut.
fn push_line(lines: &mut Lines, number: u64, bytes: &[u8]) {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let bytes = &bytes[..end];
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        lines.push(number, bytes);
    }
}

/// Lines read from a [`BufRead`] one at a time, split by a [`LineSplitter`] (for a caller
/// without a reading thread of its own, as the target's reader of BATCH files; its stdin is
/// read on a thread of its own that uses the splitter).
pub struct LineReader<R> {
    inner: R,
    splitter: LineSplitter,
    /// Lines split from the last buffer read, handed out from `next`.
    block: Lines,
    next: usize,
    /// The number of the last line returned.
    returned: u64,
    /// What ended the input (after the lines before it are handed out): `Some(None)` at its end.
    end: Option<Option<ReadError>>,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_max_line_bytes(inner, DEFAULT_MAX_LINE_BYTES)
    }

    pub fn with_max_line_bytes(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            splitter: LineSplitter::new(max),
            block: Lines::default(),
            next: 0,
            returned: 0,
            end: None,
        }
    }

    /// The number of the last line returned (0 before the first).
    pub fn line_number(&self) -> u64 {
        self.returned
    }

    /// The next non-blank line, or `None` at end of input.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>, ReadError> {
        loop {
            if self.next < self.block.len() {
                let i = self.next;
                self.next += 1;
                self.returned = self.block.spans[i].0;
                return Ok(self.block.get(i));
            }
            if let Some(end) = self.end.take() {
                self.end = Some(None);
                return end.map_or(Ok(None), Err);
            }
            self.block.clear();
            self.next = 0;
            let chunk = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.end = Some(Some(ReadError::Io {
                        line: self.splitter.line_number(),
                        source,
                    }));
                    continue;
                }
            };
            if chunk.is_empty() {
                self.end = Some(self.splitter.finish(&mut self.block).err());
                continue;
            }
            let n = chunk.len();
            let split = self.splitter.split(chunk, &mut self.block);
            self.inner.consume(n);
            if let Err(e) = split {
                self.end = Some(Some(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `text` handed over `cap` bytes at a time: the lines, then what ended the input.
    fn split_in_chunks(
        text: &[u8],
        cap: usize,
        max: usize,
    ) -> (Vec<(u64, Vec<u8>)>, Option<String>) {
        let mut splitter = LineSplitter::new(max);
        let mut lines = Lines::default();
        let mut end = None;
        for chunk in text.chunks(cap) {
            if let Err(e) = splitter.split(chunk, &mut lines) {
                end = Some(e.to_string());
                break;
            }
        }
        if end.is_none() {
            end = splitter.finish(&mut lines).err().map(|e| e.to_string());
        }
        let got = lines.iter().map(|(n, b)| (n, b.to_vec())).collect();
        (got, end)
    }

    #[test]
    fn lines_across_buffer_ends_crlf_blanks_and_the_limit() {
        let text = b"{\"a\":1}\r\n\n  \r\n{\"b\":\"long line\"}\n\t\n{\"c\":3}";
        for cap in [1, 2, 3, 7, 64] {
            let (got, end) = split_in_chunks(text, cap, DEFAULT_MAX_LINE_BYTES);
            assert!(end.is_none());
            let want: Vec<(u64, Vec<u8>)> = vec![
                (1, b"{\"a\":1}".to_vec()),
                (4, b"{\"b\":\"long line\"}".to_vec()),
                (6, b"{\"c\":3}".to_vec()),
            ];
            assert_eq!(got, want, "chunks of {cap} bytes");
        }
        // The limit counts the newline: 6 bytes and a newline is over a limit of 6; the same 6
        // bytes ending the input are not.
        for cap in [1, 2, 64] {
            let (got, end) = split_in_chunks(b"abc\nabcdef\nx\n", cap, 6);
            assert_eq!(got, vec![(1, b"abc".to_vec())], "chunks of {cap}");
            assert_eq!(
                end.as_deref(),
                Some("line 2 is longer than the 6 byte limit")
            );
            let (got, end) = split_in_chunks(b"abcdef", cap, 6);
            assert!(end.is_none() && got == vec![(1, b"abcdef".to_vec())]);
            let (got, end) = split_in_chunks(b"a\nabcdefg", cap, 6);
            assert_eq!(got, vec![(1, b"a".to_vec())]);
            assert_eq!(
                end.as_deref(),
                Some("line 2 is longer than the 6 byte limit")
            );
        }
    }

    #[test]
    fn the_reader_hands_out_the_lines_before_an_error_first() {
        let input = std::io::BufReader::with_capacity(64, &b"a\n\nb\nabcdefgh\nc\n"[..]);
        let mut r = LineReader::with_max_line_bytes(input, 6);
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.number, l.bytes), (1, &b"a"[..]));
        let l = r.next_line().unwrap().unwrap();
        assert_eq!((l.number, l.bytes), (3, &b"b"[..]));
        assert_eq!(r.line_number(), 3);
        let e = r.next_line().unwrap_err();
        assert_eq!(e.to_string(), "line 4 is longer than the 6 byte limit");
    }

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
