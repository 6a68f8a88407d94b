//! Renderers behind `kiln build --print=...`: the graph as text or Graphviz, the outline of
//! stages and ARGs, the target list, and the image config as JSON. Output is stable: the same
//! input always prints the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kiln_llb::image::ImageConfig;
use kiln_llb::{
    CacheSharing, Definition, Digest, ExecOp, FileAction, FileOp, Input, MountKind, NetworkMode,
    Op, Owner, SecurityMode, SourceOp,
};

use crate::lower::{Outline, StageInfo};

/// Short vertex ids (`v0`, `v1`, ...) in the order the root needs them, so dumps read well
/// and stay stable.
fn ids(def: &Definition) -> (Vec<Digest>, BTreeMap<Digest, usize>) {
    let order = def.needed();
    let index = order.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    (order, index)
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}

fn input(index: &BTreeMap<Digest, usize>, i: &Input) -> String {
    match index.get(&i.vertex) {
        Some(n) if i.output == 0 => format!("v{n}"),
        Some(n) => format!("v{n}#{}", i.output),
        None => format!("{}#{}", short(&i.vertex), i.output),
    }
}

fn quoted_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

fn owner(o: &Option<Owner>) -> String {
    o.as_ref()
        .map(|o| format!(" chown={o}"))
        .unwrap_or_default()
}

/// The graph as readable text: one block per vertex the root needs, inputs first.
pub fn llb_text(def: &Definition) -> String {
    let (order, index) = ids(def);
    let mut out = String::new();
    for (n, digest) in order.iter().enumerate() {
        let Some(op) = def.get(digest) else { continue };
        let meta = def.metadata(digest);
        let _ = write!(out, "v{n} {} ", short(digest));
        match op {
            Op::Source(source) => write_source(&mut out, source),
            Op::Exec(exec) => write_exec(&mut out, exec, &index),
            Op::File(file) => write_file(&mut out, file, &index),
            Op::Merge(merge) => {
                let inputs: Vec<String> = merge.inputs.iter().map(|i| input(&index, i)).collect();
                let _ = writeln!(out, "merge {}", inputs.join(" "));
            }
        }
        if let Some(name) = &meta.name {
            let _ = writeln!(out, "    name: {name}");
        }
        if meta.ignore_cache {
            out.push_str("    ignore-cache\n");
        }
        if !meta.proxy_env.is_empty() {
            let pairs: Vec<String> = meta
                .proxy_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "    proxy-env: {}", pairs.join(" "));
        }
        if let Some(locations) = def.source_map().locations.get(digest) {
            let lines: Vec<String> = locations
                .iter()
                .flat_map(|l| l.ranges.iter())
                .map(|r| {
                    if r.start.line == r.end.line {
                        format!("{}", r.start.line)
                    } else {
                        format!("{}-{}", r.start.line, r.end.line)
                    }
                })
                .collect();
            let _ = writeln!(out, "    lines: {}", lines.join(","));
        }
    }
    if let Some(root) = def.root() {
        let _ = writeln!(out, "root: {}", input(&index, &root));
    }
    out
}

fn write_source(out: &mut String, source: &SourceOp) {
    match source {
        SourceOp::Scratch => out.push_str("scratch\n"),
        SourceOp::Image(image) => {
            let _ = write!(out, "image {} platform={}", image.reference, image.platform);
            if let Some(d) = &image.digest {
                let _ = write!(out, " digest={d}");
            }
            out.push('\n');
        }
        SourceOp::Local(local) => {
            let _ = write!(out, "local {}", local.name);
            if !local.follow_paths.is_empty() {
                let _ = write!(out, " follow={}", quoted_list(&local.follow_paths));
            }
            if !local.include_patterns.is_empty() {
                let _ = write!(out, " include={}", quoted_list(&local.include_patterns));
            }
            if !local.exclude_patterns.is_empty() {
                let _ = write!(out, " exclude={}", quoted_list(&local.exclude_patterns));
            }
            out.push('\n');
        }
        SourceOp::Http(http) => {
            let _ = write!(out, "http {}", http.url);
            if let Some(f) = &http.filename {
                let _ = write!(out, " filename={f}");
            }
            if let Some(c) = &http.checksum {
                let _ = write!(out, " checksum={c}");
            }
            if let Some(m) = http.chmod {
                let _ = write!(out, " chmod={m:04o}");
            }
            out.push('\n');
        }
        SourceOp::Git(git) => {
            let _ = write!(out, "git {}", git.remote);
            if let Some(r) = &git.reference {
                let _ = write!(out, " ref={r}");
            }
            if let Some(s) = &git.subdir {
                let _ = write!(out, " subdir={s}");
            }
            if git.keep_git_dir {
                out.push_str(" keep-git-dir");
            }
            if let Some(c) = &git.checksum {
                let _ = write!(out, " checksum={c}");
            }
            out.push('\n');
        }
    }
}

