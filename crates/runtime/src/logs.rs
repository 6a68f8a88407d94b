//! Container logs in Docker's json-file format: `log.json`, one JSON object per output line
//! (`{"log":"…\n","stream":"stdout","time":"…"}`); reading with tail, follow and timestamps.

use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use kiln_executor::sandbox::{OutputSink, Stream};
use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};
use crate::store::{LogConfig, now_rfc3339};

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends output to a log file, one record per line; a chunk's unterminated tail becomes its
/// own record at once, so a prompt without a newline still shows up in `logs -f`. With a size
/// limit the file is rotated as Docker's json-file driver does (`log.json` → `log.json.1` …,
/// at most `max_files` files in all); the `none` driver keeps nothing.
pub(crate) struct LogWriter {
    file: Option<fs::File>,
    path: std::path::PathBuf,
    size: u64,
    rotate: Option<(u64, u32)>,
}

/// The `local` driver's defaults (Docker's: 20 MB, 5 files).
const LOCAL_MAX_SIZE: u64 = 20 << 20;
const LOCAL_MAX_FILES: u32 = 5;

impl LogWriter {
    /// The writer a container's log config asks for.
    pub(crate) fn for_config(path: &Path, config: &LogConfig) -> Result<LogWriter, RuntimeError> {
        let size = config
            .config
            .get("max-size")
            .and_then(|v| crate::options::parse_size(v).ok())
            .filter(|n| *n > 0);
        let files = config
            .config
            .get("max-file")
            .and_then(|v| v.parse::<u32>().ok());
        match config.driver.as_str() {
            "none" => Ok(LogWriter {
                file: None,
                path: path.to_path_buf(),
                size: 0,
                rotate: None,
            }),
            "local" => Self::open_rotating(
                path,
                Some((
                    size.unwrap_or(LOCAL_MAX_SIZE),
                    files.unwrap_or(LOCAL_MAX_FILES),
                )),
            ),
            _ => Self::open_rotating(path, size.map(|s| (s, files.unwrap_or(1)))),
        }
    }

    fn open_rotating(path: &Path, rotate: Option<(u64, u32)>) -> Result<LogWriter, RuntimeError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(format!("open log {}", path.display())))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            file: Some(file),
            path: path.to_path_buf(),
            size,
            rotate,
        })
    }

    /// Moves `log.json` to `log.json.1` (and each older one up), dropping what falls past
    /// `max_files`, and starts an empty `log.json`.
    fn rotate(&mut self, max_files: u32) -> std::io::Result<()> {
        let name = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            std::path::PathBuf::from(p)
        };
        if max_files <= 1 {
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = fs::remove_file(name(max_files - 1));
            for n in (1..max_files - 1).rev() {
                let _ = fs::rename(name(n), name(n + 1));
            }
            fs::rename(&self.path, name(1))?;
        }
        self.file = Some(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.size = 0;
        Ok(())
    }

    fn append(&mut self, stream: Stream, data: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let stream = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let time = now_rfc3339();
        let mut out = Vec::with_capacity(data.len() + 80);
        for line in data.split_inclusive(|&b| b == b'\n') {
            let entry = LogEntry {
                log: String::from_utf8_lossy(line).into_owned(),
                stream: stream.to_string(),
                time: time.clone(),
            };
            if serde_json::to_writer(&mut out, &entry).is_ok() {
                out.push(b'\n');
            }
        }
        if let Some((max, files)) = self.rotate
            && self.size > 0
            && self.size + out.len() as u64 > max
            && let Err(e) = self.rotate(files)
        {
            tracing::warn!(error = %e, "failed to rotate container log");
        }
        // One write per chunk: records of concurrent writers never interleave mid-line.
        if let Some(f) = &mut self.file {
            match f.write_all(&out) {
                Ok(()) => self.size += out.len() as u64,
                Err(e) => tracing::warn!(error = %e, "failed to write container log"),
            }
        }
    }
}

impl OutputSink for LogWriter {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        self.append(stream, data);
    }
}

/// What `kiln logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last N records.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Only records at or after this RFC 3339 time (compared as text, which orders correctly
    /// for the UTC times kiln writes).
    pub since: Option<String>,
}

fn emit(entry: &LogEntry, opts: &LogOptions, out: &mut dyn OutputSink) {
    if opts
        .since
        .as_ref()
        .is_some_and(|s| entry.time.as_str() < s.as_str())
    {
        return;
    }
    let stream = if entry.stream == "stderr" {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    if opts.timestamps {
        out.write(stream, format!("{} ", entry.time).as_bytes());
    }
    out.write(stream, entry.log.as_bytes());
}

/// Writes the log at `path` to `out`; with `follow`, keeps reading new records until `running`
/// says the container stopped and everything it wrote was shown.
pub(crate) fn read_logs(
    path: &Path,
    opts: &LogOptions,
    out: &mut dyn OutputSink,
    running: &mut dyn FnMut() -> bool,
) -> Result<(), RuntimeError> {
    let file = match fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(format!("open log {}", path.display()))(e)),
    };
    let mut reader = match file {
        Some(f) => BufReader::new(f),
        None if !opts.follow => return Ok(()),
        None => {
            // Not created yet: wait for the container to write something or stop.
            loop {
                if let Ok(f) = fs::File::open(path) {
                    break BufReader::new(f);
                }
                if !running() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let parse = |line: &str| -> Option<LogEntry> { serde_json::from_str(line.trim_end()).ok() };
    // The existing records, rotated files oldest first, honouring --tail.
    let mut text = rotated_text(path);
    reader
        .read_to_string(&mut text)
        .map_err(io_err(format!("read log {}", path.display())))?;
    // A record being written right now may be incomplete: keep it for the follow loop.
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let mut pending = text[complete..].to_string();
    let entries: Vec<LogEntry> = text[..complete].lines().filter_map(parse).collect();
    let skip = opts.tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        emit(e, opts, out);
    }
    if !opts.follow {
        return Ok(());
    }
    let mut pos = reader
        .stream_position()
        .map_err(io_err(format!("read log {}", path.display())))?;
    loop {
        // Decide whether to stop before reading, so nothing written before the exit is missed.
        let still_running = running();
        reader
            .seek(SeekFrom::Start(pos))
            .map_err(io_err(format!("read log {}", path.display())))?;
        let mut got_any = false;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(io_err(format!("read log {}", path.display())))?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            got_any = true;
            if !line.ends_with('\n') {
                pending.push_str(&line);
                continue;
            }
            let full = std::mem::take(&mut pending) + &line;
            if let Some(e) = parse(&full) {
                emit(&e, opts, out);
            }
        }
        if !still_running {
            return Ok(());
        }
        if !got_any {
            // Rotated away: what is left of the old file was read; go on with the new one.
            if let Ok(now) = fs::metadata(path)
                && reader.get_ref().metadata().is_ok_and(|m| {
                    std::os::unix::fs::MetadataExt::ino(&m)
                        != std::os::unix::fs::MetadataExt::ino(&now)
                })
                && let Ok(f) = fs::File::open(path)
            {
                reader = BufReader::new(f);
                pos = 0;
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The records of the rotated files (`log.json.N` … `log.json.1`), oldest first.
fn rotated_text(path: &Path) -> String {
    let mut text = String::new();
    let name = |n: u32| {
        let mut p = path.as_os_str().to_os_string();
        p.push(format!(".{n}"));
        std::path::PathBuf::from(p)
    };
    let mut n = 1;
    while name(n).exists() {
        n += 1;
    }
    for i in (1..n).rev() {
        if let Ok(t) = fs::read_to_string(name(i)) {
            text.push_str(&t);
        }
    }
    text
}
