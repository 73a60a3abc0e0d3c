//! Recovery actions end to end, with real processes and a real Redis:
//! commands (a file written, a hang killed with its whole process group,
//! hostile label values kept inert), HTTP, signals, Redis cleanup of
//! 100,000 keys, cooldowns shared by two receivers, caps, dry runs,
//! cancellation on resolve, the audit and the outcome notifications.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{config, wait_until, Receiver, Target, TOKEN};

/// A temp dir and the webhook and Slack stand-ins a test's receiver uses.
pub(crate) struct Sinks {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) hook: Target,
    pub(crate) slack: Target,
}

impl Sinks {
    pub(crate) fn start() -> Sinks {
        Sinks {
            dir: tempfile::tempdir().unwrap(),
            hook: Target::start(vec![]),
            slack: Target::start(vec![]),
        }
    }
}

/// A receiver config (SQLite outbox in `dir`) with a webhook and Slack
/// stand-in and `recovery` TOML appended.
pub(crate) fn recovery_config(
    dir: &Path,
    hook: &Target,
    slack: &Target,
    recovery: &str,
) -> PathBuf {
    let store = format!("sqlite://{}", dir.join("outbox.db").display());
    let path = config(
        dir,
        &store,
        Some(&slack.url("/slack")),
        Some(&hook.url("/hook")),
        None,
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(recovery);
    std::fs::write(&path, text).unwrap();
    path
}

/// One alert with the given labels.
pub(crate) fn alert(status: &str, fingerprint: &str, labels: &[(&str, &str)]) -> String {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"x\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "llmchat",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": "s"},
            "startsAt": "2026-11-26T10:00:00Z",
            "endsAt": if status == "resolved" { "2026-11-26T10:30:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint,
        }]
    })
    .to_string()
}

