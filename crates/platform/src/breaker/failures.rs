//! Which call outcomes count against a breaker (and, in the gateway, against an instance's health).
//!
//! The rule: count what says the *service* is unwell, never what one request's content provoked. A
//! connection that cannot be made, a deadline missed, a broken connection, and 502/503/504 (the service or
//! something in front of it says it cannot serve right now) are the service's state. A 4xx is the caller's
//! own fault, and a plain 500 is usually one request's bad luck (an input the handler did not expect): if
//! 500s counted, one client sending ten bad requests would open the breaker for every user.

/// What a finished call amounted to, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Done, for a caller that has no status code to report.
    Success,
    /// No connection could be made.
    ConnectError,
    Timeout,
    /// The service answered with this HTTP status.
    Status(u16),
    /// Anything else that went wrong on the way (a broken connection, a malformed answer): the service
    /// or the path to it is unwell, so it always counts.
    OtherError,
}

/// Status codes that may be named: the client and server error ranges.
const FIRST_STATUS: u16 = 400;
const LAST_STATUS: u16 = 599;

/// What `gateway.circuit_breaker.failure_on` holds unless configured otherwise.
pub const DEFAULT_FAILURE_ON: &[&str] = &["connect", "timeout", "502", "503", "504"];

/// Which outcomes count as failures; built from names such as `connect`, `timeout`, `503` or `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureKinds {
    connect_errors: bool,
    timeouts: bool,
    /// One bit per status code from [`FIRST_STATUS`] to [`LAST_STATUS`].
    statuses: [u64; 4],
}

impl Default for FailureKinds {
    fn default() -> Self {
        match Self::from_names(DEFAULT_FAILURE_ON) {
            Ok(kinds) => kinds,
            Err(e) => unreachable!("the default failure kinds parse: {e}"),
        }
    }
}

impl FailureKinds {
    /// Parses names as configured: `connect`, `timeout`, a status code from 400 to 599, or a class `4xx`
    /// or `5xx` meaning every code in it.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut kinds = Self {
            connect_errors: false,
            timeouts: false,
            statuses: [0; 4],
        };
        for name in names {
            let name = name.as_ref();
            let codes = match name {
                "connect" => {
                    kinds.connect_errors = true;
                    continue;
                }
                "timeout" => {
                    kinds.timeouts = true;
                    continue;
                }
                "4xx" => 400..=499,
                "5xx" => 500..=599,
                code => match code.parse::<u16>() {
                    Ok(code) if (FIRST_STATUS..=LAST_STATUS).contains(&code) => code..=code,
                    _ => {
                        return Err(format!(
                            "unknown failure kind {name:?}: use connect, timeout, 4xx, 5xx or a status code from 400 to 599"
                        ));
                    }
                },
            };
            for code in codes {
                let bit = usize::from(code - FIRST_STATUS);
                kinds.statuses[bit / 64] |= 1 << (bit % 64);
            }
        }
        Ok(kinds)
    }

    pub fn is_failure(&self, outcome: CallOutcome) -> bool {
        match outcome {
            CallOutcome::Success => false,
            CallOutcome::ConnectError => self.connect_errors,
            CallOutcome::Timeout => self.timeouts,
            CallOutcome::Status(code) if (FIRST_STATUS..=LAST_STATUS).contains(&code) => {
                let bit = usize::from(code - FIRST_STATUS);
                self.statuses[bit / 64] & (1 << (bit % 64)) != 0
            }
            CallOutcome::Status(_) => false,
            CallOutcome::OtherError => true,
        }
    }
}
