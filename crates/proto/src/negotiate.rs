//! The protocol version rule: each side speaks an inclusive range of protocol numbers, `Info`
//! picks the highest number in both, and ranges that do not meet are a clear error.

use crate::v1::{InfoRequest, InfoResponse};

/// The oldest protocol this build of kiln speaks.
pub const MIN_PROTOCOL: u32 = 1;
/// The newest protocol this build of kiln speaks.
pub const MAX_PROTOCOL: u32 = 2;

/// An inclusive range of protocol numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u32,
    pub max: u32,
}

/// This build's range.
pub const OURS: Range = Range {
    min: MIN_PROTOCOL,
    max: MAX_PROTOCOL,
};

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..={}", self.min, self.max)
        }
    }
}

/// Why client and worker cannot talk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error(
        "the worker speaks kiln protocol {worker} and this client {client}: {}",
        upgrade_hint(*client, *worker)
    )]
    Disjoint { client: Range, worker: Range },
    #[error("invalid protocol range {0} (min above max)")]
    Invalid(Range),
    #[error("the worker chose protocol {chosen}, outside this client's range {client}")]
    BadChoice { chosen: u32, client: Range },
}

fn upgrade_hint(client: Range, worker: Range) -> &'static str {
    if client.max < worker.min {
        "upgrade this kiln"
    } else {
        "upgrade the worker's kiln"
    }
}

/// The highest protocol in both ranges (the worker's side of `Info`).
pub fn choose(client: Range, worker: Range) -> Result<u32, NegotiationError> {
    for r in [client, worker] {
        if r.min > r.max {
            return Err(NegotiationError::Invalid(r));
        }
    }
    let chosen = client.max.min(worker.max);
    if chosen < client.min.max(worker.min) {
        return Err(NegotiationError::Disjoint { client, worker });
    }
    Ok(chosen)
}

/// The `Info` request a client sends.
pub fn info_request(client_version: &str) -> InfoRequest {
    InfoRequest {
        min_protocol: MIN_PROTOCOL,
        max_protocol: MAX_PROTOCOL,
        client_version: client_version.to_string(),
    }
}

/// The client's check of the worker's `Info` answer: the protocol both will speak.
pub fn check_response(response: &InfoResponse) -> Result<u32, NegotiationError> {
    let worker = Range {
        min: response.min_protocol,
        max: response.max_protocol,
    };
    let chosen = choose(OURS, worker)?;
    if response.protocol != chosen {
        return Err(NegotiationError::BadChoice {
            chosen: response.protocol,
            client: OURS,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: u32, max: u32) -> Range {
        Range { min, max }
    }

    #[test]
    fn picks_the_highest_common_protocol() {
        assert_eq!(choose(r(1, 3), r(2, 5)), Ok(3));
        assert_eq!(choose(r(2, 5), r(1, 3)), Ok(3));
        assert_eq!(choose(r(1, 1), r(1, 1)), Ok(1));
    }

    #[test]
    fn disjoint_ranges_say_who_must_upgrade() {
        let old_client = choose(r(1, 1), r(2, 3)).unwrap_err();
        assert_eq!(
            old_client.to_string(),
            "the worker speaks kiln protocol 2..=3 and this client 1: upgrade this kiln"
        );
        let old_worker = choose(r(3, 4), r(1, 2)).unwrap_err();
        assert!(
            old_worker
                .to_string()
                .ends_with("upgrade the worker's kiln")
        );
        assert!(matches!(
            choose(r(2, 1), r(1, 1)),
            Err(NegotiationError::Invalid(_))
        ));
    }

    #[test]
    fn a_worker_choosing_outside_our_range_is_refused() {
        let mut response = InfoResponse {
            min_protocol: 1,
            max_protocol: 1,
            protocol: 1,
            ..Default::default()
        };
        assert_eq!(check_response(&response), Ok(1));
        response.protocol = 7;
        assert!(matches!(
            check_response(&response),
            Err(NegotiationError::BadChoice { chosen: 7, .. })
        ));
    }
}
