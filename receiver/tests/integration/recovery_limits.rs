//! What bounds a recovery action, end to end with a real Redis and real
//! processes: Redis cleanup of 100,000 keys by pattern only, a cooldown
//! and one-run-at-a-time shared by two receivers, dry runs, hourly caps
//! and cancellation on resolve, a refused configuration, a run cut short
//! by a crash, and a pid file naming another program.

use crate::helpers::{wait_until, Receiver, Target, TOKEN};
use crate::recovery::{actions, alert, audit, finished, metric, recovery_config, Sinks};
use llmchat_tests::services::Redis;
use std::process::{Command, Stdio};
use std::time::Duration;

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
