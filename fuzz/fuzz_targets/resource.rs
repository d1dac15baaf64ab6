//! Fuzzes User and Group body normalisation; the properties are in `scim_sync::fuzzing::resource`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = scim_sync::fuzzing::resource(data) {
        panic!("{violation}");
    }
});
