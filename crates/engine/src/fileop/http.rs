//! ADD from http(s) URLs: the download is written as one file into a fresh directory (the
//! source's snapshot), named from the URL path, mode 0600 unless the op says otherwise, mtime
//! from `Last-Modified` when the server sends it, verified against `--checksum` when given.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("failed to download {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to download {url}: server answered {status}")]
    Status { url: String, status: u16 },
    #[error("failed to write the download of {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("not supported yet: checksum algorithm {0} (only sha256)")]
    Algorithm(String),
}

/// What a download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// `sha256:<hex>` of the body.
    pub digest: String,
    pub size: u64,
    pub last_modified: Option<i64>,
}

/// Downloads `url` into `dir/filename`. `checksum` is `algorithm:hex`; a body with another
/// digest is an error and leaves no file.
pub fn download(
    url: &str,
    dir: &Path,
    filename: &str,
    mode: u32,
    checksum: Option<&str>,
) -> Result<Downloaded, HttpError> {
    if let Some(c) = checksum {
        let algorithm = c.split_once(':').map(|(a, _)| a).unwrap_or(c);
        if algorithm != "sha256" {
            return Err(HttpError::Algorithm(algorithm.to_string()));
        }
    }
    let response = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, _)) => {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
            });
        }
        Err(e) => {
            return Err(HttpError::Request {
                url: url.to_string(),
                source: Box::new(e),
            });
        }
    };
    let last_modified = response.header("Last-Modified").and_then(parse_http_date);
    let io_err = |source| HttpError::Io {
        url: url.to_string(),
        source,
    };
    // The name is the URL's last path segment: it cannot hold `/`, and `..` is refused.
    let name = if filename.is_empty() || filename == "." || filename == ".." {
        "index.html"
    } else {
        filename
    };
    let path = dir.join(name);
    let mut out = File::create(&path).map_err(io_err)?;
    let mut reader = response.into_reader();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(HttpError::Request {
                    url: url.to_string(),
                    source: Box::new(e),
                });
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err)?;
        size += n as u64;
    }
    out.sync_all().map_err(io_err)?;
    drop(out);
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(expected) = checksum
        && expected != digest
    {
        let _ = fs::remove_file(&path);
        return Err(HttpError::DigestMismatch {
            url: url.to_string(),
            expected: expected.to_string(),
            actual: digest,
        });
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    if let Some(t) = last_modified {
        let t = filetime::FileTime::from_unix_time(t, 0);
        filetime::set_file_times(&path, t, t).map_err(io_err)?;
    }
    Ok(Downloaded {
        digest,
        size,
        last_modified,
    })
}

/// The file name BuildKit gives a download: the URL path's last segment.
pub fn filename_from_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = without_query
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(without_query);
    let path = path.split_once('/').map(|(_, p)| p).unwrap_or("");
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_string()
}

/// Parses an RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    if *zone != "GMT" && *zone != "UTC" {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>());
    let (h, m, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_to_unix_seconds() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Wed, 01 Jan 2020 00:00:00 GMT"),
            Some(1_577_836_800)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(filename_from_url("http://h:1/a/b/c.tar.gz?x=1"), "c.tar.gz");
        assert_eq!(filename_from_url("https://h/dir/"), "dir");
        assert_eq!(filename_from_url("https://h"), "");
    }
}
