//! What `docker compose up` needs on real hosts, checked without an
//! engine: an image that builds with and without BuildKit and with a
//! toolchain new enough for every dependency; services on localhost
//! reachable by default (the exporter and the receiver on the host's
//! network); ports published on 127.0.0.1; node-exporter optional and
//! mountable on Docker Desktop; Grafana's provisioning mounted folder by
//! folder; SELinux labels on the repository's mounts; secrets that follow
//! a change (the receiver's token) or do not pretend to (Grafana's
//! password).

use std::collections::BTreeSet;

use llmchat_tests::{repo_root, said};
use serde_yaml_ng::Value;

/// `docker-compose config` of `files` with the defaults (no .env), parsed.
fn config(files: &[&str]) -> Value {
    let copy = llmchat_tests::compose_copy();
    let mut args = Vec::new();
    for f in files {
        args.extend(["-f", f]);
    }
    args.push("config");
    let out = llmchat_tests::run_in(copy.path(), "docker-compose", &args);
    assert!(out.status.success(), "{files:?}: {}", said(&out));
    serde_yaml_ng::from_slice(&out.stdout).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn services(v: &Value) -> Vec<(String, Value)> {
    v["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

#[test]
fn the_image_builds_without_buildkit_with_a_toolchain_new_enough() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    // RUN --mount (and heredocs) need BuildKit: the classic builder and
    // docker-compose 1.29 stop at them.
    for line in dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        assert!(!line.contains("--mount"), "BuildKit only: {line}");
        assert!(!line.contains("<<"), "BuildKit only: {line}");
    }
    // The dependencies compile in a layer of their own, from the recipe
    // (manifests and Cargo.lock) alone; after it, the build stage copies
    // the crates' sources only, never the whole context, so an edit to
    // stack/, rules/ or docs/ rebuilds nothing and a source edit rebuilds
    // only the workspace's crates.
    let build_stage = dockerfile
        .split("\nFROM ")
        .find(|stage| stage.starts_with("chef AS build"))
        .expect("a build stage on the chef stage");
    let cook = build_stage
        .find("RUN cargo chef cook")
        .expect("the dependencies cooked in the build stage");
    let before_cook: Vec<&str> = build_stage[..cook]
        .lines()
        .filter(|l| l.starts_with("COPY "))
        .collect();
    assert_eq!(
        before_cook,
        ["COPY --from=planner /src/recipe.json recipe.json"],
        "only the recipe may come before the cook"
    );
    let allowed = |source: &str| {
        [
            "Cargo.toml",
            "Cargo.lock",
            "exporter/build.rs",
            "receiver/templates",
            "receiver/migrations",
        ]
        .contains(&source)
            || source.ends_with("/Cargo.toml")
            || source.ends_with("/src")
    };
    for line in build_stage[cook..]
        .lines()
        .filter(|l| l.starts_with("COPY "))
    {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &words[..words.len() - 1] {
            assert!(allowed(source), "the build stage copies {source}: {line}");
        }
    }
    // What the binaries are compiled from is all copied: every library
    // and binary crate's src (the workspace's members but the test
    // crate), the receiver's templates (include_str!) and migrations
    // (sqlx::migrate!).
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("the workspace's members on one line");
    let crates: Vec<String> = members
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != "tests")
        .map(|m| format!("{m}/src"))
        .collect();
    assert!(crates.len() >= 3, "{crates:?}");
    let others = [
        "receiver/templates",
        "receiver/migrations",
        "exporter/build.rs",
    ];
    for needed in crates.iter().map(String::as_str).chain(others) {
        assert!(
            build_stage[cook..].contains(&format!(" {needed} ")),
            "{needed} is not copied into the build stage"
        );
    }

    // The build revision comes in as an argument (no .git in the context).
    assert!(dockerfile.contains("ARG LLMCHAT_BUILD_REVISION"));
    let compose = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    assert!(compose.contains("LLMCHAT_BUILD_REVISION: ${LLMCHAT_BUILD_REVISION:-unknown}"));
    let build_rs = std::fs::read_to_string(repo_root().join("exporter/build.rs")).unwrap();
    assert!(build_rs.contains("std::env::var(\"LLMCHAT_BUILD_REVISION\")"));

    // The base tag is one read in rust-lang/docker-rust; the toolchain on
    // it must be at least every locked crate's rust-version.
    let toolchain = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_TOOLCHAIN="))
        .expect("ARG RUST_TOOLCHAIN=");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    // The image builds for Linux on this machine's architecture: only
    // that platform's crates matter, and only they are in a cache that
    // a build filled (metadata for every platform would want Windows'
    // crates too, which no build here downloads).
    let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &platform])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (needs, name) = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["rust_version"].as_str()?, p["name"].as_str()?)))
        .max_by_key(|(v, _)| version(v))
        .unwrap();
    assert!(
        version(toolchain) >= version(needs),
        "the image's Rust {toolchain} is older than {name}'s rust-version {needs}"
    );
}

