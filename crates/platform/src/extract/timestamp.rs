//! Date-times a client may send: RFC 3339 within the years 1 to 9999. chrono accepts signed years far
//! beyond that, and PostgreSQL refuses those before 4713 BC, so an unchecked `?since=-5000-01-01T00:00:00Z`
//! reached the database as an error. Use on every optional date-time input:
//! `#[serde(default, deserialize_with = "platform::extract::timestamp::optional")]`.

use chrono::{DateTime, Datelike, Utc};
use serde::de::{Deserialize, Deserializer, Error};

const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// An optional date-time, refused with an API-worded message outside the years 1 to 9999.
pub fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<DateTime<Utc>>::deserialize(deserializer)? {
        Some(at) if !YEARS.contains(&at.year()) => Err(D::Error::custom(
            "must be an RFC 3339 date-time between the years 1 and 9999",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use crate::extract::parse_json;

    #[derive(Debug, Deserialize)]
    struct Window {
        #[serde(default, deserialize_with = "super::optional")]
        since: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[test]
    fn date_times_outside_years_1_to_9999_are_refused_naming_the_field() {
        for far in [
            "-5000-01-01T00:00:00Z",
            "+275760-09-13T00:00:00Z",
            "0000-12-31T00:00:00Z",
        ] {
            let body = format!(r#"{{"since":"{far}"}}"#);
            let problem = parse_json::<Window>(body.as_bytes()).unwrap_err();
            assert_eq!(problem.errors[0].field, "since", "{far}");
            let message = &problem.errors[0].message;
            assert!(
                message.starts_with("must be an RFC 3339 date-time"),
                "{far}: {message}"
            );
        }
        let ok = parse_json::<Window>(br#"{"since":"2026-01-31T09:30:00Z"}"#).unwrap();
        assert!(ok.since.is_some());
        assert!(parse_json::<Window>(b"{}").unwrap().since.is_none());
    }
}
