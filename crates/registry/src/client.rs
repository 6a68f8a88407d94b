//! The HTTP side of the distribution API: one agent, auth challenges answered with basic
//! credentials or bearer tokens (cached per registry and scope), and retries of transient
//! failures with bodies that can be replayed.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::{Endpoint, RegistryConfig};
use crate::credentials::{Credential, DockerConfig};
use crate::error::{Cause, RegistryError};

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
    /// Attempts per request for transient failures; for a blob download, consecutive
    /// failures without progress (a resumed download that moves on starts counting afresh).
    pub attempts: u32,
}

/// How long a connection may make no progress (connecting, or between two reads or writes)
/// before it counts as failed and is retried or resumed. `KILN_REGISTRY_TIMEOUT` (seconds)
/// overrides it, for slow links and for tests of stalled registries.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

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
        Client::with_stall_timeout(config, docker_config, DEFAULT_STALL_TIMEOUT)
    }

    /// A client whose connections fail after `stall` without progress.
    pub fn with_stall_timeout(
        config: RegistryConfig,
        docker_config: DockerConfig,
        stall: Duration,
    ) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(stall.min(Duration::from_secs(30)))
            .timeout_read(stall)
            .timeout_write(stall)
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

    /// A client with the default config file and docker credentials, and the stall timeout
    /// from `KILN_REGISTRY_TIMEOUT` (seconds) when set.
    pub fn from_env() -> Result<Client, RegistryError> {
        let stall = match std::env::var("KILN_REGISTRY_TIMEOUT") {
            Ok(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e7)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| RegistryError::Config {
                    path: "KILN_REGISTRY_TIMEOUT".into(),
                    source: format!("{v:?} is not a number of seconds").into(),
                })?,
            Err(_) => DEFAULT_STALL_TIMEOUT,
        };
        Ok(Client::with_stall_timeout(
            RegistryConfig::load_default()?,
            DockerConfig::default_location(),
            stall,
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
        self.send_attempts(ep, scope, method, url, headers, body, self.attempts)
    }

    /// [`Client::send`] with at most `attempts` tries. Requests that are not safe to repeat
    /// as they are (an upload's `PATCH`, whose first try may have reached the registry in
    /// part) pass 1 and recover by asking the registry where the upload stands.
    #[allow(clippy::too_many_arguments)]
    pub fn send_attempts(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        attempts: u32,
    ) -> Result<ureq::Response, RegistryError> {
        let attempts = attempts.max(1);
        let mut attempt = 0;
        let mut answered_challenge = false;
        loop {
            attempt += 1;
            let auth = self.authorization(ep, scope)?;
            let result = self.send_once(ep, method, url, headers, auth.as_deref(), body);
            let resp = match result {
                Ok(resp) => resp,
                Err(e) if e.is_transient() && attempt < attempts => {
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
            if (status == 429 || status >= 500) && attempt < attempts {
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
        // The token service is a server like any other: transient failures are retried.
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match req.clone().call() {
                Err(ureq::Error::Transport(_)) if attempt < self.attempts => backoff(attempt),
                Err(ureq::Error::Status(status, _))
                    if (status == 429 || status >= 500) && attempt < self.attempts =>
                {
                    backoff(attempt)
                }
                other => break other,
            }
        };
        let resp = match result {
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
        let mut text = Vec::new();
        resp.into_reader()
            .take(MAX_SMALL_BODY)
            .read_to_end(&mut text)
            .map_err(|e| RegistryError::Transport {
                registry: ep.host.clone(),
                url: realm.to_owned(),
                source: Box::new(e),
            })?;
        parse_token(&text).map_err(|(reason, source)| RegistryError::Unauthorized {
            registry: ep.host.clone(),
            reason: reason.into(),
            source,
        })
    }
}

/// The token in a token service's answer (`token`, else `access_token`, as the spec allows).
pub(crate) fn parse_token(text: &[u8]) -> Result<String, (&'static str, Option<Cause>)> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(text).map_err(|e| {
        (
            "the token service answered with invalid json",
            Some(Box::new(e) as Cause),
        )
    })?;
    let token = a
        .token
        .or(a.access_token)
        .filter(|t| !t.is_empty())
        .ok_or(("the token service answered without a token", None))?;
    // The token goes into an `Authorization` header: anything but visible ASCII could end
    // the header early or add one, so it is refused rather than sent.
    if !token.bytes().all(|b| b.is_ascii_graphic()) || token.len() > MAX_SMALL_BODY as usize {
        return Err((
            "the token service answered with a token that is not printable ascii",
            None,
        ));
    }
    Ok(token)
}

/// Waits before try `attempt + 1`: 0.4 s, 0.8 s, 1.6 s, ... up to 6.4 s.
pub(crate) fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(200 << attempt.clamp(1, 5)));
}

/// The start of an error body, for messages (registries answer with JSON `errors`).
pub(crate) fn error_text(resp: ureq::Response) -> String {
    let mut text = Vec::new();
    let _ = resp
        .into_reader()
        .take(MAX_SMALL_BODY)
        .read_to_end(&mut text);
    error_text_of(&text)
}

/// [`error_text`] of a body already read: the `errors` array's codes and messages, else the
/// start of the text.
pub(crate) fn error_text_of(body: &[u8]) -> String {
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
    let body = &body[..body.len().min(MAX_SMALL_BODY as usize)];
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .take(20)
            .map(|i| {
                let item = format!("{}: {}", i.code, i.message);
                item.chars().take(300).collect()
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    if t.is_empty() {
        "no details".into()
    } else {
        t.chars()
            .take(300)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
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

/// [`parse_challenge`] in plain types, for the fuzz targets.
pub(crate) fn fuzz_challenge(header: &str) -> Option<(bool, String, Option<String>)> {
    parse_challenge(header).map(|c| match c {
        Challenge::Basic => (false, String::new(), None),
        Challenge::Bearer { realm, service } => (true, realm, service),
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
    // The token service is fetched with the user's credentials: only an http(s) URL will do.
    let realm = params
        .get("realm")
        .filter(|r| r.starts_with("https://") || r.starts_with("http://"))?
        .clone();
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
