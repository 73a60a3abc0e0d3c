//! exporter-toolkit's web configuration file (`--web.config.file`), the
//! one format Prometheus users already secure node_exporter,
//! postgres_exporter and Prometheus with: `tls_server_config` (TLS and
//! mutual TLS, through rustls), `http_server_config.headers`, and
//! `basic_auth_users` (bcrypt hashes).
//!
//! [`load`] reads and checks the file at start: an unknown key, an
//! unreadable key file, a certificate that does not match its key or has
//! expired, a user whose value is not a bcrypt hash, each is a
//! [`ConfigError`] naming the key (exit 64) before any port is bound.
//! [`WebGuard`] holds what the server applies per connection and request,
//! and [`WebGuard::watch`] re-reads the file when it (or a file it names)
//! changes, or on SIGHUP: a file that no longer loads keeps the last good
//! one, is logged once per change and counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::config::ConfigError;

mod client_auth;

/// The file as exporter-toolkit writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    tls_server_config: Option<TlsFormat>,
    #[serde(default)]
    http_server_config: Option<HttpFormat>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFormat {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: ClientAuth,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<TlsVersion>,
    #[serde(default)]
    max_version: Option<TlsVersion>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    /// rustls always picks by the server's order unless told otherwise;
    /// `false` lets the client's order decide.
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFormat {
    /// Accepted for compatibility; both binaries speak HTTP/1.1.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The response headers exporter-toolkit lets the file set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Content-Security-Policy",
    "X-XSS-Protection",
];

/// A checked web-config file, ready to serve with.
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name to bcrypt hash; empty: no basic auth.
    users: BTreeMap<String, String>,
    /// The files it was read from, to notice a change.
    inputs: Vec<PathBuf>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// No file: plain HTTP, no basic auth, no extra headers.
    pub fn none() -> Self {
        WebConfig {
            tls: None,
            headers: Vec::new(),
            users: BTreeMap::new(),
            inputs: Vec::new(),
        }
    }

    /// Whether the file asks for basic auth on every path but the probes.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }
}

fn bad(path: &Path, key: impl Into<String>, message: impl ToString) -> ConfigError {
    ConfigError::File {
        path: path.to_path_buf(),
        key: key.into(),
        flag: None,
        message: message.to_string(),
    }
}

/// Reads and checks the web-config file at `path`. Paths in it are
/// relative to the file's directory, as exporter-toolkit has them.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// What the fuzz target (`common/fuzz`) and the corpus test run on any
/// text: parse it as a file in a folder that does not exist (so that the
/// files it names are missing, as they would be on a bad day).
pub fn fuzz_one(text: &str) {
    let path = Path::new("/nonexistent/llmchat-fuzz/web.yml");
    if let Err(e) = parse(path, text) {
        assert!(!e.to_string().is_empty());
    }
}

/// Checks the text of a web-config file read from `path` (which names
/// it in errors and anchors its relative paths). Any text is refused
/// with an error naming the key, never a panic (fuzzed: `common/fuzz`).
pub fn parse(path: &Path, text: &str) -> Result<WebConfig, ConfigError> {
    let format: FileFormat = if text.trim().is_empty() {
        FileFormat::default()
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            bad(
                path,
                if key == "." { String::new() } else { key },
                e.into_inner(),
            )
        })?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut inputs = vec![path.to_path_buf()];
    let tls = match &format.tls_server_config {
        None => None,
        Some(t) => {
            let cert = resolve(&t.cert_file);
            let key = resolve(&t.key_file);
            let ca = t.client_ca_file.as_deref().map(resolve);
            inputs.extend([cert.clone(), key.clone()]);
            inputs.extend(ca.clone());
            Some(Arc::new(tls_config(path, t, &cert, &key, ca.as_deref())?))
        }
    };
    let mut headers = Vec::new();
    if let Some(http) = &format.http_server_config {
        for (name, value) in &http.headers {
            let key = format!("http_server_config.headers.{name}");
            let Some(allowed) = ALLOWED_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(name))
            else {
                return Err(bad(
                    path,
                    key,
                    format!(
                        "not a header the file may set (one of {})",
                        ALLOWED_HEADERS.join(", ")
                    ),
                ));
            };
            let lower = value.to_ascii_lowercase();
            match *allowed {
                "X-Frame-Options" if lower != "deny" && lower != "sameorigin" => {
                    return Err(bad(path, key, "must be deny or sameorigin"))
                }
                "X-Content-Type-Options" if lower != "nosniff" => {
                    return Err(bad(path, key, "must be nosniff"))
                }
                _ => {}
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| bad(path, key.clone(), "not a valid header value"))?;
            headers.push((HeaderName::from_static_lowercase(allowed), value));
        }
    }
    for (user, hash) in &format.basic_auth_users {
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(bad(
                path,
                format!("basic_auth_users.{user}"),
                "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            ));
        }
    }
    Ok(WebConfig {
        tls,
        headers,
        users: format.basic_auth_users,
        inputs,
    })
}

