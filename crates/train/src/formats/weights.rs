//! [`load_weights`]: a model's shape and parameters from any file we read — our checkpoint,
//! a llama2.c `model.bin`, a Hugging Face safetensors directory, or a maderix/ANE checkpoint —
//! recognised by its contents.

use std::path::{Path, PathBuf};

use super::llama2c::Llama2cModel;
use super::{read_file, FormatError};
use crate::checkpoint;
use crate::model::ModelConfig;
use crate::tokenizer::TextTokenizer;

/// Which kind of file weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsSource {
    /// An ane-train checkpoint.
    Checkpoint,
    /// A llama2.c `model.bin`.
    Llama2c,
    /// A Hugging Face directory (`config.json` + `*.safetensors`).
    Safetensors,
    /// A maderix/ANE checkpoint (version 4).
    UpstreamV4,
}

/// A model read from a file: shape, parameters and whatever else the file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// The shape.
    pub config: ModelConfig,
    /// Parameters, layout of [`ModelConfig::params`].
    pub params: Vec<f32>,
    /// The tokenizer, when the file carries one (our checkpoints do).
    pub tokenizer: Option<TextTokenizer>,
    /// AdamW moments `(m, v, t)`, when the file carries them (layout of the parameters).
    pub adam: Option<(Vec<f32>, Vec<f32>, u64)>,
    /// What kind of file it was.
    pub source: WeightsSource,
    /// A llama2.c version 0 file's RoPE table bytes (so exporting it back is byte-exact).
    pub llama2c_rope: Option<Vec<u8>>,
    /// The file or directory.
    pub path: PathBuf,
}

/// Reads the model at `path`: a directory is a safetensors model; a file starting with
/// `ANETCKPT` is our checkpoint, with upstream's magic `0x424C5A54` a maderix/ANE checkpoint,
/// anything else a llama2.c `model.bin` (whose reader checks every size).
pub fn load_weights(path: &Path) -> Result<Weights, FormatError> {
    let weights = |config, params, source| Weights {
        config,
        params,
        tokenizer: None,
        adam: None,
        source,
        llama2c_rope: None,
        path: path.to_path_buf(),
    };
    if path.is_dir() {
        let m = super::safetensors::read_dir(path)?;
        return Ok(weights(m.0, m.1, WeightsSource::Safetensors));
    }
    let bytes = read_file(path)?;
    let file = path.display().to_string();
    if bytes.starts_with(checkpoint::MAGIC) {
        let ck = checkpoint::read_from(&bytes[..], bytes.len() as u64)
            .map_err(|e| FormatError::invalid(&file, "checkpoint", e.to_string()))?;
        return Ok(Weights {
            adam: Some((ck.m, ck.v, ck.header.adam_t)),
            tokenizer: Some(ck.tokenizer),
            ..weights(ck.header.model, ck.params, WeightsSource::Checkpoint)
        });
    }
    if bytes.get(..4) == Some(&super::upstream_v4::MAGIC.to_le_bytes()[..]) {
        let u = super::upstream_v4::UpstreamCheckpoint::from_bytes(&bytes, &file)?;
        return Ok(Weights {
            adam: Some((u.m, u.v, u.adam_t)),
            ..weights(u.config, u.params, WeightsSource::UpstreamV4)
        });
    }
    let m = Llama2cModel::from_bytes(&bytes, &file)?;
    Ok(Weights {
        llama2c_rope: m.rope_tables,
        ..weights(m.config, m.params, WeightsSource::Llama2c)
    })
}
