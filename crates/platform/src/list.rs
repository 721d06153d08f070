//! Comma-separated list parameters (`?status=pending,confirmed`, `?warehouse_id=<uuid>,<uuid>`): one rule for
//! reading them and one for describing them, so what the OpenAPI document allows is exactly what the handlers
//! accept. Items are trimmed of spaces and blank items are skipped (`a, ,b` is `a` and `b`; an empty value is no
//! filter); an item that does not parse is 422 `INVALID_VALUE` naming the parameter.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use uuid::Uuid;

use crate::problem::FieldError;

/// A hyphenated UUID, the form the API writes and documents.
const UUID_PATTERN: &str =
    "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";

/// The non-blank items of `a,b,c`, trimmed.
pub fn items(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or_default()
        .split(',')
        .map(|item| item.trim_matches(' '))
        .filter(|item| !item.is_empty())
}

/// Every item parsed. An item that is not `expected` (e.g. "a UUID") adds one error naming `field` and
/// the first such item to `errors`, and the list is then empty: handlers collect every field's errors
/// before answering, as [`crate::pagination::PageParams::checked`] does.
pub fn parse<T>(
    raw: Option<&str>,
    field: &str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
    errors: &mut Vec<FieldError>,
) -> Vec<T> {
    let parsed: Result<Vec<T>, FieldError> = items(raw)
        .map(|item| {
            parse(item).ok_or_else(|| {
                FieldError::new(
                    field,
                    "INVALID_VALUE",
                    format!("{item:?} is not {expected}"),
                )
            })
        })
        .collect();
    parsed.unwrap_or_else(|error| {
        errors.push(error);
        Vec::new()
    })
}

/// A list of hyphenated UUIDs, as [`parse`] reads it.
pub fn uuids(raw: Option<&str>, field: &str, errors: &mut Vec<FieldError>) -> Vec<Uuid> {
    let uuid = |item: &str| {
        // `Uuid::parse_str` also takes braced, URN and unhyphenated forms; the documented form is the only one.
        (item.len() == 36)
            .then(|| Uuid::try_parse(item).ok())
            .flatten()
    };
    parse(raw, field, "a UUID", uuid, errors)
}

/// One of `values`, exactly as written.
pub fn one_of<'a>(values: &[&'a str]) -> impl Fn(&str) -> Option<&'a str> {
    let values = values.to_vec();
    move |item| values.iter().copied().find(|value| *value == item)
}

/// The OpenAPI schema of a list whose items match the regular expression `item` (no anchors).
pub fn schema(item: &str, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^ *({item})? *(, *({item})? *)*$")))
        .description(Some(description))
        .build()
}

/// The OpenAPI schema of a list of UUIDs.
pub fn uuid_schema() -> Object {
    schema(UUID_PATTERN, "Ids (UUIDs), comma-separated")
}

/// The OpenAPI schema of a list of `values`.
pub fn one_of_schema(values: &[&str]) -> Object {
    schema(
        &values.join("|"),
        &format!("Comma-separated, any of: {}", values.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(schema: &Object, value: &str) -> bool {
        let pattern = schema.pattern.as_deref().unwrap();
        regex::Regex::new(pattern).unwrap().is_match(value)
    }

    #[test]
    fn blank_items_and_spaces_around_items_are_skipped() {
        let raw = Some(" a, ,b ,,");
        assert_eq!(items(raw).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(items(None).count(), 0);
    }

    #[test]
    fn the_first_bad_item_is_named() {
        let mut errors = Vec::new();
        let parsed = parse(
            Some("a,x,y"),
            "status",
            "a status",
            one_of(&["a", "b"]),
            &mut errors,
        );
        assert!(parsed.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "status");
        assert_eq!(errors[0].code, "INVALID_VALUE");
        assert_eq!(errors[0].message, "\"x\" is not a status");
        let parsed = parse(Some("b, a"), "s", "", one_of(&["a", "b"]), &mut errors);
        assert_eq!(parsed, ["b", "a"]);
        assert_eq!(errors.len(), 1, "a good list adds no error");
    }

    #[test]
    fn the_schema_allows_exactly_what_the_parser_accepts() {
        let id = Uuid::now_v7().to_string();
        let schema = uuid_schema();
        let accepted = [
            String::new(),
            id.clone(),
            format!(" {id} , ,{id},"),
            id.to_uppercase(),
        ];
        for value in &accepted {
            assert!(matches(&schema, value), "{value:?}");
            let mut errors = Vec::new();
            uuids(Some(value), "id", &mut errors);
            assert!(errors.is_empty(), "{value:?}");
        }
        let refused = [
            "x".to_owned(),
            id.replace('-', ""),
            format!("{{{id}}}"),
            format!("{id}{id}"),
            format!("{id};{id}"),
        ];
        for value in &refused {
            assert!(!matches(&schema, value), "{value:?}");
            let mut errors = Vec::new();
            uuids(Some(value), "id", &mut errors);
            assert_eq!(errors.len(), 1, "{value:?}");
        }

        let statuses = one_of_schema(&["active", "inactive"]);
        let parse_status = |raw| {
            let mut errors = Vec::new();
            parse(
                Some(raw),
                "status",
                "a status",
                one_of(&["active", "inactive"]),
                &mut errors,
            );
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors)
            }
        };
        for value in ["active", "inactive, active", ""] {
            assert!(
                matches(&statuses, value) && parse_status(value).is_ok(),
                "{value:?}"
            );
        }
        for value in ["Active", "activeinactive", "act"] {
            assert!(
                !matches(&statuses, value) && parse_status(value).is_err(),
                "{value:?}"
            );
        }
    }
}
