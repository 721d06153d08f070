//! `METHOD[,METHOD] /path` patterns: the gateway's `gateway.public_routes` and `gateway.rbac`, and the routes
//! an OAuth2 scope opens ([`crate::auth::scopes`]), compiled once at start.
//!
//! Grammar (also documented in platform's `defaults.toml`): methods are a comma list or `*` for any; a
//! path segment `{name}` matches exactly one segment; a trailing `/*` matches the rest of the path or
//! nothing. A pattern naming `GET` also matches `HEAD`, because servers answer `HEAD` with the `GET`
//! handler and a rule must not be sidestepped by changing the method.

use std::borrow::Cow;

use axum::http::Method;
use percent_encoding::percent_decode_str;

const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Methods {
    Any,
    Only(Vec<Method>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// One compiled pattern; `text` is kept for logs.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    text: String,
    methods: Methods,
    segments: Vec<Segment>,
    open_tail: bool,
}

impl RoutePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (methods, path) = text
            .split_once(' ')
            .ok_or_else(|| "must be `METHOD[,METHOD] /path`".to_owned())?;
        let methods = parse_methods(methods)?;
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err("the path must start with `/` and contain no spaces".into());
        }
        let (path, open_tail) = match path.strip_suffix("/*") {
            Some(prefix) => (prefix, true),
            None => (path, false),
        };
        let mut segments = Vec::new();
        for part in path.split('/').skip(1) {
            if part.is_empty() {
                // Only the bare root `/` may end in an empty segment.
                if path == "/" {
                    break;
                }
                return Err("the path must not contain empty segments".into());
            }
            segments.push(parse_segment(part)?);
        }
        Ok(Self {
            text: text.to_owned(),
            methods,
            segments,
            open_tail,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the request matches; `path` is the output of [`request_segments`].
    pub fn matches(&self, method: &Method, path: &[Cow<'_, str>]) -> bool {
        let method_ok = match &self.methods {
            Methods::Any => true,
            Methods::Only(list) => list
                .iter()
                .any(|m| m == method || (*m == Method::GET && *method == Method::HEAD)),
        };
        let length_ok = if self.open_tail {
            path.len() >= self.segments.len()
        } else {
            path.len() == self.segments.len()
        };
        method_ok
            && length_ok
            && self
                .segments
                .iter()
                .zip(path)
                .all(|(pattern, actual)| match pattern {
                    Segment::Literal(literal) => literal == actual,
                    Segment::Param => true,
                })
    }
}

fn parse_methods(text: &str) -> Result<Methods, String> {
    if text == "*" {
        return Ok(Methods::Any);
    }
    text.split(',')
        .map(|name| {
            METHODS
                .iter()
                .find(|m| m.as_str() == name)
                .cloned()
                .ok_or_else(|| format!("unknown method {name:?}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Methods::Only)
}

fn parse_segment(part: &str) -> Result<Segment, String> {
    if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        if name.is_empty() || name.contains(['{', '}', '*']) {
            return Err(format!("invalid parameter segment {part:?}"));
        }
        return Ok(Segment::Param);
    }
    if part.contains(['{', '}', '*']) {
        return Err(format!(
            "`{{name}}` must fill a whole segment and `*` may only end the path: {part:?}"
        ));
    }
    Ok(Segment::Literal(part.to_owned()))
}

/// The request path as matched against patterns: percent-decoded segments with empty ones dropped, so
/// `/api//v1/%75sers/` is judged as `/api/v1/users` rather than slipping past a rule by spelling.
pub fn request_segments(path: &str) -> Vec<Cow<'_, str>> {
    // Sized for the usual API path, so collecting does not grow the vector twice.
    let mut segments = Vec::with_capacity(8);
    segments.extend(
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy()),
    );
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, method: Method, path: &str) -> bool {
        RoutePattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .matches(&method, &request_segments(path))
    }

    #[test]
    fn a_literal_pattern_matches_only_its_path_and_methods() {
        assert!(matches("POST /api/v1/users", Method::POST, "/api/v1/users"));
        assert!(!matches("POST /api/v1/users", Method::GET, "/api/v1/users"));
        assert!(!matches(
            "POST /api/v1/users",
            Method::POST,
            "/api/v1/users/1"
        ));
        assert!(!matches("POST /api/v1/users", Method::POST, "/api/v1"));
    }

    #[test]
    fn a_trailing_star_matches_the_rest_of_the_path_or_nothing() {
        let p = "* /api/v1/users/me/*";
        assert!(matches(p, Method::GET, "/api/v1/users/me"));
        assert!(matches(p, Method::PUT, "/api/v1/users/me/preferences"));
        assert!(matches(p, Method::PUT, "/api/v1/users/me/a/b/c"));
        assert!(!matches(p, Method::GET, "/api/v1/users/mex"));
        assert!(!matches(p, Method::GET, "/api/v1/users"));
    }

    #[test]
    fn a_parameter_matches_exactly_one_segment() {
        let p = "GET,PATCH,DELETE /api/v1/users/{id}";
        assert!(matches(p, Method::DELETE, "/api/v1/users/42"));
        assert!(!matches(p, Method::DELETE, "/api/v1/users"));
        assert!(!matches(p, Method::DELETE, "/api/v1/users/42/x"));
        assert!(!matches(p, Method::POST, "/api/v1/users/42"));
    }

    #[test]
    fn a_get_pattern_also_covers_head() {
        assert!(matches("GET /api/v1/users", Method::HEAD, "/api/v1/users"));
    }

    #[test]
    fn respelled_paths_are_judged_by_what_they_mean() {
        let p = "POST /api/v1/users";
        assert!(matches(p, Method::POST, "/api/v1/users/"));
        assert!(matches(p, Method::POST, "//api/v1//users"));
        assert!(matches(p, Method::POST, "/api/v1/%75sers"));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in [
            "/api/v1/users",
            "FETCH /api",
            "GET api",
            "GET /api//users",
            "GET /api/{}",
            "GET /api/x{id}",
            "GET /api/*/users",
        ] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
