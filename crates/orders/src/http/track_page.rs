//! The public tracking page as HTML, for a browser following a tracking link. It renders the same
//! [`PublicTracking`] value the JSON answer serializes, so it can show nothing the JSON redacts. The page is
//! self-contained (no scripts, styles or images, so it works under the gateway's `default-src 'none'`
//! policy) and every value in it is escaped.

use std::fmt::Write;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::models::PublicTracking;

/// The policy of a page that loads nothing and may not be framed; the gateway sends the same one.
const CSP: HeaderValue = HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'");

/// The page as a `text/html` response.
pub fn response(tracking: &PublicTracking) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        render(tracking),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, CSP);
    response
}

fn render(tracking: &PublicTracking) -> String {
    let number = escape(&tracking.tracking_number);
    let status = escape(&label(tracking.status.as_str()));
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>Shipment {number}</title>\n</head>\n<body>\n\
         <main>\n<h1>Shipment {number}</h1>\n<p>Status: <strong>{status}</strong></p>\n"
    );
    if tracking.events.is_empty() {
        page.push_str("<p>No tracking events yet.</p>\n");
    } else {
        page.push_str(
            "<table>\n<caption>Tracking events</caption>\n<thead><tr><th scope=\"col\">When (UTC)</th>\
             <th scope=\"col\">Status</th><th scope=\"col\">Reason</th><th scope=\"col\">Where</th></tr></thead>\n<tbody>\n",
        );
        for event in &tracking.events {
            let place = [event.city.as_deref(), event.country.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                page,
                "<tr><td><time datetime=\"{at}\">{when}</time></td><td>{status}</td><td>{reason}</td><td>{place}</td></tr>",
                at = escape(&event.occurred_at.to_rfc3339()),
                when = escape(&event.occurred_at.format("%Y-%m-%d %H:%M").to_string()),
                status = escape(&label(event.status.as_str())),
                reason = escape(&event.reason.map(|r| label(r.as_str())).unwrap_or_default()),
                place = escape(&place),
            );
        }
        page.push_str("</tbody>\n</table>\n");
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// `out_for_delivery` → `Out for delivery`.
fn label(code: &str) -> String {
    let text = code.replace('_', " ");
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// `text` safe in HTML text and in a double- or single-quoted attribute.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::{IncidentReason, ShipmentStatus};
    use crate::models::PublicTrackingEvent;

    #[test]
    fn every_value_is_escaped() {
        let tracking = PublicTracking {
            tracking_number: "LC<b>&\"'".to_owned(),
            status: ShipmentStatus::DeliveryFailed,
            events: vec![PublicTrackingEvent {
                status: ShipmentStatus::DeliveryFailed,
                reason: Some(IncidentReason::RecipientNotHome),
                city: Some("<script>alert(1)</script>".to_owned()),
                country: Some("N\"L".to_owned()),
                occurred_at: Utc
                    .with_ymd_and_hms(2026, 12, 7, 9, 30, 0)
                    .single()
                    .expect("a time"),
            }],
        };
        let page = render(&tracking);
        assert!(
            page.contains("Shipment LC&lt;b&gt;&amp;&quot;&#39;</h1>"),
            "{page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;, N&quot;L"),
            "{page}"
        );
        assert!(
            !page.contains("<script>") && !page.contains("<b>"),
            "{page}"
        );
        assert!(page.contains("<strong>Delivery failed</strong>"), "{page}");
        assert!(page.contains("<td>Recipient not home</td>"), "{page}");
        assert!(
            page.contains("datetime=\"2026-12-07T09:30:00+00:00\">2026-12-07 09:30</time>"),
            "{page}"
        );
    }

    #[test]
    fn a_shipment_without_events_says_so() {
        let tracking = PublicTracking {
            tracking_number: "LC1".to_owned(),
            status: ShipmentStatus::Pending,
            events: Vec::new(),
        };
        let page = render(&tracking);
        assert!(page.contains("<strong>Pending</strong>"));
        assert!(page.contains("No tracking events yet."));
    }
}
