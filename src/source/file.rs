//! Reading log files line by line without a per-line allocation and in bounded memory: the
//! one line reader of banhound. `test-filter` reads a whole file or stdin with it
//! ([`LineReader::next_line`]); the daemon's file follower ([`super::file_follow`]) reads a
//! file still being written with it ([`LineReader::next_whole_line`]), so both see the same
//! lines.
//!
//! Lines are sliced out of one reusable buffer. A line longer than [`MAX_LINE`] is not
//! buffered whole (a hostile or broken writer must not make us allocate without bound): it is
//! skipped to its newline and reported as one over-long line. It is never split: a part of a
//! line handed over as a line of its own would let whoever makes a service log a long line
//! choose the next "line" a filter sees.

use std::io::{self, Read};

/// Longest line kept, in bytes (without its `\n`); longer ones are [`Line::TooLong`]. Far
/// above what syslog daemons and journald write as one line, so no real line is lost, and
/// what a hostile writer can make a reader hold stays bounded.
pub const MAX_LINE: usize = 4 << 20;
/// The buffer's size between long lines, and the most read at once while one is skipped.
const CHUNK: usize = 256 << 10;

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line without its `\n`.
    Text(&'a [u8]),
    /// A line over [`MAX_LINE`] bytes, skipped; its length (without `\n`) is given.
    TooLong(usize),
}