pub(crate) fn actions(r: &Receiver) -> Value {
    reqwest::blocking::Client::new()
        .get(format!("{}/actions", r.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The audit records of one action, oldest first.
pub(crate) fn audit(r: &Receiver, action: &str) -> Vec<Value> {
    let mut v: Vec<Value> = actions(r)["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == action)
        .cloned()
        .collect();
    v.reverse();
    v
}

/// Waits for an action's audit record to leave `running` and returns it.
pub(crate) fn finished(r: &Receiver, action: &str, count: usize) -> Vec<Value> {
    wait_until(
        Duration::from_secs(30),
        &format!("{count} finished {action} records"),
        || {
            let a = audit(r, action);
            a.len() >= count && a.iter().all(|x| x["result"] != "running")
        },
    );
    audit(r, action)
}

pub(crate) fn metric(r: &Receiver, line_start: &str) -> Option<f64> {
    let text = reqwest::blocking::get(format!("{}/metrics", r.base))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn pid_alive(pid: i32) -> bool {
    // A zombie waiting for its reaper is dead for our purpose.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

#[test]
pub(crate) fn command_action_runs_on_the_fault_label_and_is_audited_counted_and_notified() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let out = dir.path().join("restarted");
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.restart.command]\nargv = [\"sh\", \"-c\", \"echo restarted $LLMCHAT_ALERT_ALERTNAME > {}; echo done\"]\ntimeout = \"10s\"\n",
            out.display()
        ),
    );
    let r = Receiver::start(&cfg);
    // Without credentials, the audit is refused.
    let anon = reqwest::blocking::get(format!("{}/actions", r.base)).unwrap();
    assert_eq!(anon.status(), 401);
    // Resolved alerts and alerts of other faults run nothing.
    let labels = [
        ("alertname", "LLMChatHighErrorRate"),
        ("severity", "warning"),
        ("fault", "high_error_rate"),
    ];
    assert_eq!(
        r.post(&alert("resolved", "fp-1", &labels), Some(TOKEN))
            .status(),
        200
    );
    let other = [
        ("alertname", "LLMChatSlowResponses"),
        ("severity", "warning"),
        ("fault", "slow_response"),
    ];
    assert_eq!(
        r.post(&alert("firing", "fp-2", &other), Some(TOKEN))
            .status(),
        200
    );
    // fp-1, posted next, is the marker: once its run is audited, fp-2 (an
    // earlier post) would have been decided too; the audit holds fp-1 only.
    let resp = r.post(&alert("firing", "fp-1", &labels), Some(TOKEN));
    assert_eq!(resp.status(), 200);
    let runs = finished(&r, "restart", 1);
    let fingerprints: Vec<&str> = runs
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(
        fingerprints,
        ["fp-1"],
        "the slow-response alert triggered restart"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "restarted LLMChatHighErrorRate"
    );
    let run = &runs[0];
    assert_eq!(run["result"], "succeeded", "{run}");
    assert_eq!(run["kind"], "command");
    assert_eq!(run["exit_status"], 0);
    assert_eq!(run["fingerprint"], "fp-1");
    assert_eq!(run["alertname"], "LLMChatHighErrorRate");
    assert_eq!(run["output"].as_str().unwrap().trim(), "done");
    assert!(run["finished_ms"].as_i64().unwrap() >= run["started_ms"].as_i64().unwrap());
    let described = actions(&r);
    assert_eq!(described["actions"][0]["name"], "restart");
    assert_eq!(described["actions"][0]["cooldown_seconds"], 600.0);
    assert_eq!(
        described["triggers"][0]["matchers"][0],
        "fault=\"high_error_rate\""
    );
    assert!(
        !described.to_string().contains("restarted $LLMCHAT"),
        "argv is not shown"
    );
    assert_eq!(
        metric(
            &r,
            "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"succeeded\"}"
        ),
        Some(1.0)
    );

    // The outcome is an info event on the webhook, and follows the alert to Slack.
    wait_until(Duration::from_secs(10), "recovery notifications", || {
        hook.requests()
            .iter()
            .any(|q| q.json()["alertname"] == "LLMChatRecoveryAction")
            && slack
                .requests()
                .iter()
                .any(|q| q.json()["text"] == "[LLMChat][INFO] LLMChatRecoveryAction")
    });
    let info = hook
        .requests()
        .into_iter()
        .map(|q| q.json())
        .find(|j| j["alertname"] == "LLMChatRecoveryAction")
        .unwrap();
    assert_eq!(info["severity"], "info");
    assert_eq!(info["labels"]["action"], "restart");
    assert_eq!(info["labels"]["result"], "succeeded");
    assert_eq!(info["labels"]["trigger_alertname"], "LLMChatHighErrorRate");

    // A repeat within the cooldown is recorded, not run.
    std::fs::remove_file(&out).unwrap();
    r.post(&alert("firing", "fp-1", &labels), Some(TOKEN));
    let runs = finished(&r, "restart", 2);
    assert_eq!(runs[1]["result"], "skipped_cooldown");
    assert!(!out.exists());
    assert_eq!(
        metric(&r, "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"skipped_cooldown\"}"),
        Some(1.0)
    );
    // Results that have not happened are there at 0 (so that the first one
    // is an increase Prometheus sees), for actions and channels alike.
    assert_eq!(
        metric(
            &r,
            "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"failed\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &r,
            "llmchat_receiver_notifications_total{channel=\"webhook\",result=\"dead\"}"
        ),
        Some(0.0)
    );
    // With every family populated, the exposition is clean for promtool.
    let text = reqwest::blocking::get(format!("{}/metrics", r.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("llmchat_receiver_recovery_action_duration_seconds_bucket"));
    let out = llmchat_tests::run_with_stdin("promtool", &["check", "metrics"], text.as_bytes());
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        llmchat_tests::said(&out)
    );
}

#[test]
pub(crate) fn a_hanging_command_is_killed_at_its_timeout_with_its_whole_process_group() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let pid_file = dir.path().join("grandchild.pid");
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.restart]\ncooldown = \"0s\"\n[recovery.actions.restart.command]\n\
             argv = [\"sh\", \"-c\", \"trap '' TERM; sleep 300 & echo $! > {}; echo started; wait\"]\ntimeout = \"1s\"\nkill_grace = \"500ms\"\n",
            pid_file.display()
        ),
    );
    let r = Receiver::start(&cfg);
    let labels = [
        ("alertname", "LLMChatHighErrorRate"),
        ("fault", "high_error_rate"),
    ];
    r.post(&alert("firing", "fp-hang", &labels), Some(TOKEN));
    let runs = finished(&r, "restart", 1);
    let run = &runs[0];
    assert_eq!(run["result"], "timed_out", "{run}");
    assert!(
        run["detail"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{run}"
    );
    assert_eq!(run["output"].as_str().unwrap().trim(), "started");
    // The shell ignored SIGTERM; SIGKILL to the group ended it: 128 + 9.
    assert_eq!(run["exit_status"], 137);
    let took = run["finished_ms"].as_i64().unwrap() - run["started_ms"].as_i64().unwrap();
    assert!((1000..10_000).contains(&took), "{took} ms");
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "the background sleep to be gone",
        || !pid_alive(grandchild),
    );
}

