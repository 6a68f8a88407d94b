//! The parser of the Go `text/template` subset: tokens to a tree of text, actions, `if`,
//! `range`, `with`, pipelines and operands, with Go's parse error messages.

use std::fmt;

use super::lex::{Keyword, Kind, Number, Token, lex, parse_number};

#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    If(Control),
    Range(Control),
    With(Control),
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub(super) struct Control {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub(super) struct Pipe {
    pub pos: usize,
    /// Variables declared (`:=`) or assigned (`=`) by the pipeline.
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
pub(super) struct Command {
    pub pos: usize,
    pub args: Vec<Operand>,
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    /// `.A.B`
    Field {
        pos: usize,
        names: Vec<String>,
    },
    /// `$x.A.B` (`name` keeps the `$`).
    Variable {
        pos: usize,
        name: String,
        names: Vec<String>,
    },
    /// `(pipeline).A.B`
    Chain {
        pos: usize,
        base: Box<Operand>,
        names: Vec<String>,
    },
    Pipe(Box<Pipe>),
    Ident {
        pos: usize,
        name: String,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        value: bool,
    },
    Number {
        pos: usize,
        text: String,
        value: Number,
    },
    Str {
        pos: usize,
        text: String,
        value: String,
    },
}

impl Operand {
    pub fn pos(&self) -> usize {
        match self {
            Operand::Pipe(pipe) => pipe.pos,
            Operand::Field { pos, .. }
            | Operand::Variable { pos, .. }
            | Operand::Chain { pos, .. }
            | Operand::Ident { pos, .. }
            | Operand::Dot { pos }
            | Operand::Nil { pos }
            | Operand::Bool { pos, .. }
            | Operand::Number { pos, .. }
            | Operand::Str { pos, .. } => *pos,
        }
    }
}

// The `Display` impls print nodes as Go's `String()` methods do, for the `<...>` context of
// execution errors.
impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Field { names, .. } => write!(f, ".{}", names.join(".")),
            Operand::Variable { name, names, .. } => {
                f.write_str(name)?;
                names.iter().try_for_each(|n| write!(f, ".{n}"))
            }
            Operand::Chain { base, names, .. } => {
                match base.as_ref() {
                    Operand::Pipe(pipe) => write!(f, "({pipe})")?,
                    other => write!(f, "{other}")?,
                }
                names.iter().try_for_each(|n| write!(f, ".{n}"))
            }
            Operand::Pipe(pipe) => write!(f, "{pipe}"),
            Operand::Ident { name, .. } => f.write_str(name),
            Operand::Dot { .. } => f.write_str("."),
            Operand::Nil { .. } => f.write_str("nil"),
            Operand::Bool { value, .. } => write!(f, "{value}"),
            Operand::Number { text, .. } | Operand::Str { text, .. } => f.write_str(text),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match arg {
                Operand::Pipe(pipe) => write!(f, "({pipe})")?,
                other => write!(f, "{other}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            write!(f, "{} := ", self.decl.join(", "))?;
        }
        for (i, cmd) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{cmd}")?;
        }
        Ok(())
    }
}

/// The deepest nesting of pipelines (parentheses, `if`, `range`, `with`) we accept.
const MAX_DEPTH: usize = 200;

/// A parse error: the message and the line Go reports it on.
#[derive(Debug)]
pub(super) struct ParseError {
    pub line: usize,
    pub message: String,
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses `src`; `is_function` says which identifiers name functions.
pub(super) fn parse(src: &str, is_function: &dyn Fn(&str) -> bool) -> Result<Vec<Node>> {
    let mut parser = Parser {
        tokens: lex(src),
        next: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        action_line: 0,
        depth: 0,
        is_function,
    };
    let mut nodes = Vec::new();
    loop {
        let token = parser.advance();
        match token.kind {
            Kind::Eof => return Ok(nodes),
            Kind::Text => nodes.push(Node::Text(token.text)),
            Kind::LeftDelim => match parser.action()? {
                Item::Node(node) => nodes.push(node),
                Item::End => return Err(parser.error("unexpected {{end}}")),
                Item::Else(_) => return Err(parser.error("unexpected {{else}}")),
            },
            _ => return Err(parser.unexpected(&token, "input")),
        }
    }
}

/// What an action turned out to be: a node, or the `{{else}}`/`{{end}}` that closes a list.
enum Item {
    Node(Node),
    /// `{{else}}`, or `{{else if ...` / `{{else with ...` with the keyword still pending.
    Else(Option<Keyword>),
    End,
}

struct Parser<'f> {
    tokens: Vec<Token>,
    next: usize,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    range_depth: usize,
    /// The line of the `{{` of the action being parsed.
    action_line: usize,
    /// How deeply pipelines and control structures nest here.
    depth: usize,
    is_function: &'f dyn Fn(&str) -> bool,
}

