//! The whole chain on loopback: real PostgreSQL and Redis, the exporter
//! and receiver binaries, Debian's Prometheus, Alertmanager and node
//! exporter, an SMTP sink, and HTTP stand-ins for Slack, the webhook
//! target and the backend's /health. Prometheus and Alertmanager run the
//! stack's own `stack/prometheus.yml`, `stack/alertmanager.yml` and
//! `rules/`, with only addresses, paths and intervals substituted; the
//! rules' durations are divided by [`TIME_SCALE`] so a 5-minute window
//! takes 5 seconds.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llmchat_tests::services::{Postgres, Redis, LLMCHAT_SCHEMA};
use llmchat_tests::sinks::{SmtpSink, Target};
use llmchat_tests::{free_port, repo_root};
use serde_json::Value;

/// Rule durations (`for:`, range windows, offsets) are divided by this.
pub const TIME_SCALE: u64 = 60;
/// Scrape and evaluation interval, and Alertmanager's group_wait.
pub const INTERVAL: &str = "1s";
pub const TOKEN: &str = "stack-test-token-0123456789abcdef";

/// One stack at a time: each starts a dozen processes.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub use llmchat_tests::wait_until;

pub use crate::processes::{bin, ready, start_prometheus, substitute, Proc, Targets};
pub use crate::traffic::deliveries;
use crate::traffic::spawn_backend_health;
pub use crate::traffic::spawn_traffic;

/// What the sinks received, as (alertname, status, channel) triples.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivery {
    pub alertname: String,
    pub status: String,
    pub channel: &'static str,
}

pub struct Options {
    pub receivers: usize,
    pub alertmanagers: usize,
}

