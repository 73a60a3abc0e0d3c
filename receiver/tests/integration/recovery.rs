//! Recovery actions end to end, with real processes and a real Redis:
//! commands (a file written, a hang killed with its whole process group,
//! hostile label values kept inert), HTTP, signals, Redis cleanup of
//! 100,000 keys, cooldowns shared by two receivers, caps, dry runs,
//! cancellation on resolve, the audit and the outcome notifications.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use llmchat_tests::services::Redis;
use serde_json::{json, Value};

use crate::helpers::{config, wait_until, Receiver, Target, TOKEN};

/// A temp dir and the webhook and Slack stand-ins a test's receiver uses.
struct Sinks {
    dir: tempfile::TempDir,
    hook: Target,
    slack: Target,
}

impl Sinks {
    fn start() -> Sinks {
        Sinks {
            dir: tempfile::tempdir().unwrap(),
            hook: Target::start(vec![]),
            slack: Target::start(vec![]),
        }
    }
}

/// A receiver config (SQLite outbox in `dir`) with a webhook and Slack
/// stand-in and `recovery` TOML appended.
fn recovery_config(dir: &Path, hook: &Target, slack: &Target, recovery: &str) -> PathBuf {
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

fn metric(r: &Receiver, line_start: &str) -> Option<f64> {
    let text = reqwest::blocking::get(format!("{}/metrics", r.base))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn pid_alive(pid: i32) -> bool {
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
fn command_action_runs_on_the_fault_label_and_is_audited_counted_and_notified() {
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
fn a_hanging_command_is_killed_at_its_timeout_with_its_whole_process_group() {
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
fn hostile_label_values_reach_the_command_only_as_inert_environment_values() {
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
fn http_action_posts_to_the_backend_and_checks_the_status() {
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
fn signal_action_reaches_a_real_process_by_pid_file_and_by_name() {
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

#[test]
fn redis_cleanup_removes_only_the_configured_patterns_of_100k_keys() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let redis = Redis::start();
    let fill = |prefix: &str, n: u32| {
        let script =
            format!("for i=1,{n} do redis.call('SET', '{prefix}' .. i, 'v') end return {n}");
        redis.cli(&["EVAL", &script, "0"]);
    };
    fill("cache:agents:", 30_000);
    fill("cache:messages:", 30_000);
    fill("sessions:", 25_000);
    fill("users:", 15_000);
    assert_eq!(redis.cli(&["DBSIZE"]), "100000");
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.trim]\ncooldown = \"0s\"\n[recovery.actions.trim.redis_cleanup]\nurl = \"{0}\"\npatterns = [\"cache:agents:*\"]\nmax_keys = 5000\n\
             [recovery.actions.cache_cleanup]\ncooldown = \"0s\"\n[recovery.actions.cache_cleanup.redis_cleanup]\nurl = \"{0}\"\npatterns = [\"cache:agents:*\", \"cache:messages:*\"]\ntimeout = \"20s\"\n\
             [recovery.actions.bounded]\ncooldown = \"0s\"\n[recovery.actions.bounded.redis_cleanup]\nurl = \"{0}\"\npatterns = [\"users:*\"]\ntimeout = \"300ms\"\nscan_count = 1\n\
             [[recovery.triggers]]\nmatchers = ['fault=\"bounded\"']\nactions = [\"bounded\"]\n\
             [[recovery.triggers]]\nmatchers = ['fault=\"trim\"']\nactions = [\"trim\"]\n\
             [[recovery.triggers]]\nmatchers = ['fault=\"slow_response\"']\nactions = [\"cache_cleanup\"]\n",
            redis.url()
        ),
    );
    let r = Receiver::start(&cfg);
    // The bound on keys per run holds.
    r.post(
        &alert(
            "firing",
            "fp-trim",
            &[("alertname", "T"), ("fault", "trim")],
        ),
        Some(TOKEN),
    );
    let trim = finished(&r, "trim", 1);
    assert_eq!(trim[0]["result"], "succeeded", "{}", trim[0]);
    assert!(
        trim[0]["output"]
            .as_str()
            .unwrap()
            .contains("unlinked 5000 keys"),
        "{}",
        trim[0]
    );
    assert!(trim[0]["output"]
        .as_str()
        .unwrap()
        .contains("max_keys reached"));
    assert_eq!(redis.cli(&["DBSIZE"]), "95000");

    let labels = [
        ("alertname", "LLMChatSlowResponses"),
        ("fault", "slow_response"),
    ];
    r.post(&alert("firing", "fp-slow", &labels), Some(TOKEN));
    let runs = finished(&r, "cache_cleanup", 1);
    assert_eq!(runs[0]["result"], "succeeded", "{}", runs[0]);
    assert!(
        runs[0]["output"]
            .as_str()
            .unwrap()
            .contains("unlinked 55000 keys"),
        "{}",
        runs[0]
    );
    assert_eq!(redis.cli(&["DBSIZE"]), "40000");
    assert_eq!(
        redis.cli(&["EVAL", "return #redis.call('KEYS', 'cache:*')", "0"]),
        "0"
    );
    assert_eq!(
        redis.cli(&["EVAL", "return #redis.call('KEYS', 'sessions:*')", "0"]),
        "25000"
    );
    assert_eq!(
        redis.cli(&["EVAL", "return #redis.call('KEYS', 'users:*')", "0"]),
        "15000"
    );

    // The time bound holds: 40,000 keys scanned one at a time (40,000
    // round trips) cannot be done in 300 ms, so the run stops early, with
    // success, and says why. (The budget covers connecting too; 300 ms
    // leaves room for that on a loaded machine, where 1 ms did not.)
    r.post(
        &alert(
            "firing",
            "fp-bounded",
            &[("alertname", "B"), ("fault", "bounded")],
        ),
        Some(TOKEN),
    );
    let bounded = finished(&r, "bounded", 1);
    assert_eq!(bounded[0]["result"], "succeeded", "{}", bounded[0]);
    assert!(
        bounded[0]["output"]
            .as_str()
            .unwrap()
            .contains("time budget reached"),
        "{}",
        bounded[0]
    );
    let users: u64 = redis
        .cli(&["EVAL", "return #redis.call('KEYS', 'users:*')", "0"])
        .parse()
        .unwrap();
    assert!(users > 0, "the run went past its time budget");
}

#[test]
fn two_receivers_on_one_redis_share_the_cooldown_and_the_action_runs_once() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let redis = Redis::start();
    let ran = dir.path().join("ran");
    let recovery = format!(
        "[recovery]\nredis_url = \"{}\"\n[recovery.actions.restart.command]\nargv = [\"sh\", \"-c\", \"echo $$ >> {}\"]\n",
        redis.url(),
        ran.display()
    );
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = Receiver::start(&recovery_config(&a_dir, &hook, &slack, &recovery));
    let b = Receiver::start(&recovery_config(&b_dir, &hook, &slack, &recovery));
    let body = alert(
        "firing",
        "fp-ha",
        &[
            ("alertname", "LLMChatHighErrorRate"),
            ("fault", "high_error_rate"),
        ],
    );
    // Both members of an Alertmanager pair post the same alert at once.
    std::thread::scope(|s| {
        s.spawn(|| a.post(&body, Some(TOKEN)));
        s.spawn(|| b.post(&body, Some(TOKEN)));
    });
    let ra = finished(&a, "restart", 1);
    let rb = finished(&b, "restart", 1);
    let mut results = vec![
        ra[0]["result"].as_str().unwrap().to_string(),
        rb[0]["result"].as_str().unwrap().to_string(),
    ];
    results.sort();
    // The loser finds the run lock held, or, if it came later, the cooldown.
    assert!(
        results == ["skipped_cooldown", "succeeded"] || results == ["skipped_running", "succeeded"],
        "{results:?}"
    );
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 1);
    assert_eq!(actions(&a)["cooldown_backend"], "redis");
    let ttl: i64 = redis
        .cli(&["PTTL", "llmchat:recovery:live:restart:cooldown"])
        .parse()
        .unwrap();
    assert!(ttl > 590_000 && ttl <= 600_000, "{ttl}");
    // With the shared Redis gone, nothing runs: no decision can be trusted.
    drop(redis);
    let other = alert(
        "firing",
        "fp-ha-2",
        &[
            ("alertname", "LLMChatHighErrorRate"),
            ("fault", "high_error_rate"),
        ],
    );
    a.post(&other, Some(TOKEN));
    let ra = finished(&a, "restart", 2);
    assert_eq!(ra[1]["result"], "skipped_unavailable", "{}", ra[1]);
    assert!(
        ra[1]["detail"].as_str().unwrap().contains("Redis"),
        "{}",
        ra[1]
    );
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 1);
}

#[test]
fn dry_run_records_the_decision_without_running() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let ran = dir.path().join("ran");
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.restart.command]\nargv = [\"touch\", \"{0}\"]\n\
             [recovery.actions.gc]\ndry_run = true\n[recovery.actions.gc.command]\nargv = [\"touch\", \"{0}\"]\n",
            ran.display()
        ),
    );
    // Per action: gc is dry, restart is not; a firing restart would run.
    let r = Receiver::start(&cfg);
    r.post(
        &alert(
            "firing",
            "fp-dry",
            &[("alertname", "M"), ("fault", "high_memory_usage")],
        ),
        Some(TOKEN),
    );
    let gc = finished(&r, "gc", 1);
    assert_eq!(gc[0]["result"], "dry_run");
    assert_eq!(gc[0]["dry_run"], true);
    // The barrier: the decision's outcome notice is queued at the very end
    // of its flow, after any run would have ended; once it has been
    // delivered, a command that ran would have touched the file.
    wait_for_dry_run_notice(&hook, "gc");
    assert!(!ran.exists(), "a dry run ran the command");
    drop(r);
    // Globally, with the flag.
    let port = crate::helpers::free_port();
    let r = Receiver::start_with_args(&cfg, port, &["--recovery.dry-run"]);
    r.post(
        &alert(
            "firing",
            "fp-dry-2",
            &[("alertname", "E"), ("fault", "high_error_rate")],
        ),
        Some(TOKEN),
    );
    let restart = finished(&r, "restart", 1);
    assert_eq!(restart[0]["result"], "dry_run");
    assert_eq!(actions(&r)["dry_run"], true);
    wait_for_dry_run_notice(&hook, "restart");
    assert!(!ran.exists(), "a dry run ran the command");
    assert_eq!(
        metric(
            &r,
            "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"dry_run\"}"
        ),
        Some(1.0)
    );
}

