//! Located diagnostics about compose files (errors and warnings) and their rustc-like rendering.
//!
//! The look matches kiln's Dockerfile diagnostics (`kiln_frontend::diagnostic`) so that the CLI
//! shows both the same way; the renderer is our own small copy rather than a dependency on the
//! Dockerfile frontend, which the compose model has no other reason to know.

use std::fmt;
use std::sync::Arc;

/// A point in a file: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

/// A range of a file; `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Span {
    pub const fn new(start: Position, end: Position) -> Self {
        Self { start, end }
    }
}

/// Which loaded file a location is in: an index into the loader's [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileId(pub(crate) u32);

/// A location in one of the loaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Loc {
    pub file: FileId,
    pub span: Span,
}

/// The texts of every file the loader read, so that diagnostics can show their lines.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<(String, Arc<str>)>,
}

impl SourceMap {
    /// Registers a file under its display name and returns its id.
    pub fn add(&mut self, name: String, text: Arc<str>) -> FileId {
        self.files.push((name, text));
        FileId((self.files.len() - 1) as u32)
    }

    /// The display name of a file.
    pub fn name(&self, id: FileId) -> &str {
        self.files
            .get(id.0 as usize)
            .map(|f| f.0.as_str())
            .unwrap_or("<unknown>")
    }

    fn text(&self, id: FileId) -> Option<Arc<str>> {
        self.files.get(id.0 as usize).map(|f| f.1.clone())
    }