pub struct Stack {
    pub _dir: tempfile::TempDir,
    pub pg: Postgres,
    pub redis: Redis,
    pub logs: PathBuf,
    pub _backend: Target,
    /// The version the backend's /health reports, and when its process
    /// started: [`Stack::deploy`] changes both.
    backend_version: Arc<Mutex<(String, Instant)>>,
    /// The dead man's switch the Watchdog reaches.
    pub deadmans_switch: Target,
    /// Each receiver's process id, to kill one.
    pub receiver_pids: Vec<u32>,
    pub slack: Target,
    pub hook: Target,
    pub smtp: SmtpSink,
    pub restarts: PathBuf,
    /// What the rollback action ran with: previous version, version.
    pub rollbacks: PathBuf,
    pub prom_url: String,
    pub am_urls: Vec<String>,
    pub receiver_urls: Vec<String>,
    pub started: SystemTime,
    /// Percent of the background traffic answered 500.
    pub error_percent: Arc<AtomicU32>,
    /// Whether the OpenAI stand-in answers every other call 429 (from the
    /// start; the LLM test turns it off, then on mid-run).
    pub openai_rate_limiting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    _procs: Vec<Proc>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Stack {
    pub fn start(opts: Options) -> Stack {
        let started = SystemTime::now();
        let dir = tempfile::Builder::new()
            .prefix("llmchat-stack")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        let mut procs = Vec::new();

        // With pg_stat_statements, as docs/metrics.md asks of production:
        // the slow-query panels have their data.
        let pg = Postgres::start_with(&["shared_preload_libraries=pg_stat_statements"]);
        pg.psql("CREATE EXTENSION pg_stat_statements");
        pg.psql(LLMCHAT_SCHEMA);
        let redis = Redis::start();
        redis.pipe("SET agents:1 a\nSET agents:2 b\nSET sessions:1 s\nSET messages:1 m\nGET agents:1\nGET nothing\n");
        let (backend, slack, hook, smtp) = (
            Target::start(vec![]),
            Target::start(vec![]),
            Target::start(vec![]),
            SmtpSink::start(),
        );
        let backend_version = Arc::new(Mutex::new(("1.4.2".to_string(), Instant::now())));

        let logs = d.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        for f in ["app.log", "error.log", "access.log"] {
            std::fs::write(logs.join(f), "").unwrap();
        }
        let backups = d.join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        // Backups that read back: a real pg_dump of the stack's database
        // (an hour old, so settled; the restore drill restores it into
        // llmchat_drill), a real tar.gz (checked within a second here).
        let dump = backups.join("database_20261126_020000.sql");
        std::fs::write(&dump, pg.dump(&["--format=plain"])).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&dump)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        pg.psql_db("postgres", "CREATE DATABASE llmchat_drill");
        // The live counts the drill compares with (n_live_tup) now.
        pg.psql("ANALYZE");
        let archived = Command::new("tar")
            .arg("czf")
            .arg(backups.join("application_20261126_020000.tar.gz"))
            .arg("-C")
            .arg(&logs)
            .arg("app.log")
            .status()
            .unwrap()
            .success();
        assert!(archived, "tar czf");

        // The exporter, configured by environment as in docker-compose.yml;
        // prices and the budget are tables, so a file: Claude priced, GPT-4o
        // not (the unpriced-tokens panel), a budget the traffic stays under.
        let exporter_port = free_port();
        let exporter_config = d.join("exporter.toml");
        std::fs::write(
            &exporter_config,
            format!(
                "[chat.llm.prices.claude-3-5-sonnet]\ninput = 3.0\noutput = 15.0\ncurrency = \"USD\"\n\
                 [chat.llm.budget]\ncurrency = \"USD\"\ndaily = 500.0\nmonthly = 10000.0\n\
                 [backup.drill]\nenabled = true\nrun_at_start = true\nscratch_url = \"postgres://postgres@127.0.0.1:{}/llmchat_drill\"\n\
                 psql = \"{}\"\npg_restore = \"{}\"\n",
                pg.port,
                Postgres::psql_program().display(),
                Postgres::pg_restore().display()
            ),
        )
        .unwrap();
        procs.push(Proc::spawn(
            Command::new(bin("llmchat-exporter"))
                .arg(format!("--config.file={}", exporter_config.display()))
                .env(
                    "LLMCHAT_EXPORTER_WEB_LISTEN_ADDRESS",
                    format!("127.0.0.1:{exporter_port}"),
                )
                .env(
                    "LLMCHAT_EXPORTER_LOGS_APP",
                    format!("{0}/app.log,{0}/error.log", logs.display()),
                )
                .env("LLMCHAT_EXPORTER_LOGS_ACCESS", logs.join("access.log"))
                .env("LLMCHAT_EXPORTER_DATABASE_URL", pg.url())
                .env("LLMCHAT_EXPORTER_REDIS_URL", redis.url())
                .env("LLMCHAT_EXPORTER_APP_URL", backend.url(""))
                .env("LLMCHAT_EXPORTER_BACKUP_DIR", &backups)
                .env("LLMCHAT_EXPORTER_BACKUP_CHECK_INTERVAL", "1s")
                .env("LLMCHAT_EXPORTER_BACKUP_SETTLE", "1s")
                // A process that surely runs here, for the backend-process panel.
                .env("LLMCHAT_EXPORTER_HOST_PROCESS_NAME", "prometheus"),
            "llmchat-exporter",
        ));
        ready(
            &format!("http://127.0.0.1:{exporter_port}/-/ready"),
            "exporter",
        );

        // Receivers: SQLite each, or one shared PostgreSQL store.
        let token_file = d.join("receiver_token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let restarts = d.join("restarts");
        let rollbacks = d.join("rollbacks");
        let store_for = |i: usize| {
            if opts.receivers > 1 {
                format!("postgres://postgres@127.0.0.1:{}/receiver", pg.port)
            } else {
                format!("sqlite://{}", d.join(format!("outbox-{i}.db")).display())
            }
        };
        if opts.receivers > 1 {
            pg.psql_db("postgres", "CREATE DATABASE receiver");
        }
        let mut receiver_urls = Vec::new();
        let mut receiver_pids = Vec::new();
        let deadmans_switch = Target::start(vec![]);
        for i in 0..opts.receivers {
            let port = free_port();
            let config = d.join(format!("receiver-{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[web]\nlisten_address = \"127.0.0.1:{port}\"\nbearer_token_file = \"{}\"\n\
                     [store]\nurl = \"{}\"\n\
                     [delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"2s\"\npoll_interval = \"100ms\"\nslack_interval = \"50ms\"\ntimeout = \"3s\"\n\
                     [channels.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"LLMChat Alerts <alerts@llmchat.test>\"\n\
                     to = {{ critical = [\"oncall@llmchat.test\"], warning = [\"team@llmchat.test\"], default = [\"team@llmchat.test\"] }}\n\
                     [channels.slack]\nwebhook_url = \"{}\"\n\
                     [channels.webhook]\nurl = \"{}\"\n\
                     [recovery.actions.restart.command]\nargv = [\"sh\", \"-c\", \"echo \\\"$LLMCHAT_ALERT_ALERTNAME\\\" >> {}\"]\ntimeout = \"10s\"\n\
                     [recovery.actions.rollback]\ncooldown = \"1h\"\nscope_labels = [\"version\"]\n\
                     require_labels = {{ previous_version = '[0-9]+\\.[0-9]+\\.[0-9]+' }}\n\
                     [recovery.actions.rollback.command]\nargv = [\"sh\", \"-c\", \"echo \\\"$LLMCHAT_ALERT_PREVIOUS_VERSION $LLMCHAT_ALERT_VERSION $#\\\" >> {}\"]\ntimeout = \"10s\"\n",
                    token_file.display(),
                    store_for(i),
                    smtp.port,
                    slack.url("/services/T000/B000/XXXX"),
                    hook.url("/hook"),
                    restarts.display(),
                    rollbacks.display()
                ),
            )
            .unwrap();
            let receiver = Proc::spawn(
                Command::new(bin("llmchat-receiver"))
                    .arg("--config.file")
                    .arg(&config),
                "llmchat-receiver",
            );
            receiver_pids.push(receiver.child.id());
            procs.push(receiver);
            let url = format!("http://127.0.0.1:{port}");
            ready(&format!("{url}/-/ready"), "receiver");
            receiver_urls.push(url);
        }

        // Alertmanagers, from stack/alertmanager.yml; clustered when several.
        let am_ports: Vec<u16> = (0..opts.alertmanagers).map(|_| free_port()).collect();
        let cluster_ports: Vec<u16> = (0..opts.alertmanagers).map(|_| free_port()).collect();
        let am_text = std::fs::read_to_string(repo_root().join("stack/alertmanager.yml")).unwrap();
        for (i, port) in am_ports.iter().enumerate() {
            let mut text = am_text.clone();
            let f = "stack/alertmanager.yml";
            substitute(
                &mut text,
                f,
                "mailpit:1025",
                &format!("127.0.0.1:{}", smtp.port),
            );
            substitute(
                &mut text,
                f,
                "http://llmchat-receiver:9843/webhook",
                &format!("{}/webhook", receiver_urls[i % receiver_urls.len()]),
            );
            substitute(
                &mut text,
                f,
                "/run/llmchat-secrets/receiver_token",
                &token_file.display().to_string(),
            );
            substitute(
                &mut text,
                f,
                "group_wait: 30s",
                &format!("group_wait: {INTERVAL}"),
            );
            substitute(
                &mut text,
                f,
                "group_interval: 5m",
                &format!("group_interval: {INTERVAL}"),
            );
            substitute(&mut text, f, "repeat_interval: 4h", "repeat_interval: 1h");
            substitute(
                &mut text,
                f,
                "http://deadmans-switch.invalid/ping",
                &deadmans_switch.url("/ping"),
            );
            let config = d.join(format!("alertmanager-{i}.yml"));
            std::fs::write(&config, text).unwrap();
            let mut cmd = Command::new("prometheus-alertmanager");
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    d.join(format!("am-{i}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            if opts.alertmanagers > 1 {
                cmd.arg(format!(
                    "--cluster.listen-address=127.0.0.1:{}",
                    cluster_ports[i]
                ))
                .arg(format!(
                    "--cluster.advertise-address=127.0.0.1:{}",
                    cluster_ports[i]
                ))
                .arg("--cluster.peer-timeout=2s")
                .arg("--cluster.gossip-interval=50ms")
                .arg("--cluster.pushpull-interval=1s");
                for (j, p) in cluster_ports.iter().enumerate() {
                    if j != i {
                        cmd.arg(format!("--cluster.peer=127.0.0.1:{p}"));
                    }
                }
            } else {
                cmd.arg("--cluster.listen-address=");
            }
            procs.push(Proc::spawn(
                &mut cmd,
                "prometheus-alertmanager (apt-get install prometheus-alertmanager)",
            ));
        }
        let am_urls: Vec<String> = am_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        for url in &am_urls {
            ready(&format!("{url}/-/ready"), "alertmanager");
        }

        let node_port = free_port();
        procs.push(Proc::spawn(
            Command::new("prometheus-node-exporter")
                .arg(format!("--web.listen-address=127.0.0.1:{node_port}")),
            "prometheus-node-exporter (apt-get install prometheus-node-exporter)",
        ));

        let receivers: Vec<String> = receiver_urls
            .iter()
            .map(|u| u.trim_start_matches("http://").to_string())
            .collect();
        let alertmanagers: Vec<String> =
            am_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let (prometheus, prom_url) = start_prometheus(
            &d,
            &Targets {
                exporters: &[format!("127.0.0.1:{exporter_port}")],
                receivers: &receivers,
                node: format!("127.0.0.1:{node_port}"),
                alertmanagers: &alertmanagers,
            },
        );
        procs.push(prometheus);

        let stop = Arc::new(AtomicBool::new(false));
        let error_percent = Arc::new(AtomicU32::new(0));
        let openai_rate_limiting = Arc::new(AtomicBool::new(true));
        spawn_traffic(
            &logs,
            stop.clone(),
            error_percent.clone(),
            openai_rate_limiting.clone(),
        );
        spawn_backend_health(&backend, stop.clone(), backend_version.clone());

        let stack = Stack {
            _dir: dir,
            pg,
            redis,
            logs,
            _backend: backend,
            backend_version,
            deadmans_switch,
            receiver_pids,
            slack,
            hook,
            smtp,
            restarts,
            rollbacks,
            prom_url,
            am_urls,
            receiver_urls,
            started,
            error_percent,
            openai_rate_limiting,
            stop,
            _procs: procs,
        };
        // exporter, node exporter, Prometheus, and each receiver and Alertmanager.
        let targets = 3 + opts.receivers + opts.alertmanagers;
        wait_until(Duration::from_secs(30), "every target up", || {
            stack.query("up == 1").len() >= targets
        });
        stack
    }

    /// A deploy of the backend: its /health reports `version` from a
    /// process started now.
    pub fn deploy(&self, version: &str) {
        *self.backend_version.lock().unwrap() = (version.to_string(), Instant::now());
    }

    /// An instant query; the result vector.
    /// An instant query. Any error (Prometheus down, a bad expression, a
    /// non-success answer) fails the test: an empty result must mean "no
    /// series", never "could not ask".
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let resp: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.prom_url))
            .query(&[("query", expr)])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("query {expr:?}: {e}"));
        assert_eq!(
            resp["status"], "success",
            "query {expr:?}: {}: {}",
            resp["errorType"], resp["error"]
        );
        resp["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("query {expr:?}: no result array in {resp}"))
    }

    /// A range query from the stack's start to now; Err names the problem.
    pub fn query_range(&self, expr: &str) -> Result<Vec<Value>, String> {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let resp = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query_range", self.prom_url))
            .query(&[
                ("query", expr.to_string()),
                ("start", format!("{:.3}", secs(self.started))),
                ("end", format!("{:.3}", secs(SystemTime::now()))),
                ("step", "1".to_string()),
            ])
            .send()
            .map_err(|e| e.to_string())?;
        let body: Value = resp.json().map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Alerts in state `firing` in Prometheus, by name.
    pub fn firing(&self) -> BTreeSet<String> {
        self.query("ALERTS{alertstate=\"firing\"}")
            .iter()
            .filter_map(|s| s["metric"]["alertname"].as_str().map(str::to_string))
            .collect()
    }

    /// Every notification the sinks received.
    pub fn deliveries(&self) -> Vec<Delivery> {
        deliveries(&self.hook, &self.slack, &self.smtp)
    }

    /// The channels that got (alertname, status), with repeats.
    pub fn channels(&self, alertname: &str, status: &str) -> Vec<&'static str> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.alertname == alertname && d.status == status)
            .map(|d| d.channel)
            .collect()
    }

    /// Waits until (alertname, status) reached exactly `expected`, then a
    /// moment more to see that nothing else follows.
    pub fn expect_channels(
        &self,
        alertname: &str,
        status: &str,
        expected: &[&'static str],
        timeout: Duration,
    ) {
        let mut want = expected.to_vec();
        want.sort();
        wait_until(
            timeout,
            &format!("{alertname} {status} on {expected:?}"),
            || {
                let got = self.channels(alertname, status);
                want.iter().all(|c| got.contains(c))
            },
        );
        std::thread::sleep(Duration::from_millis(1500));
        let mut got = self.channels(alertname, status);
        got.sort();
        assert_eq!(got, want, "{alertname} {status}: channels (each once)");
    }

    pub fn write_app_log(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.logs.join("app.log"))
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    }

    /// GET on a receiver with the token.
    pub fn receiver_get(&self, i: usize, path: &str) -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.receiver_urls[i]))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}
