//! Recovery on the right host: a receiver that acts for one instance
//! (`recovery.instance`) runs actions only for that instance's alerts and
//! audits the others as `skipped_other_instance`; receivers of different
//! hosts on one store do not hold back each other's runs, and an HA pair of
//! one host runs an action once; a central receiver reaches each host
//! through a configured instance-to-URL map, never through a label.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::*;
use crate::recovery::{actions, alert, audit, finished};

/// A receiver on `store` acting for `instance` (a matcher), whose
/// `restart` appends the alert's instance to `ran`.
fn host_config(dir: &Path, store: &str, instance: Option<&str>, ran: &Path) -> PathBuf {
    let path = config(dir, store, None, None, None);
    let mut text = std::fs::read_to_string(&path).unwrap();
    if let Some(m) = instance {
        text.push_str(&format!("[recovery]\ninstance = '{m}'\n"));
    }
    text.push_str(&format!(
        "[recovery.actions.restart]\ncooldown = \"10m\"\n[recovery.actions.restart.command]\n\
         argv = [\"sh\", \"-c\", \"echo $LLMCHAT_ALERT_INSTANCE >> {}; sleep 0.3\"]\n",
        ran.display()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn fault(status: &str, instance: &str) -> String {
    alert(
        status,
        &format!("fp-{instance}"),
        &[
            ("alertname", "LLMChatInstanceHighErrorRate"),
            ("severity", "critical"),
            ("fault", "high_error_rate"),
            ("instance", instance),
            ("job", "llmchat"),
        ],
    )
}

fn ran(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_receiver_acts_only_for_its_instance() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran");
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let r = Receiver::start(&host_config(
        dir.path(),
        &store,
        Some("instance=\"host-b:9842\""),
        &log,
    ));
    assert_eq!(actions(&r)["instance"], "instance=\"host-b:9842\"");
    assert_eq!(
        r.post(&fault("firing", "host-a:9842"), Some(TOKEN))
            .status(),
        200
    );
    let skipped = finished(&r, "restart", 1);
    assert_eq!(skipped[0]["result"], "skipped_other_instance");
    assert!(
        skipped[0]["detail"]
            .as_str()
            .unwrap()
            .contains("host-a:9842"),
        "{skipped:?}"
    );
    assert_eq!(
        r.post(&fault("firing", "host-b:9842"), Some(TOKEN))
            .status(),
        200
    );
    let both = finished(&r, "restart", 2);
    assert_eq!(both[1]["result"], "succeeded", "{both:?}");
    assert_eq!(ran(&log), ["host-b:9842"]);
    assert_eq!(
        r.metric("llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"skipped_other_instance\"}"),
        Some(1.0)
    );
}

/// Three hosts' receivers and a second receiver for host-b share one
/// PostgreSQL store; Alertmanager sends every alert to all four. Faults on
/// host-a and host-b at once: each host's restart runs once, on its host,
/// neither held back by the other's lock or cooldown.
#[test]
fn hosts_on_one_store_each_run_their_own_action_once() {
    let pg = llmchat_tests::services::Postgres::start();
    pg.psql_db("postgres", "CREATE DATABASE receiver");
    let store = format!("postgres://postgres@127.0.0.1:{}/receiver", pg.port);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let hosts = ["host-a:9842", "host-b:9842", "host-c:9842", "host-b:9842"];
    let receivers: Vec<(Receiver, PathBuf)> = dirs
        .iter()
        .zip(hosts)
        .map(|(d, host)| {
            let log = d.path().join("ran");
            let m = format!("instance=\"{host}\"");
            (
                Receiver::start(&host_config(d.path(), &store, Some(&m), &log)),
                log,
            )
        })
        .collect();
    std::thread::scope(|s| {
        for (r, _) in &receivers {
            s.spawn(|| {
                for host in ["host-a:9842", "host-b:9842"] {
                    assert_eq!(r.post(&fault("firing", host), Some(TOKEN)).status(), 200);
                }
            });
        }
    });
    // Two posts per receiver, each audited once as a run or a skip.
    for (r, _) in &receivers {
        finished(r, "restart", 2);
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(ran(&receivers[0].1), ["host-a:9842"]);
    let host_b: Vec<String> = ran(&receivers[1].1)
        .into_iter()
        .chain(ran(&receivers[3].1))
        .collect();
    assert_eq!(host_b, ["host-b:9842"], "host-b's pair runs it once");
    assert!(ran(&receivers[2].1).is_empty(), "host-c runs nothing");
    let results: Vec<String> = audit(&receivers[2].0, "restart")
        .iter()
        .map(|a| a["result"].as_str().unwrap().to_string())
        .collect();
    // One store: every receiver's audit is the same eight rows.
    assert_eq!(results.len(), 8, "{results:?}");
    let count = |r: &str| results.iter().filter(|x| *x == r).count();
    assert_eq!(count("succeeded"), 2, "{results:?}");
    assert_eq!(count("skipped_other_instance"), 5, "{results:?}");
    assert_eq!(
        count("skipped_running") + count("skipped_cooldown"),
        1,
        "the pair's second receiver: {results:?}"
    );
}

#[test]
fn a_central_receiver_reaches_each_host_through_its_configured_url() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Target::start(vec![]), Target::start(vec![]));
    let store = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let path = config(dir.path(), &store, None, None, None);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[[recovery.triggers]]\nmatchers = ['fault=\"high_memory_usage\"']\nactions = [\"gc\"]\n\
         [recovery.actions.gc]\ncooldown = \"10m\"\n[recovery.actions.gc.http]\n\
         url_by_instance = {{ \"host-a:9842\" = \"{}\", \"host-b:9842\" = \"{}\" }}\n",
        a.url("/admin/gc"),
        b.url("/admin/gc")
    ));
    std::fs::write(&path, text).unwrap();
    let r = Receiver::start(&path);
    let gc = |instance: &str| {
        alert(
            "firing",
            &format!("fp-mem-{}", instance.len()),
            &[
                ("alertname", "LLMChatHighMemoryUsage"),
                ("severity", "critical"),
                ("fault", "high_memory_usage"),
                ("instance", instance),
            ],
        )
    };
    for instance in ["host-a:9842", "host-b:9842", "http://evil.example/"] {
        assert_eq!(r.post(&gc(instance), Some(TOKEN)).status(), 200);
    }
    let records = finished(&r, "gc", 3);
    let results: Vec<&str> = records
        .iter()
        .map(|x| x["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|x| **x == "succeeded").count(),
        2,
        "each host once, its cooldown its own: {results:?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|x| **x == "skipped_other_instance")
            .count(),
        1,
        "an instance with no URL, whatever its label says: {results:?}"
    );
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 1);
    assert_eq!(a.requests()[0].path, "/admin/gc");
}
