//! Data-driven tests of `patchward validate`: one YAML file per scenario
//! under `tests/cases/validate/`, each holding the policy files and the
//! diagnostics expected. Every case runs through the real binary in all
//! three formats, from a folder and from a git commit, and each must give
//! exactly the expected diagnostics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use patchward::policy::yaml::{YamlLimits, from_str};
use patchward_tests::{git_init_commit, patchward, workspace_root};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows; printed when it fails.
    description: String,
    /// Relative path → content.
    files: BTreeMap<String, String>,
    /// `path:line:col: severity: message`, paths relative to the repository.
    #[serde(default)]
    expect: Vec<String>,
}

fn cases() -> Vec<(PathBuf, Case)> {
    let dir = workspace_root().join("tests/cases/validate");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/cases/validate exists")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 20, "expected the whole case collection, found {}", paths.len());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable case");
            let case = from_str::<Case>(&text, &YamlLimits::default())
                .unwrap_or_else(|e| panic!("{}:{}:{}: {}", path.display(), e.pos.line, e.pos.col, e.message));
            (path, case)
        })
        .collect()
}

fn write_case(case: &Case, root: &Path) {
    for (relative, content) in &case.files {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create folders");
        std::fs::write(&path, content).expect("write a case file");
    }
}

struct Run {
    code: i32,
    stdout: String,
}

fn validate(target: &str, format: &str) -> Run {
    let output = patchward().args(["validate", target, "--format", format]).output().expect("patchward runs");
    Run { code: output.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&output.stdout).into_owned() }
}

/// The JSON diagnostics as `path:line:col: severity: message`, with `prefix`
/// taken off every path (messages name other files by the same paths).
fn json_lines(run: &Run, prefix: &str) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("--format json prints JSON");
    report["diagnostics"]
        .as_array()
        .expect("a diagnostics array")
        .iter()
        .map(|d| {
            let path = d["path"].as_str().expect("a path");
            let line = format!(
                "{path}:{}:{}: {}: {}",
                d["line"],
                d["col"],
                d["severity"].as_str().expect("a severity"),
                d["message"].as_str().expect("a message")
            );
            if prefix.is_empty() { line } else { line.replace(prefix, "") }
        })
        .collect()
}

fn expected_exit(case: &Case) -> i32 {
    i32::from(case.expect.iter().any(|line| line.contains(": error: ")))
}

#[test]
fn every_case_gives_exactly_its_diagnostics_in_every_format() {
    let mut failures = Vec::new();
    for (path, case) in cases() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let temp = tempfile::tempdir().expect("a temp dir");
        let root = temp.path().join("repo");
        write_case(&case, &root);
        let root_text = root.to_string_lossy().into_owned();
        let prefix = format!("{root_text}/");
        let mut problems = Vec::new();

        let json = validate(&root_text, "json");
        let got = json_lines(&json, &prefix);
        if got != case.expect {
            problems.push(format!("json diagnostics differ\n  expected: {:#?}\n  got: {:#?}", case.expect, got));
        }
        if json.code != expected_exit(&case) {
            problems.push(format!("json: exit {} instead of {}", json.code, expected_exit(&case)));
        }

        let human = validate(&root_text, "human");
        let human_lines: Vec<String> = human.stdout.lines().map(|l| l.replace(&prefix, "")).collect();
        for line in &case.expect {
            if !human_lines.iter().any(|l| l == line) {
                problems.push(format!("human output lacks `{prefix}{line}`:\n{}", human.stdout));
            }
        }
        if human.code != expected_exit(&case) {
            problems.push(format!("human: exit {}", human.code));
        }

        let github = validate(&root_text, "github");
        let annotations: Vec<&str> = github.stdout.lines().filter(|l| l.starts_with("::")).collect();
        if annotations.len() != case.expect.len() {
            problems.push(format!("github: {} annotations for {} diagnostics", annotations.len(), case.expect.len()));
        }
        for (annotation, line) in annotations.iter().zip(&case.expect) {
            let mut parts = line.splitn(4, ':');
            let (file, l, c) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            let wanted = format!("file={prefix}{file},line={l},col={c},");
            if !annotation.contains(&wanted) {
                problems.push(format!("github annotation `{annotation}` lacks `{wanted}`"));
            }
        }

        // The same files committed to git and read from the object database.
        git_init_commit(&root, "the case");
        let git = validate(&format!("{root_text}@HEAD"), "json");
        let got = json_lines(&git, "");
        if got != case.expect {
            problems.push(format!("from git: diagnostics differ\n  expected: {:#?}\n  got: {:#?}", case.expect, got));
        }

        if !problems.is_empty() {
            failures.push(format!("{name} ({}):\n{}", case.description, problems.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}
