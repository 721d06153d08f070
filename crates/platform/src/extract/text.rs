//! Text PostgreSQL cannot store, refused where it enters: a NUL character (U+0000) is valid in a URL, a query
//! string and a JSON string, but no PostgreSQL `text` or `jsonb` value can hold one, so letting it through
//! turns a client's input into a server error deep inside a query.

use serde_json::Value;

use crate::problem::FieldError;

pub(crate) const INVALID_CHARACTER: &str = "INVALID_CHARACTER";
const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// A field error when `value` of `field` holds a character no database text can store.
pub(crate) fn check(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        Err(FieldError::new(
            printable(field),
            INVALID_CHARACTER,
            NUL_MESSAGE,
        ))
    } else {
        Ok(())
    }
}

/// A field name fit to send back: a NUL in it (a NUL in a key) shown as its JSON escape.
fn printable(field: &str) -> String {
    field.replace('\0', "\\u0000")
}

/// The path of the first string or object key holding a NUL in a JSON body, or `None`.
/// A body can only carry one as the escape `\u0000` (a raw control byte is not JSON), so bodies without that
/// escape, nearly all of them, cost one byte scan and no second parse.
pub(crate) fn nul_in_json(body: &[u8]) -> Option<FieldError> {
    const ESCAPE: &[u8] = b"\\u0000";
    if !body.windows(ESCAPE.len()).any(|w| w == ESCAPE) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut path = String::new();
    first_nul(&value, &mut path)
        .then(|| FieldError::new(printable(&path), INVALID_CHARACTER, NUL_MESSAGE))
}

/// Walks `value` depth first; on a NUL leaves `path` at it (`lines[2].note`, as serde_path_to_error names
/// fields) and returns true.
fn first_nul(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
            let len = path.len();
            path.push_str(&format!("[{index}]"));
            let found = first_nul(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(members) => members.iter().any(|(key, member)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let found = key.contains('\0') || first_nul(member, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_a_nested_string_is_found_by_its_path() {
        let error = nul_in_json(br#"{"lines":[{"sku":"A"},{"sku":"B\u0000"}]}"#).unwrap();
        assert_eq!(error.field, "lines[1].sku");
        assert_eq!(error.code, INVALID_CHARACTER);
    }

    #[test]
    fn a_nul_in_a_key_is_named_with_its_escape() {
        let error = nul_in_json(br#"{"prefs":{"the\u0000me":"dark"}}"#).unwrap();
        assert_eq!(error.field, "prefs.the\\u0000me");
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        assert!(nul_in_json(br#"{"path":"C:\\u0000"}"#).is_none());
        assert!(nul_in_json(br#"{"name":"plain"}"#).is_none());
    }

    #[test]
    fn query_and_path_text_with_a_nul_is_refused() {
        assert_eq!(check("q", "a\0b").unwrap_err().field, "q");
        assert!(check("q", "a b").is_ok());
    }
}
