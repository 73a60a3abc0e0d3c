//! Parses one access-log line (nginx `log_format`, or JSON lines as a
//! NestJS access logger writes them) into the few fields the HTTP metrics
//! need. Works on bytes and allocates nothing for nginx lines: it sits on
//! the hot path of every request nginx serves.

use std::borrow::Cow;

use llmchat_common::settings::{FlagValue, FlagValueError, Settings};
use memchr::memmem;

/// nginx's `combined` format followed by `$request_time`: the default.
pub const COMBINED_WITH_REQUEST_TIME: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_time";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line does not match the log format")]
    NoMatch,
    #[error("the line has no {0} field")]
    Missing(&'static str),
    #[error("invalid {0} field")]
    Invalid(&'static str),
    #[error("status code {0} is outside 100-599")]
    StatusOutOfRange(u64),
    #[error("not a JSON object")]
    NotJson,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("log_format has ${0} directly after another variable; nothing separates them")]
    AdjacentVariables(String),
    #[error("log_format has no $status (or JSON fields lack status)")]
    NoStatus,
    #[error("log_format has neither $request nor $request_method with $request_uri or $uri")]
    NoRequest,
    #[error("log_format has an unterminated ${{ variable")]
    Unterminated,
}

/// What one access-log line says about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    pub method: Cow<'a, [u8]>,
    /// Request target as logged: path, maybe with a query string; `None`
    /// when the request line was not `METHOD TARGET [PROTOCOL]`.
    pub target: Option<Cow<'a, [u8]>>,
    pub status: u16,
    pub bytes: Option<u64>,
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestTime,
    UpstreamResponseTime,
    /// Read past but not used ($remote_addr, $time_local, $http_user_agent, …).
    Ignored,
}

impl Var {
    fn from_name(name: &str) -> Var {
        match name {
            "request" => Var::Request,
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "uri" => Var::Uri,
            "status" => Var::Status,
            "body_bytes_sent" => Var::BodyBytesSent,
            "bytes_sent" => Var::BytesSent,
            "request_time" => Var::RequestTime,
            "upstream_response_time" => Var::UpstreamResponseTime,
            _ => Var::Ignored,
        }
    }
}

