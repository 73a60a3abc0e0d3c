//! Route normalisation: turns request targets into a bounded set of `route`
//! label values, whatever the traffic (scanners included).
//!
//! In order: the query string goes; user rules (regex → template) apply
//! first; otherwise each path segment that looks like an identifier becomes
//! `:id`; past `max_routes` distinct routes, everything new is `other`.

use std::collections::HashMap;
use std::sync::Arc;

use regex::bytes::Regex;

/// The route of requests past the cap, and of request lines nginx could
/// not parse.
pub const OTHER: &str = "other";

#[derive(Debug, thiserror::Error)]
#[error("route rule {pattern:?}: {source}")]
pub struct RuleError {
    pattern: String,
    source: regex::Error,
}

/// One user rule: a request path matching `pattern` gets route `route`
/// (`$1`, `${name}` expand capture groups).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    pub pattern: String,
    pub route: String,
}

/// A route rule without its `=`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not REGEX=ROUTE")]
pub struct NotARouteRule(String);

impl std::str::FromStr for RouteRule {
    type Err = NotARouteRule;

    /// `REGEX=ROUTE`, for the command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (pattern, route) = s
            .rsplit_once('=')
            .ok_or_else(|| NotARouteRule(s.to_string()))?;
        Ok(RouteRule {
            pattern: pattern.into(),
            route: route.into(),
        })
    }
}

/// `--access.routes REGEX=ROUTE`, stored as the file's table.
impl llmchat_common::settings::FlagValue for RouteRule {
    fn parse(text: &str) -> Result<serde_json::Value, llmchat_common::settings::FlagValueError> {
        llmchat_common::settings::parse_via_from_str::<RouteRule>(text)
    }
    fn show(&self) -> Option<String> {
        Some(format!("{}={}", self.pattern, self.route))
    }
}

/// Route ids index [`Normalizer::name`]; id 0 is always `other`.
pub type RouteId = u32;

const CACHE_LIMIT: usize = 8192;

pub struct Normalizer {
    rules: Vec<(Regex, String)>,
    max_routes: usize,
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, RouteId>,
    /// Raw path → route, used only with user rules (a regex per line is
    /// the costly part); cleared when full, so memory stays bounded under
    /// a scan of random paths.
    cache: HashMap<Box<[u8]>, RouteId>,
    /// Scratch space for the built-in normalisation, reused per line.
    buf: String,
}

