//! Hostile policy input (RELIABILITY T5, T6, T7) through the real binary:
//! each is refused with a clear, located error and exit code 1; nothing
//! hangs or crashes, and the rest of the repository is still checked.

use std::path::Path;
use std::process::Output;

use patchward_tests::{git_init_commit, patchward};

const GOOD_SCOPE: &str = "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: fine}\nspec: {devices: [ws-1]}\n";
/// A broken document beside the hostile one proves the others are still read.
const TYPO_SCOPE: &str = "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: typo}\nspec: {devics: [ws-1]}\n";

fn validate(target: &Path) -> (Output, String) {
    let output = patchward().args(["validate"]).arg(target).output().expect("patchward runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, text)
}

/// Writes `name` with `content` beside a good and a broken file, validates
/// the folder (and the same files as a git commit), and returns the output.
fn refused(name: &str, content: &[u8]) -> String {
    let temp = tempfile::tempdir().unwrap();
    let repo = temp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join(name), content).unwrap();
    std::fs::write(repo.join("good.yaml"), GOOD_SCOPE).unwrap();
    std::fs::write(repo.join("typo.yaml"), TYPO_SCOPE).unwrap();
    let (output, text) = validate(&repo);
    assert_eq!(output.status.code(), Some(1), "{name}: exit {:?}\n{text}", output.status);
    assert!(
        text.contains("typo.yaml:4:8: error: unknown field `devics`"),
        "{name}: the other files were not checked:\n{text}"
    );

    git_init_commit(&repo, "hostile");
    let (from_git, git_text) = validate(Path::new(&format!("{}@HEAD", repo.display())));
    assert_eq!(from_git.status.code(), Some(1), "{name} from git: {git_text}");
    let strip = |t: &str| t.replace(&format!("{}/", repo.display()), "");
    assert_eq!(
        strip(&text).lines().filter(|l| l.contains(": error: ")).collect::<Vec<_>>(),
        strip(&git_text).lines().filter(|l| l.contains(": error: ")).collect::<Vec<_>>(),
        "{name}: the folder and the commit disagree"
    );
    strip(&text)
}

#[test]
fn an_oversized_file_is_refused_before_parsing() {
    let mut big = String::from(GOOD_SCOPE.replace("fine", "big").as_str());
    big.push_str(&format!("# {}\n", "x".repeat(2 << 20)));
    let text = refused("big.yaml", big.as_bytes());
    let expected =
        format!("big.yaml:1:1: error: file is {} bytes; a policy file may be at most 1048576 bytes", big.len());
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn too_many_documents_are_refused_before_parsing() {
    let many = (0..1_500).map(|i| GOOD_SCOPE.replace("fine", &format!("s{i}"))).collect::<Vec<_>>().join("---\n");
    let text = refused("many.yaml", many.as_bytes());
    assert!(
        text.contains("many.yaml:1:1: error: the file holds at least 1499 documents; the limit is 1000 per file"),
        "{text}"
    );
}

#[test]
fn an_alias_bomb_is_refused() {
    // Ten levels of ten aliases each: 10^10 strings if expanded.
    let mut bomb = String::from(
        "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: bomb}\nx0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for level in 1..=9 {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        bomb.push_str(&format!("x{level}: &a{level} [{refs}]\n"));
    }
    bomb.push_str("spec: {devices: *a9}\n");
    let text = refused("bomb.yaml", bomb.as_bytes());
    assert!(text.contains("bomb.yaml:8:20: error: aliases expand to too much data (an alias bomb?)"), "{text}");
}

#[test]
fn ten_thousand_deep_nesting_is_refused_without_overflowing() {
    // `spec` before `kind` is read untyped first: the path where depth
    // would recurse without a bound if the parser's budget did not stop it.
    let flow = format!(
        "apiVersion: patchward.dev/v1\nmetadata: {{name: deep}}\nspec: {{devices: {}{}}}\nkind: Scope\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let text = refused("flow.yaml", flow.as_bytes());
    assert!(text.contains("flow.yaml:3:"), "{text}");
    assert!(text.contains("flow.yaml:3:80: error: nested deeper than 64 levels"), "{text}");

    // Compact block sequences: `- - - x` nests one level per dash, on one line.
    let block = format!(
        "apiVersion: patchward.dev/v1\nmetadata: {{name: deep}}\nspec:\n  devices:\n    {}x\nkind: Scope\n",
        "- ".repeat(10_000)
    );
    assert!(block.len() < 1 << 20, "the nesting, not the size limit, must refuse it");
    let text = refused("block.yaml", block.as_bytes());
    assert!(text.contains("block.yaml:5:129: error: nested deeper than 64 levels"), "{text}");
}

#[test]
fn invalid_utf8_is_located() {
    let mut bytes = b"apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: caf".to_vec();
    bytes.extend_from_slice(&[0xC3, 0x28]);
    bytes.extend_from_slice(b"}\nspec: {devices: [ws-1]}\n");
    let text = refused("latin.yaml", &bytes);
    assert!(
        text.contains("latin.yaml:3:21: error: the file is not valid UTF-8 (byte 61 is not part of a UTF-8 character)"),
        "{text}"
    );
}

#[test]
fn a_cel_bomb_is_refused_where_it_is_written_and_the_other_rules_still_check() {
    let costly = "apiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {name: bomb}\nspec:\n  match: 'patch.cves.all(a, patch.cves.all(b, patch.cves.all(c, patch.cves.all(d, a + b + c + d != \"\"))))'\n";
    let text = refused("costly.yaml", costly.as_bytes());
    assert!(text.contains("costly.yaml:5:11: error: expression is too costly"), "{text}");
    let deep = format!(
        "apiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {{name: deep}}\nspec:\n  match: '{}true{}'\n",
        "(".repeat(1_500),
        ")".repeat(1_500)
    );
    let text = refused("deep.yaml", deep.as_bytes());
    assert!(text.contains("deep.yaml:5:11: error: expression nests deeper than 32 levels"), "{text}");
}
