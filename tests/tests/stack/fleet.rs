//! LLMChat on three hosts: each host runs an exporter with `--role host`
//! (its own logs and backend stand-in) and a receiver acting only for its
//! own instance (`recovery.instance`); one exporter with `--role services`
//! watches the shared PostgreSQL and Redis. The receivers share one
//! PostgreSQL outbox (a second server, not the one being monitored), so an
//! alert that Alertmanager posts to all three is notified once. Prometheus
//! and Alertmanager run the stack's own files (rules scaled, addresses
//! substituted, the receiver listed three times).

use llmchat_common::lock;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llmchat_tests::services::{Postgres, Redis, LLMCHAT_SCHEMA};
use llmchat_tests::sinks::{SmtpSink, Target};
use llmchat_tests::{free_port, repo_root};
use serde_json::Value;

use crate::harness::{
    bin, deliveries, ready, spawn_traffic, start_prometheus, substitute, wait_until, Delivery,
    Proc, Targets, INTERVAL, ONE_AT_A_TIME, TOKEN,
};

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];
const ALL: [&str; 3] = ["email", "slack", "webhook"];
const WARNING: [&str; 2] = ["slack", "webhook"];
const FIRE: Duration = Duration::from_secs(60);

struct Host {
    /// Prometheus' `instance` label of its exporter.
    instance: String,
    backend: Target,
    restarts: PathBuf,
    receiver_url: String,
    error_percent: Arc<AtomicU32>,
}

