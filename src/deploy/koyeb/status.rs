//! Koyeb deployment statuses (`Deployment.status` in API v1) mapped to what the job runner
//! understands. Every status Koyeb documents is listed explicitly; anything else is `Unknown`
//! so the runner waits a bounded time instead of guessing.
//!
//! | Koyeb status   | Phase     | Why |
//! |----------------|-----------|-----|
//! | PENDING        | Building  | queued, nothing built yet |
//! | PROVISIONING   | Building  | Koyeb builds / fetches the image in this stage |
//! | SCHEDULED      | Deploying | image ready, waiting for a placement |
//! | ALLOCATING     | Deploying | instances being allocated |
//! | STARTING       | Deploying | instances booting, health checks not passed yet |
//! | HEALTHY        | Live      | serving |
//! | DEGRADED       | Deploying | some instances failing health checks; Koyeb restarts them and it often returns to HEALTHY, and the runner's deadline bounds the wait |
//! | SLEEPING       | Live      | scaled to zero after being idle; the first request wakes it, so the app is reachable |
//! | UNHEALTHY      | Failed    | health checks keep failing |
//! | ERRORING       | Failed    | on its way to ERROR; the messages already say why |
//! | ERROR          | Failed    | |
//! | CANCELING      | Failed    | this deployment will not go live (canceled or superseded) |
//! | CANCELED       | Failed    | |
//! | STOPPING       | Failed    | stopped (superseded by a newer deployment, or paused) |
//! | STOPPED        | Failed    | |
//! | STASHED        | Failed    | superseded before it started |
//! | anything else  | Unknown   | |

/// Where a Koyeb deployment is, before the public URL is looked up for `Live`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Building,
    Deploying,
    Live,
    Failed(String),
    Unknown(String),
}

/// At most this many bytes of Koyeb's messages go into a failure reason.
const MAX_REASON: usize = 1000;

pub fn classify(status: &str, messages: &[String]) -> Phase {
    match status {
        "PENDING" | "PROVISIONING" => Phase::Building,
        "SCHEDULED" | "ALLOCATING" | "STARTING" | "DEGRADED" => Phase::Deploying,
        "HEALTHY" | "SLEEPING" => Phase::Live,
        "UNHEALTHY" | "ERRORING" | "ERROR" | "CANCELING" | "CANCELED" | "STOPPING" | "STOPPED"
        | "STASHED" => Phase::Failed(reason(status, messages)),
        other => Phase::Unknown(other.to_string()),
    }
}

/// Koyeb's own messages explain a failure best; the status is the fallback.
fn reason(status: &str, messages: &[String]) -> String {
    let joined = messages
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let text = if joined.is_empty() {
        format!("Koyeb deployment ended with status {status}")
    } else {
        format!("Koyeb deployment {status}: {joined}")
    };
    if text.len() <= MAX_REASON {
        return text;
    }
    // Keep the start: the status and the first (usually root-cause) message.
    let mut end = MAX_REASON;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_status_is_mapped() {
        let table = [
            ("PENDING", Phase::Building),
            ("PROVISIONING", Phase::Building),
            ("SCHEDULED", Phase::Deploying),
            ("ALLOCATING", Phase::Deploying),
            ("STARTING", Phase::Deploying),
            ("DEGRADED", Phase::Deploying),
            ("HEALTHY", Phase::Live),
            ("SLEEPING", Phase::Live),
        ];
        for (status, phase) in table {
            assert_eq!(classify(status, &[]), phase, "{status}");
        }
        for status in [
            "UNHEALTHY",
            "ERRORING",
            "ERROR",
            "CANCELING",
            "CANCELED",
            "STOPPING",
            "STOPPED",
            "STASHED",
        ] {
            assert!(
                matches!(classify(status, &[]), Phase::Failed(r) if r.contains(status)),
                "{status}"
            );
        }
        assert_eq!(
            classify("WIBBLE", &[]),
            Phase::Unknown("WIBBLE".to_string())
        );
        assert_eq!(classify("", &[]), Phase::Unknown(String::new()));
    }

    #[test]
    fn failure_reason_comes_from_messages() {
        let messages = vec!["Build failed".to_string(), " exit code 1 ".to_string()];
        assert_eq!(
            classify("ERROR", &messages),
            Phase::Failed("Koyeb deployment ERROR: Build failed; exit code 1".to_string())
        );
    }
}
