//! `[http]`: the connection-level limits every listener applies (`platform::http::ConnectionLimits`), and
//! `[gateway.http]`, the gateway's own values of them. The defaults follow nginx's where an API has no
//! reason to differ (`keepalive_timeout` 75 s, `send_timeout` and `client_body_timeout` 60 s,
//! `large_client_header_buffers` 4 × 8 KiB); the header timeout is shorter than nginx's 60 s, since an API
//! client sends its head at once.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Longest time a request head may take to arrive, counted from its first byte (from the accept for
    /// a connection's first request).
    pub header_read_timeout_ms: u64,
    /// Longest a keep-alive connection may sit idle between a response and the next request.
    pub keep_alive_timeout_ms: u64,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout_ms: u64,
    /// Longest a response write may make no progress (a client that does not read).
    pub write_timeout_ms: u64,
    /// Connections served at once by one listener; further ones are closed as soon as accepted.
    pub max_connections: usize,
    /// Largest request head (request line and headers); 431 beyond it.
    pub max_head_bytes: usize,
    /// Longest request target (path and query); 414 beyond it.
    pub max_uri_bytes: usize,
}

/// Longest timeout a setting may name: ten minutes.
const MAX_TIMEOUT_MS: u64 = 600_000;

impl HttpSettings {
    /// These settings with every non-zero value of `overrides` put in their place: how
    /// `[gateway.http]` (where 0 means "as `[http]`") applies to `[http]`.
    pub fn overridden_by(&self, overrides: &HttpSettings) -> HttpSettings {
        let pick_ms = |own: u64, other: u64| if other == 0 { own } else { other };
        let pick = |own: usize, other: usize| if other == 0 { own } else { other };
        HttpSettings {
            header_read_timeout_ms: pick_ms(
                self.header_read_timeout_ms,
                overrides.header_read_timeout_ms,
            ),
            keep_alive_timeout_ms: pick_ms(
                self.keep_alive_timeout_ms,
                overrides.keep_alive_timeout_ms,
            ),
            body_read_timeout_ms: pick_ms(
                self.body_read_timeout_ms,
                overrides.body_read_timeout_ms,
            ),
            write_timeout_ms: pick_ms(self.write_timeout_ms, overrides.write_timeout_ms),
            max_connections: pick(self.max_connections, overrides.max_connections),
            max_head_bytes: pick(self.max_head_bytes, overrides.max_head_bytes),
            max_uri_bytes: pick(self.max_uri_bytes, overrides.max_uri_bytes),
        }
    }

    /// Every rule these settings break, as `(prefix.key, rule)`.
    pub(super) fn issues(&self, prefix: &str) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut check = |ok: bool, key: &str, rule: String| {
            if !ok {
                issues.push((format!("{prefix}.{key}"), rule));
            }
        };
        for (key, value) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("keep_alive_timeout_ms", self.keep_alive_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
        ] {
            check(
                (1..=MAX_TIMEOUT_MS).contains(&value),
                key,
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            );
        }
        check(
            (1..=1_000_000).contains(&self.max_connections),
            "max_connections",
            "must be between 1 and 1000000".into(),
        );
        check(
            (1024..=1_048_576).contains(&self.max_head_bytes),
            "max_head_bytes",
            "must be between 1024 and 1048576".into(),
        );
        check(
            (256..=self.max_head_bytes).contains(&self.max_uri_bytes),
            "max_uri_bytes",
            format!("must be between 256 and {prefix}.max_head_bytes"),
        );
        issues
    }

    /// The rules `[gateway.http]` breaks: those of the values it sets, checked together with the
    /// `[http]` values it keeps.
    pub(super) fn override_issues(&self, base: &HttpSettings) -> Vec<(String, String)> {
        let set = [
            ("header_read_timeout_ms", self.header_read_timeout_ms != 0),
            ("keep_alive_timeout_ms", self.keep_alive_timeout_ms != 0),
            ("body_read_timeout_ms", self.body_read_timeout_ms != 0),
            ("write_timeout_ms", self.write_timeout_ms != 0),
            ("max_connections", self.max_connections != 0),
            ("max_head_bytes", self.max_head_bytes != 0),
            ("max_uri_bytes", self.max_uri_bytes != 0),
        ];
        base.overridden_by(self)
            .issues("gateway.http")
            .into_iter()
            .filter(|(key, _)| {
                set.iter()
                    .any(|(name, set)| *set && key.ends_with(&format!(".{name}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::{ConfigSources, load};

    fn sources(env: &[(&str, &str)]) -> ConfigSources {
        ConfigSources {
            file: None,
            config_dir: PathBuf::from("/nonexistent"),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_gateway_keeps_the_shared_limits_except_those_it_sets() {
        let loaded = load(&sources(&[]), &[]).unwrap_or_else(|e| panic!("{e}"));
        let settings = &loaded.settings;
        assert_eq!(
            settings.http.overridden_by(&settings.gateway.http),
            settings.http
        );
        assert_eq!(settings.http.max_connections, 10_000);

        let loaded = load(
            &sources(&[("LOGICORE_GATEWAY__HTTP__MAX_CONNECTIONS", "50")]),
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let settings = &loaded.settings;
        let gateway = settings.http.overridden_by(&settings.gateway.http);
        assert_eq!(gateway.max_connections, 50);
        assert_eq!(
            gateway.header_read_timeout_ms,
            settings.http.header_read_timeout_ms
        );
        assert_eq!(settings.http.max_connections, 10_000);
    }

    #[test]
    fn broken_limits_are_reported_under_the_key_that_set_them() {
        let Err(error) = load(
            &sources(&[
                ("LOGICORE_HTTP__HEADER_READ_TIMEOUT_MS", "0"),
                ("LOGICORE_HTTP__MAX_URI_BYTES", "100000"),
                ("LOGICORE_GATEWAY__HTTP__MAX_HEAD_BYTES", "10"),
            ]),
            &[],
        ) else {
            panic!("the limits were accepted");
        };
        let mut keys: Vec<&str> = error.issues.iter().map(|i| i.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "gateway.http.max_head_bytes",
                "http.header_read_timeout_ms",
                "http.max_uri_bytes"
            ]
        );
    }
}
