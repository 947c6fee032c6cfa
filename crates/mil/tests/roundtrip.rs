//! Property tests: for generated Programs, `parse(print(p)) == p` and printing is a fixed point.

use ane_mil::{parse, print, testing::program_from_bytes, verify::verify};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_is_identity(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let program = program_from_bytes(&bytes);
        prop_assert_eq!(verify(&program), Ok(()));
        let text = print(&program);
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &program, "{}", text);
        prop_assert_eq!(print(&back), text);
    }
}

/// The generator must exercise the whole op catalogue, or the property above proves little.
#[test]
fn generator_covers_every_op_and_both_dialects() {
    use std::collections::BTreeSet;
    let mut ops = BTreeSet::new();
    let mut dialects = BTreeSet::new();
    let mut inline_literal_args = 0;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let bytes: Vec<u8> = (0..400)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let p = program_from_bytes(&bytes);
        dialects.insert(format!("{:?}", p.dialect));
        for f in &p.functions {
            for s in &f.body {
                ops.insert(s.op);
                inline_literal_args += s
                    .args
                    .iter()
                    .filter(|(_, a)| matches!(a, ane_mil::Arg::Literal(_)))
                    .count();
            }
        }
    }
    let missing: Vec<_> = ane_mil::Op::ALL
        .iter()
        .filter(|o| !ops.contains(o))
        .collect();
    assert!(missing.is_empty(), "ops never generated: {missing:?}");
    assert_eq!(dialects.len(), 2);
    assert!(
        inline_literal_args > 100,
        "only {inline_literal_args} inline literal args"
    );
}
