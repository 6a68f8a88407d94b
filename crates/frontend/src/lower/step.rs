//! What every step shares: adding an op with its metadata, progress name and source location,
//! the build context source, word expansion in a stage's environment, and history entries.

use kiln_llb::image::{History, format_rfc3339};
use kiln_llb::{Input, LocalSource, Op, OpMetadata, SourceLocation, SourceOp};

use super::program::{HISTORY_COMMENT, Lowering, Result, bug, error};
use super::stage::State;
use crate::diagnostic::Span;
use crate::shell::Lexer;

impl Lowering<'_> {
    /// Adds `op` with its metadata, and its Dockerfile range to the source map when it has one.
    pub(super) fn add(&mut self, op: Op, meta: OpMetadata, span: Option<Span>) -> Result<Input> {
        let at = span.unwrap_or_else(|| Span::lines(1, 1));
        let digest = self
            .def
            .add_with_metadata(op, meta)
            .map_err(|e| bug(e, at))?;
        if let Some(span) = span {
            let range = kiln_llb::Range {
                start: kiln_llb::Position {
                    line: span.start.line,
                    column: span.start.column,
                },
                end: kiln_llb::Position {
                    line: span.end.line,
                    column: span.end.column,
                },
            };
            self.def.source_map_mut().add_location(
                digest,
                SourceLocation {
                    file: self.file,
                    ranges: vec![range],
                },
            );
        }
        Ok(Input::new(digest))
    }

    /// The empty filesystem.
    pub(super) fn scratch(&mut self) -> Result<Input> {
        self.add(Op::Source(SourceOp::Scratch), OpMetadata::default(), None)
    }

    /// A step's metadata: progress name, stage, ignore-cache and the instruction as written.
    pub(super) fn meta(&self, stage: usize, name: String, original: Option<&str>) -> OpMetadata {
        let s = &self.stages[stage];
        let mut meta = OpMetadata {
            name: Some(name),
            ignore_cache: s.ignore_cache,
            stage: s
                .lookup
                .clone()
                .or_else(|| Some(s.progress_name.clone()).filter(|n| !n.is_empty())),
            ..OpMetadata::default()
        };
        if let Some(original) = original {
            meta.description.insert(
                "com.docker.dockerfile.v1.command".to_owned(),
                original.to_owned(),
            );
        }
        meta
    }

    /// The progress name of the next counted step: `[stage-1 2/4] RUN make`.
    pub(super) fn step_name(&mut self, stage: usize, text: &str, onbuild: bool) -> String {
        let s = &mut self.stages[stage];
        if s.cmd_total == 0 {
            return text.to_owned();
        }
        s.cmd_index += 1;
        let index = s.cmd_index;
        let width = s.cmd_total.to_string().len();
        let mut out = String::from("[");
        if !s.progress_name.is_empty() {
            out.push_str(&s.progress_name);
            out.push(' ');
        }
        out.push_str(&format!("{index:>width$}/{}] ", s.cmd_total));
        if onbuild {
            out.push_str("ONBUILD ");
        }
        out.push_str(text);
        out
    }

    /// The instruction text for progress names: variables expanded where set (quotes kept),
    /// the keyword uppercased.
    pub(super) fn display_text(&self, original: &str, env: &[(String, String)]) -> String {
        let lexer = Lexer::new(self.lexer.escape())
            .with_raw_quotes(true)
            .with_skip_unset_env(true);
        let text = lexer
            .process_word(original, env)
            .unwrap_or_else(|_| original.to_owned());
        match text.split_once(' ') {
            Some((kw, rest)) => format!("{} {rest}", kw.to_ascii_uppercase()),
            None => text.to_ascii_uppercase(),
        }
    }

    /// Expands `word` with BuildKit's shell-word rules against `env`.
    pub(super) fn expand_with(
        &self,
        word: &str,
        env: &[(String, String)],
        span: Span,
    ) -> Result<String> {
        self.lexer
            .process_word(word, env)
            .map_err(|e| error(e.to_string(), span))
    }

    /// Expands `word` against the environment of stage `stage`; a variable that is not set
    /// there is an UndefinedVar check.
    pub(super) fn expand(&self, stage: usize, word: &str, span: Span) -> Result<String> {
        let env = &self.state(stage).env;
        let expansion = self
            .lexer
            .expand(word, env)
            .map_err(|e| error(e.to_string(), span))?;
        self.lint_undefined(stage, &expansion.unmatched, span);
        Ok(expansion.value)
    }

    /// The state of a stage being dispatched.
    pub(super) fn state(&self, stage: usize) -> &State {
        self.stages[stage]
            .state
            .as_ref()
            .expect("stage state exists while dispatching")
    }

    pub(super) fn state_mut(&mut self, stage: usize) -> &mut State {
        self.stages[stage]
            .state
            .as_mut()
            .expect("stage state exists while dispatching")
    }

    /// Adds a history entry to the stage's image; `layer` when the step made one.
    pub(super) fn history(&mut self, stage: usize, created_by: String, layer: bool) {
        let epoch = self.epoch;
        let st = self.state_mut(stage);
        st.image.history.push(History {
            created: epoch.map(|e| format_rfc3339(e, 0)),
            created_by,
            author: String::new(),
            comment: HISTORY_COMMENT.to_owned(),
            empty_layer: !layer,
        });
    }

    /// The build context, narrowed to `follow_paths` (the paths this step reads), so a step's
    /// digest depends only on what it reads.
    pub(super) fn context(&mut self, mut follow_paths: Vec<String>) -> Result<Input> {
        follow_paths.sort();
        follow_paths.dedup();
        if follow_paths.iter().any(|p| p.is_empty() || p == ".") {
            follow_paths.clear();
        }
        let op = Op::Source(SourceOp::Local(LocalSource {
            name: self.opts.context_name.clone(),
            include_patterns: Vec::new(),
            exclude_patterns: self.opts.dockerignore.clone(),
            follow_paths,
        }));
        self.add(
            op,
            OpMetadata::named(format!("[internal] load build {}", self.opts.context_name)),
            None,
        )
    }
}
