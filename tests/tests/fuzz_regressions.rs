//! Every input the fuzzers keep — the seeds (`fuzz/seeds/TARGET/`) and the minimized corpora
//! and past findings (`fuzz/regressions/TARGET/`) — run through the fuzz targets' bodies
//! (`tessera_tests::fuzz`): each must end in an error or a result, never a panic. The
//! fuzzers themselves run by hand (fuzz/README.md); this keeps what they found.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut found = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        found.extend(entries.map(|e| e.unwrap().path()));
    }
    found.sort();
    found
}

#[test]
fn every_kept_fuzz_input_ends_in_a_result_or_an_error() {
    let mut total = 0;
    for (target, body) in tessera_tests::fuzz::TARGETS {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "no kept inputs for {target}");
        for path in &inputs {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
        }
        total += inputs.len();
    }
    eprintln!("{total} kept fuzz inputs replayed");
}