#[test]
pub(crate) fn hostile_label_values_reach_the_command_only_as_inert_environment_values() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.restart.command]\nargv = [\"env\"]\ncwd = \"{}\"\nenv = {{ MODE = \"test\" }}\n",
            dir.path().display()
        ),
    );
    let r = Receiver::start(&cfg);
    let evil = [
        ("alertname", "LLMChatHighErrorRate"),
        ("fault", "high_error_rate"),
        ("instance", "$(touch pwned-subst)"),
        ("job", "a; touch pwned-semicolon"),
        ("service", "`touch pwned-backtick`"),
        ("path", "line1\ntouch pwned-newline\n"),
        ("x-weird.name", "ok"),
    ];
    r.post(&alert("firing", "fp-evil", &evil), Some(TOKEN));
    let runs = finished(&r, "restart", 1);
    assert_eq!(runs[0]["result"], "succeeded", "{}", runs[0]);
    let env: BTreeMap<String, String> = runs[0]["output"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env["LLMCHAT_ALERT_INSTANCE"], "$(touch pwned-subst)");
    assert_eq!(env["LLMCHAT_ALERT_JOB"], "a; touch pwned-semicolon");
    assert_eq!(env["LLMCHAT_ALERT_SERVICE"], "`touch pwned-backtick`");
    assert_eq!(env["LLMCHAT_ALERT_PATH"], "line1 touch pwned-newline ");
    // Outside Prometheus' label grammar: no environment spelling at all.
    assert!(!env.values().any(|v| v == "ok"), "{env:?}");
    assert_eq!(env["LLMCHAT_ALERT_FINGERPRINT"], "fp-evil");
    assert_eq!(env["MODE"], "test");
    assert!(env.contains_key("PATH"));
    // The receiver's own environment (where its secrets may be) is not passed on.
    assert!(
        !env.keys()
            .any(|k| k.starts_with("LLMCHAT_RECEIVER_") || k == "HOME"),
        "{env:?}"
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            !name.starts_with("pwned"),
            "{name} was created: a label was executed"
        );
    }
}

