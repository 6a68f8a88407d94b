//! The HTTP side of the distribution API: one agent, auth challenges answered with basic
//! credentials or bearer tokens (cached per registry and scope), and retries of transient
//! failures with bodies that can be replayed.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::{Endpoint, RegistryConfig};
use crate::credentials::{Credential, DockerConfig};
use crate::error::RegistryError;

/// Largest error body or token answer read into memory.
const MAX_SMALL_BODY: u64 = 64 << 10;

/// A request body that can be sent again on retry.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes from a reader `open` makes afresh for every attempt.
    Stream {
        len: u64,
        open: &'a (dyn Fn() -> std::io::Result<Box<dyn Read + Send + 'a>> + Sync),
    },
}

/// The access a request needs: `repository:NAME:pull` or `...:pull,push`, possibly several.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(pub Vec<String>);

impl Scope {
    pub fn pull(repository: &str) -> Scope {
        Scope(vec![format!("repository:{repository}:pull")])
    }

    pub fn push(repository: &str) -> Scope {
        Scope(vec![format!("repository:{repository}:pull,push")])
    }

    /// Push to `repository`, and pull from `from` for cross-repository mounts.
    pub fn push_mounting(repository: &str, from: &[String]) -> Scope {
        let mut s = Scope::push(repository);
        s.0.extend(
            from.iter()
                .filter(|f| f.as_str() != repository)
                .map(|f| format!("repository:{f}:pull")),
        );
        s
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A blocking registry client. Cheap to share between threads (`&Client` is `Sync`).
pub struct Client {
    agent: ureq::Agent,
    config: RegistryConfig,
    docker_config: DockerConfig,
    /// Credentials given directly (by `kiln login` before they are saved), by registry host.
    overrides: Mutex<HashMap<String, Credential>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), String>>,
    /// Attempts per request for transient failures.
    pub attempts: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("docker_config", &self.docker_config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these caches inconsistent: each update is one insert.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    pub fn new(config: RegistryConfig, docker_config: DockerConfig) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent,
            config,
            docker_config,
            overrides: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            attempts: 4,
        }
    }

