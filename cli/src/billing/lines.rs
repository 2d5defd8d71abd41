//! Splits a streamed body into lines, whatever the chunks' boundaries, holding only the line that is
//! still open.

/// The longest line kept: a usage row is well under a kilobyte; a body without newlines is not one.
pub const MAX_LINE: usize = 1 << 20;

/// A line longer than [`MAX_LINE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a line of the answer is longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

/// The open line of a body read chunk by chunk.
#[derive(Debug, Default)]
pub struct LineBuffer {
    open: Vec<u8>,
}

impl LineBuffer {
    /// Calls `each` with every line `chunk` completes (without its `\n` or `\r\n`; blank lines
    /// skipped), in order; stops at the first error of `each`.
    pub fn feed<E: From<LineTooLong>>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = (&rest[..at], &rest[at + 1..]);
            rest = tail;
            if self.open.is_empty() {
                emit(head, &mut each)?;
            } else {
                self.open.extend_from_slice(head);
                let line = std::mem::take(&mut self.open);
                emit(&line, &mut each)?;
            }
        }
        if self.open.len() + rest.len() > MAX_LINE {
            return Err(LineTooLong.into());
        }
        self.open.extend_from_slice(rest);
        Ok(())
    }

    /// Calls `each` with the last line if the body did not end with a newline.
    pub fn finish<E>(self, mut each: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        emit(&self.open, &mut each)
    }
}

fn emit<E>(line: &[u8], each: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    each(line)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buffer = LineBuffer::default();
        let mut push = |line: &[u8]| -> Result<(), LineTooLong> {
            lines.push(String::from_utf8(line.to_vec()).unwrap());
            Ok(())
        };
        for chunk in chunks {
            buffer.feed(chunk, &mut push).unwrap();
        }
        buffer.finish(&mut push).unwrap();
        lines
    }

    #[test]
    fn lines_come_whole_wherever_the_chunks_split() {
        let body = b"{\"a\":1}\r\n\n{\"b\":2}\n  \n{\"c\":3}";
        let want = ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"];
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(split(&[a, b]), want, "split at {at}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(split(&bytes), want);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut buffer = LineBuffer::default();
        let chunk = vec![b'x'; MAX_LINE / 2 + 1];
        let mut nothing = |_: &[u8]| -> Result<(), LineTooLong> { Ok(()) };
        buffer.feed(&chunk, &mut nothing).unwrap();
        assert_eq!(buffer.feed(&chunk, &mut nothing), Err(LineTooLong));
    }

    #[test]
    fn an_error_of_the_callee_stops_the_split() {
        let mut buffer = LineBuffer::default();
        let mut seen = 0;
        let result = buffer.feed(b"1\n2\n3\n", |_| {
            seen += 1;
            if seen == 2 { Err(LineTooLong) } else { Ok(()) }
        });
        assert_eq!(result, Err(LineTooLong));
        assert_eq!(seen, 2);
    }
}
