//! Replays the bad-input corpus through the fuzz target's entry point
//! (`bpsms::fuzzing::import_rows`, which asserts its own invariants) under
//! every combination of reading options. An input the fuzzer finds a
//! problem with joins the corpus once fixed.

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