/// A compiled nginx `log_format`.
#[derive(Debug, Clone)]
pub struct NginxFormat {
    prefix: Vec<u8>,
    /// Each variable and a searcher for the literal text that follows it
    /// (`None` for the last variable when the format ends with it).
    fields: Vec<(Var, Option<memmem::Finder<'static>>)>,
}

impl NginxFormat {
    pub fn compile(format: &str) -> Result<Self, FormatError> {
        let bytes = format.as_bytes();
        let mut prefix = Vec::new();
        let mut fields: Vec<(Var, Vec<u8>)> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' && i + 1 < bytes.len() && is_var_start(bytes[i + 1]) {
                let (name, next) = if bytes[i + 1] == b'{' {
                    let end = bytes[i + 2..]
                        .iter()
                        .position(|b| *b == b'}')
                        .ok_or(FormatError::Unterminated)?;
                    (&format[i + 2..i + 2 + end], i + 3 + end)
                } else {
                    let len = bytes[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count();
                    (&format[i + 1..i + 1 + len], i + 1 + len)
                };
                if fields.last().is_some_and(|(_, lit)| lit.is_empty()) {
                    return Err(FormatError::AdjacentVariables(name.to_string()));
                }
                fields.push((Var::from_name(name), Vec::new()));
                i = next;
            } else {
                match fields.last_mut() {
                    Some((_, lit)) => lit.push(bytes[i]),
                    None => prefix.push(bytes[i]),
                }
                i += 1;
            }
        }
        let has = |v: Var| fields.iter().any(|(f, _)| *f == v);
        if !has(Var::Status) {
            return Err(FormatError::NoStatus);
        }
        if !has(Var::Request)
            && !(has(Var::RequestMethod) && (has(Var::RequestUri) || has(Var::Uri)))
        {
            return Err(FormatError::NoRequest);
        }
        let fields = fields
            .into_iter()
            .map(|(var, lit)| {
                let finder = (!lit.is_empty()).then(|| memmem::Finder::new(&lit).into_owned());
                (var, finder)
            })
            .collect();
        Ok(NginxFormat { prefix, fields })
    }

    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut pos = self.prefix.len();
        if !line.starts_with(&self.prefix) {
            return Err(ParseError::NoMatch);
        }
        let mut request = None;
        let mut method = None;
        let mut request_uri = None;
        let mut uri = None;
        let mut status = None;
        let mut body_bytes = None;
        let mut bytes_sent = None;
        let mut request_time = None;
        let mut upstream_time = None;
        for (var, literal) in &self.fields {
            let (end, next) = match literal {
                None => (line.len(), line.len()),
                Some(finder) => {
                    let at = find_unescaped(line, pos, finder).ok_or(ParseError::NoMatch)?;
                    (at, at + finder.needle().len())
                }
            };
            let value = &line[pos..end];
            pos = next;
            match var {
                Var::Request => request = Some(value),
                Var::RequestMethod => method = Some(value),
                Var::RequestUri => request_uri = Some(value),
                Var::Uri => uri = Some(value),
                Var::Status => status = Some(value),
                Var::BodyBytesSent => body_bytes = Some(value),
                Var::BytesSent => bytes_sent = Some(value),
                Var::RequestTime => request_time = Some(value),
                Var::UpstreamResponseTime => upstream_time = Some(value),
                Var::Ignored => {}
            }
        }
        let status = parse_status(status.ok_or(ParseError::Missing("status"))?)?;
        let (method, target) = match (method, request_uri.or(uri)) {
            (Some(m), Some(t)) => (m, Some(t)),
            _ => {
                let req = request.ok_or(ParseError::Missing("request"))?;
                split_request_line(req)
            }
        };
        let bytes = match body_bytes.or(bytes_sent) {
            Some(v) => parse_optional_u64(v, "body_bytes_sent")?,
            None => None,
        };
        let duration_seconds = match (request_time, upstream_time) {
            (Some(v), _) if v != b"-" => Some(parse_seconds(v, "request_time")?),
            (_, Some(v)) => parse_upstream_times(v)?,
            _ => None,
        };
        Ok(Request {
            method: Cow::Borrowed(method),
            target: target.map(Cow::Borrowed),
            status,
            bytes,
            duration_seconds,
        })
    }
}

fn is_var_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'{'
}

/// Position of `literal` at or after `from`, skipping matches whose first
/// byte is escaped by an odd run of backslashes (nginx `escape=json` writes
/// `\"`; the default escaping writes `\x22` and needs no help).
fn find_unescaped(line: &[u8], from: usize, literal: &memmem::Finder) -> Option<usize> {
    let mut start = from;
    loop {
        let rel = literal.find(line.get(start..)?)?;
        let at = start + rel;
        let backslashes = line[from..at]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return Some(at);
        }
        start = at + 1;
    }
}

