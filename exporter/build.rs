//! Records the git revision in `LLMCHAT_BUILD_REVISION` for `build_info`.
use std::process::Command;

fn main() {
    let revision = std::env::var("LLMCHAT_BUILD_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LLMCHAT_BUILD_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=LLMCHAT_BUILD_REVISION");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs");
}
