//! The short syntaxes inside strings: ports (`[[IP:](port|range):](port|range)[/proto]`),
//! volumes (`[SRC:]TARGET[:MODE]`) and string commands (split as a POSIX shell splits words,
//! without expansion, as Compose does with go-shellwords).

use crate::model::{BindOptions, Port, ServiceVolume, VolumeKind, VolumeOptions};

/// Parses a short port entry into one long entry per container port.
pub fn parse_port(spec: &str) -> Result<Vec<Port>, String> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_string()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol {protocol:?} (tcp, udp or sctp)"));
    }
    // An IPv6 host address is written in brackets: `[::1]:8080:80`.
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in the host address".to_string())?;
        let tail = tail
            .strip_prefix(':')
            .ok_or_else(|| "expected `:` after the host address".to_string())?;
        (Some(ip.to_string()), tail)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, container) = match (host_ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (None, [p, c]) => (None, Some(*p), *c),
        (None, [ip, p, c]) => (Some(ip.to_string()), Some(*p), *c),
        (Some(ip), [p, c]) => (Some(ip), Some(*p), *c),
        _ => return Err("too many `:`".to_string()),
    };
    if let Some(ip) = &host_ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!("invalid host IP {ip:?}"));
    }
    let published = published.filter(|p| !p.is_empty());
    let (c_start, c_end) = port_range(container)?;
    let host = published.map(port_range).transpose()?;
    let count = c_end - c_start + 1;
    let mut ports = Vec::new();
    for i in 0..count {
        let published = match host {
            None => None,
            Some((h_start, h_end)) if h_end - h_start + 1 == count => {
                Some((h_start + i).to_string())
            }
            // One container port to a range of host ports: any free one of them.
            Some((h_start, h_end)) if count == 1 => Some(format!("{h_start}-{h_end}")),
            Some(_) => {
                return Err(
                    "the host and container port ranges must have the same length".to_string(),
                );
            }
        };
        ports.push(Port {
            mode: "ingress".into(),
            host_ip: host_ip.clone(),
            target: c_start + i,
            published,
            protocol: protocol.clone(),
        });
    }
    Ok(ports)
}

/// `80` or `8000-8010`, as an inclusive range.
pub(crate) fn port_range(text: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("invalid port {p:?}"))
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(format!("invalid port range {text:?}"));
            }
            Ok((a, b))
        }
        None => port(text).map(|p| (p, p)),
    }
}

/// Parses a short volume entry. `source` paths must already be absolute (the loader resolves
/// `./x` and `~/x`), so a source starting with `/` is a bind, any other a named volume.
pub fn parse_volume(spec: &str) -> Result<ServiceVolume, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] if is_mode(t) && !t.starts_with('/') => {
            // `/data:ro` is an anonymous volume with a mode.
            let _ = s;
            (None, parts[0], Some(*t))
        }
        [s, t] => (Some(*s), *t, None),
        [s, t, m] => (Some(*s), *t, Some(*m)),
        _ => return Err("too many `:`".to_string()),
    };
    if target.is_empty() || !target.starts_with('/') {
        return Err(format!("the target {target:?} must be an absolute path"));
    }
    if source == Some("") {
        return Err("empty source".to_string());
    }
    let mut read_only = false;
    let mut bind = BindOptions {
        create_host_path: true,
        ..BindOptions::default()
    };
    let mut volume = VolumeOptions::default();
    for m in mode
        .map(|m| m.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        match m {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" => bind.selinux = Some(m.to_string()),
            "nocopy" => volume.nocopy = true,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                bind.propagation = Some(m.to_string())
            }
            // Docker Desktop's consistency hints do nothing on Linux.
            "consistent" | "cached" | "delegated" => {}
            other => return Err(format!("invalid mode {other:?}")),
        }
    }
    let kind = match source {
        Some(s) if s.starts_with('/') => VolumeKind::Bind,
        _ => VolumeKind::Volume,
    };
    Ok(ServiceVolume {
        kind,
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        bind: (kind == VolumeKind::Bind).then_some(bind),
        volume: (kind == VolumeKind::Volume).then_some(volume),
        tmpfs: None,
    })
}

fn is_mode(text: &str) -> bool {
    text.split(',').all(|m| {
        matches!(
            m,
            "ro" | "rw"
                | "z"
                | "Z"
                | "nocopy"
                | "shared"
                | "rshared"
                | "slave"
                | "rslave"
                | "private"
                | "rprivate"
                | "consistent"
                | "cached"
                | "delegated"
        )
    })
}

/// Splits a command string into words: whitespace separates, `'...'` is literal, `"..."`
/// understands `\"`, `\\` and `\$`, a backslash outside quotes escapes the next character.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => word.push(n),
                    None => word.push('\\'),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("unclosed single quote".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => return Err("unclosed double quote".to_string()),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err("unclosed double quote".to_string()),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(spec: &str) -> Vec<(Option<String>, u16, Option<String>, String)> {
        parse_port(spec)
            .unwrap()
            .into_iter()
            .map(|p| (p.host_ip, p.target, p.published, p.protocol))
            .collect()
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    #[test]
    fn ports_short_syntax() {
        assert_eq!(port("80"), [(None, 80, None, "tcp".into())]);
        assert_eq!(port("8080:80"), [(None, 80, s("8080"), "tcp".into())]);
        assert_eq!(
            port("127.0.0.1:8080:80/udp"),
            [(s("127.0.0.1"), 80, s("8080"), "udp".into())]
        );
        assert_eq!(
            port("127.0.0.1::80"),
            [(s("127.0.0.1"), 80, None, "tcp".into())]
        );
        assert_eq!(
            port("[::1]:53:53/udp"),
            [(s("::1"), 53, s("53"), "udp".into())]
        );
        assert_eq!(
            port("9000-9001:3000-3001"),
            [
                (None, 3000, s("9000"), "tcp".into()),
                (None, 3001, s("9001"), "tcp".into())
            ]
        );
        assert_eq!(
            port("8000-8010:80"),
            [(None, 80, s("8000-8010"), "tcp".into())]
        );
        assert_eq!(port("3000-3001").len(), 2);
        for bad in [
            "abc",
            "80:abc",
            "1:2:3:4",
            "70000",
            "90-80",
            "8000-8002:80-81",
            "80/icmp",
            "x.y:1:2",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_short_syntax() {
        let v = parse_volume("data:/var/lib/data:ro").unwrap();
        assert_eq!(
            (v.kind, v.source.as_deref(), v.read_only),
            (VolumeKind::Volume, Some("data"), true)
        );
        let v = parse_volume("/srv/app:/app:rw,z").unwrap();
        assert_eq!(v.kind, VolumeKind::Bind);
        assert_eq!(v.bind.unwrap().selinux.as_deref(), Some("z"));
        let v = parse_volume("/cache").unwrap();
        assert_eq!((v.kind, v.source), (VolumeKind::Volume, None));
        let v = parse_volume("/cache:ro").unwrap();
        assert_eq!((v.target.as_str(), v.read_only), ("/cache", true));
        for bad in ["data:relative", "a:/b:bogus", "a:/b:ro:x", ":/x"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            split_command("echo hi  there").unwrap(),
            ["echo", "hi", "there"]
        );
        assert_eq!(
            split_command(r#"sh -c 'echo $HOME; ls' "a \"b\"" c\ d"#).unwrap(),
            ["sh", "-c", "echo $HOME; ls", "a \"b\"", "c d"]
        );
        assert_eq!(split_command("a ''").unwrap(), ["a", ""]);
        assert!(split_command("echo 'open").is_err());
    }
}
