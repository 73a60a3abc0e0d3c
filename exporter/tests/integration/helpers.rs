//! Starting the real binary on a free port, scraping it, and reading
//! sample values back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_llmchat-exporter");

/// The Accept header Prometheus sends.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

pub use llmchat_tests::free_port;

/// A running exporter, killed on drop. Its stderr goes to a file, shown
/// only when the test fails.
pub struct Exporter {
    pub child: Child,
    pub base: String,
    client: reqwest::blocking::Client,
    stderr: tempfile::NamedTempFile,
}

impl Exporter {
    /// Starts the binary with `args` plus a free listen address, and waits
    /// until it answers. Every collector is off unless `args` (or the
    /// config file they name) turns it on, so that nothing on a
    /// developer's default ports (a local PostgreSQL, Redis or backend)
    /// changes a result.
    pub fn start(args: &[&str]) -> Exporter {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut cmd = Command::new(BIN);
        cmd.arg("--web.listen-address")
            .arg("127.0.0.1:0")
            .arg("--collector.disable-defaults")
            .args(args);
        Self::spawn(cmd, 0, env)
    }

    /// Starts `cmd` (the binary, or a wrapper running it) listening on
    /// `port` (0: the port it binds and logs), and waits until it answers.
    pub fn spawn(cmd: Command, port: u16, env: &[(&str, &str)]) -> Exporter {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self::spawn_as(cmd, port, env, "http", client)
    }

    /// Starts `cmd`, which serves HTTPS (a web-config file), trusting
    /// `client` for it; waits on the credential-free `/-/ready`.
    pub fn spawn_https(cmd: Command, client: reqwest::blocking::Client) -> Exporter {
        Self::spawn_as(cmd, 0, &[], "https", client)
    }

    fn spawn_as(
        cmd: Command,
        port: u16,
        env: &[(&str, &str)],
        scheme: &str,
        client: reqwest::blocking::Client,
    ) -> Exporter {
        // No proxy of the developer's shell: it would take the exporter's
        // HTTP probes elsewhere.
        let mut all = vec![("NO_COLOR", "1")];
        all.extend_from_slice(env);
        let daemon = llmchat_tests::start_daemon(
            cmd,
            port,
            &all,
            Duration::from_secs(10),
            "exporter",
            |port| {
                client
                    .get(format!("{scheme}://127.0.0.1:{port}/-/ready"))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
            },
        );
        Exporter {
            child: daemon.child,
            base: format!("{scheme}://127.0.0.1:{}", daemon.port),
            client,
            stderr: daemon.stderr,
        }
    }

    /// The client the exporter was started with (trusting its CA).
    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// What the exporter has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap()
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::Response {
        self.client
            .request(method, format!("{}{path}", self.base))
            .send()
            .unwrap()
    }

    /// A scrape in the Prometheus text format 0.0.4 (what curl gets).
    pub fn scrape_text(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status(), 200);
        r.text().unwrap()
    }

    /// Scrapes until `ready` holds for the text (within 30 s) and returns
    /// that scrape: for values a background job brings in its own time.
    pub fn scrape_when(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.scrape_text();
            if ready(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A scrape as Prometheus asks for it (OpenMetrics).
    pub fn scrape_openmetrics(&self) -> (String, String) {
        let r = self
            .client
            .get(format!("{}/metrics", self.base))
            .header("Accept", PROMETHEUS_ACCEPT)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        (ct, r.text().unwrap())
    }

    /// The value of one sample, `name{labels}` with labels in exposition
    /// order, e.g. `sample("llmchat_log_errors_total", &[("file", p)])`.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&self.scrape_text(), name, labels)
    }

    /// Waits until the sample equals `want`, then checks that it stays there
    /// across a few more poll intervals (nothing counted twice).
    pub fn expect_stable(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let what = format!("{name}{labels:?} == {want}");
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            last = self.sample(name, labels);
            if last == Some(want) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(last, Some(want), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(self.sample(name, labels), Some(want), "{what} did not stay");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "exporter did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- llmchat-exporter's log ---\n{}", self.log());
        }
    }
}

/// Finds `name{k="v",...} value` in a text scrape.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let label_text = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",");
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{label_text}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("numeric sample"))
}

pub use llmchat_tests::wait_until;

pub fn append(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

/// Runs the binary to completion (for --config.check and bad configs).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub use llmchat_tests::run_with_stdin;
