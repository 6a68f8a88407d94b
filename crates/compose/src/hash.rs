//! A service's config hash: sha256 over canonical bytes of what decides how its containers are
//! created, for "recreate only what changed". Left out, as Compose leaves them out: `build`,
//! `scale`, `deploy.replicas`, `depends_on`, `profiles` and `x-*` extensions (they change how
//! many containers there are or when they start, not what each one is).
//!
//! The bytes are JSON from the model with object keys sorted at every level (the model's maps
//! are already ordered; sorting again makes the encoding independent of field order). The
//! golden test below pins the encoding, so a change to it is deliberate.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{Project, Service};

impl Service {
    /// The hex sha256 of the service's canonical configuration.
    pub fn config_hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            for key in ["build", "scale", "depends_on", "profiles"] {
                m.remove(key);
            }
            m.retain(|k, _| !k.starts_with("x-"));
            if let Some(Value::Object(deploy)) = m.get_mut("deploy") {
                deploy.remove("replicas");
                if deploy.is_empty() {
                    m.remove("deploy");
                }
            }
        }
        let mut bytes = Vec::new();
        canonical(&v, &mut bytes);
        hex::encode(Sha256::digest(&bytes))
    }
}

impl Project {
    /// The config hash of an enabled service.
    pub fn config_hash(&self, service: &str) -> Option<String> {
        self.services.get(service).map(Service::config_hash)
    }
}

/// JSON with sorted keys and no whitespace.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_string(k).unwrap_or_default().as_bytes());
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Build, Deploy};

    fn web() -> Service {
        Service {
            image: Some("busybox".into()),
            command: Some(vec!["httpd".into(), "-f".into()]),
            environment: [("A".to_string(), Some("1".to_string()))].into(),
            ..Service::default()
        }
    }

    #[test]
    fn golden_hash_pins_the_encoding() {
        // sha256 of {"command":["httpd","-f"],"environment":{"A":"1"},"image":"busybox"}
        assert_eq!(
            web().config_hash(),
            "2b78a8c3d894119efa4d9900d138141c1a418e7ec1ba9a1317509f880c0288a7"
        );
    }

    #[test]
    fn scale_build_and_profiles_do_not_change_the_hash() {
        let mut other = web();
        other.scale = Some(3);
        other.profiles = vec!["debug".into()];
        other.build = Some(Build::default());
        other.deploy = Some(Deploy {
            replicas: Some(2),
            resources: None,
        });
        other.extensions.insert("x-note".into(), Value::Bool(true));
        assert_eq!(other.config_hash(), web().config_hash());
    }

    #[test]
    fn environment_changes_the_hash() {
        let mut other = web();
        other.environment.insert("A".into(), Some("2".into()));
        assert_ne!(other.config_hash(), web().config_hash());
    }
}
