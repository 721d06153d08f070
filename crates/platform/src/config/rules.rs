//! Rules that hold for every key of a kind, whatever section it is in: ports, timeouts, percentages, body limits and
//! listener ports that must not clash. They run on the merged tree by key name, so a port or timeout added
//! to any section later is covered without a line here.

use super::tree;

/// Sections whose ports name servers LogiCore connects to, not ports it listens on.
const CLIENT_SECTIONS: &[&str] = &["database", "redis", "discovery"];
/// `PORT`: replaces the port of the one service a single-service command runs, so it clashes with nothing.
const SINGLE_SERVICE_PORT: &str = "service.port";
/// Sections whose keys override another section's, 0 meaning "inherit": `gateway.http` over `http`.
const INHERITING_SECTIONS: &[&str] = &["gateway.http."];

fn last_segment(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

fn is_port(key: &str) -> bool {
    let name = last_segment(key);
    name == "port" || name.ends_with("_port")
}

fn is_timeout(key: &str) -> bool {
    let name = last_segment(key);
    name.starts_with("timeout_") || name.contains("_timeout_")
}

fn is_percent(key: &str) -> bool {
    last_segment(key).ends_with("_percent")
}

/// A listener's body limit (`gateway.max_body_bytes`, `<service>.max_body_bytes`).
fn is_body_limit(key: &str) -> bool {
    last_segment(key) == "max_body_bytes"
}

/// The range rule an integer at `key` breaks, if any. Every number LogiCore reads is unsigned.
fn number_rule(key: &str, value: i64) -> Option<&'static str> {
    if is_port(key) {
        (!(1..=65_535).contains(&value)).then_some("must be between 1 and 65535")
    } else if is_timeout(key) {
        (value <= 0).then_some("must be positive")
    } else if is_percent(key) {
        (!(0..=100).contains(&value)).then_some("must be between 0 and 100")
    } else if is_body_limit(key) {
        // Below a kilobyte even an ordinary JSON request would be refused.
        (value < 1024).then_some("must be at least 1024")
    } else {
        (value < 0).then_some("must not be negative")
    }
}

/// Every integer leaf that breaks its kind's range, as `(dotted key, rule)`.
pub(super) fn numbers(table: &toml::Table) -> Vec<(String, String)> {
    tree::leaves(table)
        .into_iter()
        .filter_map(|(key, value)| {
            let number = value.as_integer()?;
            if number == 0 && INHERITING_SECTIONS.iter().any(|s| key.starts_with(s)) {
                return None;
            }
            let rule = number_rule(&key, number)?;
            Some((key, rule.to_owned()))
        })
        .collect()
}

/// Listener ports set to the same number (`logicore all` binds them all in one process), as
/// `(dotted key, rule)` naming the key it clashes with.
pub(super) fn listener_clashes(table: &toml::Table) -> Vec<(String, String)> {
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut clashes = Vec::new();
    for (key, value) in tree::leaves(table) {
        let section = key.split('.').next().unwrap_or_default();
        if !is_port(&key) || CLIENT_SECTIONS.contains(&section) || key == SINGLE_SERVICE_PORT {
            continue;
        }
        let Some(port) = value.as_integer() else {
            continue;
        };
        match seen.iter().find(|(_, other)| *other == port) {
            Some((other_key, _)) => clashes.push((
                key.clone(),
                format!("must differ from {other_key}: both listen on port {port}"),
            )),
            None => seen.push((key, port)),
        }
    }
    clashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified_by_their_name() {
        assert!(is_port("gateway.admin_port"));
        assert!(is_port("users.port"));
        assert!(!is_port("gateway.report"));
        assert!(is_timeout("gateway.circuit_breaker.timeout_ms"));
        assert!(is_timeout("database.acquire_timeout_ms"));
        assert!(is_percent("gateway.retry.budget_percent"));
        assert_eq!(
            number_rule("users.port", 0),
            Some("must be between 1 and 65535")
        );
        assert_eq!(number_rule("users.port", 65_535), None);
        assert_eq!(number_rule("a.pool_max", -1), Some("must not be negative"));
        assert_eq!(
            number_rule("depot.max_body_bytes", 1023),
            Some("must be at least 1024")
        );
        assert_eq!(number_rule("gateway.max_body_bytes", 1024), None);
    }
}
