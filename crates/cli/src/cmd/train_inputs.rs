//! What `ane-train train` starts from: the checkpoint to resume, the file of `--init`, the
//! tokenizer (`--tokenizer`, the checkpoint's, or bytes) and the data (`--corpus` text
//! tokenized with it, or `--data` token files).

use ane_train::checkpoint::{self, Checkpoint, CorpusInfo};
use ane_train::data::shards::read_token_files;
use ane_train::data::{held_out_start, split_documents, TokenData};
use ane_train::formats::{load_weights, Weights, WeightsSource};
use ane_train::llama::init_params;
use ane_train::model::ModelConfig;
use ane_train::tokenizer::{train_bpe, Llama2cTokenizer, TextTokenizer, MIN_VOCAB};
use ane_train::trainer::Trainer;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::train::{load_corpus, model_config, TrainArgs};

/// Most ids a learned BPE tokenizer gets (its ids are stored as u16 in token files).
const MAX_BPE_VOCAB: usize = 1 << 16;

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
    let named = args.tokenizer.as_deref().map(TokenizerArg::of);
    let tokenizer = match (&resumed, named, &init) {
        (Some(_), Some(_), _) => bail!(
            "--tokenizer cannot be combined with --resume: the checkpoint carries its tokenizer"
        ),
        (Some(c), None, _) => Some(c.tokenizer.clone()),
        (None, Some(TokenizerArg::Bytes), _) => Some(TextTokenizer::Bytes),
        (None, Some(TokenizerArg::Learn), _) => None,
        (None, Some(TokenizerArg::File(p)), _) => Some(TextTokenizer::Llama2c(
            Llama2cTokenizer::read(p)
                .with_context(|| format!("reading tokenizer {}", p.display()))?,
        )),
        (
            None,
            None,
            Some(Weights {
                tokenizer: Some(t), ..
            }),
        ) => Some(t.clone()),
        (None, None, _) if !args.data.is_empty() => bail!(
            "--data needs --tokenizer (the tokenizer its ids come from, saved in the checkpoint)"
        ),
        (None, None, Some(w)) => {
            println!(
                "  note: {} carries no tokenizer; training on the text with the byte tokenizer \
                 (give --tokenizer for the one the model was trained with)",
                w.path.display()
            );
            Some(TextTokenizer::Bytes)
        }
        // A new run on text: learn a BPE tokenizer from it where the vocabulary has room.
        (None, None, None) if model_config(args)?.vocab_size > MIN_VOCAB => None,
        (None, None, None) => Some(TextTokenizer::Bytes),
    };
    if !args.data.is_empty() && tokenizer.is_none() {
        bail!(
            "--tokenizer bpe learns from --corpus text; --data needs the tokenizer file of its ids"
        );
    }
    let (data, info, tokenizer) = match tokenizer {
        Some(tok) if args.data.is_empty() => {
            let (text, info) = load_corpus(&args.corpus)?;
            let data = TokenData::from_text_with(&text, EVAL_FRACTION, &tok)?;
            (data, info, tok)
        }
        Some(tok) => {
            let (data, info) = read_token_files(&args.data, EVAL_FRACTION)?;
            (data, info, tok)
        }
        None => {
            let vocab = match &init {
                Some(w) => w.config.vocab_size,
                None => model_config(args)?.vocab_size,
            };
            if vocab <= MIN_VOCAB {
                bail!("--tokenizer bpe needs a vocabulary above {MIN_VOCAB} ids, the model has {vocab}");
            }
            let vocab = vocab.min(MAX_BPE_VOCAB);
            let (text, info) = load_corpus(&args.corpus)?;
            let (data, tok) = learn_bpe(&text, vocab)?;
            (data, info, tok)
        }
    };
    Ok(Inputs {
        init,
        resumed,
        tokenizer,
        data,
        info,
    })
}

/// What `--tokenizer` names.
enum TokenizerArg<'a> {
    /// `bytes`: the byte tokenizer.
    Bytes,
    /// `bpe`: learn BPE from the corpus's training documents.
    Learn,
    /// A llama2.c `tokenizer.bin`.
    File(&'a Path),
}

impl<'a> TokenizerArg<'a> {
    fn of(p: &'a Path) -> TokenizerArg<'a> {
        match p.to_str() {
            Some("bytes") => TokenizerArg::Bytes,
            Some("bpe") => TokenizerArg::Learn,
            _ => TokenizerArg::File(p),
        }
    }
}

/// Learns a BPE tokenizer of at most `vocab` ids from the training documents of `text` (the
/// held-out ones are the byte run's, [`held_out_start`], and are not seen while learning),
/// and encodes both parts with it.
fn learn_bpe(text: &[u8], vocab: usize) -> Result<(TokenData, TextTokenizer)> {
    let t = Instant::now();
    let docs = split_documents(text);
    let at = held_out_start(&docs, EVAL_FRACTION)?;
    let train_docs = docs[..at].iter().map(|d| String::from_utf8_lossy(d));
    let tok =
        TextTokenizer::Llama2c(train_bpe(train_docs, vocab).context("learning the BPE tokenizer")?);
    let data = TokenData::from_documents(&docs, at, &tok);
    let bytes: usize = docs[..at].iter().map(|d| d.len()).sum();
    println!(
        "  tokenizer: BPE of {} ids learned from the {at} training documents in {:.1} s \
         ({:.2} bytes per id; `--tokenizer bytes` for one id per byte)",
        tok.vocab_size(),
        t.elapsed().as_secs_f64(),
        bytes as f64 / data.train.len().max(1) as f64
    );
    Ok((data, tok))
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
            // A tokenizer file sets the vocabulary (as llama2.c's do); a learned one fits in
            // the model's.
            let from_file = args
                .tokenizer
                .as_deref()
                .is_some_and(|p| matches!(TokenizerArg::of(p), TokenizerArg::File(_)));
            if let (TextTokenizer::Llama2c(t), true) = (tok, from_file) {
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
