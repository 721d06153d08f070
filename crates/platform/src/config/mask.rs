//! Masking of secrets wherever configuration values are printed or logged.

/// Key names whose values are secrets.
const SECRET_KEY_PARTS: &[&str] = &["password", "secret", "token", "api_key"];
const MASK: &str = "********";

/// Whether a dotted key holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    SECRET_KEY_PARTS.iter().any(|part| leaf.contains(part))
}

/// A value as it may be shown: secrets masked (empty ones shown as unset), credentials removed from URLs.
pub fn mask_value(key: &str, value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) if is_secret_key(key) => {
            if s.is_empty() {
                "\"\" (unset)".to_owned()
            } else {
                format!("\"{MASK}\"")
            }
        }
        toml::Value::String(s) => format!("{:?}", masked_url(s)),
        toml::Value::Array(items) => {
            let shown: Vec<String> = items.iter().map(|item| mask_value(key, item)).collect();
            format!("[{}]", shown.join(", "))
        }
        other => other.to_string(),
    }
}

/// A URL with its password replaced by a mask; anything that is not a URL with credentials is returned as is.
pub fn masked_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot carry one, which a URL with a password can.
            let _ = parsed.set_password(Some(MASK));
            parsed.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_and_the_rest_kept() {
        let shown = masked_url("postgres://app:hunter2@db:5432/logicore");
        assert_eq!(shown, "postgres://app:********@db:5432/logicore");
        assert_eq!(masked_url("http://127.0.0.1:4001"), "http://127.0.0.1:4001");
        assert_eq!(masked_url("not a url"), "not a url");
    }

    #[test]
    fn secret_keys_are_masked_whatever_their_value() {
        let value = toml::Value::String("s3cr3t".into());
        assert_eq!(mask_value("auth.jwt_secret", &value), "\"********\"");
        assert_eq!(mask_value("database.password", &value), "\"********\"");
        assert_eq!(mask_value("database.user", &value), "\"s3cr3t\"");
    }
}