/// Waits for the outcome notice of `action`'s dry run at the webhook.
fn wait_for_dry_run_notice(hook: &Target, action: &str) {
    wait_until(
        Duration::from_secs(10),
        &format!("the notice of {action}'s dry run"),
        || {
            hook.requests().iter().any(|q| {
                let j = q.json();
                j["alertname"] == "LLMChatRecoveryAction"
                    && j["labels"]["result"] == "dry_run"
                    && j["labels"]["action"] == action
            })
        },
    );
}

#[test]
fn runs_per_hour_are_capped_and_a_resolved_alert_cancels_its_command() {
    let Sinks { dir, hook, slack } = Sinks::start();
    // gc's command starts a grandchild and records its pid: cancelling must
    // end the whole process group, not only the shell.
    let pid_file = dir.path().join("gc.pid");
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.restart]\ncooldown = \"0s\"\nmax_runs_per_hour = 2\n[recovery.actions.restart.command]\nargv = [\"true\"]\n\
             [recovery.actions.gc]\ncancel_on_resolve = true\n[recovery.actions.gc.command]\n\
             argv = [\"sh\", \"-c\", \"sleep 30 & echo $! > {}; wait\"]\n",
            pid_file.display()
        ),
    );
    let r = Receiver::start(&cfg);
    let labels = [("alertname", "E"), ("fault", "high_error_rate")];
    for i in 1..=3 {
        r.post(&alert("firing", &format!("fp-{i}"), &labels), Some(TOKEN));
        finished(&r, "restart", i);
    }
    let results: Vec<String> = audit(&r, "restart")
        .iter()
        .map(|a| a["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(results, ["succeeded", "succeeded", "skipped_rate_limit"]);

    let mem = [("alertname", "M"), ("fault", "high_memory_usage")];
    r.post(&alert("firing", "fp-m", &mem), Some(TOKEN));
    wait_until(Duration::from_secs(10), "gc to be running", || {
        audit(&r, "gc")
            .first()
            .is_some_and(|a| a["result"] == "running")
    });
    // One run at a time: a second alert while it runs is recorded, not run.
    r.post(&alert("firing", "fp-m2", &mem), Some(TOKEN));
    wait_until(Duration::from_secs(10), "the skipped decision", || {
        audit(&r, "gc")
            .iter()
            .any(|a| a["result"] == "skipped_running")
    });
    r.post(&alert("resolved", "fp-m", &mem), Some(TOKEN));
    let gc = finished(&r, "gc", 2);
    let run = gc.iter().find(|a| a["fingerprint"] == "fp-m").unwrap();
    assert_eq!(run["result"], "cancelled", "{run}");
    let took = run["finished_ms"].as_i64().unwrap() - run["started_ms"].as_i64().unwrap();
    assert!(took < 20_000, "{took} ms");
    // The grandchild is gone (or a zombie waiting for init): not running.
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    wait_until(
        Duration::from_secs(10),
        "the cancelled command's sleep to end",
        || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
        },
    );
}

