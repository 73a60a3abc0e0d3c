//! Installing on a host: the systemd units pass `systemd-analyze verify`
//! and keep a low `systemd-analyze security` exposure; the Debian packages
//! built by `packaging/build-debs.sh` (cargo-deb) hold the binary, its
//! unit, its conffiles and the shared rules, dashboards and runbooks; and,
//! where it is safe (root, with LLMCHAT_TEST_INSTALL_DEB=1, as in CI), a
//! package installs, runs and purges cleanly.

use std::process::{Command, Output};

use llmchat_tests::{repo_root, run_in, said};

const UNITS: [&str; 2] = ["llmchat-exporter", "llmchat-receiver"];

/// The highest exposure `systemd-analyze security` may give a unit (README
/// states the measured scores).
const MAX_EXPOSURE: f64 = 2.0;

#[test]
fn systemd_units_verify_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let text =
            std::fs::read_to_string(repo_root().join(format!("packaging/systemd/{unit}.service")))
                .unwrap();
        assert!(
            text.contains(&format!("ExecStart=/usr/bin/{unit} $ARGS")),
            "{unit}"
        );
        assert!(
            text.contains(&format!("EnvironmentFile=-/etc/default/{unit}")),
            "{unit}"
        );
        // verify checks that ExecStart exists: the unit as shipped, with
        // the binary's path pointed at one this machine has.
        let path = dir.path().join(format!("{unit}.service"));
        std::fs::write(
            &path,
            text.replace(&format!("/usr/bin/{unit}"), "/bin/true"),
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let out = run_in(dir.path(), "systemd-analyze", &["verify", p]);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{unit}: {}",
            said(&out)
        );
        let out = run_in(
            dir.path(),
            "systemd-analyze",
            &["security", "--offline=true", p],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure level in {}", said(&out)));
        assert!(score <= MAX_EXPOSURE, "{unit}: exposure {score}\n{text}");
    }
    let receiver =
        std::fs::read_to_string(repo_root().join("packaging/systemd/llmchat-receiver.service"))
            .unwrap();
    for line in [
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/llmchat-receiver",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(
            receiver.lines().any(|l| l == line),
            "receiver unit lacks {line}"
        );
    }
}

/// cargo-deb as the build script runs it, on the binaries `cargo test`
/// has just built (dev profile, no rebuild).
fn build_debs() -> Output {
    let mut c = Command::new(repo_root().join("packaging/build-debs.sh"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .env("PROFILE", "dev")
        .env("NO_BUILD", "1");
    for keep in ["HOME", "CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR"] {
        if let Some(v) = std::env::var_os(keep) {
            c.env(keep, v);
        }
    }
    c.current_dir(repo_root())
        .output()
        .expect("packaging/build-debs.sh")
}

fn contents(deb: &str) -> Vec<String> {
    let out = run_in(&repo_root(), "dpkg-deb", &["--contents", deb]);
    assert!(out.status.success(), "{}", said(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

fn control(deb: &str, file: &str) -> String {
    let out = run_in(&repo_root(), "dpkg-deb", &["--info", deb, file]);
    assert!(out.status.success(), "{}", said(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn debian_packages_hold_the_binary_unit_configs_and_shared_files() {
    let out = build_debs();
    assert!(out.status.success(), "build-debs.sh: {}", said(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let deb = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!("{name}_")) && l.ends_with(".deb"))
            .map(|l| repo_root().join(l.trim()).display().to_string())
            .unwrap_or_else(|| panic!("no {name} package in {stdout}"))
    };
    let exporter = deb("llmchat-exporter");
    let files = contents(&exporter);
    for want in [
        "./usr/bin/llmchat-exporter",
        "./usr/lib/systemd/system/llmchat-exporter.service",
        "./etc/llmchat/exporter.toml",
        "./etc/default/llmchat-exporter",
        "./usr/share/llmchat-monitor/rules/http.recording.rules.yml",
        "./usr/share/llmchat-monitor/rules/self.alerts.rules.yml",
        "./usr/share/llmchat-monitor/dashboards/overview.json",
        "./usr/share/llmchat-monitor/runbooks.md",
        "./usr/share/llmchat-monitor/examples/web-config.yml",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "exporter package lacks {want}"
        );
    }
    let conffiles = control(&exporter, "conffiles");
    assert!(
        conffiles.contains("/etc/llmchat/exporter.toml"),
        "{conffiles}"
    );
    assert!(
        conffiles.contains("/etc/default/llmchat-exporter"),
        "{conffiles}"
    );
    let postinst = control(&exporter, "postinst");
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(control(&exporter, "control").contains("adduser"));

    let receiver = deb("llmchat-receiver");
    let files = contents(&receiver);
    for want in [
        "./usr/bin/llmchat-receiver",
        "./usr/lib/systemd/system/llmchat-receiver.service",
        "./etc/llmchat/receiver.toml",
        "./usr/share/llmchat-monitor/examples/polkit/50-llmchat-receiver.rules",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "receiver package lacks {want}"
        );
    }
    // The two packages can be installed side by side: no file in both.
    let exporter_files = contents(&exporter);
    let shared: Vec<_> = files
        .iter()
        .filter(|f| !f.ends_with('/') && exporter_files.contains(f))
        .collect();
    assert!(shared.is_empty(), "in both packages: {shared:?}");

    if std::env::var_os("LLMCHAT_TEST_INSTALL_DEB").is_some() {
        install_run_and_purge(&exporter);
    }
}

/// Installs the exporter's package, runs the installed binary, checks the
/// system user and the config's mode, and purges it.
fn install_run_and_purge(deb: &str) {
    let root = repo_root();
    let sh = |cmd: &str| run_in(&root, "sh", &["-c", cmd]);
    let out = sh(&format!("dpkg -i {deb}"));
    assert!(out.status.success(), "dpkg -i: {}", said(&out));
    let version = sh("/usr/bin/llmchat-exporter --version");
    let user = sh("getent passwd llmchat-exporter");
    let mode = sh("stat -c '%a %U:%G' /etc/llmchat/exporter.toml");
    let purge = sh("dpkg --purge llmchat-exporter");
    assert!(purge.status.success(), "dpkg --purge: {}", said(&purge));
    assert!(
        version.status.success()
            && String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        said(&version)
    );
    assert!(user.status.success(), "no system user: {}", said(&user));
    assert_eq!(
        String::from_utf8_lossy(&mode.stdout).trim(),
        "640 root:llmchat-exporter"
    );
    assert!(!std::path::Path::new("/usr/bin/llmchat-exporter").exists());
}
