//! Test switches read from `settings.demo` of a request.
//!
//! They let gateway tests provoke every upstream behaviour (slow streams,
//! missing final events, broken connections, ...) deterministically.
//! Unknown keys and values of the wrong type are ignored.

use serde_json::Value;
use std::time::Duration;

/// Upstream sends a KeepAlive every 30 s.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Pause between planned events, so a UI sees progress arrive.
pub const DEFAULT_EVENT_DELAY: Duration = Duration::from_millis(150);
/// Upstream closes ~0.5 s after the idle event; a little is enough here.
pub const CLOSE_DELAY: Duration = Duration::from_millis(100);
/// Upper bound for delays, so timer arithmetic can never overflow.
pub const MAX_DELAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Upper bound for `hugeEventBytes`, to keep a typo from exhausting memory.
pub const MAX_HUGE_EVENT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Switches {
    pub event_delay: Duration,
    pub keep_alive: Duration,
    pub no_final_event: bool,
    pub hang: bool,
    pub invalid_json: bool,
    pub huge_event_bytes: Option<usize>,
    pub http_status: Option<u16>,
    pub runtime_error: bool,
    pub double_idle: bool,
    pub drop_after_events: Option<u64>,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            event_delay: DEFAULT_EVENT_DELAY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            no_final_event: false,
            hang: false,
            invalid_json: false,
            huge_event_bytes: None,
            http_status: None,
            runtime_error: false,
            double_idle: false,
            drop_after_events: None,
        }
    }
}

impl Switches {
    /// Reads `settings.demo`; anything missing keeps its default.
    pub fn from_settings(settings: Option<&Value>) -> Self {
        let mut s = Self::default();
        let Some(demo) = settings
            .and_then(|v| v.get("demo"))
            .and_then(Value::as_object)
        else {
            return s;
        };
        let num = |k: &str| demo.get(k).and_then(Value::as_u64);
        let millis = |k: &str| num(k).map(|ms| ms.min(MAX_DELAY_MS));
        let flag = |k: &str| demo.get(k).and_then(Value::as_bool).unwrap_or(false);
        if let Some(ms) = millis("eventDelayMs") {
            s.event_delay = Duration::from_millis(ms);
        }
        if let Some(ms) = millis("keepAliveMs") {
            // A zero period would spin; 1 ms is the floor.
            s.keep_alive = Duration::from_millis(ms.max(1));
        }
        s.no_final_event = flag("noFinalEvent");
        s.hang = flag("hang");
        s.invalid_json = flag("invalidJson");
        s.huge_event_bytes = num("hugeEventBytes")
            .map(|n| n.min(MAX_HUGE_EVENT_BYTES))
            .and_then(|n| usize::try_from(n).ok());
        s.http_status = num("httpStatus")
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..=999).contains(n));
        s.runtime_error = flag("runtimeError");
        s.double_idle = flag("doubleIdle");
        s.drop_after_events = num("dropAfterEvents");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_without_settings() {
        assert_eq!(Switches::from_settings(None), Switches::default());
        let other = json!({"max-iterations": 3});
        assert_eq!(Switches::from_settings(Some(&other)), Switches::default());
    }

    #[test]
    fn reads_every_switch() {
        let settings = json!({"demo": {
            "eventDelayMs": 5, "keepAliveMs": 0, "noFinalEvent": true, "hang": true,
            "invalidJson": true, "hugeEventBytes": 1000, "httpStatus": 500,
            "runtimeError": true, "doubleIdle": true, "dropAfterEvents": 2
        }});
        let s = Switches::from_settings(Some(&settings));
        assert_eq!(s.event_delay, Duration::from_millis(5));
        assert_eq!(s.keep_alive, Duration::from_millis(1));
        assert!(s.no_final_event && s.hang && s.invalid_json && s.runtime_error && s.double_idle);
        assert_eq!(s.huge_event_bytes, Some(1000));
        assert_eq!(s.http_status, Some(500));
        assert_eq!(s.drop_after_events, Some(2));
    }

    #[test]
    fn huge_delays_are_capped() {
        let settings = json!({"demo": {"eventDelayMs": u64::MAX, "keepAliveMs": u64::MAX}});
        let s = Switches::from_settings(Some(&settings));
        assert_eq!(s.event_delay, Duration::from_millis(MAX_DELAY_MS));
        assert_eq!(s.keep_alive, Duration::from_millis(MAX_DELAY_MS));
    }

    #[test]
    fn wrong_types_are_ignored() {
        let settings = json!({"demo": {"eventDelayMs": "5", "hang": "yes", "httpStatus": 70000}});
        assert_eq!(
            Switches::from_settings(Some(&settings)),
            Switches::default()
        );
    }
}
