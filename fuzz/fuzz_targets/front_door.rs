//! Arbitrary bytes as a client's side of a connection: handshake, commands,
//! COM_STMT_EXECUTE parameters, through sqlguard's wire wrappers and opensrv.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sqlguard::fuzzing::front_door(data);
});