#[test]
fn services_on_localhost_are_reached_by_default_and_ports_stay_on_the_host() {
    let merged = config(&["docker-compose.yml"]);
    for (name, svc) in services(&merged) {
        // Published on 127.0.0.1, or on the Docker bridge's address (not
        // reachable from outside the host); never on every interface.
        for port in strings(&svc["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:") || port.starts_with("172.17.0.1:"),
                "{name} publishes {port} beyond the host"
            );
        }
    }
    let svc = |name: &str| merged["services"][name].clone();
    for name in ["llmchat-exporter", "llmchat-receiver"] {
        assert_eq!(svc(name)["network_mode"], "host", "{name}");
        assert!(
            strings(&svc(name)["ports"]).is_empty(),
            "{name}: ports and host networking"
        );
        assert!(
            strings(&svc(name)["command"])
                .iter()
                .any(|a| a.starts_with("--web.listen-address=172.17.0.1:")),
            "{name} listens on the bridge's address only"
        );
    }
    // LLMChat's services as a single host runs them: on localhost.
    let env = &svc("llmchat-exporter")["environment"];
    for (key, want) in [
        ("LLMCHAT_EXPORTER_DATABASE_URL", "@localhost:5432/"),
        ("LLMCHAT_EXPORTER_REDIS_URL", "redis://localhost:6379"),
        ("LLMCHAT_EXPORTER_APP_URL", "http://localhost:3001"),
    ] {
        assert!(
            env[key].as_str().unwrap().contains(want),
            "{key}: {:?}",
            env[key]
        );
    }
    assert!(
        svc("llmchat-receiver")["environment"]["LLMCHAT_RECEIVER_REDIS_URL"]
            .as_str()
            .unwrap()
            .contains("localhost")
    );
    // The receiver's mail: mailpit's SMTP port published where the
    // receiver's host.docker.internal points.
    let receiver_toml = std::fs::read_to_string(repo_root().join("stack/receiver.toml")).unwrap();
    assert!(receiver_toml.contains("smtp_host = \"host.docker.internal\""));
    assert!(strings(&svc("llmchat-receiver")["extra_hosts"])
        .iter()
        .any(|h| h.starts_with("host.docker.internal:") && h.ends_with("host-gateway")));
    assert!(strings(&svc("mailpit")["ports"]).contains(&"172.17.0.1:1025:1025/tcp".to_string()));

    // node-exporter: only with its profile, not published, and `/`
    // mounted without the propagation Docker Desktop refuses.
    let node = svc("node-exporter");
    assert_eq!(strings(&node["profiles"]), ["node-exporter"]);
    assert!(strings(&node["ports"]).is_empty());
    for v in strings(&node["volumes"]) {
        assert!(!v.contains("rslave") && !v.contains("rshared"), "{v}");
    }

    // The overrides keep to the host too, and Docker Desktop's puts the
    // two back on the bridge with their ports on 127.0.0.1.
    for file in [
        "docker-compose.tls.yml",
        "docker-compose.longterm.yml",
        "docker-compose.desktop.yml",
    ] {
        let merged = config(&["docker-compose.yml", file]);
        for (name, svc) in services(&merged) {
            for port in strings(&svc["ports"]) {
                assert!(
                    port.starts_with("127.0.0.1:") || port.starts_with("172.17.0.1:"),
                    "{file}: {name} publishes {port} beyond the host"
                );
            }
        }
        if file == "docker-compose.desktop.yml" {
            let exporter = &merged["services"]["llmchat-exporter"];
            assert_eq!(exporter["network_mode"], "bridge");
            assert!(strings(&exporter["ports"]).contains(&"127.0.0.1:9842:9842/tcp".to_string()));
            assert!(exporter["environment"]["LLMCHAT_EXPORTER_DATABASE_URL"]
                .as_str()
                .unwrap()
                .contains("@host.docker.internal:5432/"));
        } else {
            // The TLS switch keeps the listen address it replaces the command of.
            for name in ["llmchat-exporter", "llmchat-receiver"] {
                assert!(
                    strings(&merged["services"][name]["command"])
                        .iter()
                        .any(|a| a.starts_with("--web.listen-address=172.17.0.1:")),
                    "{file}: {name}"
                );
            }
        }
    }
}

