//! `kiln import --change` (as `docker import --change`): one Dockerfile instruction applied to
//! an image's run config, parsed with the Dockerfile parser.

use kiln_llb::image::RunConfig;

use crate::syntax::{self, Args as NodeArgs};

/// Why a `--change` value could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Parse(String),
    #[error("expected exactly one instruction")]
    NotOne,
    #[error("{0} needs key=value pairs")]
    NeedsPairs(String),
    #[error("not supported yet: {0} in --change")]
    NotSupported(String),
}

/// Applies one instruction (`CMD`, `ENTRYPOINT`, `WORKDIR`, `USER`, `STOPSIGNAL`, `ENV`,
/// `LABEL`, `EXPOSE`, `VOLUME`) to `config`.
pub fn apply_change(config: &mut RunConfig, change: &str) -> Result<(), ChangeError> {
    let ast = syntax::parse(change.as_bytes()).map_err(|d| ChangeError::Parse(d.message))?;
    let [node] = ast.children.as_slice() else {
        return Err(ChangeError::NotOne);
    };
    let keyword = node.keyword.as_str().to_ascii_uppercase();
    match keyword.as_str() {
        "CMD" => config.cmd = Some(command(&node.args)),
        "ENTRYPOINT" => config.entrypoint = Some(command(&node.args)),
        "WORKDIR" => config.working_dir = words(&node.args).join(" "),
        "USER" => config.user = words(&node.args).join(" "),
        "STOPSIGNAL" => config.stop_signal = words(&node.args).join(" "),
        "ENV" | "LABEL" => {
            let NodeArgs::Pairs(pairs) = &node.args else {
                return Err(ChangeError::NeedsPairs(keyword));
            };
            for pair in pairs {
                let value = unquote(&pair.value.value);
                if keyword == "ENV" {
                    config.set_env(&pair.key.value, &value);
                } else {
                    config.labels.insert(unquote(&pair.key.value), value);
                }
            }
        }
        "EXPOSE" => {
            for port in words(&node.args) {
                let port = if port.contains('/') {
                    port
                } else {
                    format!("{port}/tcp")
                };
                config.exposed_ports.insert(port);
            }
        }
        "VOLUME" => {
            for v in words(&node.args) {
                config.volumes.insert(v);
            }
        }
        _ => return Err(ChangeError::NotSupported(keyword)),
    }
    Ok(())
}

fn words(args: &NodeArgs) -> Vec<String> {
    match args {
        NodeArgs::Words(w) | NodeArgs::Json(w) => w.iter().map(|w| w.value.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The exec form as given, the shell form wrapped in `/bin/sh -c`.
fn command(args: &NodeArgs) -> Vec<String> {
    match args {
        NodeArgs::Json(w) => w.iter().map(|w| w.value.clone()).collect(),
        NodeArgs::Words(w) => vec![
            "/bin/sh".into(),
            "-c".into(),
            w.iter()
                .map(|w| w.value.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ],
        _ => Vec::new(),
    }
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_import_changes() {
        let mut c = RunConfig::default();
        apply_change(&mut c, r#"CMD ["sh"]"#).unwrap();
        apply_change(&mut c, "ENTRYPOINT echo hi").unwrap();
        apply_change(&mut c, "ENV PATH=/bin A=\"b c\"").unwrap();
        apply_change(&mut c, "LABEL 'k'=v").unwrap();
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        apply_change(&mut c, "WORKDIR /srv").unwrap();
        assert_eq!(c.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            c.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert!(c.env.contains(&"A=b c".to_string()));
        assert_eq!(c.labels.get("k").map(String::as_str), Some("v"));
        assert!(c.exposed_ports.contains("53/udp") && c.exposed_ports.contains("80/tcp"));
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(
            apply_change(&mut c, "RUN true").unwrap_err().to_string(),
            "not supported yet: RUN in --change"
        );
        assert_eq!(
            apply_change(&mut c, "CMD a\nCMD b").unwrap_err(),
            ChangeError::NotOne
        );
    }
}