impl Parser<'_> {
    fn advance(&mut self) -> Token {
        let token = self.tokens[self.next.min(self.tokens.len() - 1)].clone();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    fn backup(&mut self) {
        self.next -= 1;
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let token = self.advance();
            if token.kind != Kind::Space {
                return token;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let token = self.next_non_space();
        self.backup();
        token
    }

    /// The line of the token read last, where Go reports a parse error.
    fn line(&self) -> usize {
        self.tokens[self.next.saturating_sub(1)].line
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line(),
            message: message.into(),
        }
    }

    fn unexpected(&self, token: &Token, context: &str) -> ParseError {
        if token.kind != Kind::Error {
            return self.error(format!("unexpected {} in {context}", describe(token)));
        }
        // A lexing error is reported as is, with where its action began if that was on an
        // earlier line.
        let mut message = token.text.clone();
        if self.action_line != 0 && self.action_line != token.line {
            if !message.ends_with(" action") {
                message.push_str(" in action");
            }
            message.push_str(&format!(" started at :{}", self.action_line));
        }
        self.error(message)
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<()> {
        let token = self.next_non_space();
        if token.kind == Kind::RightDelim {
            Ok(())
        } else {
            Err(self.unexpected(&token, context))
        }
    }

    /// The action after a `{{`.
    fn action(&mut self) -> Result<Item> {
        self.action_line = self.line();
        let token = self.next_non_space();
        let keyword = match token.kind {
            Kind::Keyword(keyword) => keyword,
            _ => {
                self.backup();
                return Ok(Item::Node(Node::Action(
                    self.pipeline("command", &Kind::RightDelim)?,
                )));
            }
        };
        match keyword {
            Keyword::If => Ok(Item::Node(Node::If(self.control(Keyword::If)?))),
            Keyword::Range => Ok(Item::Node(Node::Range(self.control(Keyword::Range)?))),
            Keyword::With => Ok(Item::Node(Node::With(self.control(Keyword::With)?))),
            Keyword::End => {
                self.expect_right_delim("end")?;
                Ok(Item::End)
            }
            Keyword::Else => {
                let next = self.peek_non_space();
                if let Kind::Keyword(k @ (Keyword::If | Keyword::With)) = next.kind {
                    return Ok(Item::Else(Some(k)));
                }
                self.expect_right_delim("else")?;
                Ok(Item::Else(None))
            }
            Keyword::Break | Keyword::Continue => {
                let name = if keyword == Keyword::Break {
                    "break"
                } else {
                    "continue"
                };
                if self.range_depth == 0 {
                    return Err(self.error(format!("{{{{{name}}}}} outside {{{{range}}}}")));
                }
                self.expect_right_delim(&format!("{{{{{name}}}}}"))?;
                Ok(Item::Node(if keyword == Keyword::Break {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            Keyword::Define | Keyword::Template | Keyword::Block => Err(self.error(format!(
                "not supported yet: {{{{{}}}}} in --format",
                token.text
            ))),
        }
    }

    /// Nodes up to the `{{else}}` or `{{end}}` that closes them.
    fn item_list(&mut self) -> Result<(Vec<Node>, Item)> {
        let mut nodes = Vec::new();
        loop {
            let token = self.advance();
            match token.kind {
                Kind::Eof => return Err(self.error("unexpected EOF")),
                Kind::Text => nodes.push(Node::Text(token.text)),
                Kind::LeftDelim => match self.action()? {
                    Item::Node(node) => nodes.push(node),
                    end => return Ok((nodes, end)),
                },
                _ => return Err(self.unexpected(&token, "input")),
            }
        }
    }

    /// `if`, `range` or `with` after its keyword, through its `{{end}}`.
    fn control(&mut self, keyword: Keyword) -> Result<Control> {
        self.nested(|p| p.control_inner(keyword))
    }

    fn control_inner(&mut self, keyword: Keyword) -> Result<Control> {
        let context = match keyword {
            Keyword::If => "if",
            Keyword::Range => "range",
            _ => "with",
        };
        let vars = self.vars.len();
        let pipe = self.pipeline(context, &Kind::RightDelim)?;
        if keyword == Keyword::Range {
            self.range_depth += 1;
        }
        let listed = self.item_list();
        if keyword == Keyword::Range {
            self.range_depth -= 1;
        }
        let (list, closer) = listed?;
        let else_list = match closer {
            Item::End => None,
            Item::Else(Some(chained)) if chained == keyword => {
                // `{{else if b}}...{{end}}` is `{{else}}{{if b}}...{{end}}{{end}}`: the inner
                // control consumes the shared `{{end}}`.
                self.next_non_space();
                let inner = self.control(chained)?;
                Some(vec![match chained {
                    Keyword::If => Node::If(inner),
                    _ => Node::With(inner),
                }])
            }
            Item::Else(Some(_)) => {
                let token = self.next_non_space();
                return Err(self.unexpected(&token, "input"));
            }
            Item::Else(None) => {
                let (else_list, closer) = self.item_list()?;
                match closer {
                    Item::End => Some(else_list),
                    _ => return Err(self.error("expected end; found {{else}}")),
                }
            }
            Item::Node(_) => unreachable!("item_list returns only closers"),
        };
        self.vars.truncate(vars);
        Ok(Control {
            pipe,
            list,
            else_list,
        })
    }

    /// Runs `f` one nesting level deeper. Parsing and executing recurse per level; Go stops
    /// at 10,000 levels, we stop well before the stack would.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("max expression depth exceeded"));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn pipeline(&mut self, context: &str, end: &Kind) -> Result<Pipe> {
        self.nested(|p| p.pipeline_inner(context, end))
    }

    fn pipeline_inner(&mut self, context: &str, end: &Kind) -> Result<Pipe> {
        let pos = self.peek_non_space().pos;
        let mut pipe = Pipe {
            pos,
            decl: Vec::new(),
            assign: false,
            cmds: Vec::new(),
        };
        self.declarations(&mut pipe, context)?;
        loop {
            let token = self.next_non_space();
            if &token.kind == end {
                if pipe.cmds.is_empty() {
                    return Err(self.error(format!("missing value for {context}")));
                }
                for (i, cmd) in pipe.cmds.iter().enumerate().skip(1) {
                    if matches!(
                        cmd.args[0],
                        Operand::Bool { .. }
                            | Operand::Dot { .. }
                            | Operand::Nil { .. }
                            | Operand::Number { .. }
                            | Operand::Str { .. }
                    ) {
                        return Err(self.error(format!(
                            "non executable command in pipeline stage {}",
                            i + 1
                        )));
                    }
                }
                return Ok(pipe);
            }
            match token.kind {
                Kind::Bool(_)
                | Kind::Char(_)
                | Kind::Dot
                | Kind::Field
                | Kind::Ident
                | Kind::Number
                | Kind::Nil
                | Kind::Str(_)
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&token, context)),
            }
        }
    }

    /// `$x :=`, `$x =`, and `range`'s `$i, $e :=` at the start of a pipeline.
    fn declarations(&mut self, pipe: &mut Pipe, context: &str) -> Result<()> {
        let start = self.next;
        let variable = self.peek_non_space();
        if variable.kind != Kind::Variable {
            return Ok(());
        }
        self.next_non_space();
        let after = self.next_non_space();
        match after.kind {
            Kind::Declare | Kind::Assign => {
                pipe.assign = after.kind == Kind::Assign;
                if pipe.assign && !self.vars.contains(&variable.text) {
                    return Err(self.error(format!("undefined variable {:?}", variable.text)));
                }
                pipe.decl.push(variable.text.clone());
                if !pipe.assign {
                    self.vars.push(variable.text);
                }
                Ok(())
            }
            Kind::Comma if context == "range" && pipe.decl.is_empty() => {
                pipe.decl.push(variable.text.clone());
                self.vars.push(variable.text);
                self.declarations(pipe, context)?;
                if pipe.decl.len() != 2 {
                    return Err(self.error(format!("missing variable in {context}")));
                }
                Ok(())
            }
            Kind::Comma => Err(self.error(format!("too many declarations in {context}"))),
            _ => {
                self.next = start;
                Ok(())
            }
        }
    }

    fn command(&mut self) -> Result<Command> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.peek_non_space(); // skips leading spaces
            if let Some(operand) = self.operand()? {
                args.push(operand);
            }
            let token = self.advance();
            match token.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&token, "operand")),
            }
            break;
        }
        if args.is_empty() {
            return Err(self.error("empty command"));
        }
        Ok(Command { pos, args })
    }

    fn operand(&mut self) -> Result<Option<Operand>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(term));
        }
        let chain_pos = self.peek().pos;
        let mut more = Vec::new();
        while self.peek().kind == Kind::Field {
            more.push(self.advance().text[1..].to_string());
        }
        Ok(Some(match term {
            Operand::Field { mut names, .. } => {
                names.extend(more);
                Operand::Field {
                    pos: chain_pos,
                    names,
                }
            }
            Operand::Variable {
                name, mut names, ..
            } => {
                names.extend(more);
                Operand::Variable {
                    pos: chain_pos,
                    name,
                    names,
                }
            }
            Operand::Bool { .. }
            | Operand::Str { .. }
            | Operand::Number { .. }
            | Operand::Nil { .. }
            | Operand::Dot { .. } => {
                return Err(self.error(format!("unexpected . after term {:?}", term.to_string())));
            }
            base => Operand::Chain {
                pos: chain_pos,
                base: Box::new(base),
                names: more,
            },
        }))
    }

    fn term(&mut self) -> Result<Option<Operand>> {
        let token = self.next_non_space();
        let pos = token.pos;
        Ok(Some(match token.kind {
            Kind::Ident => {
                if !(self.is_function)(&token.text) {
                    return Err(self.error(format!("function {:?} not defined", token.text)));
                }
                Operand::Ident {
                    pos,
                    name: token.text,
                }
            }
            Kind::Dot => Operand::Dot { pos },
            Kind::Nil => Operand::Nil { pos },
            Kind::Variable => {
                if !self.vars.contains(&token.text) {
                    return Err(self.error(format!("undefined variable {:?}", token.text)));
                }
                Operand::Variable {
                    pos,
                    name: token.text,
                    names: Vec::new(),
                }
            }
            Kind::Field => Operand::Field {
                pos,
                names: vec![token.text[1..].to_string()],
            },
            Kind::Bool(value) => Operand::Bool { pos, value },
            Kind::Char(value) => Operand::Number {
                pos,
                text: token.text,
                value: Number::Int(value),
            },
            Kind::Number => {
                let Some(value) = parse_number(&token.text) else {
                    return Err(self.error(format!("illegal number syntax: {:?}", token.text)));
                };
                Operand::Number {
                    pos,
                    text: token.text,
                    value,
                }
            }
            Kind::Str(value) => Operand::Str {
                pos,
                text: token.text,
                value,
            },
            Kind::LeftParen => Operand::Pipe(Box::new(
                self.pipeline("parenthesized pipeline", &Kind::RightParen)?,
            )),
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// A token as Go's `item.String()` shows it in "unexpected ..." errors.
fn describe(token: &Token) -> String {
    match token.kind {
        Kind::Eof => "EOF".into(),
        Kind::Error => token.text.clone(),
        Kind::Keyword(_) => format!("<{}>", token.text),
        _ if token.text.chars().count() > 10 => {
            let head: String = token.text.chars().take(10).collect();
            format!("{head:?}...")
        }
        _ => format!("{:?}", token.text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funcs(name: &str) -> bool {
        matches!(name, "json" | "join" | "index" | "upper" | "printf")
    }

    fn error(src: &str) -> String {
        match parse(src, &funcs) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{}: {}", e.line, e.message),
        }
    }

    #[test]
    fn nodes_print_as_go_prints_them() {
        let nodes = parse(r#"{{$x := index .Config.Labels "a" | upper}}"#, &funcs).unwrap();
        let Node::Action(pipe) = &nodes[0] else {
            panic!("not an action: {nodes:?}")
        };
        assert_eq!(
            pipe.to_string(),
            r#"$x := index .Config.Labels "a" | upper"#
        );
        // A chained field sits at its second segment, as in Go.
        assert_eq!(pipe.cmds[0].args[1].pos(), 21);
    }

    #[test]
    fn parse_errors_match_go() {
        assert_eq!(error("{{.X}}{{end}}"), "1: unexpected {{end}}");
        assert_eq!(error("{{if .X}}a"), "1: unexpected EOF");
        assert_eq!(error("{{foo .X}}"), "1: function \"foo\" not defined");
        assert_eq!(error("{{$y}}"), "1: undefined variable \"$y\"");
        assert_eq!(error("{{.X"), "1: unclosed action");
        assert_eq!(error("{{}}"), "1: missing value for command");
        assert_eq!(error("a\n{{.X }}}"), "ok");
        assert_eq!(error("a\n{{.X)}}"), "2: unexpected right paren U+0029 ')'");
        assert_eq!(error("{{\"abc}}"), "1: unterminated quoted string");
        assert_eq!(error("{{if .X}}\n{{.Y"), "2: unclosed action");
        assert_eq!(error("{{.X\n"), "2: unclosed action started at :1");
        assert_eq!(
            error("{{.X\n\"a}}"),
            "2: unterminated quoted string in action started at :1"
        );
        assert_eq!(error("{{break}}"), "1: {{break}} outside {{range}}");
        let deep = format!("{{{{{}.X{}}}}}", "(".repeat(500), ")".repeat(500));
        assert_eq!(error(&deep), "1: max expression depth exceeded");
        let deep = "{{if .X}}".repeat(500) + &"{{end}}".repeat(500);
        assert_eq!(error(&deep), "1: max expression depth exceeded");
    }

    #[test]
    fn else_if_chains_and_range_declarations() {
        assert_eq!(error("{{if .A}}a{{else if .B}}b{{else}}c{{end}}"), "ok");
        assert_eq!(error("{{range $k, $v := .M}}{{$k}}{{$v}}{{end}}"), "ok");
        // Variables end with their control structure.
        assert_eq!(
            error("{{with $x := .A}}{{$x}}{{end}}{{$x}}"),
            "1: undefined variable \"$x\""
        );
    }
}
