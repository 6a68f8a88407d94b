//! Build progress for people and machines: BuildKit-style plain lines (CI), a live view on a
//! terminal, or one JSON event per line. Every mode keeps the last lines of each step's output
//! so a failure can show them, and the tty mode keeps the full log in a file. The engine's
//! warnings and notices are shown in every mode (`WARNING: ...` lines, JSON records).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use kiln_engine::{EventKind, Progress, Stream, VertexEvent};
use kiln_llb::Digest;

/// How many output lines of each step are kept for the failure report.
pub const TAIL_LINES: usize = 20;
/// Output lines per running step on the live view.
const LIVE_LINES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Auto,
    Tty,
    Plain,
    Rawjson,
    Quiet,
}

impl Mode {
    /// `auto` is tty when stderr is a terminal, else plain.
    pub fn resolve(self) -> Mode {
        match self {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            other => other,
        }
    }
}

#[derive(Default)]
struct Step {
    number: u64,
    name: String,
    started: Option<Instant>,
    done: bool,
    tail: VecDeque<String>,
    partial: Vec<u8>,
    shown: bool,
}

/// Consumes solver events and draws them.
pub struct Renderer {
    mode: Mode,
    names: HashMap<Digest, String>,
    steps: HashMap<Digest, Step>,
    order: Vec<Digest>,
    start: Instant,
    log_file: Option<(PathBuf, File)>,
    hidden_lines: bool,
    live_height: usize,
    last_draw: Instant,
    done_count: usize,
    /// `--explain`'s report, once the build sent it.
    explained: Option<Vec<kiln_engine::StepExplanation>>,
}

impl Renderer {
    pub fn new(mode: Mode, log_dir: Option<PathBuf>) -> Renderer {
        let log_file = match (mode, log_dir) {
            (Mode::Tty, Some(dir)) => {
                let _ = std::fs::create_dir_all(&dir);
                let stamp = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let path = dir.join(format!("build-{stamp}-{}.log", std::process::id()));
                File::create(&path).ok().map(|f| (path, f))
            }
            _ => None,
        };
        Renderer {
            mode,
            names: HashMap::new(),
            steps: HashMap::new(),
            order: Vec::new(),
            start: Instant::now(),
            log_file,
            hidden_lines: false,
            live_height: 0,
            last_draw: Instant::now() - Duration::from_secs(1),
            done_count: 0,
            explained: None,
        }
    }

    /// The last output lines of a step (for the failure report).
    pub fn tail(&self, vertex: &Digest) -> Vec<String> {
        self.steps
            .get(vertex)
            .map(|s| {
                let mut lines: Vec<String> = s.tail.iter().cloned().collect();
                if !s.partial.is_empty() {
                    lines.push(String::from_utf8_lossy(&s.partial).into_owned());
                }
                lines
            })
            .unwrap_or_default()
    }

    /// Where the full log went, when lines were left off the screen.
    pub fn log_path(&self) -> Option<&PathBuf> {
        self.log_file
            .as_ref()
            .filter(|_| self.hidden_lines)
            .map(|(p, _)| p)
    }

    /// Takes one thing the build reported.
    pub fn handle(&mut self, progress: Progress) {
        match progress {
            Progress::Steps(steps) => self.names.extend(steps),
            Progress::Vertex(event) => self.vertex(event),
            Progress::Warning(message) => self.message("warning", &message),
            Progress::Info(message) => self.message("info", &message),
            Progress::Explain(steps) => self.explain(steps),
        }
    }

    /// `--explain`'s report (for `--metadata-file`), if the build sent one.
    pub fn explained(&self) -> Option<&[kiln_engine::StepExplanation]> {
        self.explained.as_deref()
    }

    /// Why steps ran: lines after the progress (kept with `--quiet`, which asked for it), a
    /// record per step in rawjson.
    fn explain(&mut self, steps: Vec<kiln_engine::StepExplanation>) {
        match self.mode {
            Mode::Rawjson => {
                for record in crate::explain::records(&steps) {
                    println!("{record}");
                }
            }
            _ => {
                self.draw(true);
                for line in crate::explain::lines(&steps) {
                    if let Some((_, file)) = &mut self.log_file {
                        let _ = writeln!(file, "{line}");
                    }
                    eprintln!("{line}");
                }
            }
        }
        self.explained = Some(steps);
    }

    /// A warning or notice: a line of its own (above the live view on a terminal), a JSON
    /// record in rawjson; `--quiet` keeps only warnings.
    fn message(&mut self, kind: &str, message: &str) {
        let line = if kind == "warning" {
            format!("WARNING: {message}")
        } else {
            message.to_owned()
        };
        match self.mode {
            Mode::Rawjson => {
                let time = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                println!(
                    "{}",
                    serde_json::json!({"kind": kind, "message": message, "time": time})
                );
            }
            Mode::Quiet if kind != "warning" => {}
            Mode::Tty => {
                let mut err = std::io::stderr().lock();
                if self.live_height > 0 {
                    let _ = write!(err, "\x1b[{}F\x1b[J", self.live_height);
                    self.live_height = 0;
                }
                let _ = writeln!(err, "{line}");
                drop(err);
                if let Some((_, file)) = &mut self.log_file {
                    let _ = writeln!(file, "{line}");
                }
                self.draw(true);
            }
            _ => eprintln!("{line}"),
        }
    }

