//! Handshake failures in plain words. rustls reports what went wrong precisely (a certificate
//! error on the side that checked, an alert on the side that was refused); this module maps
//! both to one cause and says which side's certificate is at fault and what to do about it.

use std::error::Error as StdError;
use std::io;

use rustls::{AlertDescription, CertificateError, InvalidMessage};

/// Whose certificate a failure is about, from the point of view of the side reporting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The worker (`kiln serve`).
    Worker,
    /// The client (`kiln build --builder`).
    Client,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Peer::Worker => "the worker",
            Peer::Client => "the client",
        })
    }
}

/// Why a TLS handshake failed. `cert` is whose certificate was refused; `refused_by` who refused
/// it (so the side that reports it knows whether to fix its own files or the peer's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    #[error(
        "unknown CA: {refused_by} does not trust {cert}'s certificate (it was not issued by the CA in {refused_by_possessive} ca.pem)",
        refused_by_possessive = possessive(*refused_by)
    )]
    UnknownCa { cert: Peer, refused_by: Peer },
    #[error("expired certificate: {cert}'s certificate {detail}")]
    Expired { cert: Peer, detail: String },
    #[error("certificate not valid yet: {cert}'s certificate {detail}")]
    NotYetValid { cert: Peer, detail: String },
    #[error(
        "no client certificate: the worker requires one (give the client's --tls-dir with cert.pem and key.pem)"
    )]
    NoClientCertificate,
    #[error(
        "name mismatch: the worker's certificate is for {presented}, not {expected:?} (connect by one of those names, or add {expected:?} with `kiln tls init --san`)"
    )]
    NameMismatch { expected: String, presented: String },
    #[error("bad certificate: {refused_by} refused {cert}'s certificate ({reason})")]
    Refused {
        cert: Peer,
        refused_by: Peer,
        reason: String,
    },
    #[error("plaintext spoken to a TLS port: the worker requires TLS (give the client --tls-dir)")]
    PlaintextToTls,
    #[error(
        "TLS spoken to a plaintext port: the worker does not use TLS here (drop --tls-dir, or start the worker with --tls-dir)"
    )]
    TlsToPlaintext,
    #[error("the TLS handshake did not finish within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the connection closed during the TLS handshake ({0})")]
    Closed(String),
    #[error("TLS handshake failed: {0}")]
    Other(String),
}

fn possessive(p: Peer) -> &'static str {
    match p {
        Peer::Worker => "the worker's",
        Peer::Client => "the client's",
    }
}

/// The marker a kiln TLS port sends to a plaintext HTTP/2 client (in a GOAWAY frame's debug
/// data), so the client can tell "plaintext to a TLS port" apart from other broken connections.
pub(super) const PLAINTEXT_MARKER: &str = "kiln: this port speaks TLS";

fn time_detail(
    verb: &str,
    at: rustls_pki_types::UnixTime,
    now: rustls_pki_types::UnixTime,
) -> String {
    format!("{verb} {} (it is now {})", rfc3339(at), rfc3339(now))
}

fn rfc3339(t: rustls_pki_types::UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} seconds after 1970"))
}

impl HandshakeFailure {
    /// Classifies a rustls error seen by `me` (the side whose handshake failed).
    pub fn from_rustls(error: &rustls::Error, me: Peer) -> HandshakeFailure {
        let peer = match me {
            Peer::Worker => Peer::Client,
            Peer::Client => Peer::Worker,
        };
        match error {
            rustls::Error::InvalidCertificate(cert_error) => from_cert_error(cert_error, peer, me),
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
            rustls::Error::AlertReceived(alert) => from_alert(*alert, me, peer),
            rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => match me {
                // A client reading something that is not TLS: the worker speaks plaintext.
                Peer::Client => HandshakeFailure::TlsToPlaintext,
                Peer::Worker => HandshakeFailure::PlaintextToTls,
            },
            other => HandshakeFailure::Other(other.to_string()),
        }
    }

