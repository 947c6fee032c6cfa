//! Arbitrary text into the MIL parser: it must never panic, and whatever it accepts must print
//! to text that parses back to the same Program and prints identically.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(program) = ane_mil::parse(text) {
        assert_eq!(ane_mil::verify::verify(&program), Ok(()));
        let printed = ane_mil::print(&program);
        let back = ane_mil::parse(&printed).expect("printed program must parse");
        assert_eq!(back, program);
        assert_eq!(ane_mil::print(&back), printed);
    }
});