#[test]
fn bad_recovery_config_is_refused_before_listening() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        "[[recovery.triggers]]\nmatchers = ['fault=~\"(\"']\nactions = []\n",
    );
    let out = Command::new(crate::helpers::BIN)
        .arg("--config.file")
        .arg(&cfg)
        .arg("--config.check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("recovery.triggers") && err.contains("invalid regex"),
        "{err}"
    );
}

#[test]
fn one_run_at_a_time_holds_across_receivers_sharing_redis() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let redis = Redis::start();
    let ran = dir.path().join("ran");
    // The first run holds until the test releases it (after the second
    // receiver has decided), however slow the machine: no sleep to race.
    let release = dir.path().join("release");
    // No cooldown: only the run lock keeps the second receiver from
    // restarting while the first one's restart is still going.
    let recovery = format!(
        "[recovery]\nredis_url = \"{url}\"\n[recovery.actions.restart]\ncooldown = \"0s\"\n\
         [recovery.actions.restart.command]\nargv = [\"sh\", \"-c\", \"echo start >> {ran}; while [ ! -e {release} ]; do sleep 0.05; done; echo end >> {ran}\"]\n",
        url = redis.url(),
        ran = ran.display(),
        release = release.display()
    );
    let dirs: Vec<_> = ["a", "b"].iter().map(|n| dir.path().join(n)).collect();
    let receivers: Vec<Receiver> = dirs
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d).unwrap();
            Receiver::start(&recovery_config(d, &hook, &slack, &recovery))
        })
        .collect();
    let body = alert(
        "firing",
        "fp-lock",
        &[
            ("alertname", "LLMChatHighErrorRate"),
            ("fault", "high_error_rate"),
        ],
    );
    receivers[0].post(&body, Some(TOKEN));
    wait_until(Duration::from_secs(10), "the first run to start", || {
        std::fs::read_to_string(&ran).is_ok_and(|t| t.contains("start"))
    });
    receivers[1].post(&body, Some(TOKEN));
    let second = finished(&receivers[1], "restart", 1);
    assert_eq!(second[0]["result"], "skipped_running", "{}", second[0]);
    assert_eq!(second[0]["detail"], "running in another replica");
    std::fs::write(&release, "").unwrap();
    let first = finished(&receivers[0], "restart", 1);
    assert_eq!(first[0]["result"], "succeeded");
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "start\nend\n");
    // Released: the next alert runs again.
    receivers[1].post(
        &alert(
            "firing",
            "fp-lock-2",
            &[("alertname", "E"), ("fault", "high_error_rate")],
        ),
        Some(TOKEN),
    );
    let second = finished(&receivers[1], "restart", 2);
    assert_eq!(second[1]["result"], "succeeded", "{}", second[1]);
}

