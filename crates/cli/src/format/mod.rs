//! `--format` as the Docker CLI understands it: Go `text/template` over each row, the
//! `table` prefix with a header row and aligned columns, `json`, and `inspect --format`.
//!
//! # What Docker does (docker/cli `cli/command/formatter/formatter.go`, `templates/`,
//! `cli/command/inspect/inspector.go`)
//!
//! - A listing's format is `table` (the command's default table), `json` (the template
//!   `{{json .}}`: one object per line, keys sorted, `<>&` escaped as `\u003c`...), or a
//!   template. A format starting with `table` is a table: the prefix is cut, the rest is the
//!   template. Spaces around the template are trimmed, and the two-character sequences `\t`
//!   and `\n` become a tab and a newline *anywhere* in it (inside template strings too, where
//!   a real newline is then a parse error, as in Docker).
//! - Each row's output gets a newline. A table's header row is the same template executed
//!   over the command's header map (field → column name, e.g. `ID` → `IMAGE ID`) with
//!   functions that return their argument unchanged (`upper`, `json`, `join`, ...), so
//!   `table {{.Repository}}:{{.Tag}}` is headed `REPOSITORY:TAG`; header errors are ignored.
//!   Header and rows then go through the table writer (`crate::table`).
//! - Rows are docker/cli's formatter contexts, Go structs: a field the row does not have
//!   is an error naming the Go type (`can't evaluate field Foo in type
//!   *formatter.imageContext`), and nothing is printed. A field the header map lacks heads
//!   its column `<no value>`.
//! - `inspect --format` runs the template over the object's JSON with `missingkey=error`
//!   (Docker first tries its typed struct and falls back to the raw JSON when that fails;
//!   the raw JSON is what kiln has), so a missing key is `map has no entry for key "Foo"`.
//!   An element that fails is left out and its error reported after the others are printed.
//!   No format prints the JSON array indented by 4; `json` prints it compact.
//! - Every template error reads `template parsing error: template: :LINE[:COL]: ...`.
//!
//! # Data
//!
//! Rows and inspected objects are `serde_json::Value`s. A row is an object whose keys are
//! Docker's placeholder names (`listings` lists them per command), all values strings as
//! Docker's contexts return them. A row may carry `"Label": {key: value}`; it then answers
//! `{{.Label "key"}}` as Docker's `Label` method does (a missing label is `""`) and is left
//! out of `{{json .}}`, as methods with arguments are in Docker. Give inspect objects every
//! key Docker's struct has (`null` for Go's nil), since a missing key is an error here where
//! Docker's typed struct would print a zero value; give Go maps (labels) sorted keys, as
//! Go's JSON encoder writes them.
//!
//! Where JSON cannot tell Go types apart we pick what scripts see from Docker: `null` prints
//! `<no value>` (Go's typed nil slices print `[]`, which we cannot know), and `index` of a
//! missing key in an object of strings is `""` (the zero of Go's `map[string]string`).
//!
//! # Why our own engine
//!
//! The `gtmpl` crate (0.7, the only maintained-looking Go template crate; `gotmpl` is
//! younger) evaluates over its own value type, has not implemented `html`/`js`, reports
//! errors in its own words, and has no notion of Docker's two data shapes (struct rows that
//! fail on a missing field, maps that do not) or of swapping the function set for the header
//! row. Each of those is where Docker's behaviour lives, so the engine here is small and
//! Docker-specific: lexer (`lex`), parser (`parse`), executor (`exec`), functions (`funcs`)
//! and Go's value printing and JSON (`gofmt`). `define`/`template`/`block` and `call` are not
//! supported (Docker formats have no use for them).

mod exec;
mod funcs;
mod gofmt;
mod lex;
mod listings;
mod parse;
#[cfg(test)]
mod tests;

use std::rc::Rc;

use serde_json::{Map, Value};

pub use listings::*;

use exec::{Mode, Val};
use gofmt::Json;
use parse::Node;

/// A `--format` that did not parse or failed on the data, in Docker's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The template is malformed. `docker inspect` exits with status 64 for it.
    #[error("template parsing error: template: :{line}: {message}")]
    Parse { line: usize, message: String },
    /// The template failed on the data.
    #[error("template parsing error: {0}")]
    Exec(String),
    /// `docker ps` checks its `--format` before it lists anything ([`precheck`]).
    #[error("failed to parse template: template: :{line}: {message}")]
    PrecheckParse { line: usize, message: String },
    /// ... and runs it over an empty row.
    #[error("failed to execute template: {0}")]
    PrecheckExec(String),
}

/// A parsed template.
struct Template {
    src: String,
    nodes: Vec<Node>,
}

impl Template {
    fn parse(src: &str) -> Result<Template, FormatError> {
        let nodes = parse::parse(src, &|name| funcs::NAMES.contains(&name)).map_err(|e| {
            FormatError::Parse {
                line: e.line,
                message: e.message,
            }
        })?;
        Ok(Template {
            src: src.to_string(),
            nodes,
        })
    }

