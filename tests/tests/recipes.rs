//! The recipes of docs/architecture.md hold: the toy channel's diff in
//! "Add a channel" is a new folder and one line of the `channels!` table,
//! and the receiver compiles with it.

use std::path::Path;
use std::process::Command;

use llmchat_tests::{repo_root, said};

/// The ```diff block of the recipe that starts with `heading`.
fn recipe_diff(heading: &str) -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/architecture.md")).unwrap();
    let recipe = doc
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/architecture.md has no {heading:?}"));
    recipe
        .split("```diff\n")
        .nth(1)
        .and_then(|block| block.split("\n```").next())
        .map(|d| format!("{d}\n"))
        .expect("the recipe holds a ```diff block")
}

/// Per file the diff touches: (path, lines added, lines removed, new?).
fn touched(diff: &str) -> Vec<(String, usize, usize, bool)> {
    let mut out: Vec<(String, usize, usize, bool)> = Vec::new();
    let mut new_file = false;
    for line in diff.lines() {
        if line.starts_with("diff --git ") {
            new_file = false;
        } else if line.starts_with("new file mode") {
            new_file = true;
        } else if let Some(path) = line.strip_prefix("+++ b/") {
            out.push((path.to_string(), 0, 0, new_file));
        } else if line.starts_with("+++ ") || line.starts_with("--- ") {
        } else if let Some(last) = out.last_mut() {
            if line.starts_with('+') {
                last.1 += 1;
            } else if line.starts_with('-') {
                last.2 += 1;
            }
        }
    }
    out
}

/// The tracked files of the workspace, copied into `to`.
fn copy_workspace(to: &Path) {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo_root())
        .output()
        .expect("git");
    assert!(out.status.success(), "{}", said(&out));
    for path in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = std::str::from_utf8(path).unwrap();
        let from = repo_root().join(path);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let dest = to.join(path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&from, &dest).unwrap();
    }
}

#[test]
fn the_toy_channel_is_a_folder_and_one_line_and_compiles() {
    let diff = recipe_diff("**Add a channel**");
    let files = touched(&diff);
    let table = "receiver/src/channels/mod.rs";
    assert_eq!(files.len(), 2, "{files:?}");
    for (path, added, removed, new) in &files {
        if path == table {
            assert_eq!((*added, *removed, *new), (1, 0, false), "{path}");
        } else {
            let folder = path
                .strip_prefix("receiver/src/channels/")
                .and_then(|p| p.strip_suffix("/mod.rs"))
                .unwrap_or_else(|| panic!("{path} is outside a new channel's folder"));
            assert!(!folder.contains('/') && *new && *removed == 0, "{path}");
            assert!(
                !repo_root()
                    .join("receiver/src/channels")
                    .join(folder)
                    .exists(),
                "the toy channel {folder} is already in the tree"
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    copy_workspace(dir.path());
    let patch = dir.path().join("toy.diff");
    std::fs::write(&patch, &diff).unwrap();
    let out = Command::new("git")
        .arg("apply")
        .arg(&patch)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the diff does not apply: {}",
        said(&out)
    );
    // Its own target directory (the workspace's is locked by the running
    // `cargo test`), kept under target/ between runs.
    let out = Command::new(env!("CARGO"))
        .args([
            "check",
            "-q",
            "-p",
            "llmchat-receiver",
            "--offline",
            "--locked",
        ])
        .env("CARGO_TARGET_DIR", repo_root().join("target/recipe-check"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the receiver does not compile with the toy channel: {}",
        said(&out)
    );
}

#[test]
fn the_diff_reader_counts_lines_per_file() {
    let diff = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1,2 @@\n a\n+b\n\
                diff --git a/y b/y\nnew file mode 100644\n--- /dev/null\n+++ b/y\n@@ -0,0 +1 @@\n+c\n";
    assert_eq!(
        touched(diff),
        vec![("x".into(), 1, 0, false), ("y".into(), 1, 0, true)]
    );
}
