//! COPY and ADD: sources from the context, another stage or image, URLs, git and heredocs
//! become one File op of copy actions (or, with `--link`, a layer merged onto the stage).

use kiln_llb::{
    CopyAction, FileAction, FileMode, FileOp, GitSource, HttpSource, Input, MergeOp, MkfileAction,
    Op, OpMetadata, Owner, SourceOp,
};

use super::program::{Lowering, Result, bug, error};
use super::stage::Command;
use crate::instructions::{Add, Copy, Source, Word};
use crate::lower::util::{clean, dest_path, git_ref, is_http, join};

/// ADD and COPY through one shape: lowering treats them alike except where `is_add` says.
pub(super) struct CopySpec<'a> {
    is_add: bool,
    sources: &'a [Source],
    dest: &'a Word,
    from: Option<&'a Word>,
    chown: Option<&'a Word>,
    chmod: Option<&'a Word>,
    link: bool,
    parents: bool,
    exclude: &'a [Word],
    checksum: Option<&'a Word>,
    keep_git_dir: Option<bool>,
    unpack: Option<bool>,
}

impl<'a> CopySpec<'a> {
    pub(super) fn add(a: &'a Add) -> CopySpec<'a> {
        CopySpec {
            is_add: true,
            sources: &a.sources,
            dest: &a.dest,
            from: None,
            chown: a.chown.as_ref(),
            chmod: a.chmod.as_ref(),
            link: a.link,
            parents: false,
            exclude: &a.exclude,
            checksum: a.checksum.as_ref(),
            keep_git_dir: a.keep_git_dir,
            unpack: a.unpack,
        }
    }

    pub(super) fn copy(c: &'a Copy) -> CopySpec<'a> {
        CopySpec {
            is_add: false,
            sources: &c.sources,
            dest: &c.dest,
            from: c.from.as_ref(),
            chown: c.chown.as_ref(),
            chmod: c.chmod.as_ref(),
            link: c.link,
            parents: c.parents,
            exclude: &c.exclude,
            checksum: None,
            keep_git_dir: None,
            unpack: None,
        }
    }
}

impl Lowering<'_> {
    /// COPY or ADD onto stage `i`: one File op (or a layer and a Merge op with `--link`).
    pub(super) fn dispatch_copy(
        &mut self,
        i: usize,
        command: &Command,
        args: &CopySpec<'_>,
    ) -> Result<()> {
        let is_add = args.is_add;
        let span = command.instr.span;
        let instr = &command.instr;
        let st = self.state(i).clone();
        let dest_raw = self.expand(i, &args.dest.value, span)?;
        let dest = dest_path(&st.cwd, &dest_raw);
        // A value that expands to nothing means no --chown (or --chmod) at all, as in BuildKit.
        let chown =
            match args.chown {
                Some(c) => {
                    let c = self.expand(i, &c.value, span)?;
                    if c.is_empty() {
                        None
                    } else {
                        Some(Owner::parse(&c).ok_or_else(|| {
                            error(format!("invalid chown parameter: '{c}'"), span)
                        })?)
                        .map(|o| (c, o))
                    }
                }
                None => None,
            };
        let chmod = match args.chmod {
            Some(c) => {
                let c = self.expand(i, &c.value, span)?;
                if c.is_empty() {
                    None
                } else {
                    Some((
                        FileMode::parse(&c).map_err(|e| error(e.to_string(), span))?,
                        c,
                    ))
                }
            }
            None => None,
        };
        let mut excludes = Vec::new();
        for e in args.exclude {
            excludes.push(self.expand(i, &e.value, span)?);
        }
        // Paths first, then heredoc files (written after them, in the history too).
        let mut sources = Vec::new();
        let mut heredocs = Vec::new();
        for s in args.sources {
            match s {
                Source::Path(p) => sources.push(self.expand(i, &p.value, span)?),
                Source::Heredoc { heredoc, .. } => heredocs.push(heredoc),
            }
        }
        let checksum = match args.checksum {
            Some(c) => Some(self.expand(i, &c.value, span)?),
            None => None,
        };
        if let Some(_c) = &checksum {
            if !is_add {
                return Err(error("checksum can't be specified for COPY", span));
            }
            if sources.len() != 1 {
                return Err(error(
                    "checksum can't be specified for multiple sources",
                    span,
                ));
            }
            if !is_http(&sources[0]) && git_ref(&sources[0]).is_none() {
                return Err(error("checksum requires HTTP(S) or Git sources", span));
            }
        }

        // Where files come from: another stage or image, or the context.
        let from_source = match args.from.map(|w| &w.value) {
            Some(from) => {
                let s = self.stage_ref(from, span)?;
                // Stages are listed in file order: a defined stage at or after this one is a
                // forward reference, which BuildKit rejects even when it could be built first.
                if self.stages[s].def.is_some() && s >= i {
                    return Err(error(
                        format!(
                            "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                            self.stages[i].progress_name
                        ),
                        span,
                    ));
                }
                let input = match &self.stages[s].state {
                    Some(st) => st.fs,
                    None if self.stages[s].def.is_none() => self.implicit_image(s)?,
                    None => {
                        return Err(error(
                            format!(
                                "cannot copy from stage {from:?}, it needs to be defined before current stage {:?}",
                                self.stages[i].progress_name
                            ),
                            span,
                        ));
                    }
                };
                Some(input)
            }
            None => None,
        };

        let mut msg = String::from(if is_add { "ADD" } else { "COPY" });
        if args.parents {
            msg.push_str(" --parents");
        }
        if let Some((c, _)) = &chown {
            msg.push_str(&format!(" --chown={c}"));
        }
        if let Some((_, c)) = &chmod {
            msg.push_str(&format!(" --chmod={c}"));
        }

        let owner = chown.as_ref().map(|(_, o)| o.clone());
        let mode = chmod.as_ref().map(|(m, _)| m.clone());
        let mut actions = Vec::new();
        let mut context_paths = Vec::new();
        for src in &sources {
            msg.push_str(&format!(" {src}"));
            if let Some(git) = git_ref(src) {
                if !is_add {
                    return Err(error("source can't be a git ref for COPY", span));
                }
                let op = Op::Source(SourceOp::Git(GitSource {
                    remote: git.remote,
                    reference: git.reference,
                    subdir: git.subdir,
                    keep_git_dir: args.keep_git_dir.unwrap_or(false),
                    checksum: checksum.clone(),
                }));
                let input = self.add(op, OpMetadata::named(format!("ADD {src}")), Some(span))?;
                let mut copy = CopyAction::new(input, "/", dest.clone());
                copy.owner = owner.clone();
                copy.mode = mode.clone();
                copy.follow_symlinks = false;
                copy.dir_contents_only = false;
                copy.allow_wildcard = false;
                copy.allow_empty_wildcard = false;
                copy.exclude_patterns = excludes.clone();
                actions.push(copy);
            } else if is_http(src) {
                if !is_add {
                    return Err(error("source can't be a URL for COPY", span));
                }
                let filename = url_filename(src);
                let checksum = match &checksum {
                    Some(c) => Some(
                        c.parse()
                            .map_err(|e: kiln_llb::DigestParseError| error(e.to_string(), span))?,
                    ),
                    None => None,
                };
                let op = Op::Source(SourceOp::Http(HttpSource {
                    url: src.clone(),
                    checksum,
                    filename: Some(filename.clone()),
                    chmod: None,
                }));
                let input = self.add(op, OpMetadata::named(format!("ADD {src}")), Some(span))?;
                let mut copy = CopyAction::new(input, format!("/{filename}"), dest.clone());
                copy.owner = owner.clone();
                copy.mode = mode.clone();
                copy.follow_symlinks = false;
                copy.dir_contents_only = false;
                copy.allow_wildcard = false;
                copy.allow_empty_wildcard = false;
                copy.unpack = args.unpack.unwrap_or(false);
                copy.exclude_patterns = excludes.clone();
                actions.push(copy);
            } else {
                let (src_dir, include) = if args.parents {
                    match src.split_once("/./") {
                        Some((parent, pattern)) => (
                            parent.to_owned(),
                            clean(&join("/", pattern))
                                .trim_start_matches('/')
                                .to_owned(),
                        ),
                        None => (
                            "/".to_owned(),
                            clean(&join("/", src)).trim_start_matches('/').to_owned(),
                        ),
                    }
                } else {
                    (src.clone(), String::new())
                };
                let src_path = clean(&join("/", &src_dir));
                if from_source.is_none() {
                    let p = clean(&join("/", src)).trim_start_matches('/').to_owned();
                    self.lint_ignored_source(is_add, &p, span);
                    context_paths.push(if args.parents {
                        p.replace("/./", "/")
                    } else {
                        p
                    });
                }
                // Placeholder input, replaced once the context source is known.
                let mut copy = CopyAction::new(
                    Input::new(kiln_llb::Digest::of(b"")),
                    src_path,
                    dest.clone(),
                );
                copy.owner = owner.clone();
                copy.mode = mode.clone();
                copy.exclude_patterns = excludes.clone();
                copy.unpack = is_add && args.unpack.unwrap_or(true);
                if args.parents {
                    copy.parents = true;
                    copy.include_patterns = vec![include];
                }
                copy.timestamp = None;
                actions.push(copy);
            }
        }
        // Local sources: the context (narrowed to the paths named here) or the --from stage.
        let local_input = match from_source {
            Some(input) => Some(input),
            None if !context_paths.is_empty() => Some(self.context(context_paths)?),
            None => None,
        };
        let placeholder = Input::new(kiln_llb::Digest::of(b""));
        for a in &mut actions {
            if a.source == placeholder {
                a.source = local_input.ok_or_else(|| bug("copy without a source", span))?;
            }
        }
        for doc in heredocs {
            msg.push_str(&format!(" <<{}", doc.name));
            let data = if doc.expand {
                let env = self.state(i).env.clone();
                self.lexer
                    .process_heredoc(&doc.body(), &env)
                    .map_err(|e| error(e.to_string(), span))?
            } else {
                doc.body()
            };
            let scratch = self.scratch()?;
            let file = self.add(
                Op::File(FileOp {
                    base: scratch,
                    actions: vec![FileAction::Mkfile(MkfileAction {
                        path: format!("/{}", doc.name),
                        mode: 0o644,
                        data: data.into_bytes(),
                        owner: None,
                        timestamp: None,
                    })],
                }),
                OpMetadata::named("preparing inline document"),
                None,
            )?;
            let mut copy = CopyAction::new(file, format!("/{}", doc.name), dest.clone());
            copy.owner = owner.clone();
            copy.mode = mode.clone();
            copy.follow_symlinks = false;
            copy.dir_contents_only = false;
            copy.allow_wildcard = false;
            copy.allow_empty_wildcard = false;
            actions.push(copy);
        }
        msg.push_str(&format!(" {dest_raw}"));
        if actions.is_empty() {
            return Err(error(
                format!(
                    "{} requires at least one source",
                    if is_add { "ADD" } else { "COPY" }
                ),
                span,
            ));
        }

        let text = self.display_text(&instr.original, &st.env);
        let file_actions: Vec<FileAction> = actions.into_iter().map(FileAction::Copy).collect();
        if args.link && chmod.is_none() {
            // COPY --link: copy onto an empty layer, then stack it on the stage (BuildKit
            // shows both under one step number).
            let name = self.step_name(i, &text, command.onbuild);
            let scratch = self.scratch()?;
            let meta = self.meta(i, name.clone(), Some(&instr.original));
            let layer = self.add(
                Op::File(FileOp {
                    base: scratch,
                    actions: file_actions,
                }),
                meta,
                Some(span),
            )?;
            let link_name = link_name(&name, &text);
            let meta = self.meta(i, link_name, Some(&instr.original));
            let fs = self.add(
                Op::Merge(MergeOp {
                    inputs: vec![st.fs, layer],
                }),
                meta,
                Some(span),
            )?;
            self.state_mut(i).fs = fs;
        } else {
            let name = self.step_name(i, &text, command.onbuild);
            let meta = self.meta(i, name, Some(&instr.original));
            let fs = self.add(
                Op::File(FileOp {
                    base: st.fs,
                    actions: file_actions,
                }),
                meta,
                Some(span),
            )?;
            self.state_mut(i).fs = fs;
        }
        msg.push_str(" # buildkit");
        self.history(i, msg, true);
        Ok(())
    }
}

fn link_name(step: &str, text: &str) -> String {
    match step.strip_suffix(text) {
        Some(prefix) => format!("{prefix}LINK {text}"),
        None => format!("LINK {step}"),
    }
}

/// The file name ADD gives a download: the URL path's last segment, or `__unnamed__`.
fn url_filename(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = without_scheme.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match clean(&format!("/{path}")).rsplit('/').next() {
        Some(base) if !base.is_empty() => base.to_owned(),
        _ => "__unnamed__".to_owned(),
    }
}