fn write_exec(out: &mut String, exec: &ExecOp, index: &BTreeMap<Digest, usize>) {
    let _ = writeln!(
        out,
        "exec {} on {}",
        quoted_list(&exec.args),
        input(index, &exec.root)
    );
    let env: Vec<String> = exec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "    env: {}", quoted_list(&env));
    let _ = write!(out, "    cwd: {}", exec.cwd);
    if !exec.user.is_empty() {
        let _ = write!(out, " user: {}", exec.user);
    }
    if let Some(h) = &exec.hostname {
        let _ = write!(out, " hostname: {h}");
    }
    match exec.network {
        NetworkMode::Default => {}
        NetworkMode::None => out.push_str(" network: none"),
        NetworkMode::Host => out.push_str(" network: host"),
    }
    if exec.security == SecurityMode::Insecure {
        out.push_str(" security: insecure");
    }
    for d in &exec.devices {
        let _ = write!(
            out,
            " device: {}{}",
            d.name,
            if d.required { " (required)" } else { "" }
        );
    }
    if let Some(platform) = &exec.platform {
        let _ = write!(out, " platform: {platform}");
    }
    out.push('\n');
    for m in &exec.mounts {
        let _ = write!(out, "    mount {} ", m.target);
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                let _ = write!(
                    out,
                    "bind {}:{}",
                    input(index, &source.input),
                    source.selector
                );
                out.push_str(if *readonly { " ro" } else { " rw" });
            }
            MountKind::Cache {
                id,
                sharing,
                source,
                uid,
                gid,
                mode,
                readonly,
            } => {
                let sharing = match sharing {
                    CacheSharing::Shared => "shared",
                    CacheSharing::Private => "private",
                    CacheSharing::Locked => "locked",
                };
                let _ = write!(
                    out,
                    "cache id={id} sharing={sharing} uid={uid} gid={gid} mode={mode:04o}"
                );
                if let Some(s) = source {
                    let _ = write!(out, " from={}:{}", input(index, &s.input), s.selector);
                }
                if *readonly {
                    out.push_str(" ro");
                }
            }
            MountKind::Tmpfs { size } => {
                out.push_str("tmpfs");
                if let Some(size) = size {
                    let _ = write!(out, " size={size}");
                }
            }
            MountKind::Secret {
                id,
                uid,
                gid,
                mode,
                required,
            } => {
                let _ = write!(out, "secret id={id} uid={uid} gid={gid} mode={mode:04o}");
                if *required {
                    out.push_str(" required");
                }
            }
            MountKind::Ssh {
                id,
                uid,
                gid,
                mode,
                required,
            } => {
                let _ = write!(out, "ssh id={id} uid={uid} gid={gid} mode={mode:04o}");
                if *required {
                    out.push_str(" required");
                }
            }
        }
        out.push('\n');
    }
    for s in &exec.secret_env {
        let _ = writeln!(
            out,
            "    secret-env {}={}{}",
            s.name,
            s.id,
            if s.required { " required" } else { "" }
        );
    }
}

fn write_file(out: &mut String, file: &FileOp, index: &BTreeMap<Digest, usize>) {
    let _ = writeln!(out, "file on {}", input(index, &file.base));
    for action in &file.actions {
        match action {
            FileAction::Copy(c) => {
                let _ = write!(
                    out,
                    "    copy {}:{} -> {}",
                    input(index, &c.source),
                    c.src,
                    c.dest
                );
                out.push_str(&owner(&c.owner));
                if let Some(m) = &c.mode {
                    let _ = write!(out, " chmod={m}");
                }
                let flags = [
                    (!c.follow_symlinks, "no-follow"),
                    (!c.dir_contents_only, "dir-itself"),
                    (!c.create_dest_path, "no-create-dest"),
                    (!c.allow_wildcard, "no-wildcard"),
                    (
                        c.allow_wildcard && !c.allow_empty_wildcard,
                        "no-empty-wildcard",
                    ),
                    (c.parents, "parents"),
                    (c.unpack, "unpack"),
                ];
                for (on, name) in flags {
                    if on {
                        let _ = write!(out, " {name}");
                    }
                }
                if !c.include_patterns.is_empty() {
                    let _ = write!(out, " include={}", quoted_list(&c.include_patterns));
                }
                if !c.exclude_patterns.is_empty() {
                    let _ = write!(out, " exclude={}", quoted_list(&c.exclude_patterns));
                }
                if let Some(t) = c.timestamp {
                    let _ = write!(out, " time={t}");
                }
                out.push('\n');
            }
            FileAction::Mkdir(m) => {
                let _ = writeln!(
                    out,
                    "    mkdir {} mode={:04o}{}{}{}",
                    m.path,
                    m.mode,
                    if m.make_parents { " parents" } else { "" },
                    owner(&m.owner),
                    m.timestamp
                        .map(|t| format!(" time={t}"))
                        .unwrap_or_default()
                );
            }
            FileAction::Mkfile(m) => {
                let data = String::from_utf8_lossy(&m.data);
                let _ = writeln!(
                    out,
                    "    mkfile {} mode={:04o}{} data={}",
                    m.path,
                    m.mode,
                    owner(&m.owner),
                    serde_json::to_string(&data).unwrap_or_default()
                );
            }
            FileAction::Rm(r) => {
                let _ = writeln!(
                    out,
                    "    rm {}{}{}",
                    r.path,
                    if r.allow_not_found {
                        " allow-not-found"
                    } else {
                        ""
                    },
                    if r.allow_wildcard { " wildcard" } else { "" }
                );
            }
            FileAction::Symlink(s) => {
                let _ = writeln!(
                    out,
                    "    symlink {} -> {}{}",
                    s.path,
                    s.target,
                    owner(&s.owner)
                );
            }
        }
    }
}

