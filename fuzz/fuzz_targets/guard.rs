//! Arbitrary SQL text through the guard (clawdbot policy, tenant 1).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sqlguard::fuzzing::guard_text(data);
});
