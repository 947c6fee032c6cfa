//! The committed `include/ane_bridge.h` is exactly what cbindgen generates from the Rust
//! signatures, and declares upstream's functions with upstream's types.
//!
//! Regenerate it with `ANE_BRIDGE_BLESS=1 cargo test -p ane-bridge --test header`.

use std::path::Path;

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

#[test]
fn committed_header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/ane_bridge.h");
    let fresh = generate();
    if std::env::var_os("ANE_BRIDGE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/ane_bridge.h is stale: run ANE_BRIDGE_BLESS=1 cargo test -p ane-bridge --test header"
    );
}

/// Upstream's prototypes (maderix/ANE bridge/ane_bridge.h with PR #22 and the INT8 builders),
/// whitespace-normalised, each of which must appear verbatim in our header.
const UPSTREAM: &[&str] = &[
    "int ane_bridge_init(void);",
    "ANEKernelHandle *ane_bridge_compile(const char *mil_text, size_t mil_len, const uint8_t *weight_data, size_t weight_len, int n_inputs, const size_t *input_sizes, int n_outputs, const size_t *output_sizes);",
    "ANEKernelHandle *ane_bridge_compile_multi_weights(const char *mil_text, size_t mil_len, const char *const *weight_names, const uint8_t *const *weight_datas, const size_t *weight_lens, int n_weights, int n_inputs, const size_t *input_sizes, int n_outputs, const size_t *output_sizes);",
    "ANEKernelHandle *ane_bridge_compile_dyn(const char *mil_text, size_t mil_len, int n_inputs, const size_t *input_sizes, int n_weights, const size_t *weight_sizes, size_t output_size);",
    "bool ane_bridge_eval(ANEKernelHandle *kernel);",
    "void ane_bridge_write_input(ANEKernelHandle *kernel, int idx, const void *data, size_t bytes);",
    "void ane_bridge_read_output(ANEKernelHandle *kernel, int idx, void *data, size_t bytes);",
    "void ane_bridge_write_weight(ANEKernelHandle *kernel, int idx, const void *fp16_data, size_t bytes);",
    "void ane_bridge_write_weight_f32(ANEKernelHandle *kernel, int idx, const float *fp32_data, size_t count);",
    "void ane_bridge_copy_io(ANEKernelHandle *src, int src_out_idx, ANEKernelHandle *dst, int dst_in_idx);",
    "void ane_bridge_begin_realtime(void);",
    "void ane_bridge_end_realtime(void);",
    "void ane_bridge_free(ANEKernelHandle *kernel);",
    "int ane_bridge_get_compile_count(void);",
    "void ane_bridge_reset_compile_count(void);",
    "uint8_t *ane_bridge_build_weight_blob(const float *src, int rows, int cols, size_t *out_len);",
    "uint8_t *ane_bridge_build_weight_blob_transposed(const float *src, int rows, int cols, size_t *out_len);",
    "uint8_t *ane_bridge_build_weight_blob_int8(const int8_t *src, int rows, int cols, size_t *out_len);",
    "uint8_t *ane_bridge_build_weight_blob_quantized(const float *src, int rows, int cols, float *out_scale, size_t *out_len);",
    "void ane_bridge_free_blob(void *ptr);",
    "const char *ane_bridge_last_error(void);",
    "int ane_bridge_set_device(const char *name);",
    "const char *ane_bridge_device_name(void);",
    "const char *ane_bridge_version(void);",
];

/// The header's declarations with comments dropped and whitespace collapsed.
fn normalised(header: &str) -> String {
    let code: Vec<&str> = header
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let joined = code.join(" ");
    let mut out = String::new();
    for w in joined.split_whitespace() {
        if !out.is_empty() && !out.ends_with('(') && !w.starts_with(')') && !w.starts_with(',') {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.replace(" ;", ";").replace("( ", "(")
}

#[test]
fn header_declares_upstreams_functions_with_upstreams_types() {
    let header = generate();
    let n = normalised(&header);
    assert!(
        n.contains("typedef struct ANEKernelHandle ANEKernelHandle;"),
        "{n}"
    );
    for proto in UPSTREAM {
        assert!(
            n.contains(proto),
            "missing or different: {proto}\nheader: {n}"
        );
    }
}
