//! Reading log files line by line without a per-line allocation and in bounded memory.
//!
//! Lines are sliced out of one large reusable buffer. A line longer than the limit is not
//! buffered whole (a hostile or broken writer must not make us allocate without bound): it
//! is skipped to its end and reported as one over-long line.

use std::io::{self, Read};

/// Longest line kept; longer ones are reported as [`Line::TooLong`].
pub const MAX_LINE: usize = 4 << 20;
const CHUNK: usize = 256 << 10;

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line without its `\n`.
    Text(&'a [u8]),
    /// A line over [`MAX_LINE`] bytes, skipped; its length is given.
    TooLong(usize),
}

/// Splits a byte stream into lines.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line, `None` at the end of input. A last line without `\n` is returned too.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        let mut scanned = 0;
        let mut skipped: Option<usize> = None;
        loop {
            let pending = &self.buf[self.start + scanned..self.end];
            if let Some(i) = memchr::memchr(b'\n', pending) {
                let line_end = self.start + scanned + i;
                let line_start = self.start;
                self.start = line_end + 1;
                if let Some(n) = skipped {
                    return Ok(Some(Line::TooLong(n + line_end - line_start)));
                }
                return Ok(Some(Line::Text(&self.buf[line_start..line_end])));
            }
            scanned = self.end - self.start;
            if self.eof {
                if self.start == self.end && skipped.is_none() {
                    return Ok(None);
                }
                let (s, e) = (self.start, self.end);
                self.start = self.end;
                if let Some(n) = skipped {
                    return Ok(Some(Line::TooLong(n + e - s)));
                }
                return Ok(Some(Line::Text(&self.buf[s..e])));
            }
            if scanned >= MAX_LINE {
                // Drop what we have of this line and keep reading until its end.
                *skipped.get_or_insert(0) += scanned;
                self.start = 0;
                self.end = 0;
                scanned = 0;
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
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
                self.eof = true;
            }
            self.end += n;
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
