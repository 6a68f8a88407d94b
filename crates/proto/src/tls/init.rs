//! `kiln tls init DIR --san NAME...`: one CA, a server certificate with the given names (and
//! localhost, 127.0.0.1, ::1), and a client certificate for client authentication, written as
//! `DIR/server/{ca,cert,key}.pem` and `DIR/client/{ca,cert,key}.pem` so each side's directory
//! works as its `--tls-dir`. [`Authority`] is also how tests make certificates with odd
//! validity or from another CA.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::TlsError;

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clocks differ) for `days`.
    pub fn days(days: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// A CA that issues worker and client certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority")
    }
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn generate_error(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn named(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "kiln");
    dn
}

impl Authority {
    pub fn new(common_name: &str, validity: Validity) -> Result<Authority, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let key = KeyPair::generate().map_err(generate_error)?;
        let cert = params.self_signed(&key).map_err(generate_error)?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate, PEM: what each side's `ca.pem` holds.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A worker certificate for these names (DNS names or IP addresses).
    pub fn server(&self, sans: &[String], validity: Validity) -> Result<Issued, TlsError> {
        let name = sans.first().map_or("kiln worker", String::as_str);
        self.issue(name, sans, ExtendedKeyUsagePurpose::ServerAuth, validity)
    }

    /// A client certificate (for client authentication only).
    pub fn client(&self, common_name: &str, validity: Validity) -> Result<Issued, TlsError> {
        self.issue(
            common_name,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    fn issue(
        &self,
        common_name: &str,
        sans: &[String],
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(sans.to_vec()).map_err(generate_error)?;
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let key = KeyPair::generate().map_err(generate_error)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What [`init`] wrote.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub server_dir: PathBuf,
    pub client_dir: PathBuf,
    /// The names the server certificate is valid for.
    pub sans: Vec<String>,
    pub not_after: OffsetDateTime,
}

/// The names every server certificate gets besides the caller's.
pub const DEFAULT_SANS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Writes a fresh CA and a server and a client certificate under `dir`. Refuses to overwrite
/// any existing file. The CA is valid for ten years, the certificates for 825 days (the
/// longest server certificate lifetime common clients accept).
pub fn init(dir: &Path, sans: &[String]) -> Result<InitReport, TlsError> {
    let server_dir = dir.join("server");
    let client_dir = dir.join("client");
    for side in [&server_dir, &client_dir] {
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            if side.join(file).exists() {
                return Err(TlsError::Exists(side.join(file)));
            }
        }
    }
    let mut all: Vec<String> = sans.to_vec();
    for d in DEFAULT_SANS {
        if !all.iter().any(|s| s == d) {
            all.push((*d).to_string());
        }
    }
    // A name of its own per CA, so a certificate from another `kiln tls init` is reported as
    // an unknown issuer rather than as a bad signature from a CA of the same name.
    let ca = Authority::new(
        &format!("kiln CA {}", unique_suffix()),
        Validity::days(3650),
    )?;
    let validity = Validity::days(825);
    let server = ca.server(&all, validity)?;
    let client = ca.client("kiln client", validity)?;
    for (side, issued) in [(&server_dir, &server), (&client_dir, &client)] {
        std::fs::create_dir_all(side).map_err(|source| TlsError::Write {
            path: side.clone(),
            source,
        })?;
        write(&side.join("ca.pem"), ca.cert_pem(), 0o644)?;
        write(&side.join("cert.pem"), &issued.cert_pem, 0o644)?;
        write(&side.join("key.pem"), &issued.key_pem, 0o600)?;
    }
    Ok(InitReport {
        server_dir,
        client_dir,
        sans: all,
        not_after: validity.not_after,
    })
}

/// Eight hex digits that differ between runs (time and process id through sha256; nothing
/// secret depends on them).
fn unique_suffix() -> String {
    use sha2::Digest as _;
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let seed = format!("{now}-{}", std::process::id());
    hex_prefix(&sha2::Sha256::digest(seed.as_bytes()))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a new file with `mode` from the start (a key is never readable by others, not even
/// for a moment).
fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}