    /// Classifies an I/O error of a handshake (rustls errors come wrapped in one).
    pub fn from_io(error: &io::Error, me: Peer) -> HandshakeFailure {
        if let Some(tls) = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            return HandshakeFailure::from_rustls(tls, me);
        }
        match error.kind() {
            io::ErrorKind::UnexpectedEof => HandshakeFailure::Closed(match me {
                Peer::Client => {
                    "the worker hung up without a TLS answer: is it listening without TLS?".into()
                }
                Peer::Worker => "the client hung up".into(),
            }),
            io::ErrorKind::ConnectionReset => HandshakeFailure::Closed(error.to_string()),
            _ => HandshakeFailure::Other(error.to_string()),
        }
    }
}

fn from_cert_error(e: &CertificateError, cert: Peer, refused_by: Peer) -> HandshakeFailure {
    match e {
        // A CA with the same name but another key (two `kiln tls init` runs before names were
        // unique) makes the signature check fail instead of the issuer lookup: same cause.
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            HandshakeFailure::UnknownCa { cert, refused_by }
        }
        CertificateError::ExpiredContext { time, not_after } => HandshakeFailure::Expired {
            cert,
            detail: time_detail("expired at", *not_after, *time),
        },
        CertificateError::Expired => HandshakeFailure::Expired {
            cert,
            detail: "has expired".into(),
        },
        CertificateError::NotValidYetContext { time, not_before } => {
            HandshakeFailure::NotYetValid {
                cert,
                detail: time_detail("is valid from", *not_before, *time),
            }
        }
        CertificateError::NotValidYet => HandshakeFailure::NotYetValid {
            cert,
            detail: "is not valid yet".into(),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => HandshakeFailure::NameMismatch {
            expected: expected.to_str().into_owned(),
            presented: if presented.is_empty() {
                "no names".into()
            } else {
                presented.join(", ")
            },
        },
        CertificateError::NotValidForName => HandshakeFailure::NameMismatch {
            expected: "the address used".into(),
            presented: "other names".into(),
        },
        other => HandshakeFailure::Refused {
            cert,
            refused_by,
            reason: format!("{other:?}"),
        },
    }
}

/// An alert means the *peer* refused *our* certificate (or our lack of one).
fn from_alert(alert: AlertDescription, me: Peer, peer: Peer) -> HandshakeFailure {
    match alert {
        AlertDescription::UnknownCA => HandshakeFailure::UnknownCa {
            cert: me,
            refused_by: peer,
        },
        AlertDescription::CertificateExpired => HandshakeFailure::Expired {
            cert: me,
            detail: format!("has expired or is not valid yet ({peer} says so)"),
        },
        AlertDescription::CertificateRequired => HandshakeFailure::NoClientCertificate,
        AlertDescription::HandshakeFailure if me == Peer::Client => {
            // TLS 1.2 servers say this for a missing client certificate.
            HandshakeFailure::Refused {
                cert: me,
                refused_by: peer,
                reason:
                    "handshake_failure alert: a missing client certificate, or no common cipher"
                        .into(),
            }
        }
        other => HandshakeFailure::Refused {
            cert: me,
            refused_by: peer,
            reason: format!("{other:?} alert"),
        },
    }
}

/// Finds the handshake cause behind a failed RPC or connection on the client (for a client
/// certificate the worker refuses, TLS 1.3 reports it only on the first read after the
/// handshake, so it arrives as a failed call rather than a failed connect). `None` when the
/// error has nothing to do with TLS.
pub fn classify_status(error: &(dyn StdError + 'static)) -> Option<HandshakeFailure> {
    let mut text = String::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(f) = e.downcast_ref::<HandshakeFailure>() {
            return Some(f.clone());
        }
        if let Some(f) = e.downcast_ref::<super::ConnectError>()
            && let super::ConnectError::Handshake { failure, .. } = f
        {
            return Some(failure.clone());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(HandshakeFailure::from_rustls(tls, Peer::Client));
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(HandshakeFailure::from_rustls(tls, Peer::Client));
            }
            if let Some(f) = inner.downcast_ref::<HandshakeFailure>() {
                return Some(f.clone());
            }
        }
        text.push_str(&e.to_string());
        text.push('\n');
        current = e.source();
    }
    if text.contains(PLAINTEXT_MARKER) {
        return Some(HandshakeFailure::PlaintextToTls);
    }
    None
}
