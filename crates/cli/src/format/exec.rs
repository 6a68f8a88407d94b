//! Executes a parsed template over JSON data with Go `text/template`'s rules: truth,
//! variables and their scopes, `range` over lists and maps (sorted keys), field chains,
//! function calls, and Go's execution error messages with their `:line:col` and `<node>`.

use std::fmt::Write as _;
use std::rc::Rc;

use serde_json::Value;

use super::funcs::{self, FnError};
use super::gofmt;
use super::lex::Number;
use super::parse::{Command, Control, Node, Operand, Pipe};

/// A value during execution.
#[derive(Debug, Clone)]
pub(super) enum Val {
    /// Go's invalid `reflect.Value`: a missing map entry or a nil result; prints `<no value>`.
    Missing,
    Json(Value),
    /// A listing row: docker/cli's formatter context, a Go struct pointer of the named type
    /// whose fields are methods; a missing field is an error.
    Row(Rc<Value>, &'static str),
    /// The data of a table's header row: docker/cli's `SubHeaderContext`, a map from field to
    /// column name with a `Label` method.
    Header(Rc<Value>),
}

impl Val {
    pub fn to_value(&self) -> Value {
        match self {
            Val::Missing => Value::Null,
            Val::Json(v) => v.clone(),
            Val::Row(v, _) | Val::Header(v) => (**v).clone(),
        }
    }

    /// Go's truth: not the zero value of its type (structs are always true).
    pub fn truth(&self) -> bool {
        match self {
            Val::Missing | Val::Json(Value::Null) => false,
            Val::Json(Value::Bool(b)) => *b,
            Val::Json(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Val::Json(Value::String(s)) => !s.is_empty(),
            Val::Json(Value::Array(a)) => !a.is_empty(),
            Val::Json(Value::Object(m)) => !m.is_empty(),
            Val::Row(..) => true,
            Val::Header(m) => m.as_object().is_some_and(|m| !m.is_empty()),
        }
    }

    pub fn go_type(&self) -> String {
        match self {
            Val::Missing => "<nil>".into(),
            Val::Json(v) => gofmt::go_type(v).into(),
            Val::Row(_, name) => (*name).into(),
            Val::Header(_) => "formatter.SubHeaderContext".into(),
        }
    }
}

/// How a template sees its data.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mode {
    /// `missingkey=error`: docker inspect's fallback over the raw JSON.
    pub missing_key_error: bool,
    /// Docker's header functions (for the header row of a table).
    pub header: bool,
}

/// An execution error, already in Go's words.
#[derive(Debug)]
pub(super) struct ExecError(pub String);

type Result<T> = std::result::Result<T, ExecError>;

enum Flow {
    Normal,
    Break,
    Continue,
}

/// Runs `nodes` over `data`, appending to `out`, and returns the row fields the template
/// asked for. On an error, `out` keeps what was written before it, as Go's writer does.
pub(super) fn execute(
    src: &str,
    nodes: &[Node],
    data: Val,
    mode: Mode,
    out: &mut String,
) -> Result<Vec<String>> {
    let mut state = State {
        src,
        mode,
        out,
        vars: vec![("$".to_string(), data.clone())],
        used: Vec::new(),
    };
    state.walk(&data, nodes)?;
    Ok(state.used)
}

struct State<'a> {
    src: &'a str,
    mode: Mode,
    out: &'a mut String,
    vars: Vec<(String, Val)>,
    /// The row fields the template asked for, in order.
    used: Vec<String>,
}

