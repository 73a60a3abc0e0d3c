//! The module graph: which top-level module of each crate imports which,
//! read from the `crate::` paths of the code outside tests. No two
//! modules may import each other (dependencies point one way), and the
//! graph docs/architecture.md draws must be the code's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use llmchat_tests::repo_root;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The workspace's crates: `members = [...]` of the root manifest.
fn crates() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("the workspace lists its members on one line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every top-level module of a crate (its `src/x.rs` or `src/x/mod.rs`)
/// with the modules its non-test code names as `crate::<module>`.
fn graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir()
            || (path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main")
        {
            graph.insert(name, BTreeSet::new());
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for module in &modules {
        let mut files = Vec::new();
        collect_files(&src.join(format!("{module}.rs")), &mut files);
        collect_files(&src.join(module), &mut files);
        for file in files {
            for target in imports(&std::fs::read_to_string(&file).unwrap()) {
                if &target != module && modules.contains(&target) {
                    graph.get_mut(module).unwrap().insert(target);
                }
            }
        }
    }
    graph
}

fn collect_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            collect_files(&entry.unwrap().path(), out);
        }
    } else if path.is_file()
        && path.extension().is_some_and(|e| e == "rs")
        && path.file_name().is_some_and(|n| n != "tests.rs")
    {
        out.push(path.to_path_buf());
    }
}

/// The `crate::<name>` paths of a file's code: before its `#[cfg(test)]`
/// part, comments left out.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if i > 0 && line[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `my_crate::`: a name ending in "crate", not the keyword
            }
            found.insert(name);
        }
    }
    found
}

/// The graph as docs/architecture.md writes it: under "## Module graph",
/// a `<crate>:` line, then one line per module, `name` or
/// `name → a, b`.
fn documented() -> BTreeMap<String, Graph> {
    let doc = std::fs::read_to_string(repo_root().join("docs/architecture.md")).unwrap();
    let section = doc
        .split("## Module graph")
        .nth(1)
        .expect("docs/architecture.md has a \"## Module graph\" section");
    let block = section
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section holds a ```text block");
    let mut out: BTreeMap<String, Graph> = BTreeMap::new();
    let mut current = None;
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(name) = line.strip_suffix(':') {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_default();
            continue;
        }
        let krate = current
            .clone()
            .expect("a module line after its crate's line");
        let (module, deps) = line.split_once('→').unwrap_or((line, ""));
        let deps = deps
            .split(',')
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect();
        out.get_mut(&krate)
            .unwrap()
            .insert(module.trim().to_string(), deps);
    }
    out
}

fn render(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(m, deps)| {
            if deps.is_empty() {
                format!("  {m}\n")
            } else {
                let deps: Vec<_> = deps.iter().map(String::as_str).collect();
                format!("  {m} → {}\n", deps.join(", "))
            }
        })
        .collect()
}

#[test]
fn no_two_modules_import_each_other_and_the_docs_draw_the_code() {
    let docs = documented();
    let mut problems = Vec::new();
    let mut code_text = String::new();
    for krate in crates() {
        let src = repo_root().join(&krate).join("src");
        let graph = graph(&src);
        for (a, deps) in &graph {
            for b in deps {
                if a < b && graph[b].contains(a) {
                    problems.push(format!("{krate}: {a} and {b} import each other"));
                }
            }
        }
        if docs.get(&krate) != Some(&graph) {
            problems.push(format!(
                "{krate}: docs/architecture.md's module graph differs from the code"
            ));
        }
        code_text.push_str(&format!("{krate}:\n{}", render(&graph)));
    }
    assert!(
        problems.is_empty(),
        "{}\n\nthe code's graph:\n{code_text}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_finds_an_import_cycle_and_ignores_comments_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "pub mod a; pub mod b; pub mod c;").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::create_dir(src.join("b")).unwrap();
    std::fs::write(
        src.join("b/mod.rs"),
        "mod inner;\n// crate::c in a comment\nfn f() { crate::a::g() }\n#[cfg(test)]\nmod tests { use crate::c; }\n",
    )
    .unwrap();
    std::fs::write(src.join("b/inner.rs"), "pub use crate::VERSION;\n").unwrap();
    std::fs::write(src.join("c.rs"), "").unwrap();
    let g = graph(src);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(g["b"], BTreeSet::from(["a".to_string()]));
    assert!(g["c"].is_empty());
}