    fn execute(&self, data: Val, mode: Mode, out: &mut String) -> Result<Vec<String>, FormatError> {
        exec::execute(&self.src, &self.nodes, data, mode, out).map_err(|e| FormatError::Exec(e.0))
    }
}

/// `docker ps`'s check of a `--format` before listing: the format as given (a `table`
/// prefix and `\t` are then plain text) is parsed and run over a row whose fields are all
/// empty. Returns the fields the format uses, so that `ps` can ask for container sizes
/// only when `Size` is among them, as Docker does.
pub fn precheck(format: &str, listing: &Listing) -> Result<Vec<String>, FormatError> {
    let template = Template::parse(format).map_err(|e| match e {
        FormatError::Parse { line, message } => FormatError::PrecheckParse { line, message },
        other => other,
    })?;
    let mut empty: Map<String, Value> = listing
        .headers
        .iter()
        .map(|(field, _)| (field.to_string(), Value::String(String::new())))
        .collect();
    empty.insert("Label".into(), Value::Object(Map::new()));
    let row = Val::Row(Rc::new(Value::Object(empty)), listing.context_type);
    template
        .execute(row, Mode::default(), &mut String::new())
        .map_err(|e| match e {
            FormatError::Exec(message) => FormatError::PrecheckExec(message),
            other => other,
        })
}

/// Renders a listing command's rows as `docker <command> --format FORMAT` prints them.
/// `format` is the `--format` value (`None`, `""` and `"table"` mean the command's default
/// table). The result ends with a newline after each line; it is empty for a non-table
/// format with no rows.
pub fn render_rows(
    format: Option<&str>,
    listing: &Listing,
    rows: &[Value],
) -> Result<String, FormatError> {
    let format = match format {
        None | Some("" | "table") => listing.default_table,
        Some(format) => format,
    };
    let is_table = format.starts_with("table");
    let template = Template::parse(&template_text(format))?;
    let mut body = String::new();
    for row in rows {
        let row = Val::Row(Rc::new(row.clone()), listing.context_type);
        template.execute(row, Mode::default(), &mut body)?;
        body.push('\n');
    }
    if !is_table {
        return Ok(body);
    }
    let headers: Map<String, Value> = listing
        .headers
        .iter()
        .map(|(field, header)| (field.to_string(), Value::String(header.to_string())))
        .collect();
    let mut text = String::new();
    let header_mode = Mode {
        header: true,
        ..Mode::default()
    };
    // Docker ignores errors in the header row and keeps what was written before them.
    let _ = template.execute(
        Val::Header(Rc::new(Value::Object(headers))),
        header_mode,
        &mut text,
    );
    text.push('\n');
    text.push_str(&body);
    Ok(crate::table::align(&text))
}

/// The template text of a listing format, as docker/cli's `Format.templateString` makes it.
fn template_text(format: &str) -> String {
    match format {
        "table" => return String::new(),
        "json" => return "{{json .}}".to_string(),
        _ => {}
    }
    let body = format.strip_prefix("table").unwrap_or(format);
    body.trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n")
}

/// What `inspect` prints, and the errors of the objects that failed the template.
#[derive(Debug, PartialEq, Eq)]
pub struct Inspected {
    pub output: String,
    pub errors: Vec<FormatError>,
}

/// Renders inspected objects as `docker inspect [--format FORMAT]` prints them: no format
/// (or `""`) prints the JSON array indented, `json` the array on one line, a template one
/// line per object. A template that does not parse is an error before anything is printed.
pub fn render_inspect(format: Option<&str>, items: &[Value]) -> Result<Inspected, FormatError> {
    let array = Value::Array(items.to_vec());
    let json = |indent| Json {
        escape_html: true,
        sort_top_keys: false,
        indent,
    };
    let whole = |output: String| Inspected {
        output: output + "\n",
        errors: Vec::new(),
    };
    let template = match format {
        None | Some("") => return Ok(whole(json(Some(4)).encode(&array))),
        Some("json") => return Ok(whole(json(None).encode(&array))),
        Some(format) => Template::parse(format)?,
    };
    let mut output = String::new();
    let mut errors = Vec::new();
    for item in items {
        match template.render_item(item) {
            Ok(text) => output.push_str(&text),
            Err(e) => errors.push(e),
        }
    }
    if output.is_empty() {
        output.push('\n');
    }
    Ok(Inspected { output, errors })
}

/// Renders one inspected object with an `inspect --format` template: its output and a
/// newline.
#[cfg(test)]
pub fn render_one(format: &str, item: &Value) -> Result<String, FormatError> {
    Template::parse(format)?.render_item(item)
}

impl Template {
    fn render_item(&self, item: &Value) -> Result<String, FormatError> {
        let mut out = String::new();
        let mode = Mode {
            missing_key_error: true,
            ..Mode::default()
        };
        self.execute(Val::Json(item.clone()), mode, &mut out)?;
        out.push('\n');
        Ok(out)
    }
}