/// The graph in Graphviz dot: one node per vertex the root needs, labelled with its progress
/// name (or kind), edges from inputs to the vertices that read them.
pub fn dot(def: &Definition) -> String {
    let (order, index) = ids(def);
    let mut out = String::from(
        "digraph llb {\n  rankdir=\"BT\";\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for (n, digest) in order.iter().enumerate() {
        let Some(op) = def.get(digest) else { continue };
        let meta = def.metadata(digest);
        let label = meta.name.clone().unwrap_or_else(|| match op {
            Op::Source(SourceOp::Image(i)) => format!("image {}", i.reference),
            Op::Source(SourceOp::Local(l)) => format!("local {}", l.name),
            Op::Source(s) => format!("{s:?}")
                .split(['(', ' '])
                .next()
                .unwrap_or("source")
                .to_lowercase(),
            other => other.kind().to_owned(),
        });
        let label = format!("{label}\\n{}", short(digest));
        let _ = writeln!(out, "  v{n} [label={}];", dot_quote(&label));
    }
    for (n, digest) in order.iter().enumerate() {
        let Some(op) = def.get(digest) else { continue };
        let mut seen = Vec::new();
        for i in op.inputs() {
            if seen.contains(&i) {
                continue;
            }
            seen.push(i);
            let _ = writeln!(out, "  {} -> v{n};", input(&index, &i));
        }
    }
    out.push_str("}\n");
    out
}

fn dot_quote(s: &str) -> String {
    // `\n` inside the label is Graphviz's line break; other backslashes and quotes are escaped.
    let escaped = s.replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The stages and the ARGs the target uses, with their defaults (like BuildKit's
/// `--call=outline`).
pub fn outline(outline: &Outline) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "TARGET: {}", outline.target);
    if let Some(stage) = outline.stages.iter().find(|s| s.name == outline.target)
        && let Some(d) = &stage.description
    {
        let _ = writeln!(out, "DESCRIPTION: {d}");
    }
    out.push('\n');
    if !outline.args.is_empty() {
        let rows: Vec<[String; 3]> = outline
            .args
            .iter()
            .map(|a| {
                [
                    a.name.clone(),
                    a.value
                        .clone()
                        .or_else(|| a.default.clone())
                        .unwrap_or_default(),
                    a.description.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&mut out, ["BUILD ARG", "VALUE", "DESCRIPTION"], &rows);
    }
    if !outline.secrets.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 3]> = outline
            .secrets
            .iter()
            .map(|s| {
                [
                    s.id.clone(),
                    if s.required {
                        "true".into()
                    } else {
                        "false".into()
                    },
                    String::new(),
                ]
            })
            .collect();
        table(&mut out, ["SECRET", "REQUIRED", ""], &rows);
    }
    if !outline.ssh.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 3]> = outline
            .ssh
            .iter()
            .map(|s| {
                [
                    s.id.clone(),
                    if s.required {
                        "true".into()
                    } else {
                        "false".into()
                    },
                    String::new(),
                ]
            })
            .collect();
        table(&mut out, ["SSH", "REQUIRED", ""], &rows);
    }
    out
}

/// The build targets (stages) with their descriptions from the comment above FROM.
pub fn targets(stages: &[StageInfo]) -> String {
    let default = stages.last().map(|s| s.name.clone()).unwrap_or_default();
    let rows: Vec<[String; 3]> = stages
        .iter()
        .filter(|s| s.named || s.name == default)
        .map(|s| {
            let name = if s.name == default {
                format!("{} (default)", s.name)
            } else {
                s.name.clone()
            };
            [
                name,
                s.description.clone().unwrap_or_default().replace('\n', " "),
                String::new(),
            ]
        })
        .collect();
    let mut out = String::new();
    table(&mut out, ["TARGET", "DESCRIPTION", ""], &rows);
    out
}

fn table(out: &mut String, header: [&str; 3], rows: &[[String; 3]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: [&str; 3]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("   ");
            }
            let _ = write!(s, "{cell:<width$}", width = widths[i]);
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(out, header);
    for row in rows {
        line(out, [&row[0], &row[1], &row[2]]);
    }
}

/// The `config` object of the image config as pretty JSON (what `--print=config` shows).
pub fn config(image: &ImageConfig) -> String {
    let mut s = serde_json::to_string_pretty(&image.config).unwrap_or_default();
    s.push('\n');
    s
}

/// The whole image config (platform, config, history) as pretty JSON.
pub fn image_config(image: &ImageConfig) -> String {
    let mut s = serde_json::to_string_pretty(image).unwrap_or_default();
    s.push('\n');
    s
}
