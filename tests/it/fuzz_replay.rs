//! Replays inputs through the fuzz target's entry point
//! (`bpsms::fuzzing::import_rows`, which asserts its own invariants): the
//! bad-input corpus under every combination of reading options, and the
//! inputs the fuzzer found problems with (`tests/data/fuzz/`, kept as
//! regression tests once fixed).

use std::path::Path;

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_corpus_under_every_reading_option_keeps_the_invariants() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let files = files_in(&data);
    assert!(files.len() >= 30, "the corpus is there");
    for file in files {
        let bytes = std::fs::read(&file).expect("read corpus file");
        for options in 0u8..=0x3F {
            // Without a template (the body column), then with one.
            let mut input = vec![options];
            input.extend_from_slice(&bytes);
            bpsms::fuzzing::import_rows(&input);
            let mut input = vec![options];
            input.extend_from_slice(b"Hi {{first_name}} from {{city}}\xFE");
            input.extend_from_slice(&bytes);
            bpsms::fuzzing::import_rows(&input);
        }
    }
}

#[test]
fn inputs_the_fuzzer_found_stay_fixed() {
    let found = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    for file in files_in(&found) {
        let bytes = std::fs::read(&file).expect("read fuzz input");
        bpsms::fuzzing::import_rows(&bytes);
    }
}
