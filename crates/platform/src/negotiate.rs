//! `Accept` negotiation (RFC 9110 §12.5.1) for the few routes that answer in more than one media type. JSON
//! stays every route's default: another type is chosen only when the client ranks it strictly higher.

use axum::http::{HeaderMap, header};

/// `text/html`.
pub const HTML: &str = "text/html";
/// `application/json`.
pub const JSON: &str = "application/json";

/// Of `default` and `alternatives`, the media type the request's `Accept` ranks highest. Ties, an absent
/// `Accept` and one that accepts none of them go to the earliest of `default`, then `alternatives` in order.
pub fn preferred<'a>(headers: &HeaderMap, default: &'a str, alternatives: &[&'a str]) -> &'a str {
    let ranges = accepted_ranges(headers);
    if ranges.is_empty() {
        return default;
    }
    let mut best = (default, quality(&ranges, default));
    for &media in alternatives {
        let q = quality(&ranges, media);
        if q > best.1 {
            best = (media, q);
        }
    }
    best.0
}

/// Every media range of every `Accept` header, lowercased, with its weight; malformed elements are skipped.
fn accepted_ranges(headers: &HeaderMap) -> Vec<(String, f32)> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            let mut parts = element.split(';');
            let range = parts.next()?.trim().to_ascii_lowercase();
            if !range.contains('/') {
                return None;
            }
            let mut weight = 1.0;
            for parameter in parts {
                if let Some((name, value)) = parameter.split_once('=')
                    && name.trim().eq_ignore_ascii_case("q")
                {
                    weight = value
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))?;
                }
            }
            Some((range, weight))
        })
        .collect()
}

/// The weight of `media` (a lowercase `type/subtype`): that of the most specific range matching it, 0
/// when none does.
fn quality(ranges: &[(String, f32)], media: &str) -> f32 {
    let kind = media.split('/').next().unwrap_or(media);
    let mut best: Option<(u8, f32)> = None;
    for (range, weight) in ranges {
        let specificity = if range == media {
            2
        } else if range.strip_suffix("/*") == Some(kind) {
            1
        } else if range == "*/*" {
            0
        } else {
            continue;
        };
        if best.is_none_or(|(found, _)| specificity > found) {
            best = Some((specificity, *weight));
        }
    }
    best.map_or(0.0, |(_, weight)| weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn choice(accept: &[&str]) -> &'static str {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(
                header::ACCEPT,
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        preferred(&headers, JSON, &[HTML])
    }

    #[test]
    fn browsers_get_html_and_everyone_else_json() {
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(choice(&[firefox]), HTML);
        assert_eq!(choice(&["text/html"]), HTML);
        assert_eq!(choice(&["TEXT/HTML; charset=utf-8"]), HTML);
        assert_eq!(choice(&["text/*"]), HTML);
        assert_eq!(choice(&["application/json;q=0.5", "text/html"]), HTML);

        assert_eq!(choice(&[]), JSON);
        assert_eq!(choice(&["*/*"]), JSON);
        assert_eq!(choice(&["application/json"]), JSON);
        assert_eq!(choice(&["text/html;q=0.5, application/json"]), JSON);
        assert_eq!(choice(&["text/html, application/json"]), JSON);
        assert_eq!(choice(&["text/html;q=0, */*"]), JSON);
        assert_eq!(choice(&["image/png"]), JSON);
        assert_eq!(choice(&["garbage"]), JSON);
        assert_eq!(choice(&["text/html;q=2"]), JSON);
    }
}
