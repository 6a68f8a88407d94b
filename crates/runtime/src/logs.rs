//! Container logs in Docker's json-file format: `log.json`, one JSON object per output line
//! (`{"log":"…\n","stream":"stdout","time":"…"}`); reading with tail, follow and timestamps.

use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use kiln_executor::sandbox::{OutputSink, Stream};
use serde::{Deserialize, Serialize};

use crate::error::{RuntimeError, io_err};
use crate::store::now_rfc3339;

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends output to a log file, one record per line; a chunk's unterminated tail becomes its
/// own record at once, so a prompt without a newline still shows up in `logs -f`.
pub(crate) struct LogWriter {
    file: fs::File,
}

impl LogWriter {
    pub(crate) fn open(path: &Path) -> Result<LogWriter, RuntimeError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(format!("open log {}", path.display())))?;
        Ok(LogWriter { file })
    }

    fn append(&mut self, stream: Stream, data: &[u8]) {
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
        // One write per chunk: records of concurrent writers never interleave mid-line.
        if let Err(e) = self.file.write_all(&out) {
            tracing::warn!(error = %e, "failed to write container log");
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
    // The existing records, honouring --tail.
    let mut text = String::new();
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
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