#[test]
fn a_run_cut_short_by_a_receiver_crash_is_recorded_as_abandoned() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let pid_file = dir.path().join("child.pid");
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery]\nmaintenance_interval = \"200ms\"\n[recovery.actions.restart]\ncooldown = \"0s\"\n[recovery.actions.restart.command]\n\
             argv = [\"sh\", \"-c\", \"echo $$ > {}; exec sleep 30\"]\ntimeout = \"1s\"\nkill_grace = \"0s\"\n",
            pid_file.display()
        ),
    );
    let r = Receiver::start(&cfg);
    let port = r.port;
    r.post(
        &alert(
            "firing",
            "fp-crash",
            &[("alertname", "E"), ("fault", "high_error_rate")],
        ),
        Some(TOKEN),
    );
    wait_until(Duration::from_secs(10), "the run to start", || {
        audit(&r, "restart")
            .first()
            .is_some_and(|a| a["result"] == "running")
    });
    // The run is recorded before its shell has written its pid.
    wait_until(Duration::from_secs(10), "the command's pid", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
    });
    // SIGKILL: the receiver cannot finish its record.
    r.kill();
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Only if it is still that command: its run may have timed out (1 s)
    // before the receiver was killed, and its pid been reused since (on a
    // busy machine with pid_max 32768, by another test's process).
    let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
    if cmdline == b"sleep\x0030\x00" {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let r = Receiver::start_on(&cfg, port);
    // Past the action's longest run (timeout + grace + 10 s), it is closed.
    wait_until(Duration::from_secs(20), "the abandoned record", || {
        audit(&r, "restart")
            .first()
            .is_some_and(|a| a["result"] == "abandoned")
    });
    let run = &audit(&r, "restart")[0];
    assert_eq!(run["detail"], "the receiver stopped during the run");
    assert!(run["finished_ms"].as_i64().is_some());
    assert_eq!(
        metric(
            &r,
            "llmchat_receiver_recovery_actions_total{action=\"restart\",result=\"abandoned\"}"
        ),
        Some(1.0)
    );
    // The crashed run's lock has expired with it: a later alert runs (and
    // times out, as this command does), it is not skipped as running.
    r.post(
        &alert(
            "firing",
            "fp-after",
            &[("alertname", "E"), ("fault", "high_error_rate")],
        ),
        Some(TOKEN),
    );
    let runs = finished(&r, "restart", 2);
    let after = runs
        .iter()
        .find(|a| a["fingerprint"] == "fp-after")
        .unwrap();
    assert_eq!(after["result"], "timed_out", "{after}");
}