#[test]
fn grafana_gets_only_its_two_provisioning_folders_and_repository_mounts_are_labelled() {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let mut raw: Value = serde_yaml_ng::from_str(&text).unwrap();
    raw.apply_merge().unwrap();
    let grafana = strings(&raw["services"]["grafana"]["volumes"]);
    let provisioning: BTreeSet<String> = grafana
        .iter()
        .filter_map(|v| v.split(':').nth(1))
        .filter(|t| t.starts_with("/etc/grafana/provisioning"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        provisioning,
        BTreeSet::from([
            "/etc/grafana/provisioning/dashboards".to_string(),
            "/etc/grafana/provisioning/datasources".to_string(),
        ]),
        "the image's plugins/ and alerting/ must stay visible"
    );
    for file in [
        "docker-compose.yml",
        "docker-compose.tls.yml",
        "docker-compose.longterm.yml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let v: Value = serde_yaml_ng::from_str(&text).unwrap();
        for (name, svc) in v["services"].as_mapping().unwrap() {
            for m in strings(&svc["volumes"]) {
                if m.starts_with("./") {
                    let options = m.rsplit(':').next().unwrap();
                    assert!(
                        options.split(',').any(|o| o == "z"),
                        "{file}: {name:?} mounts {m} without the SELinux label option"
                    );
                } else if m.starts_with('/') || m.starts_with("${") {
                    // Host folders (/var/log, backups) are never relabelled.
                    assert!(!m.ends_with(",z") && !m.ends_with(":z"), "{file}: {m}");
                }
            }
        }
    }
}

/// Docker creates a missing bind source as an empty root-owned folder: the
/// only host paths bound are the root (there on every host), and the
/// exporter reads LLMChat's logs and backups under it, at the guide's
/// paths by default and at the `.env` ones when given.
#[test]
fn no_folder_is_created_on_the_host_and_the_exporter_reads_through_the_root() {
    for file in [
        "docker-compose.yml",
        "docker-compose.tls.yml",
        "docker-compose.longterm.yml",
        "docker-compose.desktop.yml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let v: Value = serde_yaml_ng::from_str(&text).unwrap();
        for (name, svc) in services(&v) {
            for m in strings(&svc["volumes"]) {
                if m.starts_with('/') || m.starts_with('$') {
                    let source = m.split(':').next().unwrap();
                    assert_eq!(source, "/", "{file}: {name} binds host path {m}");
                    assert!(m.contains(":ro"), "{file}: {name} binds / writable: {m}");
                    // Refused where / is not a shared mount (seen on a
                    // real engine): the exporter would not start.
                    assert!(!m.contains("rslave"), "{file}: {name}: {m}");
                }
            }
        }
    }
    let env = |v: &Value, key: &str| {
        v["services"]["llmchat-exporter"]["environment"][key]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let v = config(&["docker-compose.yml"]);
    assert_eq!(
        env(&v, "LLMCHAT_EXPORTER_LOGS_APP"),
        "/host/var/log/llmchat/app.log,/host/var/log/llmchat/error.log"
    );
    assert_eq!(
        env(&v, "LLMCHAT_EXPORTER_LOGS_ACCESS"),
        "/host/var/log/nginx/access.log"
    );
    assert_eq!(
        env(&v, "LLMCHAT_EXPORTER_BACKUP_DIR"),
        "/host/backups/llmchat"
    );
    assert!(
        strings(&v["services"]["llmchat-exporter"]["volumes"])
            .iter()
            .any(|m| m.starts_with("/:/host:ro")),
        "{:?}",
        v["services"]["llmchat-exporter"]["volumes"]
    );
    // Folders moved in .env are read where .env says.
    let copy = llmchat_tests::compose_copy();
    std::fs::write(
        copy.path().join(".env"),
        "LLMCHAT_APP_LOG_DIR=/srv/llmchat/logs
LLMCHAT_NGINX_LOG_DIR=/opt/nginx/logs
LLMCHAT_BACKUP_DIR=/mnt/backup
",
    )
    .unwrap();
    let out = llmchat_tests::run_in(copy.path(), "docker-compose", &["config"]);
    assert!(out.status.success(), "{}", said(&out));
    let v: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    assert_eq!(
        env(&v, "LLMCHAT_EXPORTER_LOGS_APP"),
        "/host/srv/llmchat/logs/app.log,/host/srv/llmchat/logs/error.log"
    );
    assert_eq!(
        env(&v, "LLMCHAT_EXPORTER_LOGS_ACCESS"),
        "/host/opt/nginx/logs/access.log"
    );
    assert_eq!(env(&v, "LLMCHAT_EXPORTER_BACKUP_DIR"), "/host/mnt/backup");
}

/// stack/init-secrets.sh as the `secrets` service runs it, on a folder of
/// its own: the receiver's token follows .env (the receiver re-reads the
/// file; tested in the receiver's suite), Grafana's password is written
/// once and a later one is reported, never written nor printed.
#[test]
fn the_secrets_script_rotates_the_token_and_keeps_grafanas_password() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new("sh")
            .arg(repo_root().join("stack/init-secrets.sh"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LLMCHAT_SECRETS_DIR", dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        said(&out)
    };
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    // First start, nothing in .env: both generated.
    let said_first = run(&[]);
    assert!(
        said_first.contains("generated receiver_token"),
        "{said_first}"
    );
    let password = read("grafana_admin_password");
    assert_eq!(password.len(), 40);
    let token = read("receiver_token");
    // Unchanged .env: nothing changes.
    run(&[]);
    assert_eq!(read("receiver_token"), token);
    // .env sets both: the token follows, the password does not.
    let out = run(&[
        ("LLMCHAT_RECEIVER_TOKEN", "rotated-token-0123456789"),
        ("GRAFANA_ADMIN_PASSWORD", "a-new-password-in-env"),
    ]);
    assert_eq!(read("receiver_token"), "rotated-token-0123456789");
    assert_eq!(read("grafana_admin_password"), password);
    assert!(out.contains("reset-admin-password"), "{out}");
    assert!(
        !out.contains("a-new-password-in-env") && !out.contains(&password),
        "{out}"
    );
    // Set on the very first start, the password is used.
    let fresh = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .arg(repo_root().join("stack/init-secrets.sh"))
        .env("LLMCHAT_SECRETS_DIR", fresh.path())
        .env("GRAFANA_ADMIN_PASSWORD", "first-password-from-env")
        .env("LLMCHAT_RECEIVER_TOKEN", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        std::fs::read_to_string(fresh.path().join("grafana_admin_password")).unwrap(),
        "first-password-from-env"
    );
}

/// Docker's `.dockerignore` matching (moby/patternmatcher): patterns in
/// order, the last that matches a path or one of its parents decides; `!`
/// re-includes; `**` spans directories, `*` and `?` stay within one.
fn dockerignore_excludes(patterns: &[(bool, regex::Regex)], path: &str) -> bool {
    let mut excluded = false;
    let parts: Vec<&str> = path.split('/').collect();
    for (include, re) in patterns {
        let hit = (1..=parts.len()).any(|n| re.is_match(&parts[..n].join("/")));
        if hit {
            excluded = !include;
        }
    }
    excluded
}

fn dockerignore_patterns() -> Vec<(bool, regex::Regex)> {
    let text = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (include, p) = match l.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, l),
            };
            let p = p.trim_start_matches("./").trim_start_matches('/');
            let p = p.trim_end_matches('/');
            let mut re = String::from("^");
            let chars: Vec<char> = p.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                match chars[i] {
                    '*' if chars.get(i + 1) == Some(&'*') => {
                        if chars.get(i + 2) == Some(&'/') {
                            re.push_str("(.*/)?");
                            i += 3;
                        } else {
                            re.push_str(".*");
                            i += 2;
                        }
                        continue;
                    }
                    '*' => re.push_str("[^/]*"),
                    '?' => re.push_str("[^/]"),
                    c => re.push_str(&regex::escape(&c.to_string())),
                }
                i += 1;
            }
            re.push('$');
            (include, regex::Regex::new(&re).unwrap())
        })
        .collect()
}

