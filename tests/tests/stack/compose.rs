//! docker-compose.yml, checked without a Docker engine: the YAML parses,
//! every file it mounts exists, every image is pinned, no secret is
//! written in it, every variable it reads is documented in .env.example,
//! and its service names and ports agree with prometheus.yml,
//! alertmanager.yml, the receiver's config and Grafana's data source. The
//! configs themselves pass their own tools' checks.

use std::collections::{BTreeMap, BTreeSet};

use llmchat_tests::{repo_root, run, said};
use serde_yaml_ng::Value;

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    let mut v: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    // `<<: *anchor` merges, as compose applies them.
    v.apply_merge().unwrap_or_else(|e| panic!("{path}: {e}"));
    v
}

fn services() -> BTreeMap<String, Value> {
    let compose = yaml("docker-compose.yml");
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
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

/// "host:container" port mappings and `expose`d ports → container ports.
fn container_ports(service: &Value) -> BTreeSet<u16> {
    strings(&service["ports"])
        .iter()
        .chain(&strings(&service["expose"]))
        .filter_map(|p| p.rsplit(':').next().and_then(|c| c.parse().ok()))
        .collect()
}

/// `service:port` a config points at must be a compose service publishing
/// that port; or, for a service on the host's network, listening on it,
/// with the pointing service (`from`) mapping its name to the host
/// (`extra_hosts: name:host-gateway`).
fn assert_points_at_a_service(
    file: &str,
    from: &str,
    host_port: &str,
    services: &BTreeMap<String, Value>,
) {
    let (host, port) = host_port.rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let svc = services.get(host).unwrap_or_else(|| {
        panic!("{file} points at {host_port}, but compose has no service {host}")
    });
    if svc["network_mode"] == "host" {
        assert!(
            strings(&svc["command"])
                .iter()
                .any(|a| a.starts_with("--web.listen-address=") && a.ends_with(&format!(":{port}"))),
            "{file} points at {host_port}, but {host} does not listen on {port}"
        );
        assert!(
            strings(&services[from]["extra_hosts"]).contains(&format!("{host}:host-gateway")),
            "{from} cannot resolve {host}, which is on the host's network"
        );
    } else {
        assert!(
            container_ports(svc).contains(&port),
            "{file} points at {host_port}, but {host} does not expose {port}"
        );
    }
}

#[test]
fn compose_file_parses_mounts_what_exists_and_pins_every_image() {
    let services = services();
    for want in [
        "prometheus",
        "alertmanager",
        "grafana",
        "node-exporter",
        "llmchat-exporter",
        "llmchat-receiver",
        "mailpit",
    ] {
        assert!(services.contains_key(want), "no service {want}");
    }
    for (name, svc) in &services {
        let image = svc["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no image"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{name}: image {image} is not pinned to a version"
        );
        for mount in strings(&svc["volumes"]) {
            if let Some(rest) = mount.strip_prefix("./") {
                let source = rest.split(':').next().unwrap();
                assert!(
                    repo_root().join(source).exists(),
                    "{name} mounts ./{source}, which does not exist"
                );
            }
        }
    }
    // The built image: multi-stage, pinned bases, a non-root user.
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    // A stage built on an earlier stage names it, not an image.
    let stages: Vec<&str> = froms
        .iter()
        .filter_map(|f| f.split_whitespace().nth(3))
        .collect();
    for f in &froms {
        let image = f.split_whitespace().nth(1).unwrap();
        if stages.contains(&image) {
            continue;
        }
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(!tag.is_empty() && tag != "latest", "{f} is not pinned");
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as {user}"
    );
    for bin in ["llmchat-exporter", "llmchat-receiver"] {
        assert!(
            dockerfile.contains(&format!("-p {bin}")),
            "the image does not build {bin}"
        );
    }
}

#[test]
fn compose_has_no_secret_and_documents_every_variable() {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    // The guide's GF_SECURITY_ADMIN_PASSWORD=admin123, or any literal
    // secret: secret-looking variables take ${...} from .env or a file path.
    assert!(!text.contains("admin123"));
    for (name, svc) in services() {
        let Some(env) = svc["environment"].as_mapping() else {
            continue;
        };
        for (k, v) in env {
            let key = k.as_str().unwrap().to_ascii_uppercase();
            if key.contains("PASSWORD") || key.contains("TOKEN") || key.contains("SECRET") {
                let value = v.as_str().unwrap_or("");
                assert!(
                    value.starts_with("${") || value.starts_with("/run/llmchat-secrets/"),
                    "{name}: {key} is written in docker-compose.yml"
                );
            }
        }
    }
    let vars: BTreeSet<String> = regex::Regex::new(r"\$\{([A-Z0-9_]+)")
        .unwrap()
        .captures_iter(&text)
        .map(|c| c[1].to_string())
        .collect();
    assert!(vars.len() >= 10, "{vars:?}");
    let example = std::fs::read_to_string(repo_root().join(".env.example")).unwrap();
    for v in &vars {
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{v}="))),
            ".env.example does not document {v}"
        );
    }
    let ignore = std::fs::read_to_string(repo_root().join(".gitignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == ".env"),
        ".env is not ignored by git"
    );
}

#[test]
fn service_names_and_ports_agree_across_the_stack_configs() {
    let services = services();
    let prom = yaml("stack/prometheus.yml");
    let mut jobs = BTreeSet::new();
    for job in prom["scrape_configs"].as_sequence().unwrap() {
        jobs.insert(job["job_name"].as_str().unwrap().to_string());
        for sc in job["static_configs"].as_sequence().unwrap() {
            for t in strings(&sc["targets"]) {
                if !t.starts_with("localhost:") {
                    assert_points_at_a_service("prometheus.yml", "prometheus", &t, &services);
                }
            }
        }
    }
    for want in ["llmchat-exporter", "llmchat-receiver", "node-exporter"] {
        assert!(jobs.contains(want), "prometheus.yml does not scrape {want}");
    }
    for am in prom["alerting"]["alertmanagers"].as_sequence().unwrap() {
        for sc in am["static_configs"].as_sequence().unwrap() {
            for t in strings(&sc["targets"]) {
                assert_points_at_a_service("prometheus.yml", "prometheus", &t, &services);
            }
        }
    }
    // Rules: the glob matches the rules where compose mounts rules/.
    let rule_glob = strings(&prom["rule_files"]).remove(0);
    let (dir, pattern) = rule_glob.rsplit_once('/').unwrap();
    assert!(
        strings(&services["prometheus"]["volumes"]).contains(&format!("./rules:{dir}:ro,z")),
        "prometheus does not mount rules/ at {dir}"
    );
    let suffix = pattern.trim_start_matches('*');
    assert!(std::fs::read_dir(repo_root().join("rules"))
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(suffix)));

    let am = yaml("stack/alertmanager.yml");
    let smarthost = am["global"]["smtp_smarthost"].as_str().unwrap();
    assert_points_at_a_service("alertmanager.yml", "alertmanager", smarthost, &services);
    let receivers = am["receivers"].as_sequence().unwrap();
    let webhook = &receivers
        .iter()
        .find(|r| r["name"] == "llmchat-receiver")
        .expect("the llmchat-receiver receiver")["webhook_configs"][0];
    assert_eq!(webhook["send_resolved"], Value::Bool(true));
    let url = webhook["url"].as_str().unwrap();
    let host_port = url.trim_start_matches("http://").split('/').next().unwrap();
    assert_points_at_a_service("alertmanager.yml", "alertmanager", host_port, &services);
    let auth = &webhook["http_config"]["authorization"];
    assert_eq!(auth["type"].as_str(), Some("Bearer"));
    let token_file = auth["credentials_file"]
        .as_str()
        .expect("a bearer token file");
    // The token file is in a volume both Alertmanager and the receiver mount.
    let dir = token_file.rsplit_once('/').unwrap().0;
    for svc in ["alertmanager", "llmchat-receiver"] {
        assert!(
            strings(&services[svc]["volumes"])
                .iter()
                .any(|v| v.contains(&format!(":{dir}"))),
            "{svc} does not mount {dir}"
        );
    }
    let receiver_toml = std::fs::read_to_string(repo_root().join("stack/receiver.toml")).unwrap();
    assert!(receiver_toml.contains(&format!("bearer_token_file = \"{token_file}\"")));
    // The fallback route goes around the receiver.
    let routes = am["route"]["routes"].as_sequence().unwrap();
    let fallback = routes
        .iter()
        .find(|r| {
            strings(&r["matchers"])
                .iter()
                .any(|m| m.contains("LLMChatNotificationsFailing"))
        })
        .expect("a route for LLMChatNotificationsFailing");
    assert_ne!(fallback["receiver"].as_str(), Some("llmchat-receiver"));

    let grafana = std::fs::read_to_string(
        repo_root().join("dashboards/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    let ds_url = grafana
        .lines()
        .find_map(|l| l.trim().strip_prefix("url: http://"))
        .unwrap();
    assert_points_at_a_service("grafana datasource", "grafana", ds_url, &services);
}

#[test]
fn the_stack_configs_pass_promtool_amtool_and_the_receivers_check() {
    let out = run(
        "promtool",
        &["check", "config", "--syntax-only", "stack/prometheus.yml"],
    );
    assert!(out.status.success(), "{}", said(&out));
    let out = run("amtool", &["check-config", "stack/alertmanager.yml"]);
    assert!(out.status.success(), "{}", said(&out));
    receiver_accepts_the_stack_config(&[]);
}

#[test]
fn docker_compose_itself_accepts_the_file_with_and_without_an_env_file() {
    // Debian's docker-compose (1.29) validates against the Compose schema
    // and interpolates variables without a Docker engine. In a copy with a
    // clean environment: a developer's .env or exported variables must not
    // decide the result.
    let copy = llmchat_tests::compose_copy();
    let run = |program: &str, args: &[&str]| llmchat_tests::run_in(copy.path(), program, args);
    for args in [
        vec!["config", "--quiet"],
        vec!["--env-file", ".env.example", "config", "--quiet"],
    ] {
        let out = run("docker-compose", &args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            said(&out)
        );
        assert!(
            !said(&out).contains("WARNING"),
            "docker-compose {args:?}: {}",
            said(&out)
        );
    }
    // Interpolated with the defaults: every service resolves to an image
    // and the receiver's recovery stays a dry run.
    let out = run("docker-compose", &["config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LLMCHAT_RECEIVER_RECOVERY_DRY_RUN: 'true'")
            || text.contains("LLMCHAT_RECEIVER_RECOVERY_DRY_RUN: \"true\""),
        "{text}"
    );
}

/// The TLS switch (docker-compose.tls.yml): the Prometheus and Alertmanager
/// configs it makes from the plain ones pass promtool and amtool with real
/// certificate files, the binaries' web-config loads, and Compose accepts
/// the two files together.
#[test]
fn the_tls_switch_makes_valid_configs_that_compose_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    llmchat_tests::pki::Pki::create(&tls);
    let out_dir = dir.path().join("out");
    let out = run(
        "sh",
        &[
            "stack/tls-configs.sh",
            "stack/prometheus.yml",
            "stack/alertmanager.yml",
            out_dir.to_str().unwrap(),
            tls.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    let prom_path = out_dir.join("prometheus.yml");
    let prom = std::fs::read_to_string(&prom_path).unwrap();
    let parsed: Value = serde_yaml_ng::from_str(&prom).unwrap();
    let https: Vec<_> = parsed["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|j| j["scheme"] == "https")
        .map(|j| j["job_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(https, ["llmchat-exporter", "llmchat-receiver"]);
    let out = run(
        "promtool",
        &["check", "config", prom_path.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    let am_path = out_dir.join("alertmanager.yml");
    let am: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&am_path).unwrap()).unwrap();
    let webhook = &am["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "llmchat-receiver")
        .unwrap()["webhook_configs"][0];
    assert!(webhook["url"]
        .as_str()
        .unwrap()
        .starts_with("https://llmchat-receiver:"));
    assert_eq!(
        webhook["http_config"]["tls_config"]["cert_file"].as_str(),
        Some(tls.join("client.pem").to_str().unwrap())
    );
    let out = run("amtool", &["check-config", am_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));

    // The web-config both binaries get, next to the certificates.
    let web = dir.path().join("web-config.yml");
    std::fs::copy(repo_root().join("stack/web-config.yml"), &web).unwrap();
    receiver_accepts_the_stack_config(&["--web.config.file", web.to_str().unwrap()]);

    let copy = llmchat_tests::compose_copy();
    let out = llmchat_tests::run_in(
        copy.path(),
        "docker-compose",
        &[
            "-f",
            "docker-compose.yml",
            "-f",
            "docker-compose.tls.yml",
            "config",
            "--quiet",
        ],
    );
    assert!(
        out.status.success() && !said(&out).contains("WARNING"),
        "{}",
        said(&out)
    );
}

/// `llmchat-receiver --config.check` on stack/receiver.toml as compose runs
/// it (a token file, Redis on the host), plus `extra` flags.
fn receiver_accepts_the_stack_config(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "a-token-of-sufficient-length\n").unwrap();
    let out = std::process::Command::new(crate::harness::bin("llmchat-receiver"))
        .args(["--config.file", "stack/receiver.toml", "--config.check"])
        .arg("--web.bearer-token-file")
        .arg(&token)
        .args(extra)
        .env(
            "LLMCHAT_RECEIVER_REDIS_URL",
            "redis://host.docker.internal:6379",
        )
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
}

/// The long-term switch (docker-compose.longterm.yml): VictoriaMetrics
/// beside the stack, and Prometheus' config replaced by the same file plus
/// a remote_write to it.
#[test]
fn the_long_term_switch_adds_victoriametrics_and_remote_write_only() {
    let copy = llmchat_tests::compose_copy();
    let out = llmchat_tests::run_in(
        copy.path(),
        "docker-compose",
        &[
            "-f",
            "docker-compose.yml",
            "-f",
            "docker-compose.longterm.yml",
            "config",
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    let merged: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let vm = &merged["services"]["victoriametrics"];
    assert!(
        vm["image"].as_str().unwrap().contains(':'),
        "pinned: {vm:?}"
    );
    // `config` writes ports in the long syntax, or short with a host address.
    assert!(
        vm["ports"].as_sequence().is_some_and(|ports| ports
            .iter()
            .any(|p| p["target"].as_u64() == Some(8428)
                || p.as_str().is_some_and(|s| s.contains(":8428:8428")))),
        "{vm:?}"
    );
    let mounts = strings(&merged["services"]["prometheus"]["volumes"]);
    assert!(
        mounts
            .iter()
            .any(|m| m.contains("stack/prometheus-longterm.yml:/etc/prometheus/prometheus.yml")),
        "{mounts:?}"
    );
    assert!(
        !mounts.iter().any(|m| m.contains("stack/prometheus.yml:")),
        "the default config is replaced, not mounted twice: {mounts:?}"
    );
    let base = std::fs::read_to_string(repo_root().join("stack/prometheus.yml")).unwrap();
    let long = std::fs::read_to_string(repo_root().join("stack/prometheus-longterm.yml")).unwrap();
    let extra = long
        .strip_prefix(base.as_str())
        .expect("stack/prometheus-longterm.yml must start with stack/prometheus.yml, unchanged");
    let extra: Value = serde_yaml_ng::from_str(extra).unwrap();
    assert_eq!(
        extra["remote_write"][0]["url"],
        "http://victoriametrics:8428/api/v1/write"
    );
    let out = run(
        "promtool",
        &[
            "check",
            "config",
            "--syntax-only",
            "stack/prometheus-longterm.yml",
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
}

/// Debian's docker-compose 1.29 is supported: every `docker compose`
/// command the README, the compose files and the stack's scripts give is
/// also given as `docker-compose`, on the same line or the next.
#[test]
fn every_compose_command_is_given_in_both_forms() {
    let mut files = vec!["README.md".to_string()];
    for dir in [".", "stack"] {
        for e in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let path = if dir == "." {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            if (name.starts_with("docker-compose") && name.ends_with(".yml"))
                || (dir == "stack" && name.ends_with(".sh"))
            {
                files.push(path);
            }
        }
    }
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(at) = line.find("docker compose ") else {
                continue;
            };
            let rest = &line[at + "docker compose ".len()..];
            let first_word = rest.split_whitespace().next().unwrap_or("");
            let both = line.contains("docker-compose ")
                || lines
                    .iter()
                    .skip(i + 1)
                    .take(3)
                    .any(|next| next.contains(&format!("docker-compose {first_word}")));
            if !both {
                missing.push(format!("{file}:{}: {line}", i + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "Compose v2 only:\n{}",
        missing.join("\n")
    );
}