/// `GET /path HTTP/1.1` → (`GET`, `/path`). A request line nginx could not
/// parse (a TLS handshake on the plain port, say) keeps its first word and
/// no target.
fn split_request_line(req: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut parts = req.splitn(3, |b| *b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().filter(|t| t.first() == Some(&b'/'));
    match target {
        Some(t) if !method.is_empty() => (method, Some(t)),
        _ => (method, None),
    }
}

fn parse_status(v: &[u8]) -> Result<u16, ParseError> {
    let n = parse_u64(v).ok_or(ParseError::Invalid("status"))?;
    if (100..=599).contains(&n) {
        Ok(n as u16)
    } else {
        Err(ParseError::StatusOutOfRange(n))
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn parse_optional_u64(v: &[u8], field: &'static str) -> Result<Option<u64>, ParseError> {
    if v == b"-" {
        return Ok(None);
    }
    parse_u64(v).map(Some).ok_or(ParseError::Invalid(field))
}

fn parse_seconds(v: &[u8], field: &'static str) -> Result<f64, ParseError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or(ParseError::Invalid(field))
}

/// `$upstream_response_time`: `-`, one time, or times separated by `, `
/// (several servers tried) and ` : ` (internal redirects). The request
/// waited for all of them, so they add up.
fn parse_upstream_times(v: &[u8]) -> Result<Option<f64>, ParseError> {
    let mut total = None;
    for part in v.split(|b| *b == b',' || *b == b':') {
        let part = part.trim_ascii();
        if part.is_empty() || part == b"-" {
            continue;
        }
        *total.get_or_insert(0.0) += parse_seconds(part, "upstream_response_time")?;
    }
    Ok(total)
}

/// Where the fields of a JSON access line are; dotted paths reach into
/// nested objects (`req.method` for pino-http).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct JsonFields {
    /// JSON access logs: field (dotted path) of the method.
    #[setting(flag, value_name = "FIELD", default = "method")]
    pub method: String,
    /// JSON access logs: field of the request path.
    #[setting(flag, value_name = "FIELD", default = "url")]
    pub path: String,
    /// JSON access logs: field of the status code.
    #[setting(flag, value_name = "FIELD", default = "statusCode")]
    pub status: String,
    /// JSON access logs: field of the duration.
    #[setting(flag, value_name = "FIELD", default = "responseTime")]
    pub duration: String,
    /// JSON access logs: unit of the duration, ms or s.
    #[setting(flag, default = DurationUnit::Ms)]
    pub duration_unit: DurationUnit,
    /// JSON access logs: field of the response size.
    #[setting(flag, value_name = "FIELD", default = "contentLength")]
    pub bytes: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationUnit {
    Ms,
    S,
}

/// A duration unit other than `ms` or `s`.
#[derive(Debug, thiserror::Error)]
#[error("expected ms or s")]
pub struct UnknownUnit;

impl FlagValue for DurationUnit {
    const VALUE_NAME: &'static str = "UNIT";
    fn parse(text: &str) -> Result<serde_json::Value, FlagValueError> {
        match DurationUnit::parse(text) {
            Some(unit) => Ok(serde_json::json!(unit)),
            None => Err(FlagValueError::from(Box::new(UnknownUnit) as Box<_>)),
        }
    }
    fn show(&self) -> Option<String> {
        Some(serde_json::json!(self).as_str()?.to_string())
    }
}

impl DurationUnit {
    pub fn to_seconds(self, v: f64) -> f64 {
        match self {
            DurationUnit::Ms => v / 1000.0,
            DurationUnit::S => v,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ms" => Some(DurationUnit::Ms),
            "s" => Some(DurationUnit::S),
            _ => None,
        }
    }
}

/// Follows a dotted path into a JSON value.
pub fn lookup<'v>(value: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    if path.is_empty() {
        return None;
    }
    if let Some(v) = value.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// A number, or a string holding one.
pub fn as_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

impl JsonFields {
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|_| ParseError::NotJson)?;
        if !value.is_object() {
            return Err(ParseError::NotJson);
        }
        let text = |path: &str, name: &'static str| -> Result<Vec<u8>, ParseError> {
            match lookup(&value, path) {
                Some(serde_json::Value::String(s)) => Ok(s.clone().into_bytes()),
                Some(_) => Err(ParseError::Invalid(name)),
                None => Err(ParseError::Missing(name)),
            }
        };
        let method = text(&self.method, "method")?;
        let target = text(&self.path, "path")?;
        let status_value = lookup(&value, &self.status).ok_or(ParseError::Missing("status"))?;
        let status = match as_f64(status_value) {
            Some(n) if n.fract() == 0.0 && n >= 0.0 => {
                if (100.0..=599.0).contains(&n) {
                    n as u16
                } else {
                    return Err(ParseError::StatusOutOfRange(n as u64));
                }
            }
            _ => return Err(ParseError::Invalid("status")),
        };
        let duration_seconds = match lookup(&value, &self.duration) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                as_f64(v)
                    .filter(|x| *x >= 0.0)
                    .map(|x| self.duration_unit.to_seconds(x))
                    .ok_or(ParseError::Invalid("duration"))?,
            ),
        };
        let bytes = match lookup(&value, &self.bytes) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                as_f64(v)
                    .filter(|x| *x >= 0.0 && x.fract() == 0.0)
                    .ok_or(ParseError::Invalid("bytes"))? as u64,
            ),
        };
        Ok(Request {
            method: Cow::Owned(method),
            target: Some(Cow::Owned(target)),
            status,
            bytes,
            duration_seconds,
        })
    }
}