    fn vertex(&mut self, event: VertexEvent<Digest>) {
        if self.mode == Mode::Rawjson {
            self.raw(&event);
        }
        let Some(name) = self.names.get(&event.vertex).cloned() else {
            // Internal vertices (context sources) have no name; BuildKit hides them too.
            return;
        };
        let step = self.steps.entry(event.vertex).or_insert_with(|| Step {
            number: event.number,
            name,
            ..Step::default()
        });
        if !self.order.contains(&event.vertex) {
            self.order.push(event.vertex);
        }
        let number = step.number;
        let mut plain: Vec<String> = Vec::new();
        if !step.shown {
            step.shown = true;
            plain.push(format!("#{number} {}", step.name));
        }
        match &event.kind {
            EventKind::Started => {
                step.started = Some(Instant::now());
            }
            EventKind::Cached { .. } => {
                step.done = true;
                self.done_count += 1;
                plain.push(format!("#{number} CACHED"));
            }
            EventKind::Log { stream, data } => {
                let elapsed = step.started.map(|t| t.elapsed()).unwrap_or_default();
                step.partial.extend_from_slice(data);
                while let Some(pos) = step.partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = step.partial.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    let _ = stream;
                    plain.push(format!("#{number} {:.3} {line}", elapsed.as_secs_f64()));
                    step.tail.push_back(line);
                    if step.tail.len() > TAIL_LINES {
                        step.tail.pop_front();
                    }
                }
            }
            EventKind::Completed { duration, .. } => {
                step.done = true;
                self.done_count += 1;
                flush_partial(step, number, &mut plain);
                plain.push(format!("#{number} DONE {:.1}s", duration.as_secs_f64()));
            }
            EventKind::Failed { error, duration } => {
                step.done = true;
                self.done_count += 1;
                flush_partial(step, number, &mut plain);
                plain.push(format!(
                    "#{number} ERROR: {error} ({:.1}s)",
                    duration.as_secs_f64()
                ));
            }
            EventKind::Cancelled { duration } => {
                step.done = true;
                self.done_count += 1;
                plain.push(format!("#{number} CANCELED {:.1}s", duration.as_secs_f64()));
            }
        }
        match self.mode {
            Mode::Plain => {
                let mut err = std::io::stderr().lock();
                for line in plain {
                    let _ = writeln!(err, "{line}");
                }
            }
            Mode::Tty => {
                if let Some((_, file)) = &mut self.log_file {
                    for line in &plain {
                        let _ = writeln!(file, "{line}");
                    }
                }
                self.draw(false);
            }
            _ => {}
        }
    }

    fn raw(&self, event: &VertexEvent<Digest>) {
        let time = event
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut value = serde_json::json!({
            "vertex": event.vertex.to_string(),
            "number": event.number,
            "name": self.names.get(&event.vertex),
            "time": time,
        });
        let fields = match &event.kind {
            EventKind::Started => serde_json::json!({"kind": "started"}),
            EventKind::Cached { key, content } => {
                serde_json::json!({"kind": "cached", "key": key.to_string(), "content_key": content})
            }
            EventKind::Log { stream, data } => serde_json::json!({
                "kind": "log",
                "stream": if *stream == Stream::Stdout { "stdout" } else { "stderr" },
                "data": String::from_utf8_lossy(data),
            }),
            EventKind::Completed { key, duration } => serde_json::json!({
                "kind": "completed", "key": key.to_string(), "duration": duration.as_secs_f64()
            }),
            EventKind::Failed { error, duration } => serde_json::json!({
                "kind": "failed", "error": error, "duration": duration.as_secs_f64()
            }),
            EventKind::Cancelled { duration } => {
                serde_json::json!({"kind": "cancelled", "duration": duration.as_secs_f64()})
            }
        };
        if let (Some(obj), Some(extra)) = (value.as_object_mut(), fields.as_object()) {
            obj.extend(extra.clone());
        }
        println!("{value}");
    }

    /// Redraws the live view (at most every 80 ms unless `force`).
    pub fn draw(&mut self, force: bool) {
        if self.mode != Mode::Tty
            || (!force && self.last_draw.elapsed() < Duration::from_millis(80))
        {
            return;
        }
        self.last_draw = Instant::now();
        let width = terminal_width();
        let mut out = String::new();
        if self.live_height > 0 {
            out.push_str(&format!("\x1b[{}F\x1b[J", self.live_height));
        }
        let mut lines = vec![format!(
            "[+] Building {:.1}s ({}/{})",
            self.start.elapsed().as_secs_f64(),
            self.done_count,
            self.order
                .len()
                .max(self.names.len().min(self.order.len() + 1))
        )];
        for digest in &self.order {
            let step = &self.steps[digest];
            let time = step
                .started
                .map(|t| format!("{:.1}s", t.elapsed().as_secs_f64()))
                .unwrap_or_default();
            let state = if step.done { "" } else { " (running)" };
            lines.push(clip(&format!(" => {} {time}{state}", step.name), width));
            if !step.done {
                let skip = step.tail.len().saturating_sub(LIVE_LINES);
                if skip > 0 {
                    self.hidden_lines = true;
                }
                for line in step.tail.iter().skip(skip) {
                    lines.push(clip(&format!("\x1b[2m => {line}\x1b[0m"), width + 8));
                }
            } else if !step.tail.is_empty() {
                self.hidden_lines = true;
            }
        }
        for line in &lines {
            out.push_str(line);
            out.push('\n');
        }
        self.live_height = lines.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

fn flush_partial(step: &mut Step, number: u64, plain: &mut Vec<String>) {
    if !step.partial.is_empty() {
        let line = String::from_utf8_lossy(&step.partial).into_owned();
        step.partial.clear();
        plain.push(format!("#{number} {line}"));
        step.tail.push_back(line);
        if step.tail.len() > TAIL_LINES {
            step.tail.pop_front();
        }
    }
}

fn clip(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        line.to_string()
    } else {
        line.chars()
            .take(width.saturating_sub(1))
            .collect::<String>()
            + "…"
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}
