//! T36 without AFL: every input of the committed fuzz corpora, and every
//! crash AFL++ ever found (`fuzz/regressions/TARGET/`, one file each), runs
//! through its fuzz target's body (`fuzz/src/targets.rs`, included here as
//! it is) as an ordinary test. A crash found by `scripts/fuzz` is fixed and
//! its input committed under `regressions`, so it stays fixed.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use patchward_tests::workspace_root;

#[test]
fn every_corpus_input_and_every_crash_ever_found_passes_its_target() {
    let fuzz = workspace_root().join("fuzz");
    let mut ran = Vec::new();
    let mut failed = Vec::new();
    for (name, target) in targets::TARGETS {
        let mut inputs = 0;
        for folder in ["corpus", "regressions"] {
            let dir = fuzz.join(folder).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                assert_eq!(folder, "regressions", "every target has a corpus: {}", dir.display());
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                if std::panic::catch_unwind(|| target(&bytes)).is_err() {
                    failed.push(path.display().to_string());
                }
                inputs += 1;
            }
        }
        assert!(inputs > 0, "{name} has inputs");
        ran.push((name, inputs));
    }
    assert_eq!(ran.len(), 11, "{ran:?}");
    assert!(failed.is_empty(), "inputs that fail their target: {failed:#?}");
}
