//! The host collector against things the test controls: a backend process
//! found by pid file or by name, and memory read from the kernel.

use std::process::Command;

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
    let backend = Backend(Command::new("sleep").arg("300").spawn().unwrap());
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
    assert!(sample(&text, "llmchat_backend_process_cpu_seconds_total", &[]).unwrap() >= 0.0);

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
    let _a = Backend(Command::new(&exe).arg("300").spawn().unwrap());
    let _b = Backend(Command::new(&exe).arg("300").spawn().unwrap());
    let e = Exporter::start(&["--collector.host", "--host.process-name", "llmchat-fake"]);
    let text = e.scrape_text();
    assert_eq!(sample(&text, "llmchat_backend_process_up", &[]), Some(1.0));
    assert_eq!(sample(&text, "llmchat_backend_processes", &[]), Some(2.0));
}

#[test]
fn memory_and_root_filesystem_match_the_kernel() {
    let e = Exporter::start(&["--collector.host"]);
    let text = e.scrape_text();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib = |key: &str| -> f64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse::<f64>()
            .unwrap()
            * 1024.0
    };
    assert_eq!(
        sample(&text, "llmchat_host_memory_total_bytes", &[]),
        Some(kib("MemTotal:"))
    );
    let available = sample(&text, "llmchat_host_memory_available_bytes", &[]).unwrap();
    assert!((available - kib("MemAvailable:")).abs() < 256.0 * 1024.0 * 1024.0);
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
