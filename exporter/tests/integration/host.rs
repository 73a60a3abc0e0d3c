//! The host collector against things the test controls: a backend process
//! found by pid file or by name, and memory read from the kernel.

use std::process::Command;
use std::time::Duration;

use crate::helpers::{sample, Exporter};

/// A stand-in backend process, killed on drop.
struct Backend(std::process::Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn backend_process_found_by_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    // Burns some CPU, says so, then sleeps: its CPU time is then fixed.
    let burnt = dir.path().join("burnt");
    let backend = Backend(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; : > {}; exec sleep 300",
                burnt.display()
            ))
            .spawn()
            .unwrap(),
    );
    crate::helpers::wait_until(Duration::from_secs(60), "the backend's CPU burn", || {
        burnt.exists()
    });
    let pid_file = dir.path().join("backend.pid");
    std::fs::write(&pid_file, format!("{}\n", backend.0.id())).unwrap();
    let e = Exporter::start(&[
        "--collector.host",
        "--host.pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let text = e.scrape_text();
    assert_eq!(sample(&text, "llmchat_backend_process_up", &[]), Some(1.0));
    assert_eq!(sample(&text, "llmchat_backend_processes", &[]), Some(1.0));
    let rss = sample(&text, "llmchat_backend_process_resident_memory_bytes", &[]).unwrap();
    assert!(rss > 100_000.0 && rss < 100_000_000.0, "rss {rss}");
    let start = sample(&text, "llmchat_backend_process_start_time_seconds", &[]).unwrap();
    assert!((now() - start).abs() < 120.0, "start {start}");
    // The same CPU time the kernel reports for it (utime + stime).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", backend.0.id())).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let cpu = sample(&text, "llmchat_backend_process_cpu_seconds_total", &[]).unwrap();
    assert!(ticks > 0.0, "the burn used no CPU time");
    // sysconf(CLK_TCK) is 100 on Linux; allow one tick either way.
    assert!(
        (cpu - ticks / 100.0).abs() <= 0.011,
        "cpu {cpu} vs {ticks} ticks"
    );

    drop(backend);
    let text = e.scrape_text();
    assert_eq!(sample(&text, "llmchat_backend_process_up", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "llmchat_backend_process_resident_memory_bytes", &[]),
        None
    );
}

#[test]
fn backend_processes_found_by_name_are_summed() {
    // A name no other process on the machine has.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("llmchat-fake");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    // Another test's fork can hold the copy's write descriptor for an
    // instant (until its exec), and exec then fails with ETXTBSY: retry.
    let spawn = || {
        for _ in 0..100 {
            match Command::new(&exe).arg("300").spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => return other.unwrap(),
            }
        }
        panic!("{} stayed busy", exe.display());
    };
    let _a = Backend(spawn());
    let _b = Backend(spawn());
    let e = Exporter::start(&["--collector.host", "--host.process-name", "llmchat-fake"]);
    let text = e.scrape_text();
    assert_eq!(sample(&text, "llmchat_backend_process_up", &[]), Some(1.0));
    assert_eq!(sample(&text, "llmchat_backend_processes", &[]), Some(2.0));
}

#[test]
fn memory_and_root_filesystem_match_the_kernel() {
    let e = Exporter::start(&["--collector.host"]);
    let kib_of = |meminfo: &str, key: &str| -> f64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse::<f64>()
            .unwrap()
            * 1024.0
    };
    // The kernel's figure read just before and just after the scrape: the
    // exported one must lie between them, give or take 64 MiB. Memory is
    // not monotonic between two reads while the other tests of this binary
    // run in parallel (CI saw the exported value 0.4 MiB above both reads),
    // so the slack covers that churn; a wrong field (MemFree, or a unit
    // slip) is off by far more on any machine.
    let before = std::fs::read_to_string("/proc/meminfo").unwrap();
    let text = e.scrape_text();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib = |key: &str| kib_of(&meminfo, key);
    assert_eq!(
        sample(&text, "llmchat_host_memory_total_bytes", &[]),
        Some(kib("MemTotal:"))
    );
    let available = sample(&text, "llmchat_host_memory_available_bytes", &[]).unwrap();
    let (a, b) = (kib_of(&before, "MemAvailable:"), kib("MemAvailable:"));
    let slack = 64.0 * 1024.0 * 1024.0;
    assert!(
        available >= a.min(b) - slack && available <= a.max(b) + slack,
        "exported {available}, kernel {a} before and {b} after"
    );
    let ratio = sample(&text, "llmchat_host_cpu_usage_ratio", &[]).unwrap();
    assert!((0.0..=1.0).contains(&ratio));
    // At least one real filesystem, and none of the pseudo ones.
    assert!(text.contains("llmchat_host_filesystem_size_bytes{"));
    for pseudo in [
        "fstype=\"proc\"",
        "fstype=\"sysfs\"",
        "fstype=\"tmpfs\"",
        "mountpoint=\"/proc\"",
    ] {
        assert!(!text.contains(pseudo), "{pseudo} exported");
    }
}