struct Fleet {
    _dir: tempfile::TempDir,
    pg: Postgres,
    _store: Postgres,
    _redis: Redis,
    hosts: Vec<Host>,
    slack: Target,
    hook: Target,
    smtp: SmtpSink,
    prom_url: String,
    am_url: String,
    _deadmans_switch: Target,
    stop: Arc<AtomicBool>,
    _procs: Vec<Proc>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

const HEALTHY: &str = r#"{"status":"healthy","checks":[{"name":"database","status":"healthy"},{"name":"redis","status":"healthy"}]}"#;
const DEGRADED: &str = r#"{"status":"degraded","checks":[{"name":"database","status":"unhealthy"},{"name":"redis","status":"healthy"},{"name":"disk","status":"healthy"}]}"#;

impl Fleet {
    fn start() -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("llmchat-fleet")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        let mut procs = Vec::new();
        let pg = Postgres::start();
        pg.psql(LLMCHAT_SCHEMA);
        let store = Postgres::start();
        store.psql_db("postgres", "CREATE DATABASE receiver");
        let redis = Redis::start();
        let (slack, hook, smtp) = (
            Target::start(vec![]),
            Target::start(vec![]),
            SmtpSink::start(),
        );
        let deadmans_switch = Target::start(vec![]);
        let stop = Arc::new(AtomicBool::new(false));
        let token_file = d.join("receiver_token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

        // The services exporter: PostgreSQL, Redis, backups.
        let backups = d.join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        std::fs::write(backups.join("database_20261126_020000.sql"), "-- dump\n").unwrap();
        let services_port = free_port();
        procs.push(Proc::spawn(
            Command::new(bin("llmchat-exporter"))
                .args(["--role", "services"])
                .env(
                    "LLMCHAT_EXPORTER_WEB_LISTEN_ADDRESS",
                    format!("127.0.0.1:{services_port}"),
                )
                .env("LLMCHAT_EXPORTER_DATABASE_URL", pg.url())
                .env("LLMCHAT_EXPORTER_REDIS_URL", redis.url())
                .env("LLMCHAT_EXPORTER_BACKUP_DIR", &backups),
            "llmchat-exporter --role services",
        ));
        ready(
            &format!("http://127.0.0.1:{services_port}/-/ready"),
            "services exporter",
        );

        let mut hosts = Vec::new();
        for name in HOSTS {
            let logs = d.join(name);
            std::fs::create_dir_all(&logs).unwrap();
            for f in ["app.log", "error.log", "access.log"] {
                std::fs::write(logs.join(f), "").unwrap();
            }
            let backend = Target::start(vec![]);
            backend.set_body(HEALTHY);
            let port = free_port();
            procs.push(Proc::spawn(
                Command::new(bin("llmchat-exporter"))
                    .args(["--role", "host"])
                    .env(
                        "LLMCHAT_EXPORTER_WEB_LISTEN_ADDRESS",
                        format!("127.0.0.1:{port}"),
                    )
                    .env(
                        "LLMCHAT_EXPORTER_LOGS_APP",
                        format!("{0}/app.log,{0}/error.log", logs.display()),
                    )
                    .env("LLMCHAT_EXPORTER_LOGS_ACCESS", logs.join("access.log"))
                    .env("LLMCHAT_EXPORTER_APP_URL", backend.url(""))
                    .env("LLMCHAT_EXPORTER_HOST_PROCESS_NAME", "prometheus"),
                "llmchat-exporter --role host",
            ));
            ready(&format!("http://127.0.0.1:{port}/-/ready"), "host exporter");
            let instance = format!("127.0.0.1:{port}");
            let error_percent = Arc::new(AtomicU32::new(0));
            spawn_traffic(
                &logs,
                stop.clone(),
                error_percent.clone(),
                Arc::new(AtomicBool::new(true)),
            );

            // This host's receiver: acts only for this host's instance.
            let restarts = d.join(format!("{name}-restarts"));
            let receiver_port = free_port();
            let config = d.join(format!("{name}-receiver.toml"));
            std::fs::write(
                &config,
                format!(
                    "[web]\nlisten_address = \"127.0.0.1:{receiver_port}\"\nbearer_token_file = \"{}\"\n\
                     [store]\nurl = \"postgres://postgres@127.0.0.1:{}/receiver\"\n\
                     [delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"2s\"\npoll_interval = \"100ms\"\nslack_interval = \"50ms\"\ntimeout = \"3s\"\n\
                     [channels.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"LLMChat Alerts <alerts@llmchat.test>\"\n\
                     to = {{ critical = [\"oncall@llmchat.test\"], default = [\"team@llmchat.test\"] }}\n\
                     [channels.slack]\nwebhook_url = \"{}\"\n\
                     [channels.webhook]\nurl = \"{}\"\n\
                     [recovery]\ninstance = 'instance=\"{instance}\"'\n\
                     [recovery.actions.restart]\ncooldown = \"10m\"\n\
                     [recovery.actions.restart.command]\nargv = [\"sh\", \"-c\", \"echo \\\"$LLMCHAT_ALERT_ALERTNAME $LLMCHAT_ALERT_INSTANCE\\\" >> {}\"]\ntimeout = \"10s\"\n",
                    token_file.display(),
                    store.port,
                    smtp.port,
                    slack.url("/services/T000/B000/XXXX"),
                    hook.url("/hook"),
                    restarts.display()
                ),
            )
            .unwrap();
            procs.push(Proc::spawn(
                Command::new(bin("llmchat-receiver"))
                    .arg("--config.file")
                    .arg(&config),
                "llmchat-receiver",
            ));
            let receiver_url = format!("http://127.0.0.1:{receiver_port}");
            ready(&format!("{receiver_url}/-/ready"), "receiver");
            hosts.push(Host {
                instance,
                backend,
                restarts,
                receiver_url,
                error_percent,
            });
        }

        // Alertmanager: the stack's file, its one webhook made three.
        let am_port = free_port();
        let f = "stack/alertmanager.yml";
        let mut am = std::fs::read_to_string(repo_root().join(f)).unwrap();
        let start = am
            .find("      - url: \"http://llmchat-receiver:9843/webhook\"")
            .expect("webhook block");
        let end = am[start..]
            .find("credentials_file: /run/llmchat-secrets/receiver_token\n")
            .unwrap()
            + start
            + "credentials_file: /run/llmchat-secrets/receiver_token\n".len();
        let block = am[start..end].to_string();
        let blocks: String = hosts
            .iter()
            .map(|h| {
                block
                    .replace("http://llmchat-receiver:9843", &h.receiver_url)
                    .replace(
                        "/run/llmchat-secrets/receiver_token",
                        &token_file.display().to_string(),
                    )
            })
            .collect();
        am.replace_range(start..end, &blocks);
        substitute(
            &mut am,
            f,
            "mailpit:1025",
            &format!("127.0.0.1:{}", smtp.port),
        );
        substitute(
            &mut am,
            f,
            "http://deadmans-switch.invalid/ping",
            &deadmans_switch.url("/ping"),
        );
        substitute(
            &mut am,
            f,
            "group_wait: 30s",
            &format!("group_wait: {INTERVAL}"),
        );
        substitute(
            &mut am,
            f,
            "group_interval: 5m",
            &format!("group_interval: {INTERVAL}"),
        );
        let am_config = d.join("alertmanager.yml");
        std::fs::write(&am_config, am).unwrap();
        procs.push(Proc::spawn(
            Command::new("prometheus-alertmanager")
                .arg(format!("--config.file={}", am_config.display()))
                .arg(format!("--storage.path={}", d.join("am").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
                .arg("--cluster.listen-address="),
            "prometheus-alertmanager",
        ));
        let am_url = format!("http://127.0.0.1:{am_port}");
        ready(&format!("{am_url}/-/ready"), "alertmanager");

        // Prometheus: the stack's file; the one exporter target made four.
        let exporters: Vec<String> = hosts
            .iter()
            .map(|h| h.instance.clone())
            .chain([format!("127.0.0.1:{services_port}")])
            .collect();
        let receivers: Vec<String> = hosts
            .iter()
            .map(|h| h.receiver_url.trim_start_matches("http://").to_string())
            .collect();
        let (prometheus, prom_url) = start_prometheus(
            &d,
            &Targets {
                exporters: &exporters,
                receivers: &receivers,
                // No node exporter here: its target is simply absent.
                node: format!("127.0.0.1:{}", free_port()),
                alertmanagers: &[format!("127.0.0.1:{am_port}")],
            },
        );
        procs.push(prometheus);
        let fleet = Fleet {
            _dir: dir,
            pg,
            _store: store,
            _redis: redis,
            hosts,
            slack,
            hook,
            smtp,
            prom_url,
            am_url,
            _deadmans_switch: deadmans_switch,
            stop,
            _procs: procs,
        };
        wait_until(Duration::from_secs(30), "four exporters up", || {
            fleet.query("up{job=\"llmchat-exporter\"} == 1").len() == 4
        });
        fleet
    }

    fn query(&self, expr: &str) -> Vec<Value> {
        let resp: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.prom_url))
            .query(&[("query", expr)])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("query {expr:?}: {e}"));
        assert_eq!(resp["status"], "success", "{expr}: {resp}");
        resp["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn firing(&self, alertname: &str) -> Vec<Value> {
        self.query(&format!(
            "ALERTS{{alertname=\"{alertname}\", alertstate=\"firing\"}}"
        ))
    }

