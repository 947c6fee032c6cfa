//! The builder returns typed errors — never panics — for bad shapes, dtypes and names.

use ane_mil::builder::FunctionBuilder;
use ane_mil::ir::{DType, Literal, TensorType};
use ane_mil::Error;

fn fp16(shape: &[usize]) -> TensorType {
    TensorType::new(DType::Fp16, shape)
}

#[test]
fn wrong_rank_is_a_typed_error() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 64])).unwrap();
    let w = f.input("w", fp16(&[8, 4, 1, 1])).unwrap();
    let err = f.conv("y", x, w, 1).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::WrongRank {
                op: "conv",
                arg: "x",
                got: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn mismatched_dims_are_a_typed_error() {
    let mut f = FunctionBuilder::new("main");
    let a = f.input("a", fp16(&[1, 1, 8, 16])).unwrap();
    let b = f.input("b", fp16(&[1, 1, 8, 16])).unwrap();
    let err = f.matmul("y", a, b, false, false).unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { op: "matmul", .. }),
        "{err:?}"
    );
    // With y transposed the inner dims agree.
    let y = f.matmul("y", a, b, false, true).unwrap();
    assert_eq!(f.ty(y).unwrap(), &fp16(&[1, 1, 8, 8]));
}

#[test]
fn broadcasting_follows_numpy_rules() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 64, 1, 32])).unwrap();
    let s = f.input("s", fp16(&[1, 1, 1, 32])).unwrap();
    let c = f.input("c", fp16(&[64, 1, 1])).unwrap();
    let y = f.mul("y", x, s).unwrap();
    assert_eq!(f.ty(y).unwrap().shape, vec![1, 64, 1, 32]);
    let z = f.add("z", c, x).unwrap();
    assert_eq!(f.ty(z).unwrap().shape, vec![1, 64, 1, 32]);
    let bad = f.input("bad", fp16(&[3, 5])).unwrap();
    assert!(matches!(
        f.add("w", x, bad),
        Err(Error::ShapeMismatch { op: "add", .. })
    ));
}

#[test]
fn negative_axes_count_from_the_end() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 8, 16])).unwrap();
    let s = f.reduce_sum("s", x, &[-1], true).unwrap();
    assert_eq!(f.ty(s).unwrap().shape, vec![1, 4, 8, 1]);
    let m = f.reduce_max("m", x, &[-3, 3], false).unwrap();
    assert_eq!(f.ty(m).unwrap().shape, vec![1, 8]);
    assert!(matches!(
        f.softmax("p", x, -5),
        Err(Error::BadValue {
            op: "softmax",
            arg: "axis",
            ..
        })
    ));
}

#[test]
fn duplicate_names_are_rejected() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 1, 64])).unwrap();
    assert_eq!(
        f.input("x", fp16(&[1])).unwrap_err(),
        Error::DuplicateVariable { name: "x".into() }
    );
    assert_eq!(
        f.unary("x", ane_mil::Op::Sigmoid, x).unwrap_err(),
        Error::DuplicateVariable { name: "x".into() }
    );
    assert!(matches!(
        f.input("1x", fp16(&[1])),
        Err(Error::BadIdentifier { .. })
    ));
}

#[test]
fn a_variable_from_another_builder_is_unknown() {
    let mut other = FunctionBuilder::new("other");
    let foreign = other.input("x", fp16(&[4])).unwrap();
    let mut f = FunctionBuilder::new("main");
    f.input("a", fp16(&[4])).unwrap();
    assert!(matches!(
        f.mul("y", foreign, foreign),
        Err(Error::UnknownVariable { .. })
    ));
    assert!(matches!(f.ty(foreign), Err(Error::UnknownVariable { .. })));
    assert!(matches!(
        f.finish(&[foreign]),
        Err(Error::UnknownVariable { .. })
    ));
}

#[test]
fn literal_operands_become_shared_consts() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 1, 64])).unwrap();
    let a = f.mul("a", x, Literal::fp16(0.5)).unwrap();
    let b = f.mul("b", a, Literal::fp16(0.5)).unwrap();
    let func = f.finish(&[b]).unwrap();
    let consts: Vec<_> = func
        .body
        .iter()
        .filter(|s| s.op == ane_mil::Op::Const)
        .collect();
    assert_eq!(consts.len(), 1, "the second use must reuse the first const");
    assert_eq!(consts[0].output, "a_y");
}

#[test]
fn dtype_rules_are_enforced() {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16(&[1, 4, 1, 64])).unwrap();
    let i = f
        .input("i", TensorType::new(DType::Int32, [1, 4, 1, 64]))
        .unwrap();
    assert!(matches!(
        f.add("y", x, i),
        Err(Error::WrongDType {
            op: "add",
            arg: "y",
            ..
        })
    ));
    assert!(matches!(
        f.unary("s", ane_mil::Op::Sigmoid, i),
        Err(Error::WrongDType { .. })
    ));
    let c = f.cast("c", i, DType::Fp16).unwrap();
    assert_eq!(f.ty(c).unwrap(), &fp16(&[1, 4, 1, 64]));
    let q = f.quantize("q", x, Literal::fp16(0.125)).unwrap();
    assert_eq!(f.ty(q).unwrap().dtype, DType::Int8);
    let d = f.dequantize("d", q, Literal::fp16(0.125)).unwrap();
    assert_eq!(f.ty(d).unwrap().dtype, DType::Fp16);
}

#[test]
fn sdpa_and_conv_shapes() {
    let mut f = FunctionBuilder::new("main");
    let q = f.input("q", fp16(&[1, 4, 32, 16])).unwrap();
    let k = f.input("k", fp16(&[1, 4, 48, 16])).unwrap();
    let v = f.input("v", fp16(&[1, 4, 48, 8])).unwrap();
    let o = f.scaled_dot_product_attention("o", q, k, v, None).unwrap();
    assert_eq!(f.ty(o).unwrap().shape, vec![1, 4, 32, 8]);
    let x = f.input("x", fp16(&[1, 64, 1, 32])).unwrap();
    let w = f
        .blob_constant("w", fp16(&[128, 64, 1, 1]), "@model_path/weights/w.bin", 64)
        .unwrap();
    let y = f.conv("y", x, w, 1).unwrap();
    assert_eq!(f.ty(y).unwrap().shape, vec![1, 128, 1, 32]);
    let dq = f
        .constexpr_affine_dequantize(
            "dq",
            Literal::BlobFile {
                ty: TensorType::new(DType::Int8, [128, 64, 1, 1]),
                path: "@model_path/weights/q.bin".into(),
                offset: 64,
            },
            Literal::fp16(0.125),
            Literal::int8(0),
            0,
        )
        .unwrap();
    assert_eq!(f.ty(dq).unwrap(), &fp16(&[128, 64, 1, 1]));
}
