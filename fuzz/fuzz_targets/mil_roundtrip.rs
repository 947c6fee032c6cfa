//! Arbitrary Programs (generated from the fuzzer's bytes) through print → parse: the parse
//! must give back the same Program, and printing it again the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let program = ane_mil::testing::program_from_bytes(data);
    assert_eq!(ane_mil::verify::verify(&program), Ok(()));
    let text = ane_mil::print(&program);
    let back = match ane_mil::parse(&text) {
        Ok(p) => p,
        Err(e) => panic!("printed program does not parse: {e}\n{text}"),
    };
    assert_eq!(back, program, "{text}");
    assert_eq!(ane_mil::print(&back), text);
});
