//! Fuzzes the config loader; the properties are in `scim_sync::fuzzing::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = scim_sync::fuzzing::config(data) {
        panic!("{violation}");
    }
});