impl Normalizer {
    pub fn new(rules: &[RouteRule], max_routes: usize) -> Result<Self, RuleError> {
        let rules = rules
            .iter()
            .map(|r| {
                Regex::new(&r.pattern)
                    .map(|re| (re, r.route.clone()))
                    .map_err(|source| RuleError {
                        pattern: r.pattern.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        let other: Arc<str> = Arc::from(OTHER);
        Ok(Normalizer {
            rules,
            max_routes,
            names: vec![other.clone()],
            ids: HashMap::from([(other, 0)]),
            cache: HashMap::new(),
            buf: String::new(),
        })
    }

    pub fn name(&self, id: RouteId) -> &Arc<str> {
        &self.names[id as usize]
    }

    /// Number of distinct routes, `other` included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The route id of a request target (`None`: unparseable request line).
    pub fn route(&mut self, target: Option<&[u8]>) -> RouteId {
        let Some(target) = target else {
            return 0;
        };
        let end = memchr::memchr2(b'?', b'#', target).unwrap_or(target.len());
        let path = &target[..end];
        if self.rules.is_empty() {
            // Hot path: no allocation unless the route is new.
            let mut buf = std::mem::take(&mut self.buf);
            normalize_segments(path, &mut buf);
            let id = match self.ids.get(buf.as_str()) {
                Some(id) => *id,
                None => self.intern(buf.clone()),
            };
            self.buf = buf;
            return id;
        }
        if let Some(id) = self.cache.get(path) {
            return *id;
        }
        let name = self.normalize(path);
        let id = self.intern(name);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(path.into(), id);
        id
    }

    fn intern(&mut self, name: String) -> RouteId {
        if let Some(id) = self.ids.get(name.as_str()) {
            return *id;
        }
        // `other` is not counted against the cap.
        if self.names.len() > self.max_routes {
            return 0;
        }
        let id = self.names.len() as RouteId;
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// The route of a path, without the cap.
    pub fn normalize(&self, path: &[u8]) -> String {
        for (re, template) in &self.rules {
            if let Some(caps) = re.captures(path) {
                let mut out = Vec::new();
                caps.expand(template.as_bytes(), &mut out);
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
        let mut out = String::with_capacity(path.len());
        normalize_segments(path, &mut out);
        out
    }
}

/// The built-in normalisation into `out`: identifier segments become `:id`.
fn normalize_segments(path: &[u8], out: &mut String) {
    out.clear();
    for (i, segment) in path.split(|b| *b == b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_identifier(segment) {
            out.push_str(":id");
        } else {
            match std::str::from_utf8(segment) {
                Ok(s) => out.push_str(s),
                Err(_) => out.push_str(&String::from_utf8_lossy(segment)),
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
}

/// Numbers, UUIDs, hex strings of 8+ characters (Mongo ObjectIds
/// included), and long base64-like tokens that mix letters and digits.
pub fn is_identifier(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(s) {
        return true;
    }
    if s.len() >= 8 && s.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    if s.len() >= 16
        && s.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'=' | b'.' | b'~')
        })
        && s.iter().any(u8::is_ascii_digit)
        && s.iter().any(u8::is_ascii_alphabetic)
    {
        return true;
    }
    false
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let n = Normalizer::new(
            &[RouteRule {
                pattern: r"^/api/users/([a-z]+)/avatar$".into(),
                route: "/api/users/:name/avatar".into(),
            }],
            200,
        )
        .unwrap();
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("/health", "/health"),
            ("/api/chat/sessions/123", "/api/chat/sessions/:id"),
            (
                "/api/chat/sessions/123/messages/456",
                "/api/chat/sessions/:id/messages/:id",
            ),
            (
                "/api/agents/550e8400-e29b-41d4-a716-446655440000",
                "/api/agents/:id",
            ),
            ("/api/files/deadbeef", "/api/files/:id"),
            ("/api/files/deadbee", "/api/files/deadbee"),
            (
                "/api/messages/507f1f77bcf86cd799439011",
                "/api/messages/:id",
            ),
            ("/share/eyJhbGciOiJIUzI1NiJ9abc123", "/share/:id"),
            (
                "/api/authentication-callback",
                "/api/authentication-callback",
            ),
            ("/api/users/alice/avatar", "/api/users/:name/avatar"),
            ("/api/users/42/avatar", "/api/users/:id/avatar"),
            ("/api/v1/chat/", "/api/v1/chat/"),
        ];
        for (path, want) in cases {
            assert_eq!(n.normalize(path.as_bytes()), want, "{path}");
        }
    }

    #[test]
    fn query_string_is_dropped() {
        let mut n = Normalizer::new(&[], 200).unwrap();
        let a = n.route(Some(b"/api/chat?x=1"));
        let b = n.route(Some(b"/api/chat#top"));
        let c = n.route(Some(b"/api/chat"));
        assert_eq!((a, b), (c, c));
        assert_eq!(n.name(c).as_ref(), "/api/chat");
    }

    #[test]
    fn unparseable_targets_are_other() {
        let mut n = Normalizer::new(&[], 200).unwrap();
        let id = n.route(None);
        assert_eq!(n.name(id).as_ref(), OTHER);
    }

    #[test]
    fn cap_sends_new_routes_to_other() {
        let mut n = Normalizer::new(&[], 3).unwrap();
        for p in ["/a", "/b", "/c", "/d", "/e"] {
            n.route(Some(p.as_bytes()));
        }
        assert_eq!(n.len(), 4);
        let f = n.route(Some(b"/f"));
        assert_eq!(n.name(f).as_ref(), OTHER);
        let a = n.route(Some(b"/a"));
        assert_eq!(n.name(a).as_ref(), "/a");
    }

    #[test]
    fn hundred_thousand_random_paths_stay_within_the_cap() {
        let mut n = Normalizer::new(&[], 200).unwrap();
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let words = [
            "api",
            "chat",
            "admin",
            "wp-login.php",
            ".env",
            "static",
            "x",
            "cgi-bin",
        ];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let depth = 1 + next() % 4;
            let mut path = String::new();
            for _ in 0..depth {
                path.push('/');
                match next() % 3 {
                    0 => path.push_str(words[(next() % words.len() as u64) as usize]),
                    1 => path.push_str(&format!("{}", next() % 100_000)),
                    _ => path.push_str(&format!("w{:x}", next() % 0xffff_ffff)),
                }
            }
            let id = n.route(Some(path.as_bytes()));
            seen.insert(n.name(id).clone());
        }
        assert!(seen.len() <= 201, "{} route values", seen.len());
        assert!(seen.contains(OTHER));
        assert_eq!(n.len(), 201);
    }
}