#[test]
pub(crate) fn http_action_posts_to_the_backend_and_checks_the_status() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let backend = Target::start(vec![(200, None), (500, None)]);
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.gc]\ncooldown = \"0s\"\n[recovery.actions.gc.http]\nurl = \"{}\"\nheaders = {{ Authorization = \"Bearer admin-secret-token\" }}\nbody = '{{\"reason\":\"high_memory_usage\"}}'\ntimeout = \"3s\"\n",
            backend.url("/admin/gc")
        ),
    );
    let r = Receiver::start(&cfg);
    let labels = [
        ("alertname", "LLMChatHighMemoryUsage"),
        ("fault", "high_memory_usage"),
    ];
    r.post(&alert("firing", "fp-mem", &labels), Some(TOKEN));
    let runs = finished(&r, "gc", 1);
    assert_eq!(runs[0]["result"], "succeeded", "{}", runs[0]);
    assert_eq!(runs[0]["exit_status"], 200);
    assert_eq!(runs[0]["output"], "ok");
    let got = &backend.requests()[0];
    assert_eq!(got.path, "/admin/gc");
    assert_eq!(
        got.header("authorization"),
        Some("Bearer admin-secret-token")
    );
    assert_eq!(got.json()["reason"], "high_memory_usage");
    // The backend's second answer is a 500: a failure, with the status.
    r.post(&alert("firing", "fp-mem-2", &labels), Some(TOKEN));
    let runs = finished(&r, "gc", 2);
    assert_eq!(runs[1]["result"], "failed", "{}", runs[1]);
    assert_eq!(runs[1]["exit_status"], 500);
    assert!(!actions(&r).to_string().contains("admin-secret-token"));
}

#[test]
pub(crate) fn signal_action_reaches_a_real_process_by_pid_file_and_by_name() {
    let Sinks { dir, hook, slack } = Sinks::start();
    // A stand-in for the Node backend: records the signals it gets.
    let name = format!("llmfake{}", std::process::id() % 100_000);
    let program = dir.path().join(&name);
    // Python, not a shell loop: a shell forks for every `sleep`, and each
    // fork carries the backend's name until it execs, so "the process named
    // X" was sometimes that short-lived child (found under the stress run).
    let python = String::from_utf8(
        // The interpreter itself, not a wrapper (pyenv's shims go by name).
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(python.trim(), &program).unwrap();
    let got = dir.path().join("got");
    let mut backend = Command::new(&program)
        .arg("-c")
        .arg(format!(
            "import signal\n\
             def note(n, _):\n    open({0:?}, 'a').write(signal.Signals(n).name[3:] + '\\n')\n\
             signal.signal(signal.SIGUSR2, note)\nsignal.signal(signal.SIGHUP, note)\n\
             open({0:?}, 'a').write('ready\\n')\nwhile True:\n    signal.pause()\n",
            got.display().to_string()
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Until its handlers are set, either signal would kill it (the default
    // action): on a loaded machine it may not have got that far.
    wait_until(Duration::from_secs(30), "the backend's handlers", || {
        std::fs::read_to_string(&got).is_ok_and(|t| t.contains("ready"))
    });
    let pid_file = dir.path().join("backend.pid");
    std::fs::write(&pid_file, backend.id().to_string()).unwrap();
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.gc.signal]\nsignal = \"SIGUSR2\"\npid_file = \"{}\"\nprocess_name = \"{name}\"\n\
             [recovery.actions.reload.signal]\nsignal = \"HUP\"\nprocess_name = \"{name}\"\n\
             [[recovery.triggers]]\nmatchers = ['fault=\"high_memory_usage\"']\nactions = [\"gc\", \"reload\"]\n",
            pid_file.display()
        ),
    );
    let r = Receiver::start(&cfg);
    let labels = [
        ("alertname", "LLMChatHighMemoryUsage"),
        ("fault", "high_memory_usage"),
    ];
    r.post(&alert("firing", "fp-sig", &labels), Some(TOKEN));
    let gc = finished(&r, "gc", 1);
    let reload = finished(&r, "reload", 1);
    assert_eq!(gc[0]["result"], "succeeded", "{}", gc[0]);
    assert_eq!(reload[0]["result"], "succeeded", "{}", reload[0]);
    assert_eq!(
        gc[0]["output"],
        format!("sent SIGUSR2 to pid {}", backend.id())
    );
    assert_eq!(
        reload[0]["output"],
        format!("sent SIGHUP to pid {}", backend.id())
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&got).unwrap_or_default();
        if text.contains("USR2") && text.contains("HUP") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backend did not record both signals: it wrote {text:?} and has {:?}",
            backend.try_wait()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = backend.kill();
    let _ = backend.wait();
}
