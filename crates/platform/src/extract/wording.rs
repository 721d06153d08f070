//! serde's error messages told in the API's words. Clients see "must be an integer between 0 and 100", never
//! "invalid digit found in string", "expected struct RegisterRequest" or "UUID parsing failed".
//!
//! serde, serde_json, serde_urlencoded, uuid, chrono and the standard library's `FromStr` errors have fixed
//! wordings; each is recognised here once. A message from none of them is a service's own (a `TryFrom`
//! newtype), already written for clients, and passes through unchanged.

const RFC3339: &str = "must be an RFC 3339 date-time, e.g. 2026-01-31T09:30:00Z";

/// The API's phrase for a serde error message, which must already be stripped of its position.
pub(crate) fn describe(message: &str) -> String {
    if let Some((_, expected)) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .or_else(|| message.strip_prefix("invalid length "))
        .and_then(|rest| rest.split_once(", expected "))
    {
        return expectation(expected);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        return match rest.split_once("`, expected ") {
            Some((_, allowed)) => format!("must be one of: {}", names(allowed)),
            None => "is not an accepted value".to_owned(),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return match rest.split_once("`, expected ") {
            Some((_, known)) => format!("is not a known field; known fields: {}", names(known)),
            None => "is not a known field".to_owned(),
        };
    }
    if message.starts_with("missing field `") {
        return "is required".to_owned();
    }
    if message.starts_with("duplicate field `") {
        return "is given more than once".to_owned();
    }
    if message.starts_with("UUID parsing failed") || message.starts_with("invalid character: ") {
        return "must be a UUID".to_owned();
    }
    match message {
        // chrono's parse errors
        "input is out of range"
        | "no possible date and time matching input"
        | "input is not enough for unique date and time"
        | "input contains invalid characters"
        | "premature end of input"
        | "trailing input"
        | "bad or unsupported format string" => RFC3339.to_owned(),
        // the standard library's integer, float and bool parse errors (query strings, path segments)
        "invalid digit found in string" | "cannot parse integer from empty string" => {
            "must be an integer".to_owned()
        }
        "number too large to fit in target type"
        | "number too small to fit in target type"
        | "number out of range" => "is out of range".to_owned(),
        "invalid float literal" | "cannot parse float from empty string" => {
            "must be a number".to_owned()
        }
        "provided string was not `true` or `false`" => "must be true or false".to_owned(),
        own => own.to_owned(),
    }
}

/// The phrase for what serde expected: a Rust type name or a visitor's `expecting` text.
pub(crate) fn expectation(expected: &str) -> String {
    if let Some((min, max)) = integer_range(expected) {
        return format!("must be an integer between {min} and {max}");
    }
    let phrase = match expected {
        "f32" | "f64" | "a number" => "must be a number",
        "a string" | "a borrowed string" | "a character" | "char" | "string" => "must be a string",
        "a boolean" | "bool" => "must be true or false",
        "unit" | "null" => "must be null",
        "variant identifier" | "field identifier" => {
            "must be a string naming one of the allowed values"
        }
        e if e.starts_with("struct ") || e.starts_with("a map") || e == "map" => {
            "must be an object"
        }
        e if e.starts_with("a sequence")
            || e.starts_with("a tuple")
            || e.starts_with("an array") =>
        {
            "must be an array"
        }
        e if e.contains("UUID") => "must be a UUID",
        e if e.contains("date") || e.contains("time") => RFC3339,
        e if e.starts_with("enum ") => "must be one of the allowed values",
        e if e.starts_with("a ") || e.starts_with("an ") => return format!("must be {e}"),
        _ => "has the wrong type",
    };
    phrase.to_owned()
}

fn integer_range(type_name: &str) -> Option<(i128, u128)> {
    Some(match type_name {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX as u128),
        "i16" => (i16::MIN.into(), i16::MAX as u128),
        "i32" => (i32::MIN.into(), i32::MAX as u128),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX as u128),
        _ => return None,
    })
}

/// serde's "`a`", "`a` or `b`" and "one of `a`, `b`, `c`" → "a, b, c".
fn names(list: &str) -> String {
    list.trim_start_matches("one of ")
        .replace("` or `", ", ")
        .replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn rust_type_names_become_api_words() {
        let cases = [
            (
                "invalid type: string \"x\", expected u32",
                "must be an integer between 0 and 4294967295",
            ),
            (
                "invalid value: integer `-1`, expected u8",
                "must be an integer between 0 and 255",
            ),
            (
                "invalid type: integer `3`, expected a string",
                "must be a string",
            ),
            (
                "invalid type: string \"x\", expected struct RegisterRequest",
                "must be an object",
            ),
            ("invalid type: map, expected a sequence", "must be an array"),
            (
                "invalid type: string \"1\", expected a boolean",
                "must be true or false",
            ),
            (
                "invalid type: integer `1`, expected a formatted UUID string",
                "must be a UUID",
            ),
            (
                "UUID parsing failed: invalid length: expected length 32",
                "must be a UUID",
            ),
            ("premature end of input", super::RFC3339),
            ("invalid digit found in string", "must be an integer"),
            ("number too large to fit in target type", "is out of range"),
        ];
        for (serde, api) in cases {
            assert_eq!(describe(serde), api, "for {serde:?}");
        }
    }

    #[test]
    fn variants_and_fields_are_listed_without_backticks() {
        assert_eq!(
            describe("unknown variant `big`, expected one of `light`, `dark`"),
            "must be one of: light, dark"
        );
        assert_eq!(
            describe("unknown variant `big`, expected `light` or `dark`"),
            "must be one of: light, dark"
        );
        assert_eq!(
            describe("unknown field `nmae`, expected `name` or `sku`"),
            "is not a known field; known fields: name, sku"
        );
        assert_eq!(describe("missing field `email`"), "is required");
    }

    #[test]
    fn a_services_own_message_passes_through() {
        assert_eq!(
            describe("must be 1 to 64 characters"),
            "must be 1 to 64 characters"
        );
    }
}
