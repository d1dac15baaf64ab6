//! Fuzzes the SCIM filter parser and evaluator (and PATCH paths); the properties are in `scim_sync::fuzzing::filter`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = scim_sync::fuzzing::filter(data) {
        panic!("{violation}");
    }
});