/// A pid file that names another program's process (a stale file whose
/// pid was reused): the signal is not sent, the process lives on, and the
/// audit says why.
#[test]
fn a_signal_action_refuses_a_pid_file_naming_another_program() {
    let Sinks { dir, hook, slack } = Sinks::start();
    let mut other = Command::new("sleep")
        .arg("300")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("backend.pid");
    std::fs::write(&pid_file, other.id().to_string()).unwrap();
    let cfg = recovery_config(
        dir.path(),
        &hook,
        &slack,
        &format!(
            "[recovery.actions.gc.signal]\nsignal = \"SIGTERM\"\npid_file = \"{}\"\nprocess_name = \"node\"\n",
            pid_file.display()
        ),
    );
    let r = Receiver::start(&cfg);
    let labels = [
        ("alertname", "LLMChatHighMemoryUsage"),
        ("fault", "high_memory_usage"),
    ];
    r.post(&alert("firing", "fp-stale", &labels), Some(TOKEN));
    let gc = finished(&r, "gc", 1);
    assert_eq!(gc[0]["result"], "failed", "{}", gc[0]);
    let said = format!("{} {}", gc[0]["detail"], gc[0]["output"]);
    assert!(said.contains("sleep") && said.contains("node"), "{said}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        other.try_wait().unwrap().is_none(),
        "the unrelated process was signalled"
    );
    let _ = other.kill();
    let _ = other.wait();
}