    fn channels(&self, alertname: &str, status: &str) -> Vec<&'static str> {
        let mut got: Vec<&'static str> = deliveries(&self.hook, &self.slack, &self.smtp)
            .into_iter()
            .filter(|d: &Delivery| d.alertname == alertname && d.status == status)
            .map(|d| d.channel)
            .collect();
        got.sort();
        got
    }

    /// (alertname, status) reached each of `channels` exactly once.
    fn expect_once_per_channel(&self, alertname: &str, status: &str, channels: &[&str]) {
        wait_until(
            FIRE,
            &format!("{alertname} {status} on {channels:?}"),
            || {
                channels
                    .iter()
                    .all(|c| self.channels(alertname, status).contains(c))
            },
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            self.channels(alertname, status),
            channels,
            "{alertname} {status}: once per channel"
        );
    }

    fn audit(&self, host: usize) -> Vec<Value> {
        let v: Value = reqwest::blocking::Client::new()
            .get(format!(
                "{}/actions?action=restart",
                self.hosts[host].receiver_url
            ))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["audit"].as_array().cloned().unwrap_or_default()
    }

    /// Alertmanager's view: is the alert inhibited?
    fn inhibited(&self, alertname: &str) -> Option<bool> {
        let alerts: Vec<Value> = reqwest::blocking::get(format!("{}/api/v2/alerts", self.am_url))
            .unwrap()
            .json()
            .unwrap();
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == alertname)
            .map(|a| {
                !a["status"]["inhibitedBy"]
                    .as_array()
                    .is_none_or(|v| v.is_empty())
            })
    }
}

