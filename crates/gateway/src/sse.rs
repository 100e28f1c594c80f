//! An incremental Server-Sent Events parser: feed it bytes as they arrive, take complete events.
//!
//! Follows the WHATWG rules that matter for LLM streams: `\n`, `\r\n` or `\r` line ends, `event:`
//! and multi-line `data:` fields, comments (`:`) ignored, an event dispatched on a blank line.

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field; empty means the default (`message`).
    pub event: String,
    pub data: String,
}

/// Buffers partial input between `feed` calls.
#[derive(Default, Debug)]
pub struct Parser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Bytes held that do not yet form a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Adds `bytes` and appends every event they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' || b == b'\r' {
                // A `\r` at the very end may be the first half of `\r\n`: wait for more.
                if b == b'\r' && i + 1 == self.buf.len() {
                    break;
                }
                let line_end = i;
                i += if b == b'\r' && self.buf.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                let line = String::from_utf8_lossy(&self.buf[start..line_end]).into_owned();
                self.line(&line, out);
                start = i;
            } else {
                i += 1;
            }
        }
        self.buf.drain(..start);
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) {
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            } else {
                self.event.clear();
            }
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let text =
            b"event: message_start\ndata: {\"a\":1}\n\n: comment\ndata: x\r\ndata: y\r\n\r\n";
        let whole = parse_all(&[text]);
        assert_eq!(
            whole,
            vec![
                Event {
                    event: "message_start".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    event: String::new(),
                    data: "x\ny".into()
                },
            ]
        );
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
    }

    #[test]
    fn an_unfinished_event_is_not_emitted() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        p.feed(b"data: [DONE]\n", &mut out);
        assert!(out.is_empty());
        p.feed(b"\n", &mut out);
        assert_eq!(out[0].data, "[DONE]");
    }
}