/// No key, certificate or environment file reaches the build context
/// (stack/make-certs.sh's output included), while everything the build
/// reads does.
#[test]
fn the_build_context_holds_no_key_and_no_env_file() {
    let patterns = dockerignore_patterns();
    for secret in [
        "stack/tls/ca.key",
        "stack/tls/ca.pem",
        "stack/tls/server.crt",
        "stack/tls/client-key.pem",
        "secrets/db.key",
        "exporter/tests/fixtures/leaf.pem",
        "id.p12",
        ".env",
        ".env.production",
        "target/release/llmchat-exporter",
        "exporter/fuzz/target/x",
        ".git/config",
    ] {
        assert!(
            dockerignore_excludes(&patterns, secret),
            "{secret} would be sent to the build"
        );
    }
    let tracked = String::from_utf8(
        std::process::Command::new("git")
            .args(["ls-files"])
            .current_dir(repo_root())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut sent = 0;
    for path in tracked.lines() {
        let excluded = dockerignore_excludes(&patterns, path);
        let sensitive = path.ends_with(".pem")
            || path.ends_with(".key")
            || (path.starts_with(".env") && path != ".env.example");
        assert!(!sensitive || excluded, "{path} would be sent to the build");
        let needed = path.ends_with("Cargo.toml")
            || path == "Cargo.lock"
            || path.ends_with("build.rs")
            || (path.contains("/src/") && !path.contains("/fuzz/"))
            || ["receiver/migrations/", "receiver/templates/", "config/"]
                .iter()
                .any(|p| path.starts_with(p));
        assert!(
            !needed || !excluded,
            "{path} is needed by the build but not sent"
        );
        sent += usize::from(!excluded);
    }
    assert!(sent > 50, "only {sent} files sent");
}
