//! CSV import, template rendering and phone normalisation on arbitrary
//! bytes; see `bpsms::fuzzing::import_rows` for the input's layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bpsms::fuzzing::import_rows(data));
