//! Real PostgreSQL and Redis servers that a test starts, kills and
//! restarts itself. A missing server binary is a failure, not a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, run_with_stdin};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory of Debian's (or any) PostgreSQL server binaries.
fn pg_bindir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|p| p.join("postgres").exists())
        .or_else(|| {
            let out = Command::new("pg_config").arg("--bindir").output().ok()?;
            Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .filter(|p| p.join("initdb").exists())
        .expect("PostgreSQL server binaries not found (apt-get install postgresql)")
}

/// A command run as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    hermetic(&mut c);
    c
}

/// A child's environment: PATH and the C locale, nothing inherited (no
/// developer's PG*, LANG for a locale that is not generated here, or
/// proxy variables).
pub fn hermetic(c: &mut Command) -> &mut Command {
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
}

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `-c name=value` settings of every start.
    settings: Vec<String>,
}

impl Postgres {
    /// initdb into a temp dir and start the server on a free port.
    pub fn start() -> Postgres {
        Postgres::start_with(&[])
    }

    /// The same, with server settings (`"shared_preload_libraries=pg_stat_statements"`).
    pub fn start_with(settings: &[&str]) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("llmchat-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the data directory failed");
        }
        let bin = pg_bindir();
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            port: 0,
            dir,
            child: None,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        // The port must stay the same across restarts, so the server cannot
        // bind port 0; if another process took the picked one first, the
        // server exits and the next pick is tried.
        let mut attempts = 0;
        loop {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => break,
                Err(_) if attempts < 4 => attempts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        pg.psql_db("postgres", "CREATE DATABASE llmchat");
        pg
    }

    /// Starts (again) on the same data directory and port.
    pub fn restart(&mut self) {
        if let Err(e) = self.launch() {
            panic!("{e}");
        }
    }

    /// Starts the server and waits until it answers; an error if it exited
    /// first (its port taken, say).
    fn launch(&mut self) -> Result<(), String> {
        let mut child = as_postgres(&pg_bindir().join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres on port {} exited at start-up ({status})",
                    self.port
                ));
            }
            let ready = Command::new("pg_isready")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("postgres did not start within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `pg_ctl stop -m immediate`: every backend is dropped at once, with
    /// no checkpoint (crash recovery runs at the next start).
    pub fn stop_immediate(&mut self) {
        let out = as_postgres(&pg_bindir().join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Runs `sql` with the session writable whatever the server's default
    /// (to undo `default_transaction_read_only`).
    pub fn psql_writable(&self, sql: &str) -> String {
        self.psql_run("llmchat", sql, "-c default_transaction_read_only=off")
    }

    /// Kills the server as a crash would (SIGKILL to the postmaster).
    pub fn kill(&mut self) {
        let pid_file = self.dir.path().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pid = text.lines().next().unwrap_or_default().trim().to_string();
        // A pid file a stopped server left behind may name a pid reused
        // since by anything else (pid_max is often 32768): only a postgres
        // process is killed.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !pid.is_empty() && comm.trim() == "postgres" {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            // The backends go with it once the postmaster is gone.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Command::new("kill")
                .args(["-0", &pid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                assert!(Instant::now() < deadline, "postgres did not die");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Let orphaned backends exit before the port is reused.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("pgrep")
            .args(["-f", &format!("postgres.*{}", self.dir.path().display())])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(pid_file);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/llmchat", self.port)
    }

    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        self.psql_run(db, sql, "")
    }

    /// psql with `options` as the session's PGOPTIONS.
    fn psql_run(&self, db: &str, sql: &str, options: &str) -> String {
        let out = Command::new("psql")
            .env("PGOPTIONS", options)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .output()
            .expect("psql (apt-get install postgresql-client)");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A login role that must give `password` over TCP (SCRAM), unlike
    /// `postgres`, which is trusted: for tests of what a wrong password
    /// does and of where a password must never appear.
    pub fn add_password_role(&self, role: &str, password: &str) {
        self.psql(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT ALL ON DATABASE llmchat TO {role}"
        ));
        let hba = self.dir.path().join("data").join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("host all {role} 127.0.0.1/32 scram-sha-256\n{old}"),
        )
        .unwrap();
        self.psql("SELECT pg_reload_conf()");
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("llmchat", sql)
    }

    /// `pg_dump` of the llmchat database with `args` (`--format=custom`),
    /// as the guide's backup.sh runs it: its output.
    pub fn dump(&self, args: &[&str]) -> Vec<u8> {
        let out = hermetic(&mut Command::new(pg_bindir().join("pg_dump")))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(args)
            .arg("llmchat")
            .output()
            .expect("pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Where `pg_restore` is (the server's own bindir: it may not be on
    /// the PATH).
    pub fn pg_restore() -> PathBuf {
        pg_bindir().join("pg_restore")
    }

    /// Where `psql` is, the same way.
    pub fn psql_program() -> PathBuf {
        pg_bindir().join("psql")
    }

    pub fn psql_f64(&self, sql: &str) -> f64 {
        self.psql(sql)
            .parse()
            .unwrap_or_else(|_| panic!("not a number from {sql}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The guide's schema with known contents (shared with the benchmark).
pub const LLMCHAT_SCHEMA: &str = include_str!("../fixtures/llmchat-schema.sql");

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: 0,
            child: None,
        };
        // As for PostgreSQL: a fixed port across restarts, another pick if
        // the first was taken.
        let mut attempts = 0;
        loop {
            r.port = free_port();
            match r.launch() {
                Ok(()) => break,
                Err(_) if attempts < 4 => attempts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        r
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        if let Err(e) = self.launch() {
            panic!("{e}");
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let mut child = hermetic(&mut Command::new("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.try_cli(&["PING"]).as_deref() != Some("PONG") {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server on port {} exited at start-up ({status})",
                    self.port
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("redis did not start within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).expect("redis-cli")
    }

    /// Feeds commands through `redis-cli` on stdin (one per line).
    pub fn pipe(&self, commands: &str) {
        let out = run_with_stdin(
            "redis-cli",
            &["-h", "127.0.0.1", "-p", &self.port.to_string()],
            commands.as_bytes(),
        );
        assert!(out.status.success());
    }

    /// One field of INFO.
    pub fn info(&self, key: &str) -> f64 {
        let text = self.cli(&["INFO"]);
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("INFO has no {key}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