impl State<'_> {
    /// An error located at byte `pos` of the template, about the node printed as `context`.
    fn error(&self, pos: usize, context: &str, message: impl AsRef<str>) -> ExecError {
        let before = &self.src[..pos.min(self.src.len())];
        let line = 1 + before.matches('\n').count();
        let col = match before.rfind('\n') {
            Some(nl) => pos - nl - 1,
            None => pos,
        };
        let context = if context.chars().count() > 20 {
            format!("{}...", context.chars().take(20).collect::<String>())
        } else {
            context.to_string()
        };
        ExecError(format!(
            "template: :{line}:{col}: executing \"\" at <{context}>: {}",
            message.as_ref()
        ))
    }

    fn walk(&mut self, dot: &Val, nodes: &[Node]) -> Result<Flow> {
        for node in nodes {
            match node {
                Node::Text(text) => self.out.push_str(text),
                Node::Action(pipe) => {
                    let value = self.pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.print(&value);
                    }
                }
                Node::If(control) | Node::With(control) => {
                    let with = matches!(node, Node::With(_));
                    let mark = self.vars.len();
                    let value = self.pipeline(dot, &control.pipe)?;
                    let flow = if value.truth() {
                        let dot = if with { &value } else { dot };
                        self.walk(dot, &control.list)?
                    } else if let Some(else_list) = &control.else_list {
                        self.walk(dot, else_list)?
                    } else {
                        Flow::Normal
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(control) => {
                    // Only a `{{break}}` in the `{{else}}` of a range reaches the loop around it.
                    let flow = self.range(dot, control)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn print(&mut self, value: &Val) {
        match value {
            Val::Missing | Val::Json(Value::Null) => self.out.push_str("<no value>"),
            other => {
                let _ = write!(self.out, "{}", gofmt::sprint_value(&other.to_value()));
            }
        }
    }

    fn range(&mut self, dot: &Val, control: &Control) -> Result<Flow> {
        let mark = self.vars.len();
        let pipe = &control.pipe;
        let collection = self.commands(dot, pipe)?;
        let items: Vec<(Val, Val)> = match &collection {
            Val::Missing | Val::Json(Value::Null) => Vec::new(),
            Val::Json(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Val::Json(Value::from(i)), Val::Json(v.clone())))
                .collect(),
            Val::Json(Value::Object(map)) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                keys.into_iter()
                    .map(|k| {
                        (
                            Val::Json(Value::String(k.clone())),
                            Val::Json(map[k].clone()),
                        )
                    })
                    .collect()
            }
            Val::Json(Value::Number(n)) if n.is_i64() => {
                let count = n.as_i64().unwrap_or(0);
                if count < 0 {
                    return Err(
                        self.range_error(pipe, "range can't iterate over a negative number".into())
                    );
                }
                // Go counts lazily; so do we, rather than listing the numbers first.
                let items =
                    (0..count).map(|i| (Val::Json(Value::from(i)), Val::Json(Value::from(i))));
                return self.iterate(dot, control, mark, items);
            }
            other => {
                let message = format!(
                    "range can't iterate over {}",
                    gofmt::sprint_value(&other.to_value())
                );
                return Err(self.range_error(pipe, message));
            }
        };
        self.iterate(dot, control, mark, items.into_iter())
    }

    /// Runs a range's body once per `(key, element)`, or its `{{else}}` when there are none.
    fn iterate(
        &mut self,
        dot: &Val,
        control: &Control,
        mark: usize,
        items: impl Iterator<Item = (Val, Val)>,
    ) -> Result<Flow> {
        let pipe = &control.pipe;
        let mut items = items.peekable();
        if items.peek().is_none() {
            let flow = match &control.else_list {
                Some(else_list) => self.walk(dot, else_list)?,
                None => Flow::Normal,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (key, elem) in items {
            match pipe.decl.as_slice() {
                [element] => self.vars.push((element.clone(), elem.clone())),
                [index, element] => {
                    self.vars.push((index.clone(), key));
                    self.vars.push((element.clone(), elem.clone()));
                }
                _ => {}
            }
            let flow = self.walk(&elem, &control.list)?;
            self.vars.truncate(mark);
            if let Flow::Break = flow {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    /// Go reports a bad `range` at the node it evaluated last: the last command's head.
    fn range_error(&self, pipe: &Pipe, message: String) -> ExecError {
        let head = &pipe.cmds[pipe.cmds.len() - 1].args[0];
        self.error(head.pos(), &head.to_string(), message)
    }

    /// A pipeline's value, with its declarations made; a nil from the data turns into no
    /// value, as Go unwraps interfaces at the end of a pipeline.
    fn pipeline(&mut self, dot: &Val, pipe: &Pipe) -> Result<Val> {
        let value = self.commands(dot, pipe)?;
        for name in &pipe.decl {
            if pipe.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = value.clone();
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn commands(&mut self, dot: &Val, pipe: &Pipe) -> Result<Val> {
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(dot, cmd, value)?);
        }
        Ok(match value {
            Some(Val::Json(Value::Null)) | None => Val::Missing,
            Some(value) => value,
        })
    }

    fn command(&mut self, dot: &Val, cmd: &Command, last: Option<Val>) -> Result<Val> {
        let first = &cmd.args[0];
        let args = &cmd.args[1..];
        let not_a_function = |state: &Self| -> Result<()> {
            if !args.is_empty() || last.is_some() {
                return Err(state.error(
                    first.pos(),
                    &first.to_string(),
                    format!("can't give argument to non-function {first}"),
                ));
            }
            Ok(())
        };
        match first {
            Operand::Field { names, .. } => {
                self.field_chain(dot, dot.clone(), first, names, args, last)
            }
            Operand::Variable { name, names, .. } => {
                let value = self.variable(first, name)?;
                if names.is_empty() {
                    not_a_function(self)?;
                    return Ok(value);
                }
                self.field_chain(dot, value, first, names, args, last)
            }
            Operand::Chain { base, names, .. } => {
                let base = self.arg(dot, base)?;
                self.field_chain(dot, base, first, names, args, last)
            }
            Operand::Pipe(pipe) => {
                not_a_function(self)?;
                self.pipeline(dot, pipe)
            }
            Operand::Ident { name, pos } => self.function(dot, name, *pos, cmd, last),
            Operand::Nil { pos } => Err(self.error(*pos, "nil", "nil is not a command")),
            literal => {
                not_a_function(self)?;
                self.arg(dot, literal)
            }
        }
    }

    fn variable(&self, node: &Operand, name: &str) -> Result<Val> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, value)) => Ok(value.clone()),
            None => Err(self.error(
                node.pos(),
                &node.to_string(),
                format!("undefined variable: {name}"),
            )),
        }
    }

    /// An operand used as an argument.
    fn arg(&mut self, dot: &Val, operand: &Operand) -> Result<Val> {
        Ok(match operand {
            Operand::Dot { .. } => dot.clone(),
            Operand::Nil { .. } => Val::Missing,
            Operand::Bool { value, .. } => Val::Json(Value::Bool(*value)),
            Operand::Number { value, .. } => Val::Json(match value {
                Number::Int(i) => Value::from(*i),
                Number::Float(f) => Value::from(*f),
            }),
            Operand::Str { value, .. } => Val::Json(Value::String(value.clone())),
            Operand::Field { names, .. } => {
                self.field_chain(dot, dot.clone(), operand, names, &[], None)?
            }
            Operand::Variable { name, names, .. } => {
                let value = self.variable(operand, name)?;
                if names.is_empty() {
                    value
                } else {
                    self.field_chain(dot, value, operand, names, &[], None)?
                }
            }
            Operand::Chain { base, names, .. } => {
                let base = self.arg(dot, base)?;
                self.field_chain(dot, base, operand, names, &[], None)?
            }
            Operand::Pipe(pipe) => self.pipeline(dot, pipe)?,
            Operand::Ident { name, pos } => {
                let cmd = Command {
                    pos: *pos,
                    args: vec![operand.clone()],
                };
                self.function(dot, name, *pos, &cmd, None)?
            }
        })
    }

    fn field_chain(
        &mut self,
        dot: &Val,
        mut receiver: Val,
        node: &Operand,
        names: &[String],
        args: &[Operand],
        last: Option<Val>,
    ) -> Result<Val> {
        let (final_name, path) = names.split_last().expect("a field chain has a name");
        for name in path {
            receiver = self.field(dot, receiver, node, name, &[], None)?;
        }
        self.field(dot, receiver, node, final_name, args, last)
    }

    /// `.name` of `receiver`, with `args` (and the piped `last`) for a method.
    fn field(
        &mut self,
        dot: &Val,
        receiver: Val,
        node: &Operand,
        name: &str,
        args: &[Operand],
        last: Option<Val>,
    ) -> Result<Val> {
        let context = node.to_string();
        let err = |state: &Self, message: String| state.error(node.pos(), &context, message);
        let has_args = !args.is_empty() || last.is_some();
        if let Val::Row(..) = receiver {
            self.used.push(name.to_string());
        }
        match &receiver {
            Val::Missing if self.mode.missing_key_error => {
                Err(err(self, format!("nil data; no entry for key {name:?}")))
            }
            Val::Missing => Ok(Val::Missing),
            Val::Json(Value::Null) => Err(err(
                self,
                format!("nil pointer evaluating interface {{}}.{name}"),
            )),
            // `Label "key"`: the method of docker/cli's contexts (a label's value) and of its
            // header map (a column name made from the key).
            Val::Row(row, _)
                if name == "Label" && row.get("Label").is_some_and(Value::is_object) =>
            {
                let key = self.label_arg(dot, node, args, last)?;
                let value = row["Label"].get(&key).and_then(Value::as_str).unwrap_or("");
                Ok(Val::Json(Value::String(value.to_string())))
            }
            Val::Header(_) if name == "Label" => {
                let key = self.label_arg(dot, node, args, last)?;
                let last_part = key.rsplit('.').next().unwrap_or("");
                Ok(Val::Json(Value::String(last_part.replace(['-', '_'], " "))))
            }
            Val::Row(row, type_name) => match row.get(name) {
                Some(_) if has_args => Err(err(
                    self,
                    format!(
                        "wrong number of args for {name}: want 0 got {}",
                        args.len() + usize::from(last.is_some())
                    ),
                )),
                Some(value) => Ok(Val::Json(value.clone())),
                None => Err(err(
                    self,
                    format!("can't evaluate field {name} in type {type_name}"),
                )),
            },
            Val::Header(_) | Val::Json(Value::Object(_)) if has_args => Err(err(
                self,
                format!("{name} is not a method but has arguments"),
            )),
            Val::Header(map) => Ok(map.get(name).cloned().map_or(Val::Missing, Val::Json)),
            Val::Json(Value::Object(map)) => match map.get(name) {
                Some(value) => Ok(Val::Json(value.clone())),
                None if self.mode.missing_key_error => {
                    Err(err(self, format!("map has no entry for key {name:?}")))
                }
                None => Ok(Val::Missing),
            },
            other => Err(err(
                self,
                format!("can't evaluate field {name} in type {}", other.go_type()),
            )),
        }
    }

    /// The one string argument of a `Label` method call.
    fn label_arg(
        &mut self,
        dot: &Val,
        node: &Operand,
        args: &[Operand],
        last: Option<Val>,
    ) -> Result<String> {
        let mut values = Vec::new();
        for arg in args {
            values.push(self.arg(dot, arg)?);
        }
        values.extend(last);
        match values.as_slice() {
            [Val::Json(Value::String(key))] => Ok(key.clone()),
            [_] if matches!(args, [Operand::Number { .. } | Operand::Bool { .. }]) => Err(self
                .error(
                    args[0].pos(),
                    &args[0].to_string(),
                    format!("expected string; found {}", args[0]),
                )),
            [other] => Err(self.error(
                node.pos(),
                &node.to_string(),
                format!(
                    "wrong type for value; expected string; got {}",
                    other.go_type()
                ),
            )),
            _ => Err(self.error(
                node.pos(),
                &node.to_string(),
                format!(
                    "wrong number of args for Label: want 1 got {}",
                    values.len()
                ),
            )),
        }
    }

    fn function(
        &mut self,
        dot: &Val,
        name: &str,
        pos: usize,
        cmd: &Command,
        last: Option<Val>,
    ) -> Result<Val> {
        let params = &cmd.args[1..];
        let total = params.len() + usize::from(last.is_some());
        if let Err(FnError::Arity { want, got }) = funcs::check_arity(name, params.len(), total) {
            return Err(self.error(
                pos,
                name,
                format!("wrong number of args for {name}: want {want} got {got}"),
            ));
        }
        // `and` and `or` stop at the first operand that decides them.
        if name == "and" || name == "or" {
            let mut value = Val::Missing;
            for param in params {
                value = self.arg(dot, param)?;
                if value.truth() == (name == "or") {
                    return Ok(value);
                }
            }
            return Ok(last.unwrap_or(value));
        }
        let mut values = Vec::with_capacity(total);
        for param in params {
            values.push(self.arg(dot, param)?);
        }
        values.extend(last);
        funcs::call(name, self.mode.header, &values).map_err(|e| match e {
            FnError::Type {
                index,
                expected,
                got,
            } => {
                let message = match got {
                    // docker inspect decodes numbers as json.Number.
                    Some(got)
                        if self.mode.missing_key_error && (got == "int" || got == "float64") =>
                    {
                        format!("wrong type for value; expected {expected}; got json.Number")
                    }
                    Some(got) => format!("wrong type for value; expected {expected}; got {got}"),
                    None => format!("invalid value; expected {expected}"),
                };
                match params.get(index) {
                    // A literal of the wrong kind is refused before the call, in other words.
                    Some(
                        param @ (Operand::Number { .. }
                        | Operand::Bool { .. }
                        | Operand::Str { .. }),
                    ) => {
                        let kind = if expected == "int" {
                            "integer"
                        } else {
                            expected
                        };
                        self.error(
                            param.pos(),
                            &param.to_string(),
                            format!("expected {kind}; found {param}"),
                        )
                    }
                    Some(param) => self.error(param.pos(), &param.to_string(), message),
                    None => self.error(cmd.pos, &cmd.to_string(), message),
                }
            }
            FnError::Call(message) => self.error(
                cmd.pos,
                &cmd.to_string(),
                format!("error calling {name}: {message}"),
            ),
            FnError::Arity { want, got } => self.error(
                pos,
                name,
                format!("wrong number of args for {name}: want {want} got {got}"),
            ),
        })
    }
}
