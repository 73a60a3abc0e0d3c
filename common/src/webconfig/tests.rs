use super::guard::ReloadLabels;
use super::*;
use crate::auth::AuthError;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Files { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn web(&self, text: &str) -> PathBuf {
        self.write("web.yml", text)
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";

fn refused(path: &Path) -> String {
    load(path).unwrap_err().to_string()
}

#[test]
fn a_plain_tls_file_loads_with_paths_relative_to_it() {
    let f = Files::new();
    let c = load(&f.web(TLS)).unwrap();
    let tls = c.tls.clone().unwrap();
    assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(!c.has_users());
    // An empty file is no TLS and no auth, as in exporter-toolkit.
    assert!(load(&f.web("")).unwrap().tls.is_none());
}

#[test]
fn each_bad_input_names_its_key() {
    let f = Files::new();
    let e = refused(
        &f.web("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  cert_fiel: x\n"),
    );
    assert!(
        e.contains("tls_server_config") && e.contains("cert_fiel"),
        "{e}"
    );
    let e = refused(&f.web("tls_server_config:\n  cert_file: cert.pem\n  key_file: missing.pem\n"));
    assert!(
        e.contains("tls_server_config.key_file") && e.contains("missing.pem"),
        "{e}"
    );
    let e = refused(&f.web("basic_auth_users:\n  alice: plain-text-password\n"));
    assert!(
        e.contains("basic_auth_users.alice") && e.contains("bcrypt"),
        "{e}"
    );
    let e = refused(&f.web("http_server_config:\n  headers:\n    X-Powered-By: rust\n"));
    assert!(e.contains("http_server_config.headers.X-Powered-By"), "{e}");
    let e = refused(&f.web("http_server_config:\n  headers:\n    X-Frame-Options: allow\n"));
    assert!(e.contains("X-Frame-Options") && e.contains("deny"), "{e}");
    let e = refused(&f.web(&format!(
        "{TLS}  client_auth_type: RequireAndVerifyClientCert\n"
    )));
    assert!(e.contains("tls_server_config.client_ca_file"), "{e}");
    let e = refused(&f.web(&format!("{TLS}  client_auth_type: Sometimes\n")));
    assert!(e.contains("client_auth_type"), "{e}");
    let e = refused(&f.web(&format!(
        "{TLS}  min_version: TLS10\n  max_version: TLS11\n"
    )));
    assert!(e.contains("tls_server_config.max_version"), "{e}");
    let e = refused(&f.web(&format!(
        "{TLS}  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n"
    )));
    assert!(e.contains("tls_server_config.cipher_suites"), "{e}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let f = Files::new();
    let other = rcgen::KeyPair::generate().unwrap();
    f.write("other.pem", &other.serialize_pem());
    let e = refused(&f.web("tls_server_config:\n  cert_file: cert.pem\n  key_file: other.pem\n"));
    assert!(
        e.contains("tls_server_config.key_file") && e.contains("does not match"),
        "{e}"
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let f = Files::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    f.write("old.pem", &cert.pem());
    f.write("oldkey.pem", &key.serialize_pem());
    let e = refused(&f.web("tls_server_config:\n  cert_file: old.pem\n  key_file: oldkey.pem\n"));
    assert!(
        e.contains("tls_server_config.cert_file") && e.contains("expired"),
        "{e}"
    );
}

#[test]
fn versions_and_suites_are_what_the_file_says() {
    let f = Files::new();
    let c = load(&f.web(&format!("{TLS}  min_version: TLS13\n"))).unwrap();
    let tls = c.tls.unwrap();
    assert!(tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS13));
    let c = load(&f.web(&format!(
        "{TLS}  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305]\n"
    )))
    .unwrap();
    let names: Vec<_> = c
        .tls
        .unwrap()
        .crypto_provider()
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(|s| s.suite().as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        ]
    );
}

fn basic(user: &str, password: &str) -> HeaderValue {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {b}")).unwrap()
}

#[tokio::test]
async fn basic_auth_takes_the_right_pair_and_remembers_it() {
    let f = Files::new();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let path = f.web(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"));
    let guard = WebGuard::new(Some(&path), &Default::default()).unwrap();
    assert_eq!(guard.check_basic(None).await, Err(AuthError::Missing));
    assert_eq!(
        guard
            .check_basic(Some(&basic("prometheus", "s3cret")))
            .await,
        Ok(())
    );
    assert_eq!(
        guard
            .check_basic(Some(&basic("prometheus", "s3crex")))
            .await,
        Err(AuthError::Wrong)
    );
    assert_eq!(
        guard.check_basic(Some(&basic("nobody", "s3cret"))).await,
        Err(AuthError::Wrong)
    );
    assert_eq!(guard.passed.lock().unwrap().len(), 1);
    // Remembered: the second check does not run bcrypt (a hash of a higher
    // cost would take long; the cache answers at once).
    assert_eq!(
        guard
            .check_basic(Some(&basic("prometheus", "s3cret")))
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn a_broken_file_on_reload_keeps_the_last_good_one_and_is_counted() {
    let f = Files::new();
    let hash = bcrypt::hash("one", 4).unwrap();
    let path = f.web(&format!("basic_auth_users:\n  a: '{hash}'\n"));
    let guard = WebGuard::new(Some(&path), &Default::default()).unwrap();
    f.web("basic_auth_users:\n  a: not-a-hash\n");
    assert!(!guard.reload());
    assert_eq!(guard.check_basic(Some(&basic("a", "one"))).await, Ok(()));
    let hash = bcrypt::hash("two", 4).unwrap();
    f.web(&format!("basic_auth_users:\n  a: '{hash}'\n"));
    assert!(guard.reload());
    assert_eq!(
        guard.check_basic(Some(&basic("a", "one"))).await,
        Err(AuthError::Wrong)
    );
    assert_eq!(guard.check_basic(Some(&basic("a", "two"))).await, Ok(()));
    let count = |result| guard.reloads.get_or_create(&ReloadLabels { result }).get();
    assert_eq!((count("success"), count("failure")), (1, 1));
}

/// The shipped example loads once its certificate paths point at real
/// files, and its user's hash is for the password it names.
#[tokio::test]
async fn the_shipped_example_loads_and_its_password_is_the_one_it_says() {
    let f = Files::new();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/web-config.example.yml"
    ))
    .unwrap();
    let text = example
        .replace("/etc/llmchat/tls/server.pem", "cert.pem")
        .replace("/etc/llmchat/tls/server-key.pem", "key.pem");
    let guard = WebGuard::new(Some(&f.web(&text)), &Default::default()).unwrap();
    assert!(guard.current().tls.is_some());
    assert_eq!(guard.current().headers.len(), 3);
    assert_eq!(
        guard
            .check_basic(Some(&basic("prometheus", "change-me")))
            .await,
        Ok(())
    );
}

#[test]
fn the_web_config_fuzz_corpus_and_its_mutations_load_or_are_refused() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/web_config");
    let ran = llmchat_tests::fuzz::run_corpus(&corpus, std::time::Duration::from_secs(5), |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            crate::webconfig::fuzz_one(text);
        }
    });
    assert!(ran > 100, "{ran} inputs");
}
