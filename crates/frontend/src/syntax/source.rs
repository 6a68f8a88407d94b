//! The physical-line table of a Dockerfile and the mapping from joined logical lines back to
//! 1-based line/column positions.

use std::cell::Cell;

use crate::diagnostic::{Position, Span};

/// One physical line: byte ranges into the source text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineInfo {
    /// Offset of the first byte of the line.
    pub start: usize,
    /// Offset just past the line's content: before the `\n` and any `\r`s in front of it.
    pub content_end: usize,
    /// Offset just past the `\n` (or the end of the text for the last line).
    pub end: usize,
}

/// The source text split into physical lines, with a column cache.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub lines: Vec<LineInfo>,
    /// Last column query: (line index, byte column, char column). Positions are asked for in
    /// increasing order within a line, so counting characters from the previous answer keeps
    /// long non-ASCII lines linear instead of quadratic.
    cache: Cell<(usize, usize, usize)>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut lines = Vec::with_capacity(text.len() / 32 + 1);
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let end = match memchr(b'\n', &bytes[start..]) {
                Some(i) => start + i + 1,
                None => bytes.len(),
            };
            // Like BuildKit's trimNewline: drop every trailing \r and \n.
            let mut content_end = end;
            while content_end > start && matches!(bytes[content_end - 1], b'\n' | b'\r') {
                content_end -= 1;
            }
            lines.push(LineInfo {
                start,
                content_end,
                end,
            });
            start = end;
        }
        Self {
            text,
            lines,
            cache: Cell::new((usize::MAX, 0, 0)),
        }
    }

    /// The content of line index `i` (0-based), without its line terminator.
    pub fn content(&self, i: usize) -> &'a str {
        let l = self.lines[i];
        &self.text[l.start..l.content_end]
    }

    /// The raw bytes of line index `i` including its terminator.
    pub fn raw(&self, i: usize) -> &'a str {
        let l = self.lines[i];
        &self.text[l.start..l.end]
    }

    /// Position of byte `byte_col` of line index `i`.
    pub fn position(&self, i: usize, byte_col: usize) -> Position {
        let content = self.content(i);
        let byte_col = floor_char_boundary(content, byte_col);
        let (cl, cb, cc) = self.cache.get();
        let chars = if content.len() < 64 && content.is_ascii() {
            byte_col
        } else if cl == i && cb <= byte_col && content.is_char_boundary(cb) {
            cc + content[cb..byte_col].chars().count()
        } else {
            content[..byte_col].chars().count()
        };
        self.cache.set((i, byte_col, chars));
        Position::new(line_no(i), col_no(chars))
    }

    /// Position just past the last character of line index `i`.
    pub fn line_end(&self, i: usize) -> Position {
        let content = self.content(i);
        self.position(i, content.len())
    }

    /// Span of a whole line's content.
    pub fn line_span(&self, i: usize) -> Span {
        Span::new(self.position(i, 0), self.line_end(i))
    }
}

/// The largest char boundary of `s` at or below `i` (offsets handed in are boundaries by
/// construction; this keeps a mistake from turning into a panic on user input).
pub(crate) fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn line_no(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

fn col_no(chars: usize) -> u32 {
    u32::try_from(chars + 1).unwrap_or(u32::MAX)
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Where a piece of a logical line came from.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Offset of the piece in the logical line.
    logical: usize,
    /// Physical line index.
    line: usize,
    /// Byte offset of the piece within that physical line.
    byte_col: usize,
}

/// An instruction's text after joining continuation lines, with a map back to the source.
#[derive(Debug, Default)]
pub(crate) struct LogicalLine {
    pub text: String,
    segments: Vec<Segment>,
}

impl LogicalLine {
    /// Appends `piece`, which starts at byte `byte_col` of physical line index `line`.
    pub fn push(&mut self, piece: &str, line: usize, byte_col: usize) {
        self.segments.push(Segment {
            logical: self.text.len(),
            line,
            byte_col,
        });
        self.text.push_str(piece);
    }

    fn segment(&self, offset: usize) -> Option<Segment> {
        let i = self.segments.partition_point(|s| s.logical <= offset);
        i.checked_sub(1).map(|i| self.segments[i])
    }

    /// Position of logical byte `offset`.
    pub fn position(&self, src: &Source<'_>, offset: usize) -> Position {
        match self.segment(offset) {
            Some(s) => src.position(s.line, s.byte_col + (offset - s.logical)),
            None => Position::new(1, 1),
        }
    }

    /// Span of logical bytes `start..end`. The end is placed just after the last character, on
    /// that character's line, even when `end` falls on a segment boundary.
    pub fn span(&self, src: &Source<'_>, start: usize, end: usize) -> Span {
        let start = floor_char_boundary(&self.text, start);
        let end = floor_char_boundary(&self.text, end);
        let start_pos = self.position(src, start);
        if end <= start {
            return Span::new(start_pos, start_pos);
        }
        let last_len = self.text[..end]
            .chars()
            .next_back()
            .map_or(1, char::len_utf8);
        let mut end_pos = self.position(src, end - last_len);
        end_pos.column = end_pos.column.saturating_add(1);
        Span::new(start_pos, end_pos)
    }
}