trait FromStaticLowercase {
    fn from_static_lowercase(name: &'static str) -> HeaderName;
}

impl FromStaticLowercase for HeaderName {
    fn from_static_lowercase(name: &'static str) -> HeaderName {
        HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .expect("the allowed header names are valid")
    }
}

fn tls_config(
    path: &Path,
    t: &TlsFormat,
    cert_path: &Path,
    key_path: &Path,
    ca_path: Option<&Path>,
) -> Result<rustls::ServerConfig, ConfigError> {
    let read = |p: &Path, key: &str| {
        std::fs::read(p).map_err(|e| bad(path, key, format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert_path, "tls_server_config.cert_file")?;
    let key_pem = read(key_path, "tls_server_config.key_file")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            bad(
                path,
                "tls_server_config.cert_file",
                format!("not a PEM certificate: {e}"),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(bad(
            path,
            "tls_server_config.cert_file",
            "holds no certificate",
        ));
    };
    check_validity(path, leaf)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            path,
            "tls_server_config.key_file",
            format!("not a PEM private key: {e}"),
        )
    })?;

    let mut provider = rustls::crypto::ring::default_provider();
    if !t.cipher_suites.is_empty() {
        provider.cipher_suites = cipher_suites(path, &provider.cipher_suites, &t.cipher_suites)?;
    }
    if !t.curve_preferences.is_empty() {
        provider.kx_groups = curves(path, &provider.kx_groups, &t.curve_preferences)?;
    }
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| bad(path, "tls_server_config.key_file", e))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    if certified.keys_match().is_err() {
        return Err(bad(
            path,
            "tls_server_config.key_file",
            "does not match the certificate in tls_server_config.cert_file",
        ));
    }
    let versions = versions(path, t)?;
    let provider = Arc::new(provider);
    let verifier = client_auth::verifier(path, t.client_auth_type, ca_path, &provider)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| bad(path, "tls_server_config.cipher_suites", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(path, "tls_server_config.cert_file", e))?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An expired certificate, or one not valid yet, is refused (and said).
fn check_validity(path: &Path, leaf: &CertificateDer<'_>) -> Result<(), ConfigError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        bad(
            path,
            "tls_server_config.cert_file",
            format!("cannot parse the certificate: {e}"),
        )
    })?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        tracing::warn!(file = %path.display(), not_after = %validity.not_after, "the TLS certificate has expired");
        return Err(bad(
            path,
            "tls_server_config.cert_file",
            format!("the certificate expired on {}", validity.not_after),
        ));
    }
    if validity.not_before > now {
        return Err(bad(
            path,
            "tls_server_config.cert_file",
            format!(
                "the certificate is not valid before {}",
                validity.not_before
            ),
        ));
    }
    Ok(())
}

fn versions(
    path: &Path,
    t: &TlsFormat,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ConfigError> {
    // exporter-toolkit's default minimum is TLS 1.2; rustls has nothing older.
    let min = t.min_version.unwrap_or(TlsVersion::TLS12);
    let max = t.max_version.unwrap_or(TlsVersion::TLS13);
    if min > max {
        return Err(bad(
            path,
            "tls_server_config.min_version",
            "is above max_version",
        ));
    }
    let versions: Vec<_> = [
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, v)| v)
    .collect();
    if versions.is_empty() {
        return Err(bad(
            path,
            "tls_server_config.max_version",
            "TLS 1.0 and 1.1 are not offered; use TLS12 or TLS13",
        ));
    }
    Ok(versions)
}

/// Go's names for the TLS 1.2 suites; TLS 1.3's are always on, as in Go.
fn cipher_suites(
    path: &Path,
    available: &[rustls::SupportedCipherSuite],
    wanted: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, ConfigError> {
    let mut chosen: Vec<_> = available
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .copied()
        .collect();
    for name in wanted {
        let found = available.iter().find(|s| {
            let rust_name = s.suite().as_str().unwrap_or_default();
            rust_name == name || rust_name == format!("{name}_SHA256")
        });
        match found {
            Some(s) if s.version() == &rustls::version::TLS12 => chosen.push(*s),
            _ => {
                return Err(bad(
                    path,
                    "tls_server_config.cipher_suites",
                    format!("{name} is not a TLS 1.2 AEAD suite rustls offers"),
                ))
            }
        }
    }
    Ok(chosen)
}

fn curves(
    path: &Path,
    available: &[&'static dyn rustls::crypto::SupportedKxGroup],
    wanted: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, ConfigError> {
    wanted
        .iter()
        .map(|name| {
            let group = match name.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                _ => rustls::NamedGroup::Unknown(0),
            };
            available
                .iter()
                .find(|g| g.name() == group)
                .copied()
                .ok_or_else(|| {
                    bad(
                        path,
                        "tls_server_config.curve_preferences",
                        format!("{name} is not offered (X25519, CurveP256, CurveP384)"),
                    )
                })
        })
        .collect()
}

mod guard;

pub use guard::WebGuard;

#[cfg(test)]
mod tests;
