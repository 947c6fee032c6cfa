//! Hugging Face LLaMA models: a directory with `config.json` (for `LlamaForCausalLM`) and
//! `model.safetensors` (written; `*.safetensors` shards read), tensors named as
//! [`ParamKind::hf_name`] says.
//!
//! RoPE: we rotate interleaved pairs `(2i, 2i+1)` of a head, Hugging Face rotates halves
//! `(i, i + HD/2)`. The same model in their layout has the rows of `q_proj` and `k_proj`
//! permuted within each head: Hugging Face row `j·HD/2 + i` is our row `2i + j` (`j ∈ {0,1}`).
//! Export applies it, import inverts it. A residual scale α ≠ 1 (which LLaMA lacks) is
//! folded into `o_proj` and `down_proj` on export (`x + α·W·a = x + (αW)·a`).
//!
//! Import reads `f32`, `f16` and `bf16` tensors; it refuses configs with features our model
//! lacks (`rope_scaling`, biases, an activation other than SiLU).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{json, Value};

use super::{read_file, write_file_atomic, FormatError};
use crate::model::{ModelConfig, ParamKind, MAX_DIM, SEQ_MULTIPLE};

/// File name of the weights written.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the config.
pub const CONFIG_FILE: &str = "config.json";
/// Longest window an imported model gets (`max_position_embeddings` is often far larger
/// than a training window; RoPE has no learned positions, so any window works).
pub const MAX_IMPORT_SEQ: usize = 4096;

/// Permutes the rows of a `[heads·HD, cols]` matrix from our interleaved-pair order to
/// Hugging Face's half order (`inverse`: back).
pub fn permute_rope_rows(
    w: &[f32],
    heads: usize,
    hd: usize,
    cols: usize,
    inverse: bool,
) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    let half = hd / 2;
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let ours = h * hd + 2 * i + j;
                let theirs = h * hd + j * half + i;
                let (src, dst) = if inverse {
                    (theirs, ours)
                } else {
                    (ours, theirs)
                };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The `config.json` of `cfg` for `transformers`' `LlamaForCausalLM`.
pub fn hf_config(cfg: &ModelConfig) -> Value {
    // The shortest decimal of the f32 (1e-5, not 9.999999747378752e-6), which reads back
    // as the same f32.
    let decimal = |x: f32| x.to_string().parse::<f64>().unwrap_or(f64::from(x));
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.seq_len,
        "rms_norm_eps": decimal(cfg.norm_eps),
        "rope_theta": decimal(cfg.rope_theta),
        "rope_scaling": null,
        "tie_word_embeddings": cfg.tied_classifier,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32"
    })
}

/// The tensors of `cfg`/`params` in Hugging Face layout: `(name, shape, f32 values)`.
pub fn hf_tensors(cfg: &ModelConfig, params: &[f32]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let alpha = cfg.residual_alpha();
    cfg.params()
        .into_iter()
        .map(|spec| {
            let w = &params[spec.range()];
            let cols = spec.shape.last().copied().unwrap_or(1);
            let data = match spec.kind {
                ParamKind::Wq => permute_rope_rows(w, cfg.n_heads, cfg.head_dim, cols, false),
                ParamKind::Wk => permute_rope_rows(w, cfg.n_kv_heads, cfg.head_dim, cols, false),
                ParamKind::Wo | ParamKind::W2 if alpha != 1.0 => {
                    w.iter().map(|v| v * alpha).collect()
                }
                _ => w.to_vec(),
            };
            (spec.hf_name.clone(), spec.shape.clone(), data)
        })
        .collect()
}

