//! Fuzzes the PATCH engine; the properties are in `scim_sync::fuzzing::patch`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = scim_sync::fuzzing::patch(data) {
        panic!("{violation}");
    }
});
