//! A small JSON reader for the exec form (`["a", "b"]`), with Go's `encoding/json` rules and
//! byte offsets for every element, so diagnostics can point at a bad element.

/// Why a text is not a JSON array of strings.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not valid JSON at all (or not an array); the caller treats the text as a plain string.
    Invalid,
    /// Valid JSON array, but the element at these byte offsets is not a string. BuildKit
    /// rejects the instruction in that case.
    NotString { start: usize, end: usize },
}

/// One string element: its decoded value and the byte range of its literal (quotes included).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JsonString {
    pub value: String,
    pub start: usize,
    pub end: usize,
}

/// Go's decoder refuses nesting deeper than this; matching it keeps "too deep" an `Invalid`.
const MAX_DEPTH: usize = 10_000;

/// Parses `text` (which must start with `[`, leading whitespace already removed) as a JSON
/// array. Offsets in the result are relative to `text`.
pub(crate) fn parse_array(text: &str) -> Result<Vec<JsonString>, JsonError> {
    let mut p = Reader {
        b: text.as_bytes(),
        s: text,
        i: 0,
    };
    p.ws();
    if p.peek() != Some(b'[') {
        return Err(JsonError::Invalid);
    }
    p.i += 1;
    let mut out = Vec::new();
    let mut not_string = None;
    p.ws();
    if p.peek() == Some(b']') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let start = p.i;
            if p.peek() == Some(b'"') {
                let value = p.string()?;
                out.push(JsonString {
                    value,
                    start,
                    end: p.i,
                });
            } else {
                p.value()?;
                not_string.get_or_insert((start, p.i));
            }
            p.ws();
            match p.next() {
                Some(b',') => continue,
                Some(b']') => break,
                _ => return Err(JsonError::Invalid),
            }
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return Err(JsonError::Invalid);
    }
    match not_string {
        Some((start, end)) => Err(JsonError::NotString { start, end }),
        None => Ok(out),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(JsonError::Invalid)
        }
    }

    /// Skips any JSON value. Containers are walked with an explicit stack so hostile nesting
    /// cannot overflow the thread's stack.
    fn value(&mut self) -> Result<(), JsonError> {
        // true = inside an object (expects keys), false = inside an array
        let mut stack: Vec<bool> = Vec::new();
        loop {
            self.ws();
            // one value
            match self.peek().ok_or(JsonError::Invalid)? {
                b'"' => {
                    self.string()?;
                }
                b't' => self.lit(b"true")?,
                b'f' => self.lit(b"false")?,
                b'n' => self.lit(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                b'[' => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        stack.push(false);
                        if stack.len() > MAX_DEPTH {
                            return Err(JsonError::Invalid);
                        }
                        continue;
                    }
                }
                b'{' => {
                    self.i += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        stack.push(true);
                        if stack.len() > MAX_DEPTH {
                            return Err(JsonError::Invalid);
                        }
                        self.key()?;
                        continue;
                    }
                }
                _ => return Err(JsonError::Invalid),
            }
            // after a value: close containers or move to the next element
            loop {
                let Some(&in_object) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match (self.next(), in_object) {
                    (Some(b','), true) => {
                        self.key()?;
                        break;
                    }
                    (Some(b','), false) => break,
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        stack.pop();
                    }
                    _ => return Err(JsonError::Invalid),
                }
            }
        }
    }

    fn key(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(JsonError::Invalid);
        }
        self.string()?;
        self.ws();
        if self.next() != Some(b':') {
            return Err(JsonError::Invalid);
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::Invalid),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::Invalid);
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::Invalid);
            }
            self.digits();
        }
        // Go decodes numbers into float64 and reports an error for ones out of its range.
        match self.s[start..self.i].parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(()),
            _ => Err(JsonError::Invalid),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.s.get(self.i..self.i + 4).ok_or(JsonError::Invalid)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JsonError::Invalid);
        }
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| JsonError::Invalid)
    }

    /// Reads a string literal starting at the opening quote and returns its decoded value.
    /// Lone surrogates decode to U+FFFD as in Go.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let run_start = self.i;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.s[run_start..self.i]);
            match self.next() {
                Some(b'"') => return Ok(out),
                Some(b'\\') => {}
                _ => return Err(JsonError::Invalid),
            }
            match self.next().ok_or(JsonError::Invalid)? {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let u = self.hex4()?;
                    let c = if (0xD800..0xDC00).contains(&u) {
                        // A high surrogate combines with an immediately following low one.
                        let save = self.i;
                        let low = if self.b[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            self.hex4().ok()
                        } else {
                            None
                        };
                        match low {
                            Some(l) if (0xDC00..0xE000).contains(&l) => {
                                char::from_u32(0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00))
                            }
                            _ => {
                                self.i = save;
                                None
                            }
                        }
                    } else {
                        char::from_u32(u)
                    };
                    out.push(c.unwrap_or('\u{fffd}'));
                }
                _ => return Err(JsonError::Invalid),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(s: &str) -> Result<Vec<String>, JsonError> {
        parse_array(s).map(|v| v.into_iter().map(|j| j.value).collect())
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            values(r#"["a", "b\"c", "\u00e9\ud83d\ude00\ud800x"]"#).unwrap(),
            vec!["a", "b\"c", "é😀\u{fffd}x"]
        );
        assert_eq!(values("[ ]").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn invalid_json_is_not_an_error_but_non_strings_are() {
        assert_eq!(values(r#"["a" "b"]"#), Err(JsonError::Invalid));
        assert_eq!(values(r#"["a",]"#), Err(JsonError::Invalid));
        assert_eq!(values(r#"['a']"#), Err(JsonError::Invalid));
        assert_eq!(values(r#"["a"] x"#), Err(JsonError::Invalid));
        assert_eq!(values("[1e400]"), Err(JsonError::Invalid));
        assert_eq!(
            values(r#"[ "echo", [ "nested json" ] ]"#),
            Err(JsonError::NotString { start: 10, end: 27 })
        );
        assert!(matches!(
            values(r#"[{"a": [1, true, null]}, "x"]"#),
            Err(JsonError::NotString { .. })
        ));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let s = format!("[{}{}]", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(values(&s), Err(JsonError::Invalid));
    }
}
