//! A fault-injecting HTTP proxy on 127.0.0.1 in front of a real registry: each request is
//! matched against rules (method, a piece of the path, how many times) and passed on, answered
//! with an error status, cut off with a TCP reset part way through either body, stalled,
//! corrupted by one flipped byte, rewritten, or answered with an endless body. Every request is
//! logged. One request per connection (`Connection: close` both ways) keeps the matching exact.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A response body rewriter.
pub type Rewrite = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// What to do to a matching request.
#[derive(Clone)]
pub enum Fault {
    /// Answer with this status and a distribution-style JSON error; nothing is forwarded.
    Status(u16),
    /// Forward; pass this many bytes of the response body, then reset the connection.
    ResetResponseAfter(u64),
    /// Forward the head and this many bytes of the request body, then reset both connections.
    ResetRequestAfter(u64),
    /// Forward; pass this many bytes of the response body, then send nothing for this long.
    StallResponseAfter(u64, Duration),
    /// Forward, flipping the response body's byte at this offset.
    FlipByte(u64),
    /// Forward, replacing the response body with what the function makes of it (the
    /// `Content-Length` follows; `Docker-Content-Digest` is dropped, as a lying registry would).
    RewriteBody(Rewrite),
    /// Answer 200 claiming `Content-Length: claim` and send spaces until the client leaves (at
    /// most `claim` bytes).
    EndlessBody {
        claim: u64,
        content_type: &'static str,
    },
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Status(s) => write!(f, "status {s}"),
            Fault::ResetResponseAfter(n) => write!(f, "reset response after {n}"),
            Fault::ResetRequestAfter(n) => write!(f, "reset request after {n}"),
            Fault::StallResponseAfter(n, d) => write!(f, "stall after {n} for {d:?}"),
            Fault::FlipByte(n) => write!(f, "flip byte {n}"),
            Fault::RewriteBody(_) => write!(f, "rewrite body"),
            Fault::EndlessBody { claim, .. } => write!(f, "endless body claiming {claim}"),
        }
    }
}

struct Rule {
    method: String,
    path_contains: String,
    /// How many more requests it applies to (`None`: all).
    remaining: Option<usize>,
    fault: Fault,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub fault: Option<String>,
    /// Response body bytes passed to the client.
    pub served: u64,
}

pub struct Proxy {
    port: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Proxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            rules: Arc::new(Mutex::new(Vec::new())),
            log: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (rules, log, stop) = (proxy.rules.clone(), proxy.log.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (rules, log) = (rules.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, upstream, &rules, &log);
                });
            }
        });
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to the next `times` requests (`None`: every one) whose method is
    /// `method` and whose path contains `path_contains`. Earlier rules match first.
    pub fn rule(&self, method: &str, path_contains: &str, times: Option<usize>, fault: Fault) {
        self.rules.lock().unwrap().push(Rule {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            remaining: times,
            fault,
        });
    }

    pub fn clear_rules(&self) {
        self.rules.lock().unwrap().clear();
    }

    pub fn log(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Requests of `method` whose path contains `part`.
    pub fn requests(&self, method: &str, part: &str) -> Vec<Seen> {
        self.log()
            .into_iter()
            .filter(|s| s.method == method && s.path.contains(part))
            .collect()
    }
}

struct Head {
    method: String,
    path: String,
    lines: Vec<String>,
}

impl Head {
    fn header(&self, name: &str) -> Option<String> {
        self.lines.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Reads a request or status line and headers (up to the blank line).
fn read_head(r: &mut impl BufRead) -> io::Result<(String, Vec<String>)> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = l.trim_end_matches(['\r', '\n']).to_owned();
        if l.is_empty() {
            break;
        }
        lines.push(l);
    }
    Ok((first.trim_end().to_owned(), lines))
}

fn reset(s: &TcpStream) {
    // SO_LINGER 0: close sends RST instead of FIN, as a dropped connection does.
    let _ = nix::sys::socket::setsockopt(
        s,
        nix::sys::socket::sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    );
}