/// Splits a byte stream into lines.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes from `start` already searched for `\n` (there is none in them).
    scanned: usize,
    /// Bytes already dropped of the over-long line being skipped.
    skipped: Option<usize>,
    eof: bool,
    /// Bytes of input in the lines returned so far, newlines included.
    consumed: u64,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            scanned: 0,
            skipped: None,
            eof: false,
            consumed: 0,
        }
    }

    /// The next line, `None` at the end of input. A last line without `\n` is returned too:
    /// for input that is complete (a file read once, stdin).
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.next(true)
    }

    /// The next line ended by `\n`, `None` when the input has no more for now. A line
    /// still being written (or skipped) is kept, and continued by the next call once the
    /// input has grown: for a file that is followed.
    pub fn next_whole_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.next(false)
    }

    /// Bytes of input taken by the lines returned so far (skipped ones included): where the
    /// next line starts, relative to where reading started.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The input read from (for a file: its metadata).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    fn next(&mut self, last_unterminated: bool) -> io::Result<Option<Line<'_>>> {
        loop {
            let from = self.start + self.scanned;
            if let Some(i) = memchr::memchr(b'\n', &self.buf[from..self.end]) {
                let (line_start, line_end) = (self.start, from + i);
                self.start = line_end + 1;
                return Ok(Some(self.take(line_start, line_end, 1)));
            }
            self.scanned = self.end - self.start;
            if self.eof {
                if self.start == self.end && self.skipped.is_none() {
                    return Ok(None);
                }
                let (line_start, line_end) = (self.start, self.end);
                self.start = self.end;
                return Ok(Some(self.take(line_start, line_end, 0)));
            }
            if self.scanned > MAX_LINE || (self.skipped.is_some() && self.scanned > 0) {
                // Drop what we have of this line and keep reading until its end.
                *self.skipped.get_or_insert(0) += self.scanned;
                self.start = 0;
                self.end = 0;
                self.scanned = 0;
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == 0 && self.buf.len() > CHUNK {
                // A long line is gone: give its memory back (a follower runs for months).
                self.buf.truncate(CHUNK);
                self.buf.shrink_to_fit();
            }
            if self.end == self.buf.len() {
                let grown = (self.buf.len() * 2).min(MAX_LINE + CHUNK);
                self.buf.resize(grown, 0);
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                if !last_unterminated {
                    return Ok(None);
                }
                self.eof = true;
            }
            self.end += n;
        }
    }

    /// The line in `buf[line_start..line_end]` (after what was skipped of it), followed by
    /// `newline` bytes of input, as returned.
    fn take(&mut self, line_start: usize, line_end: usize, newline: u64) -> Line<'_> {
        self.scanned = 0;
        let len = self.skipped.take().unwrap_or(0) + (line_end - line_start);
        self.consumed += len as u64 + newline;
        if len > MAX_LINE {
            Line::TooLong(len)
        } else {
            Line::Text(&self.buf[line_start..line_end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut r = LineReader::new(input);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Line::TooLong(n) => format!("<{n}>"),
            });
        }
        out
    }

    #[test]
    fn splits_lines() {
        assert_eq!(lines(b"a\nbb\n\nccc"), vec!["a", "bb", "", "ccc"]);
        assert_eq!(lines(b""), Vec::<String>::new());
        assert_eq!(lines(b"x\n"), vec!["x"]);
    }

    #[test]
    fn long_lines_are_kept_up_to_the_limit_and_skipped_beyond() {
        let mut input = vec![b'a'; CHUNK * 3];
        input.push(b'\n');
        input.extend(vec![b'b'; MAX_LINE + 10]);
        input.extend_from_slice(b"\nend\n");
        let got = lines(&input);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].len(), CHUNK * 3);
        assert_eq!(got[1], format!("<{}>", MAX_LINE + 10));
        assert_eq!(got[2], "end");
    }

    #[test]
    fn the_limit_is_exact() {
        for len in [MAX_LINE - 1, MAX_LINE, MAX_LINE + 1] {
            let mut input = vec![b'a'; len];
            input.extend_from_slice(b"\nz");
            let got = lines(&input);
            let want = if len > MAX_LINE {
                format!("<{len}>")
            } else {
                "a".repeat(len)
            };
            assert!(got[0] == want, "{len}: got {} bytes", got[0].len());
            assert_eq!(got[1], "z");
        }
    }

    /// A file being appended to: what has been written so far, readable again after growing.
    #[derive(Clone, Default)]
    struct Growing(std::rc::Rc<std::cell::RefCell<(Vec<u8>, usize)>>);
    impl Growing {
        fn append(&self, bytes: &[u8]) {
            self.0.borrow_mut().0.extend_from_slice(bytes);
        }
    }
    impl Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut inner = self.0.borrow_mut();
            let (data, at) = &mut *inner;
            let n = (data.len() - *at).min(buf.len());
            buf[..n].copy_from_slice(&data[*at..*at + n]);
            *at += n;
            Ok(n)
        }
    }

    #[test]
    fn whole_lines_wait_for_their_newline_and_long_ones_are_skipped_across_reads() {
        let file = Growing::default();
        let mut r = LineReader::new(file.clone());
        file.append(b"one\ntw");
        assert_eq!(r.next_whole_line().unwrap(), Some(Line::Text(b"one")));
        assert_eq!(r.next_whole_line().unwrap(), None);
        assert_eq!(r.consumed(), 4);
        file.append(b"o\n");
        assert_eq!(r.next_whole_line().unwrap(), Some(Line::Text(b"two")));
        assert_eq!(r.next_whole_line().unwrap(), None);
        // An over-long line written in pieces, a fake line in its tail: skipped whole, and
        // `consumed` stays at its start until its newline is read.
        let pieces = [CHUNK + 1, MAX_LINE, CHUNK * 3];
        for n in pieces {
            file.append(&vec![b'x'; n]);
            assert_eq!(r.next_whole_line().unwrap(), None);
            assert_eq!(r.consumed(), 8);
        }
        file.append(b"FAIL from 192.0.2.77\nend\npart");
        let long = pieces.iter().sum::<usize>() + "FAIL from 192.0.2.77".len();
        assert_eq!(r.next_whole_line().unwrap(), Some(Line::TooLong(long)));
        assert_eq!(r.consumed(), 8 + long as u64 + 1);
        assert_eq!(r.next_whole_line().unwrap(), Some(Line::Text(b"end")));
        assert_eq!(r.next_whole_line().unwrap(), None);
        assert_eq!(r.consumed(), 8 + long as u64 + 5);
        // Its memory is given back once it is gone.
        assert_eq!(r.buf.len(), CHUNK);
    }

    #[test]
    fn reads_across_small_reads() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(3).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = LineReader::new(Trickle(b"hello world\nsecond line\n"));
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"hello world")));
        assert_eq!(r.next_line().unwrap(), Some(Line::Text(b"second line")));
        assert_eq!(r.next_line().unwrap(), None);
    }
}