    /// A client with the default config file and docker credentials.
    pub fn from_env() -> Result<Client, RegistryError> {
        Ok(Client::new(
            RegistryConfig::load_default()?,
            DockerConfig::default_location(),
        ))
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub fn docker_config(&self) -> &DockerConfig {
        &self.docker_config
    }

    /// Uses `cred` for `registry` instead of the credential store.
    pub fn set_credential(&self, registry: &str, cred: Credential) {
        lock(&self.overrides).insert(registry.to_owned(), cred);
        lock(&self.tokens).retain(|(host, _), _| host != registry);
    }

    fn credential(&self, host: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = lock(&self.overrides).get(host) {
            return Ok(Some(c.clone()));
        }
        if let Some(c) = lock(&self.credentials).get(host) {
            return Ok(c.clone());
        }
        let c = self.docker_config.get(host)?;
        lock(&self.credentials).insert(host.to_owned(), c.clone());
        Ok(c)
    }

    /// Checks that `registry` accepts the client's credentials (`GET /v2/`, answering its
    /// challenge), as `kiln login` does before saving them.
    pub fn check_login(&self, registry: &str) -> Result<(), RegistryError> {
        let ep = self.config.endpoint(registry);
        let url = format!("{}/v2/", ep.base);
        let resp = self.send(&ep, &Scope(Vec::new()), "GET", &url, &[], &Body::Empty)?;
        check(&ep, "GET", &url, "", resp).map(drop)
    }

    fn authorization(&self, ep: &Endpoint, scope: &Scope) -> Result<Option<String>, RegistryError> {
        if let Some(t) = lock(&self.tokens).get(&(ep.host.clone(), scope.key())) {
            return Ok(Some(format!("Bearer {t}")));
        }
        let challenge = lock(&self.challenges).get(&ep.host).cloned();
        match challenge {
            Some(Challenge::Basic) => Ok(self.credential(&ep.host)?.map(|c| c.basic())),
            _ => Ok(None),
        }
    }

    /// Sends a request, answering one auth challenge and retrying transient failures. Any
    /// status comes back as a response except 401 after auth and exhausted retries.
    pub fn send(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        let mut attempt = 0;
        let mut answered_challenge = false;
        loop {
            attempt += 1;
            let auth = self.authorization(ep, scope)?;
            let result = self.send_once(ep, method, url, headers, auth.as_deref(), body);
            let resp = match result {
                Ok(resp) => resp,
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    backoff(attempt);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = resp.status();
            if status == 401 && !answered_challenge {
                answered_challenge = true;
                let header = resp.header("www-authenticate").unwrap_or("").to_owned();
                self.answer_challenge(ep, scope, &header)?;
                continue;
            }
            if status == 401 {
                let detail = error_text(resp);
                return Err(RegistryError::Unauthorized {
                    registry: ep.host.clone(),
                    reason: if self.credential(&ep.host)?.is_some() {
                        format!("the credentials were rejected ({detail})")
                    } else {
                        format!("no credentials for this registry ({detail})")
                    },
                    source: None,
                });
            }
            if (status == 429 || status >= 500) && attempt < self.attempts {
                drop(resp);
                backoff(attempt);
                continue;
            }
            return Ok(resp);
        }
    }

    fn send_once(
        &self,
        ep: &Endpoint,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        body: &Body<'_>,
    ) -> Result<ureq::Response, RegistryError> {
        let mut req = self.agent.request(method, url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        let result = match body {
            Body::Empty if method == "GET" || method == "HEAD" => req.call(),
            Body::Empty => req.set("Content-Length", "0").send_bytes(&[]),
            Body::Bytes(b) => req.send_bytes(b),
            Body::Stream { len, open } => {
                let reader = open().map_err(|e| RegistryError::Io {
                    what: format!("open the body of {method} {url}"),
                    source: e,
                })?;
                req.set("Content-Length", &len.to_string()).send(reader)
            }
        };
        match result {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(_, r)) => Ok(r),
            Err(ureq::Error::Transport(t)) => Err(RegistryError::Transport {
                registry: ep.host.clone(),
                url: url.to_owned(),
                source: Box::new(t),
            }),
        }
    }

    fn answer_challenge(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        header: &str,
    ) -> Result<(), RegistryError> {
        let challenge = parse_challenge(header).ok_or_else(|| RegistryError::Unauthorized {
            registry: ep.host.clone(),
            reason: format!("unsupported authentication challenge {header:?}"),
            source: None,
        })?;
        lock(&self.challenges).insert(ep.host.clone(), challenge.clone());
        match challenge {
            Challenge::Basic => {
                if self.credential(&ep.host)?.is_none() {
                    return Err(RegistryError::Unauthorized {
                        registry: ep.host.clone(),
                        reason: "no credentials for this registry".into(),
                        source: None,
                    });
                }
                Ok(())
            }
            Challenge::Bearer { realm, service } => {
                let token = self.fetch_token(ep, &realm, service.as_deref(), scope)?;
                lock(&self.tokens).insert((ep.host.clone(), scope.key()), token);
                Ok(())
            }
        }
    }

    /// The token flow of the distribution spec: GET the realm with service and scopes,
    /// with basic credentials when there are any.
    fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<String, RegistryError> {
        let mut req = self.agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        for s in &scope.0 {
            req = req.query("scope", s);
        }
        let cred = self.credential(&ep.host)?;
        if let Some(c) = &cred {
            req = req.set("Authorization", &c.basic());
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(status, r)) => {
                let detail = error_text(r);
                return Err(if status == 401 || status == 403 {
                    RegistryError::Unauthorized {
                        registry: ep.host.clone(),
                        reason: if cred.is_some() {
                            format!("the token service rejected the credentials ({detail})")
                        } else {
                            format!("the token service refused anonymous access ({detail})")
                        },
                        source: None,
                    }
                } else {
                    RegistryError::Status {
                        registry: ep.host.clone(),
                        method: "GET".into(),
                        url: realm.to_owned(),
                        status,
                        body: detail,
                    }
                });
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(RegistryError::Transport {
                    registry: ep.host.clone(),
                    url: realm.to_owned(),
                    source: Box::new(t),
                });
            }
        };
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let mut text = Vec::new();
        resp.into_reader()
            .take(MAX_SMALL_BODY)
            .read_to_end(&mut text)
            .map_err(|e| RegistryError::Transport {
                registry: ep.host.clone(),
                url: realm.to_owned(),
                source: Box::new(e),
            })?;
        let a: Answer = serde_json::from_slice(&text).map_err(|e| RegistryError::Unauthorized {
            registry: ep.host.clone(),
            reason: "the token service answered with invalid json".into(),
            source: Some(Box::new(e)),
        })?;
        a.token
            .or(a.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: ep.host.clone(),
                reason: "the token service answered without a token".into(),
                source: None,
            })
    }
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(200 << attempt.min(5)));
}

/// The start of an error body, for messages (registries answer with JSON `errors`).
pub(crate) fn error_text(resp: ureq::Response) -> String {
    let mut text = String::new();
    let _ = resp
        .into_reader()
        .take(MAX_SMALL_BODY)
        .read_to_string(&mut text);
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(&text) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| format!("{}: {}", i.code, i.message))
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let t = text.trim();
    if t.is_empty() {
        "no details".into()
    } else {
        t.chars().take(300).collect()
    }
}

/// Turns an error status into the error a user should see; other responses pass through.
pub(crate) fn check(
    ep: &Endpoint,
    method: &str,
    url: &str,
    what: &str,
    resp: ureq::Response,
) -> Result<ureq::Response, RegistryError> {
    let status = resp.status();
    if status < 400 {
        return Ok(resp);
    }
    let body = error_text(resp);
    Err(match status {
        403 => RegistryError::Denied {
            registry: ep.host.clone(),
            repository: what.to_owned(),
            reason: body,
        },
        404 => RegistryError::NotFound {
            registry: ep.host.clone(),
            what: format!("{what} ({body})"),
        },
        _ => RegistryError::Status {
            registry: ep.host.clone(),
            method: method.to_owned(),
            url: url.to_owned(),
            status,
            body,
        },
    })
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// `k="v", k2=v2` with commas allowed inside quotes.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    out
}

/// Resolves a `Location` header against the endpoint (it may be relative).
pub(crate) fn resolve_location(ep: &Endpoint, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{}{location}", ep.base)
    } else {
        format!("{}/{location}", ep.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_commas_in_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        let ep = Endpoint {
            base: "http://h:1".into(),
            host: "h:1".into(),
            mirror: false,
        };
        assert_eq!(resolve_location(&ep, "/v2/x?a=b"), "http://h:1/v2/x?a=b");
    }
}
