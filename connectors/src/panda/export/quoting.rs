//! Telling NULL from the empty string in CSV, which the `csv` crate cannot:
//! it reads both an empty field and a quoted `""` as an empty field.
//!
//! [`QuotedEmptyMarker`] sits between the file and the `csv` reader. It
//! follows RFC 4180 quoting byte by byte and rewrites a field that is exactly
//! `""` into `"\xFF"`; a byte that can never occur in UTF-8, so the reader
//! sees a one-byte field [`QUOTED_EMPTY`] where the file had an empty string,
//! and an empty field only for NULL. On the way it drops a leading UTF-8 BOM,
//! maps a stray `\xFF` in the input to `\xFE` (still invalid UTF-8, so it is
//! still reported as such), and fails an unterminated quoted field with the
//! line it started on instead of letting it swallow the rest of the file.

use std::io::{self, Read};

/// What a quoted empty string looks like to the `csv` reader after marking.
pub const QUOTED_EMPTY: &[u8] = b"\xFF";

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field, outside quotes.
    FieldStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Just after the opening quote of a field.
    Opened,
    /// After `""` at the start of a field; the second quote is held back.
    OpenedTwice,
    /// Inside a quoted field.
    Quoted,
    /// After a quote inside a quoted field (a closing quote or half of `""`).
    QuoteInQuoted,
}

/// See the module documentation.
pub struct QuotedEmptyMarker<R> {
    inner: R,
    state: State,
    bom_matched: usize,
    bom_done: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    delivered: usize,
    finished: bool,
    line: u64,
    quote_line: u64,
}

impl<R: Read> QuotedEmptyMarker<R> {
    pub fn new(inner: R) -> Self {
        QuotedEmptyMarker {
            inner,
            state: State::FieldStart,
            bom_matched: 0,
            bom_done: false,
            input: vec![0; 64 * 1024],
            output: Vec::with_capacity(66 * 1024),
            delivered: 0,
            finished: false,
            line: 1,
            quote_line: 1,
        }
    }

    /// The wrapped reader (positioned after what has been consumed).
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn feed(&mut self, byte: u8) {
        let byte = if byte == 0xFF { 0xFE } else { byte };
        if byte == b'\n' {
            self.line += 1;
        }
        let out = &mut self.output;
        let line_end = |b: u8| b == b'\n' || b == b'\r';
        self.state = match (self.state, byte) {
            (State::FieldStart, b'"') => {
                self.quote_line = self.line;
                out.push(byte);
                State::Opened
            }
            (State::FieldStart | State::Unquoted, b',') => {
                out.push(byte);
                State::FieldStart
            }
            (State::FieldStart | State::Unquoted, b) if line_end(b) => {
                out.push(b);
                State::FieldStart
            }
            (State::FieldStart | State::Unquoted, b) => {
                out.push(b);
                State::Unquoted
            }
            (State::Opened, b'"') => State::OpenedTwice,
            (State::Opened, b) => {
                out.push(b);
                State::Quoted
            }
            // `"""…`: an escaped quote at the start of a quoted field.
            (State::OpenedTwice, b'"') => {
                out.extend_from_slice(b"\"\"");
                State::Quoted
            }
            // `""` then a separator: the quoted empty string.
            (State::OpenedTwice, b) if b == b',' || line_end(b) => {
                out.extend_from_slice(QUOTED_EMPTY);
                out.push(b'"');
                out.push(b);
                State::FieldStart
            }
            (State::OpenedTwice, b) => {
                out.push(b'"');
                out.push(b);
                State::Unquoted
            }
            (State::Quoted, b'"') => {
                out.push(b'"');
                State::QuoteInQuoted
            }
            (State::Quoted, b) => {
                out.push(b);
                State::Quoted
            }
            (State::QuoteInQuoted, b'"') => {
                out.push(b'"');
                State::Quoted
            }
            (State::QuoteInQuoted, b) if b == b',' || line_end(b) => {
                out.push(b);
                State::FieldStart
            }
            (State::QuoteInQuoted, b) => {
                out.push(b);
                State::Unquoted
            }
        };
    }

    fn feed_chunk(&mut self, n: usize) {
        for i in 0..n {
            let byte = self.input[i];
            if !self.bom_done {
                if byte == BOM[self.bom_matched] {
                    self.bom_matched += 1;
                    if self.bom_matched == BOM.len() {
                        self.bom_done = true;
                    }
                    continue;
                }
                self.release_partial_bom();
            }
            self.feed(byte);
        }
    }

    fn release_partial_bom(&mut self) {
        self.bom_done = true;
        for held in BOM.iter().take(self.bom_matched).copied() {
            self.feed(held);
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        if !self.bom_done {
            self.release_partial_bom();
        }
        match self.state {
            State::OpenedTwice => {
                self.output.extend_from_slice(QUOTED_EMPTY);
                self.output.push(b'"');
                Ok(())
            }
            State::Opened | State::Quoted => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a quoted field opened on line {} is never closed",
                    self.quote_line
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl<R: Read> Read for QuotedEmptyMarker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.delivered == self.output.len() {
            if self.finished {
                return Ok(0);
            }
            self.output.clear();
            self.delivered = 0;
            let n = self.inner.read(&mut self.input)?;
            if n == 0 {
                self.finish()?;
            } else {
                self.feed_chunk(n);
            }
        }
        let n = buf.len().min(self.output.len() - self.delivered);
        buf[..n].copy_from_slice(&self.output[self.delivered..self.delivered + n]);
        self.delivered += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` through the marker with a 1-byte inner reader (worst case for boundaries).
    fn fields(input: &[u8]) -> Vec<Vec<Vec<u8>>> {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(QuotedEmptyMarker::new(Trickle(input)));
        reader
            .byte_records()
            .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
            .collect()
    }

    #[test]
    fn quoted_empty_is_marked_and_null_is_not() {
        let rows = fields(b"\xEF\xBB\xBFa,\"\",,\"x\"\"y\",\"\"\"q\"\"\"\r\n\"\",\"a,b\"\n,\"\"");
        assert_eq!(
            rows[0],
            vec![
                b"a".to_vec(),
                QUOTED_EMPTY.to_vec(),
                b"".to_vec(),
                b"x\"y".to_vec(),
                b"\"q\"".to_vec()
            ]
        );
        assert_eq!(rows[1], vec![QUOTED_EMPTY.to_vec(), b"a,b".to_vec()]);
        assert_eq!(rows[2], vec![b"".to_vec(), QUOTED_EMPTY.to_vec()]);
    }

    #[test]
    fn multi_line_fields_and_partial_bom_survive() {
        let rows = fields(b"\xEFx,\"line1\r\nline2\"\n");
        assert_eq!(rows[0], vec![b"\xEFx".to_vec(), b"line1\r\nline2".to_vec()]);
        let rows = fields(b"\xFF,b\n");
        assert_eq!(
            rows[0][0],
            b"\xFE".to_vec(),
            "a stray 0xFF must not pass for a quoted empty string"
        );
    }

    #[test]
    fn an_unterminated_quote_names_its_line() {
        let mut text = String::new();
        let error = QuotedEmptyMarker::new(&b"a,b\n1,\"open\n2,3\n"[..])
            .read_to_string(&mut text)
            .unwrap_err();
        assert!(error.to_string().contains("opened on line 2"), "{error}");
    }
}