    /// A diagnostic at `loc`, with its file name and text filled in.
    pub fn diagnostic(
        &self,
        severity: Severity,
        loc: Loc,
        path: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            message: message.into(),
            path: (!path.is_empty()).then(|| path.to_string()),
            file: Some(self.name(loc.file).to_string()),
            // Line 0 marks "the file as a whole" (e.g. it could not be read).
            span: (loc.span.start.line > 0).then_some(loc.span),
            source: self.text(loc.file),
            help: None,
            notes: Vec::new(),
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A problem found in a compose file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
    /// The key path in the model, e.g. `services.web.ports[0]`, when there is one.
    pub path: Option<String>,
    /// The file's display name.
    pub file: Option<String>,
    pub span: Option<Span>,
    /// The file's text, for rendering the offending line.
    pub source: Option<Arc<str>>,
    /// A suggested fix, e.g. "did you mean `image`?".
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic without a location (e.g. about the command line or the environment).
    pub fn unlocated(severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            message: message.into(),
            path: None,
            file: None,
            span: None,
            source: None,
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// `services.web.ports[0]: message`, or the message alone.
    pub fn headline(&self) -> String {
        match &self.path {
            Some(path) => format!("{path}: {}", self.message),
            None => self.message.clone(),
        }
    }

    /// Renders a rustc-like report, as kiln renders Dockerfile errors:
    ///
    /// ```text
    /// error: services.web.ports[0]: invalid port "80:abc"
    ///  --> compose.yaml:4:9
    ///   |
    /// 4 |       - "80:abc"
    ///   |         ^^^^^^^^
    /// ```
    pub fn render(&self) -> String {
        render(self)
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: PATH: message`, the one-line form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.span) {
            (Some(file), Some(span)) => write!(
                f,
                "{file}:{}:{}: {}",
                span.start.line,
                span.start.column,
                self.headline()
            ),
            (Some(file), None) => write!(f, "{file}: {}", self.headline()),
            _ => f.write_str(&self.headline()),
        }
    }
}

const TAB_WIDTH: usize = 4;
const MAX_SNIPPET_LINES: u32 = 6;

fn render(d: &Diagnostic) -> String {
    let mut out = format!("{}: {}\n", d.severity, d.headline());
    let (Some(span), Some(source), Some(file)) = (d.span, &d.source, &d.file) else {
        if let Some(file) = &d.file {
            out.push_str(&format!(" --> {file}\n"));
        }
        render_notes(&mut out, d, 1);
        return out;
    };
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let first = span.start.line.max(1);
    let last = span.end.line.max(first);
    let last = if last > first && span.end.column <= 1 {
        last - 1
    } else {
        last
    };
    let shown: Vec<u32> = if last - first < MAX_SNIPPET_LINES {
        (first..=last).collect()
    } else {
        vec![first, first + 1, 0, last - 1, last]
    };
    let width = digits(last);
    let pad = " ".repeat(width);
    out.push_str(&format!(
        "{pad}--> {file}:{}:{}\n",
        span.start.line, span.start.column
    ));
    out.push_str(&format!("{pad} |\n"));
    for line_no in shown {
        if line_no == 0 {
            out.push_str(&format!("{pad} ...\n"));
            continue;
        }
        let Some(text) = lines.get(line_no as usize - 1) else {
            continue;
        };
        let chars: Vec<char> = text.chars().collect();
        let line_start = if line_no == first {
            span.start.column.saturating_sub(1) as usize
        } else {
            chars.iter().take_while(|c| c.is_whitespace()).count()
        };
        let line_end = if line_no == span.end.line {
            (span.end.column.saturating_sub(1) as usize).min(chars.len())
        } else {
            chars.len()
        };
        let line_start = line_start.min(chars.len());
        let (shown_text, offsets) = expand_tabs(&chars);
        let shown_line = format!("{line_no:>width$} | {shown_text}");
        out.push_str(shown_line.trim_end());
        out.push('\n');
        let col_from = offsets[line_start];
        let col_to = offsets[line_end.max(line_start)];
        let carets = col_to.saturating_sub(col_from).max(1);
        out.push_str(&format!(
            "{pad} | {}{}\n",
            " ".repeat(col_from),
            "^".repeat(carets)
        ));
    }
    render_notes(&mut out, d, width);
    out
}

fn render_notes(out: &mut String, d: &Diagnostic, width: usize) {
    if d.help.is_none() && d.notes.is_empty() {
        return;
    }
    let pad = " ".repeat(width);
    out.push_str(&format!("{pad} |\n"));
    for note in &d.notes {
        out.push_str(&format!("{pad} = note: {note}\n"));
    }
    if let Some(help) = &d.help {
        out.push_str(&format!("{pad} = help: {help}\n"));
    }
}

fn expand_tabs(chars: &[char]) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(chars.len());
    let mut offsets = Vec::with_capacity(chars.len() + 1);
    let mut col = 0;
    for &c in chars {
        offsets.push(col);
        if c == '\t' {
            text.push_str(&" ".repeat(TAB_WIDTH));
            col += TAB_WIDTH;
        } else if c.is_control() {
            text.push('?');
            col += 1;
        } else {
            text.push(c);
            col += 1;
        }
    }
    offsets.push(col);
    (text, offsets)
}

fn digits(mut n: u32) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_path_file_and_caret() {
        let mut map = SourceMap::default();
        let id = map.add(
            "compose.yaml".into(),
            "services:\n  web:\n    imag: x\n".into(),
        );
        let loc = Loc {
            file: id,
            span: Span::new(Position::new(3, 5), Position::new(3, 9)),
        };
        let d = map
            .diagnostic(Severity::Error, loc, "services.web", "unknown key `imag`")
            .with_help("did you mean `image`?");
        assert_eq!(
            d.to_string(),
            "compose.yaml:3:5: services.web: unknown key `imag`"
        );
        assert_eq!(
            d.render(),
            "error: services.web: unknown key `imag`\n --> compose.yaml:3:5\n  |\n3 |     imag: x\n  |     ^^^^\n  |\n  = help: did you mean `image`?\n"
        );
    }

    #[test]
    fn unlocated_renders_message_only() {
        let d = Diagnostic::unlocated(Severity::Error, "no configuration file provided");
        assert_eq!(d.render(), "error: no configuration file provided\n");
    }
}