/// An access-log parser as configured.
#[derive(Debug, Clone)]
pub enum Parser {
    Nginx(NginxFormat),
    Json(JsonFields),
}

impl Parser {
    /// `combined` (the default), `json`, or an nginx `log_format` string.
    pub fn new(format: &str, json: &JsonFields) -> Result<Self, FormatError> {
        match format {
            "combined" => Ok(Parser::Nginx(NginxFormat::compile(
                COMBINED_WITH_REQUEST_TIME,
            )?)),
            "json" => {
                if json.status.is_empty() {
                    return Err(FormatError::NoStatus);
                }
                if json.method.is_empty() || json.path.is_empty() {
                    return Err(FormatError::NoRequest);
                }
                Ok(Parser::Json(json.clone()))
            }
            other => Ok(Parser::Nginx(NginxFormat::compile(other)?)),
        }
    }

    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Request<'a>, ParseError> {
        match self {
            Parser::Nginx(f) => f.parse(line),
            Parser::Json(f) => f.parse(line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combined() -> Parser {
        Parser::new("combined", &JsonFields::default()).unwrap()
    }

    fn req(
        method: &str,
        target: Option<&str>,
        status: u16,
        bytes: Option<u64>,
        d: Option<f64>,
    ) -> Request<'static> {
        Request {
            method: Cow::Owned(method.as_bytes().to_vec()),
            target: target.map(|t| Cow::Owned(t.as_bytes().to_vec())),
            status,
            bytes,
            duration_seconds: d,
        }
    }

    #[test]
    fn combined_with_request_time_golden_lines() {
        let p = combined();
        let cases: &[(&str, Request)] = &[
            (
                r#"203.0.113.7 - - [26/Nov/2026:11:02:03 +0000] "GET /api/chat/sessions?page=2 HTTP/1.1" 200 5123 "https://chat.example.com/" "Mozilla/5.0 (X11; Linux x86_64)" 0.045"#,
                req(
                    "GET",
                    Some("/api/chat/sessions?page=2"),
                    200,
                    Some(5123),
                    Some(0.045),
                ),
            ),
            (
                r#"2001:db8::1 - alice [26/Nov/2026:11:02:04 +0000] "POST /api/chat/messages HTTP/2.0" 502 157 "-" "curl/8.5.0" 30.001"#,
                req(
                    "POST",
                    Some("/api/chat/messages"),
                    502,
                    Some(157),
                    Some(30.001),
                ),
            ),
            (
                r#"198.51.100.9 - - [26/Nov/2026:11:02:05 +0000] "GET /health HTTP/1.1" 304 - "-" "Agent \x22quoted\x22 v1" 0.000"#,
                req("GET", Some("/health"), 304, None, Some(0.0)),
            ),
            (
                r#"192.0.2.1 - - [26/Nov/2026:11:02:06 +0000] "\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03" 400 157 "-" "-" 0.002"#,
                req(
                    r"\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03",
                    None,
                    400,
                    Some(157),
                    Some(0.002),
                ),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(&p.parse(line.as_bytes()).unwrap(), want, "{line}");
        }
    }

    #[test]
    fn custom_log_format_with_upstream_time_lists_and_json_escaping() {
        let f = Parser::new(
            r#"$time_iso8601 $remote_addr "$request_method $request_uri" $status $bytes_sent rt=$request_time uct="$upstream_connect_time" urt="$upstream_response_time" xff="$http_x_forwarded_for" ua="$http_user_agent""#,
            &JsonFields::default(),
        )
        .unwrap();
        let line = br#"2026-11-26T11:02:03+00:00 ::1 "PUT /api/agents/42" 201 932 rt=- uct="0.001, 0.002" urt="0.250, 0.100 : 0.050" xff="10.0.0.1, 10.0.0.2" ua="say \"hi\"""#;
        let r = f.parse(line).unwrap();
        assert_eq!(r.method.as_ref(), b"PUT");
        assert_eq!(r.target.as_deref(), Some(&b"/api/agents/42"[..]));
        assert_eq!(r.status, 201);
        assert_eq!(r.bytes, Some(932));
        assert!((r.duration_seconds.unwrap() - 0.4).abs() < 1e-9);
        let line =
            br#"2026-11-26T11:02:03+00:00 ::1 "GET /x" 200 1 rt=- uct="-" urt="-" xff="-" ua="-""#;
        assert_eq!(f.parse(line).unwrap().duration_seconds, None);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        let p = combined();
        assert_eq!(p.parse(b""), Err(ParseError::NoMatch));
        assert_eq!(p.parse(b"garbage"), Err(ParseError::NoMatch));
        let bad_status = br#"1.2.3.4 - - [x] "GET / HTTP/1.1" 999 1 "-" "-" 0.1"#;
        assert_eq!(p.parse(bad_status), Err(ParseError::StatusOutOfRange(999)));
        let word_status = br#"1.2.3.4 - - [x] "GET / HTTP/1.1" abc 1 "-" "-" 0.1"#;
        assert_eq!(p.parse(word_status), Err(ParseError::Invalid("status")));
        let bad_time = br#"1.2.3.4 - - [x] "GET / HTTP/1.1" 200 1 "-" "-" fast"#;
        assert_eq!(p.parse(bad_time), Err(ParseError::Invalid("request_time")));
    }

    #[test]
    fn format_errors() {
        let j = JsonFields::default();
        assert_eq!(
            Parser::new("$request$status", &j).unwrap_err(),
            FormatError::AdjacentVariables("status".into())
        );
        assert_eq!(
            Parser::new("$request", &j).unwrap_err(),
            FormatError::NoStatus
        );
        assert_eq!(
            Parser::new("$uri $status", &j).unwrap_err(),
            FormatError::NoRequest
        );
        assert!(Parser::new("${request} ${status}", &j).is_ok());
    }

    #[test]
    fn json_lines_with_nested_fields() {
        let p = Parser::new("json", &JsonFields::default()).unwrap();
        let r = p
            .parse(br#"{"method":"POST","url":"/api/chat","statusCode":201,"responseTime":250,"contentLength":"88"}"#)
            .unwrap();
        assert_eq!(r, req("POST", Some("/api/chat"), 201, Some(88), Some(0.25)));
        let fields = JsonFields {
            method: "req.method".into(),
            path: "req.url".into(),
            status: "res.statusCode".into(),
            duration: "responseTime".into(),
            duration_unit: DurationUnit::Ms,
            bytes: "res.headers.content-length".into(),
        };
        let p = Parser::new("json", &fields).unwrap();
        let r = p
            .parse(br#"{"level":30,"req":{"method":"GET","url":"/x"},"res":{"statusCode":404},"responseTime":3}"#)
            .unwrap();
        assert_eq!(r, req("GET", Some("/x"), 404, None, Some(0.003)));
        assert_eq!(p.parse(b"[1,2]"), Err(ParseError::NotJson));
        assert_eq!(p.parse(b"{\"req\":{}}"), Err(ParseError::Missing("method")));
    }
}