/// Writes `dir/config.json` and `dir/model.safetensors` (f32) for `cfg` with `params`
/// (layout of [`ModelConfig::params`]); creates `dir`.
pub fn write_dir(dir: &Path, cfg: &ModelConfig, params: &[f32]) -> Result<(), FormatError> {
    let file = dir.display().to_string();
    if params.len() != cfg.param_count() {
        return Err(FormatError::invalid(
            &file,
            "params",
            format!(
                "{} values for a model of {}",
                params.len(),
                cfg.param_count()
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|source| FormatError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let tensors = hf_tensors(cfg, params);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, d)| {
            TensorView::new(Dtype::F32, s.clone(), d)
                .map(|v| (n.clone(), v))
                .map_err(|e| FormatError::invalid(&file, n.as_str(), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let st = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| FormatError::invalid(&file, WEIGHTS_FILE, e.to_string()))?;
    write_file_atomic(&dir.join(WEIGHTS_FILE), &st)?;
    let json = serde_json::to_string_pretty(&hf_config(cfg)).unwrap_or_default() + "\n";
    write_file_atomic(&dir.join(CONFIG_FILE), json.as_bytes())
}

/// Reads a `config.json` as our config (`name` = `hf`).
pub fn config_from_json(text: &str, file: &str) -> Result<ModelConfig, FormatError> {
    let bad = |field: &str, problem: String| FormatError::invalid(file, field, problem);
    let v: Value = serde_json::from_str(text).map_err(|e| bad("json", e.to_string()))?;
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
    if model_type != "llama" {
        return Err(bad(
            "model_type",
            format!("{model_type:?}; only LLaMA-architecture models (\"llama\") are read"),
        ));
    }
    let int = |field: &str| -> Result<usize, FormatError> {
        v.get(field)
            .and_then(Value::as_u64)
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| bad(field, "missing or not a non-negative integer".into()))
    };
    let opt_int = |field: &str, default: usize| match v.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(_) => int(field),
    };
    let float = |field: &str, default: f64| -> Result<f32, FormatError> {
        match v.get(field) {
            None | Some(Value::Null) => Ok(default as f32),
            Some(x) => x
                .as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| bad(field, "not a number".into())),
        }
    };
    for (field, ok) in [
        (
            "rope_scaling",
            v.get("rope_scaling").is_none_or(Value::is_null),
        ),
        (
            "attention_bias",
            v.get("attention_bias").is_none_or(|b| b == false),
        ),
        ("mlp_bias", v.get("mlp_bias").is_none_or(|b| b == false)),
        (
            "hidden_act",
            v.get("hidden_act").is_none_or(|a| a == "silu"),
        ),
    ] {
        if !ok {
            return Err(bad(field, format!("{} is not supported", v[field])));
        }
    }
    let dim = int("hidden_size")?;
    let n_heads = int("num_attention_heads")?;
    if n_heads == 0 {
        return Err(bad("num_attention_heads", "must be > 0".into()));
    }
    let max_pos = opt_int("max_position_embeddings", 2048)?;
    let seq = (max_pos.min(MAX_IMPORT_SEQ).min(MAX_DIM) / SEQ_MULTIPLE * SEQ_MULTIPLE).max(32);
    let cfg = ModelConfig {
        name: "hf".to_string(),
        dim,
        n_layers: int("num_hidden_layers")?,
        n_heads,
        n_kv_heads: opt_int("num_key_value_heads", n_heads)?,
        head_dim: opt_int("head_dim", dim / n_heads)?,
        hidden_dim: int("intermediate_size")?,
        vocab_size: int("vocab_size")?,
        seq_len: seq,
        rope_theta: float("rope_theta", 10_000.0)?,
        norm_eps: float("rms_norm_eps", 1e-6)?,
        tied_classifier: v
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        residual_scale: None,
    };
    cfg.validate().map_err(|source| FormatError::Config {
        file: file.to_string(),
        source,
    })?;
    Ok(cfg)
}

/// Converts one stored tensor to f32.
fn to_f32(t: &TensorView<'_>, name: &str, file: &str) -> Result<Vec<f32>, FormatError> {
    let d = t.data();
    Ok(match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(FormatError::invalid(
                file,
                name,
                format!("dtype {other:?}; f32, f16 and bf16 are read"),
            ))
        }
    })
}

/// Reads a Hugging Face LLaMA directory: its config and its parameters in our layout.
pub fn read_dir(dir: &Path) -> Result<(ModelConfig, Vec<f32>), FormatError> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = read_file(&cfg_path)?;
    let cfg_name = cfg_path.display().to_string();
    let text = String::from_utf8(text)
        .map_err(|_| FormatError::invalid(&cfg_name, "json", "not UTF-8"))?;
    let cfg = config_from_json(&text, &cfg_name)?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| FormatError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(FormatError::invalid(
            &dir.display().to_string(),
            "*.safetensors",
            "the directory has no safetensors file",
        ));
    }
    let blobs = files
        .iter()
        .map(|p| read_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let parsed = blobs
        .iter()
        .zip(&names)
        .map(|(b, n)| {
            SafeTensors::deserialize(b)
                .map_err(|e| FormatError::invalid(n, "header", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let params = params_from(&cfg, &parsed, &names)?;
    Ok((cfg, params))
}

/// Our flat parameters from the tensors of `shards` (every tensor must be known and every
/// needed one present, with its shape).
pub fn params_from(
    cfg: &ModelConfig,
    shards: &[SafeTensors<'_>],
    files: &[String],
) -> Result<Vec<f32>, FormatError> {
    let table = cfg.params();
    let mut index: HashMap<String, (usize, TensorView<'_>)> = HashMap::new();
    for (i, st) in shards.iter().enumerate() {
        for (name, view) in st.tensors() {
            if name.ends_with("rotary_emb.inv_freq")
                || (cfg.tied_classifier && name == "lm_head.weight")
            {
                continue;
            }
            if !table.iter().any(|s| s.hf_name == name) {
                return Err(FormatError::invalid(
                    &files[i],
                    name,
                    "not a tensor of a LLaMA model of this config",
                ));
            }
            if index.insert(name.clone(), (i, view)).is_some() {
                return Err(FormatError::invalid(
                    &files[i],
                    name,
                    "appears in two files",
                ));
            }
        }
    }
    let dir = files.first().cloned().unwrap_or_default();
    let mut params = Vec::with_capacity(cfg.param_count());
    for spec in &table {
        let (i, view) = index
            .get(&spec.hf_name)
            .ok_or_else(|| FormatError::invalid(&dir, spec.hf_name.as_str(), "missing"))?;
        if view.shape() != spec.shape.as_slice() {
            return Err(FormatError::invalid(
                &files[*i],
                spec.hf_name.as_str(),
                format!(
                    "shape {:?}, the config needs {:?}",
                    view.shape(),
                    spec.shape
                ),
            ));
        }
        let w = to_f32(view, &spec.hf_name, &files[*i])?;
        let cols = spec.shape.last().copied().unwrap_or(1);
        match spec.kind {
            ParamKind::Wq => {
                params.extend(permute_rope_rows(&w, cfg.n_heads, cfg.head_dim, cols, true))
            }
            ParamKind::Wk => params.extend(permute_rope_rows(
                &w,
                cfg.n_kv_heads,
                cfg.head_dim,
                cols,
                true,
            )),
            _ => params.extend(w),
        }
    }
    Ok(params)
}
