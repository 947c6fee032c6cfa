//! What `ane-train train` starts from: the checkpoint to resume, the file of `--init`, the
//! tokenizer (`--tokenizer`, the checkpoint's, or bytes) and the data (`--corpus` text
//! tokenized with it, or `--data` token files).

use ane_train::checkpoint::{self, Checkpoint, CorpusInfo};
use ane_train::data::shards::read_token_files;
use ane_train::data::TokenData;
use ane_train::formats::{load_weights, Weights, WeightsSource};
use ane_train::llama::init_params;
use ane_train::model::ModelConfig;
use ane_train::tokenizer::{Llama2cTokenizer, TextTokenizer};
use ane_train::trainer::Trainer;
use anyhow::{bail, Context, Result};

use super::train::{load_corpus, model_config, TrainArgs};

/// Fraction of the tokens held out for evaluation.
const EVAL_FRACTION: f64 = 0.05;

/// The inputs of a run.
pub(crate) struct Inputs {
    /// The `--init` model.
    pub init: Option<Weights>,
    /// The `--resume` checkpoint.
    pub resumed: Option<Checkpoint>,
    /// The tokenizer the run uses and saves.
    pub tokenizer: TextTokenizer,
    /// Training and held-out tokens.
    pub data: TokenData,
    /// The data's description for the checkpoint.
    pub info: CorpusInfo,
}

/// Reads what `args` names; refuses combinations that cannot be honoured.
pub(crate) fn inputs(args: &TrainArgs) -> Result<Inputs> {
    let init = match &args.init {
        Some(p) => {
            Some(load_weights(p).with_context(|| format!("reading --init {}", p.display()))?)
        }
        None => None,
    };
    let resumed = args
        .resume
        .as_ref()
        .map(|p| checkpoint::read(p).with_context(|| format!("reading checkpoint {}", p.display())))
        .transpose()?;
    let tokenizer = match (&resumed, &args.tokenizer, &init) {
        (Some(_), Some(_), _) => bail!(
            "--tokenizer cannot be combined with --resume: the checkpoint carries its tokenizer"
        ),
        (Some(c), None, _) => c.tokenizer.clone(),
        (None, Some(p), _) => TextTokenizer::Llama2c(
            Llama2cTokenizer::read(p)
                .with_context(|| format!("reading tokenizer {}", p.display()))?,
        ),
        (
            None,
            None,
            Some(Weights {
                tokenizer: Some(t), ..
            }),
        ) => t.clone(),
        (None, None, Some(w)) if args.data.is_empty() => {
            println!(
                "  note: {} carries no tokenizer; training on the text with the byte tokenizer \
                 (give --tokenizer for the one the model was trained with)",
                w.path.display()
            );
            TextTokenizer::Bytes
        }
        _ if !args.data.is_empty() => bail!(
            "--data needs --tokenizer (the tokenizer its ids come from, saved in the checkpoint)"
        ),
        _ => TextTokenizer::Bytes,
    };
    let (data, info) = if args.data.is_empty() {
        let (text, info) = load_corpus(&args.corpus)?;
        (
            TokenData::from_text_with(&text, EVAL_FRACTION, &tokenizer)?,
            info,
        )
    } else {
        read_token_files(&args.data, EVAL_FRACTION)?
    };
    Ok(Inputs {
        init,
        resumed,
        tokenizer,
        data,
        info,
    })
}

/// The model of a new run: the `--init` file's shape, else `--model`'s with the vocabulary
/// of a `tokenizer.bin`; `--seq-len` applied; the tokenizer must fit the vocabulary.
pub(crate) fn new_model_config(
    args: &TrainArgs,
    init: Option<&Weights>,
    tok: &TextTokenizer,
) -> Result<ModelConfig> {
    let cfg = match init {
        Some(w) => {
            let mut cfg = w.config.clone();
            if let Some(s) = args.seq_len {
                cfg.seq_len = s;
                cfg.validate()
                    .with_context(|| format!("--seq-len {s} for model {}", cfg.name))?;
            }
            cfg
        }
        None => {
            let mut cfg = model_config(args)?;
            if let TextTokenizer::Llama2c(t) = tok {
                if t.vocab_size() != cfg.vocab_size {
                    println!(
                        "  vocabulary {} -> {} (the tokenizer's)",
                        cfg.vocab_size,
                        t.vocab_size()
                    );
                    cfg.vocab_size = t.vocab_size();
                }
            }
            cfg
        }
    };
    if tok.vocab_size() > cfg.vocab_size {
        bail!(
            "the tokenizer has {} ids, the model's vocabulary only {}",
            tok.vocab_size(),
            cfg.vocab_size
        );
    }
    Ok(cfg)
}

/// The starting parameters: the `--init` file's, else a random init of `cfg` from `seed`.
pub(crate) fn initial_params(init: Option<&Weights>, cfg: &ModelConfig, seed: u64) -> Vec<f32> {
    match init {
        Some(w) => w.params.clone(),
        None => init_params(cfg, seed),
    }
}

/// The new run with its tokenizer, and a maderix/ANE checkpoint's AdamW state taken over.
pub(crate) fn start(t: Trainer, init: Option<Weights>, tok: TextTokenizer) -> Result<Trainer> {
    let t = t.with_tokenizer(tok);
    Ok(match init.map(|w| (w.source, w.adam)) {
        Some((WeightsSource::UpstreamV4, Some((m, v, step)))) => t.with_adam_state(m, v, step)?,
        _ => t,
    })
}