fn handle(
    client: TcpStream,
    upstream: u16,
    rules: &Mutex<Vec<Rule>>,
    log: &Mutex<Vec<Seen>>,
) -> io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let (first, lines) = read_head(&mut from_client)?;
    let mut parts = first.split_whitespace();
    let head = Head {
        method: parts.next().unwrap_or("").to_owned(),
        path: parts.next().unwrap_or("").to_owned(),
        lines,
    };
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| {
                r.method == head.method
                    && head.path.contains(&r.path_contains)
                    && r.remaining != Some(0)
            })
            .map(|r| {
                if let Some(n) = r.remaining.as_mut() {
                    *n -= 1;
                }
                r.fault.clone()
            })
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(Seen {
            method: head.method.clone(),
            path: head.path.clone(),
            range: head.header("range"),
            fault: fault.as_ref().map(|f| format!("{f:?}")),
            served: 0,
        });
        log.len() - 1
    };
    let served = |n: u64| log.lock().unwrap()[index].served = n;
    let body_len: u64 = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);

    match &fault {
        Some(Fault::Status(code)) => {
            io::copy(&mut (&mut from_client).take(body_len), &mut io::sink())?;
            let body = format!(
                r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected fault: status {code}"}}]}}"#
            );
            write!(
                to_client,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        Some(Fault::EndlessBody {
            claim,
            content_type,
        }) => {
            io::copy(&mut (&mut from_client).take(body_len), &mut io::sink())?;
            write!(
                to_client,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {claim}\r\nConnection: close\r\n\r\n"
            )?;
            let chunk = vec![b' '; 64 << 10];
            let mut sent = 0u64;
            while sent < *claim {
                let n = chunk.len().min((*claim - sent) as usize);
                if to_client.write_all(&chunk[..n]).is_err() {
                    break;
                }
                sent += n as u64;
            }
            served(sent);
            return Ok(());
        }
        _ => {}
    }

    let upstream_conn = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut to_upstream = upstream_conn.try_clone()?;
    let mut request = format!("{first}\r\n");
    for l in head
        .lines
        .iter()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
    {
        request.push_str(l);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    to_upstream.write_all(request.as_bytes())?;
    if let Some(Fault::ResetRequestAfter(n)) = fault {
        let passed = io::copy(
            &mut (&mut from_client).take(n.min(body_len)),
            &mut to_upstream,
        )?;
        let _ = passed;
        to_upstream.flush()?;
        // Give the registry a moment to take what it got, then drop both sides.
        std::thread::sleep(Duration::from_millis(100));
        reset(&upstream_conn);
        reset(&to_client);
        return Ok(());
    }
    io::copy(&mut (&mut from_client).take(body_len), &mut to_upstream)?;
    to_upstream.flush()?;

    let mut from_upstream = BufReader::new(upstream_conn);
    let (status, resp_lines) = read_head(&mut from_upstream)?;
    if let Some(Fault::RewriteBody(f)) = &fault {
        let mut body = Vec::new();
        from_upstream.read_to_end(&mut body)?;
        let body = f(&body);
        let mut out = format!("{status}\r\n");
        for l in resp_lines.iter().filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("content-length:") && !l.starts_with("docker-content-digest:")
        }) {
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        to_client.write_all(out.as_bytes())?;
        to_client.write_all(&body)?;
        served(body.len() as u64);
        return Ok(());
    }
    let mut out = format!("{status}\r\n");
    for l in &resp_lines {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    to_client.write_all(out.as_bytes())?;
    let mut buf = vec![0u8; 16 << 10];
    let mut total = 0u64;
    loop {
        let limit = match &fault {
            Some(Fault::ResetResponseAfter(n)) | Some(Fault::StallResponseAfter(n, _)) => {
                (*n - total.min(*n)).min(buf.len() as u64) as usize
            }
            _ => buf.len(),
        };
        if limit == 0 {
            break;
        }
        let n = from_upstream.read(&mut buf[..limit])?;
        if n == 0 {
            break;
        }
        if let Some(Fault::FlipByte(at)) = &fault
            && (total..total + n as u64).contains(at)
        {
            buf[(*at - total) as usize] ^= 0x55;
        }
        if to_client.write_all(&buf[..n]).is_err() {
            break;
        }
        total += n as u64;
        served(total);
    }
    match fault {
        Some(Fault::ResetResponseAfter(_)) => {
            to_client.flush()?;
            // A reset drops what the kernel has not sent yet: let the client take it first,
            // so the cut is where the rule says.
            std::thread::sleep(Duration::from_millis(300));
            reset(&to_client);
        }
        Some(Fault::StallResponseAfter(_, d)) => {
            to_client.flush()?;
            std::thread::sleep(d);
            let _ = to_client.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    Ok(())
}