#[test]
fn a_fault_on_one_host_alerts_recovers_and_notifies_there_only() {
    let _one = lock(&ONE_AT_A_TIME);
    let mut fleet = Fleet::start();
    std::thread::sleep(Duration::from_secs(6));

    // 1. host-b answers 10% 5xx; the fleet stays near 3%.
    fleet.hosts[1].error_percent.store(10, Ordering::Release);
    wait_until(FIRE, "LLMChatInstanceHighErrorRate firing", || {
        !fleet.firing("LLMChatInstanceHighErrorRate").is_empty()
    });
    let firing = fleet.firing("LLMChatInstanceHighErrorRate");
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(
        firing[0]["metric"]["instance"],
        fleet.hosts[1].instance.as_str()
    );
    fleet.expect_once_per_channel("LLMChatInstanceHighErrorRate", "firing", &WARNING);
    assert!(
        fleet.firing("LLMChatHighErrorRate").is_empty(),
        "the fleet is fine"
    );
    // host-b's restart ran, on host-b only; the others recorded why not.
    wait_until(Duration::from_secs(20), "host-b's restart", || {
        std::fs::read_to_string(&fleet.hosts[1].restarts).is_ok_and(|t| !t.is_empty())
    });
    let ran = std::fs::read_to_string(&fleet.hosts[1].restarts).unwrap();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        [format!(
            "LLMChatInstanceHighErrorRate {}",
            fleet.hosts[1].instance
        )]
    );
    for other in [0, 2] {
        assert!(
            !fleet.hosts[other].restarts.exists(),
            "host {other} ran a restart"
        );
    }
    wait_until(Duration::from_secs(20), "three audit rows", || {
        fleet.audit(0).len() >= 3
    });
    let results: Vec<String> = fleet
        .audit(0)
        .iter()
        .map(|a| a["result"].as_str().unwrap().to_string())
        .collect();
    let count = |r: &str| results.iter().filter(|x| *x == r).count();
    assert_eq!(count("succeeded"), 1, "{results:?}");
    assert_eq!(count("skipped_other_instance"), 2, "{results:?}");
    fleet.hosts[1].error_percent.store(0, Ordering::Release);
    fleet.expect_once_per_channel("LLMChatInstanceHighErrorRate", "resolved", &WARNING);

    // 2. PostgreSQL stops: DatabaseDown fires once (not once per host), and
    // the health alerts it causes are inhibited.
    for h in &fleet.hosts {
        h.backend.set_body(DEGRADED);
    }
    fleet.pg.kill();
    wait_until(FIRE, "LLMChatDatabaseDown firing", || {
        !fleet.firing("LLMChatDatabaseDown").is_empty()
    });
    fleet.expect_once_per_channel("LLMChatDatabaseDown", "firing", &ALL);
    assert_eq!(fleet.firing("LLMChatDatabaseDown").len(), 1);
    wait_until(FIRE, "LLMChatAppDegraded firing in Prometheus", || {
        fleet.firing("LLMChatAppDegraded").len() == 3
    });
    wait_until(Duration::from_secs(20), "AppDegraded inhibited", || {
        fleet.inhibited("LLMChatAppDegraded") == Some(true)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        fleet.channels("LLMChatAppDegraded", "firing").is_empty(),
        "an inhibited alert notifies nobody"
    );
}
