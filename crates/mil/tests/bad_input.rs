//! Malformed MIL programs, each with the exact error (line, column and message) it must produce.

/// (what is wrong, program text, expected `LINE:COL: message`).
const CASES: &[(&str, &str, &str)] = &[
    (
        "unknown variable",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = mul(x=x,y=zz)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:48: unknown variable `zz`",
    ),
    (
        "duplicate variable",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> x = mul(x=x,y=x)[name=string(\"y\")];\n    } -> (x);\n}\n",
        "4:34: variable `x` is defined twice",
    ),
    (
        "duplicate op name",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = mul(x=x,y=x)[name=string(\"m\")];\n        tensor<fp16, [1,4,1,64]> z = mul(x=y,y=x)[name=string(\"m\")];\n    } -> (z);\n}\n",
        "5:38: op name \"m\" is used twice (each op's [name=...] must be unique)",
    ),
    (
        "declared type differs",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,32]> y = mul(x=x,y=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:9: `y` is declared tensor<fp16, [1,4,1,32]> but mul produces tensor<fp16, [1,4,1,64]>",
    ),
    (
        "broadcast mismatch",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x, tensor<fp16, [1, 3, 1, 64]> z) {\n        tensor<fp16, [1,4,1,64]> y = add(x=x,y=z)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: add: shapes [1, 4, 1, 64] and [1, 3, 1, 64] do not broadcast",
    ),
    (
        "matmul inner dims",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 1, 8, 16]> a, tensor<fp16, [1, 1, 8, 16]> b) {\n        tensor<fp16, [1,1,8,16]> y = matmul(x=a,y=b)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: matmul: inner dims differ: x [1, 1, 8, 16] (transpose_x=false) gives 16, y [1, 1, 8, 16] (transpose_y=false) gives 8",
    ),
    (
        "matmul rank",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [16]> a, tensor<fp16, [16, 4]> b) {\n        tensor<fp16, [4]> y = matmul(x=a,y=b)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:31: matmul: `x` must have rank >= 2, got rank 1 (tensor<fp16, [16]>)",
    ),
    (
        "conv rank",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 64]> x) {\n        tensor<fp16, [8,4,1,1]> w = const()[name=string(\"w\"), val=tensor<fp16, [8,4,1,1]>(BLOBFILE(path=string(\"@model_path/weights/w.bin\"), offset=uint64(64)))];\n        tensor<fp16, [1,8,1,64]> y = conv(weight=w,x=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "5:38: conv: `x` must have rank 4 ([N,C,H,W]), got rank 3 (tensor<fp16, [1,4,64]>)",
    ),
    (
        "unknown op",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = gelu(x=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: unknown op `gelu`",
    ),
    (
        "unknown dtype",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp64, [1, 4, 1, 64]> x) {\n    } -> (x);\n}\n",
        "3:29: unknown dtype `fp64` (expected fp16, fp32, int8, int32, bool or string)",
    ),
    (
        "missing argument",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = mul(x=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: mul: missing argument `y`",
    ),
    (
        "unexpected argument",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = sigmoid(x=x,alpha=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: sigmoid: unexpected argument `alpha` (it takes x)",
    ),
    (
        "missing name attribute",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = sigmoid(x=x)[];\n    } -> (y);\n}\n",
        "4:38: sigmoid: missing attribute `name`",
    ),
    (
        "missing semicolon",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = sigmoid(x=x)[name=string(\"y\")]\n    } -> (y);\n}\n",
        "5:5: expected `;`, found `}`",
    ),
    (
        "unterminated string",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = sigmoid(x=x)[name=string(\"y)];\n    } -> (y);\n}\n",
        "4:63: expected a closing `\"`, found end of input",
    ),
    (
        "bad version",
        "program(2.0)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n    } -> (x);\n}\n",
        "1:9: unsupported program version `2.0` (expected 1.3 for ios18 or 1.0 for ios16)",
    ),
    (
        "dialect mismatch",
        "program(1.0)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n    } -> (x);\n}\n",
        "3:15: `ios18` does not match the dialect of `program(1.0)` (expected `ios16`)",
    ),
    (
        "unknown return",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n    } -> (out);\n}\n",
        "4:11: unknown variable `out`",
    ),
    (
        "empty return",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n    } -> ();\n}\n",
        "4:10: function `main` returns no values",
    ),
    (
        "no functions",
        "program(1.3)\n{\n}\n",
        "3:1: program has no functions",
    ),
    (
        "reshape count",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<int32, [4]> s = const()[name=string(\"s\"), val=tensor<int32, [4]>([1,4,1,32])];\n        tensor<fp16, [1,4,1,32]> y = reshape(shape=s,x=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "5:38: reshape: cannot reshape x [1, 4, 1, 64] (256 elements) to [1, 4, 1, 32]",
    ),
    (
        "slice out of range",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,32]> y = slice_by_size(x=x,begin=tensor<int32, [4]>([0,0,0,48]),size=tensor<int32, [4]>([1,4,1,32]))[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: slice_by_size: slice begin [0, 0, 0, 48] size [1, 4, 1, 32] runs outside x [1, 4, 1, 64] on axis 3",
    ),
    (
        "non-constant shape",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x, tensor<int32, [4]> s) {\n        tensor<fp16, [1,4,1,64]> y = reshape(shape=s,x=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: reshape: argument `shape` must be a constant (a literal or a `const` variable)",
    ),
    (
        "transpose perm",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = transpose(perm=tensor<int32, [4]>([0,1,1,2]),x=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: transpose: bad `perm`: [0, 1, 1, 2] is not a permutation of the 4 dims of [1, 4, 1, 64]",
    ),
    (
        "fp16 overflow",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = mul(x=x,y=fp16(70000))[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:53: number `70000` is not a valid fp16 value",
    ),
    (
        "int32 literal from float",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        int32 a = const()[name=string(\"a\"), val=int32(1.5)];\n    } -> (x);\n}\n",
        "4:55: number `1.5` is not a valid int32 value",
    ),
    (
        "literal count",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<int32, [4]> a = const()[name=string(\"a\"), val=tensor<int32, [4]>([1,2,3])];\n    } -> (x);\n}\n",
        "4:62: bad literal: tensor<int32, [4]> needs 4 values, got 3",
    ),
    (
        "mixed dtypes",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x, tensor<fp32, [1, 4, 1, 64]> z) {\n        tensor<fp16, [1,4,1,64]> y = add(x=x,y=z)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: add: `y` must be fp16, got fp32",
    ),
    (
        "concat mismatch",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x, tensor<fp16, [1, 4, 1, 32]> z) {\n        tensor<fp16, [1,8,1,64]> y = concat(axis=int32(1),values=(x,z))[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: concat: value 1 [1, 4, 1, 32] does not match value 0 [1, 4, 1, 64] outside axis 1",
    ),
    (
        "softmax axis",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = softmax(axis=int32(4),x=x)[name=string(\"y\")];\n    } -> (y);\n}\n",
        "4:38: softmax: bad `axis`: axis 4 is out of range for rank 4",
    ),
    (
        "stray character",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n        tensor<fp16, [1,4,1,64]> y = sigmoid(x=x)[name=string(\"y\")]; #\n    } -> (y);\n}\n",
        "4:70: expected a token, found `#`",
    ),
    (
        "trailing input",
        "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 64]> x) {\n    } -> (x);\n}\n}\n",
        "6:1: expected end of input, found `}`",
    ),
];

#[test]
fn each_malformed_program_gives_its_exact_error() {
    let mut failures = Vec::new();
    for (what, text, want) in CASES {
        match ane_mil::parse(text) {
            Ok(_) => failures.push(format!("{what}: parsed without error")),
            Err(e) if e.to_string() != *want => {
                failures.push(format!("{what}:\n   got  {e}\n   want {want}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(CASES.len() >= 20);
}

#[test]
fn errors_carry_positions_in_characters() {
    // A multi-byte character before the error must count as one column.
    let text = "program(1.3)\n[buildInfo = dict<string, string>({{\"ü\", \"\"}})] x";
    let e = ane_mil::parse(text).unwrap_err();
    assert_eq!((e.pos.line, e.pos.column), (2, 49));
    assert_eq!(e.to_string(), "2:49: expected `{`, found `x`");
}

#[test]
fn semantic_errors_keep_their_kind() {
    let text = "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [4]> x) {\n    } -> (y);\n}\n";
    let e = ane_mil::parse(text).unwrap_err();
    assert_eq!(
        e.kind,
        ane_mil::ParseErrorKind::Semantic(ane_mil::Error::UnknownVariable { name: "y".into() })
    );
}
