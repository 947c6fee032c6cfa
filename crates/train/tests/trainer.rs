//! The trainer: learning on the built-in corpus, bit-exact resume from checkpoints, the
//! compile-budget restart in Baked mode (through the ANE driver over the fake framework),
//! and clear errors for damaged checkpoints and impossible settings.

use std::path::PathBuf;
use std::sync::Arc;

use ane_runtime::ane::fake::FakeSys;
use ane_runtime::ane::{AneDevice, AneOptions};
use ane_runtime::budget::CompileBudget;
use ane_runtime::Device;
use ane_train::checkpoint::{self, CorpusInfo, TrainSettings};
use ane_train::data::{corpus, TokenData};
use ane_train::kernels::WeightMode;
use ane_train::llama::{init_params, Model};
use ane_train::model::ModelConfig;
use ane_train::optim::{AdamWConfig, Schedule};
use ane_train::trainer::{StepOutcome, Trainer};

fn cfg() -> ModelConfig {
    ModelConfig::from_toml_str(
        r#"
        name = "tiny-bytes"
        dim = 32
        n_layers = 1
        n_heads = 4
        n_kv_heads = 2
        head_dim = 8
        hidden_dim = 64
        vocab_size = 259
        seq_len = 32
        "#,
    )
    .unwrap()
}

fn settings(steps: u64, accum: u32) -> TrainSettings {
    TrainSettings {
        steps,
        accum,
        batch: 1,
        schedule: Schedule {
            lr: 3e-3,
            min_lr: 3e-4,
            warmup: 2,
            total: steps,
        },
        adamw: AdamWConfig::default(),
        seed: 9,
    }
}

fn text() -> String {
    corpus::generate(corpus::DEFAULT_SEED, 40)
}

fn data() -> TokenData {
    TokenData::from_text(text().as_bytes(), 0.1).unwrap()
}

fn info() -> CorpusInfo {
    CorpusInfo::of("test", text().as_bytes())
}

fn trainer(device: Arc<dyn Device>, mode: WeightMode, s: TrainSettings) -> Trainer {
    let c = cfg();
    let model = Model::new(c.clone(), device, mode, init_params(&c, s.seed)).unwrap();
    Trainer::new(model, s, info()).unwrap()
}

fn cpu() -> Arc<dyn Device> {
    ane_runtime::open("cpu").unwrap()
}

fn fake_ane(limit: usize) -> Arc<dyn Device> {
    let budget = Arc::new(CompileBudget::new(limit));
    Arc::new(AneDevice::new(FakeSys::new(), AneOptions::new(budget)).unwrap())
}

fn run_to_end(t: &mut Trainer, d: &TokenData) -> Vec<f32> {
    let mut losses = Vec::new();
    loop {
        match t.step(d).unwrap() {
            StepOutcome::Updated(r) => losses.push(r.loss),
            StepOutcome::Finished => return losses,
            StepOutcome::RestartNeeded { .. } => panic!("unexpected restart"),
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ane-train-trainer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Eight hundred updates take the held-out loss from a uniform guess (ln 259 ≈ 5.56) to well
/// below the entropy of the text's byte frequencies (≈ 3.07 nats: the best a model that ignores
/// its context can do), so the model uses its context — the whole loop (data, gradients,
/// AdamW, restaging) learns.
#[test]
fn training_lowers_the_held_out_loss() {
    let d = data();
    let mut s = settings(800, 1);
    s.schedule.lr = 1e-2;
    s.schedule.min_lr = 1e-3;
    let mut t = trainer(cpu(), WeightMode::Params, s);
    let before = t.eval_loss(&d, 4).unwrap().unwrap();
    let losses = run_to_end(&mut t, &d);
    let after = t.eval_loss(&d, 4).unwrap().unwrap();
    let mut counts = [0usize; 256];
    text().bytes().for_each(|b| counts[b as usize] += 1);
    let n = text().len() as f64;
    let unigram: f64 = counts
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| -(k as f64 / n) * (k as f64 / n).ln())
        .sum();
    assert_eq!(losses.len(), 800);
    assert!(before > 5.0, "initial held-out loss {before}");
    assert!(
        f64::from(after) < unigram - 0.3,
        "held-out loss {before} -> {after}, byte entropy {unigram}"
    );
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[795..].iter().sum::<f32>() / 5.0;
    assert!(last < first - 2.0, "train loss {first} -> {last}");
    let totals = t.totals();
    assert_eq!(totals.updates, 800);
    assert_eq!(totals.tokens, 800 * 32);
    assert!(totals.device > std::time::Duration::ZERO);
}

/// Stop after 3 of 7 updates, write a checkpoint, read it back on a fresh device, finish:
/// parameters and both moments equal the uninterrupted run's bit for bit (with accumulation).
#[test]
fn resume_from_a_checkpoint_is_bit_exact() {
    let d = data();
    let s = settings(7, 2);
    let mut straight = trainer(cpu(), WeightMode::Params, s);
    run_to_end(&mut straight, &d);

    let mut first = trainer(cpu(), WeightMode::Params, s);
    for _ in 0..3 {
        assert!(matches!(first.step(&d).unwrap(), StepOutcome::Updated(_)));
    }
    let path = tmp("resume.ckpt");
    first.save(&path).unwrap();
    drop(first);
    let ckpt = checkpoint::read(&path).unwrap();
    assert_eq!(ckpt.header.step, 3);
    let mut resumed = Trainer::resume(ckpt, cpu(), WeightMode::Params, &info()).unwrap();
    run_to_end(&mut resumed, &d);
    assert_eq!(resumed.steps_done(), 7);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(resumed.model().params()),
        bits(straight.model().params())
    );
    assert_eq!(bits(&resumed.optimizer().m), bits(&straight.optimizer().m));
    assert_eq!(bits(&resumed.optimizer().v), bits(&straight.optimizer().v));
    assert_eq!(resumed.optimizer().t, 7);
}

/// Baked mode on the ANE driver (fake framework): new weights need 8·L + 2 = 10 compiles,
/// done lazily before the next update runs. With a budget of 25 a process fits its build (10)
/// and one recompile (10), so it does two updates; before the third the trainer asks for a
/// restart, and checkpoint → fresh process → resume ends exactly where an unlimited run does.
#[test]
fn baked_training_restarts_at_the_compile_budget_and_stays_exact() {
    let d = data();
    let s = settings(4, 1);
    let mut unlimited = trainer(fake_ane(1000), WeightMode::Baked, s);
    run_to_end(&mut unlimited, &d);

    let path = tmp("budget.ckpt");
    let mut t = trainer(fake_ane(25), WeightMode::Baked, s);
    let mut restarts = 0;
    loop {
        match t.step(&d).unwrap() {
            StepOutcome::Updated(_) => {}
            StepOutcome::Finished => break,
            StepOutcome::RestartNeeded { needed, remaining } => {
                assert_eq!((needed, remaining), (10, 5));
                assert_eq!(t.steps_done(), 2);
                restarts += 1;
                t.save(&path).unwrap();
                let ckpt = checkpoint::read(&path).unwrap();
                t = Trainer::resume(ckpt, fake_ane(25), WeightMode::Baked, &info()).unwrap();
            }
        }
    }
    assert_eq!(restarts, 1, "two updates per process");
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(t.model().params()), bits(unlimited.model().params()));
}

/// An update in Baked mode compiles nothing until the kernels are needed.
#[test]
fn baked_updates_recompile_lazily() {
    let d = data();
    let mut t = trainer(fake_ane(1000), WeightMode::Baked, settings(3, 1));
    assert_eq!(t.model().compile_count(), 10);
    assert!(matches!(t.step(&d).unwrap(), StepOutcome::Updated(_)));
    assert_eq!(
        t.model().compile_count(),
        10,
        "the update itself compiles nothing"
    );
    assert_eq!(t.model().pending_compiles(), 10);
    t.eval_loss(&d, 1).unwrap();
    assert_eq!(t.model().compile_count(), 20);
    assert_eq!(t.model().pending_compiles(), 0);
}

/// A budget smaller than one model build fails when the model is built, saying so.
#[test]
fn a_budget_too_small_for_one_build_is_an_error() {
    let c = cfg();
    let e = Model::new(
        c.clone(),
        fake_ane(8),
        WeightMode::Baked,
        init_params(&c, 1),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("budget"), "{msg}");
}

/// Non-finite gradients skip the update; three in a row stop training with advice.
#[test]
fn non_finite_gradients_are_skipped_then_reported() {
    let d = data();
    let mut t = trainer(cpu(), WeightMode::Params, settings(10, 1));
    let mut p = t.model().params().to_vec();
    p.iter_mut().for_each(|x| *x = f32::NAN);
    t.model_mut().set_params(p).unwrap();
    for _ in 0..2 {
        match t.step(&d).unwrap() {
            StepOutcome::Updated(r) => assert!(r.skipped),
            other => panic!("{other:?}"),
        }
    }
    let e = t.step(&d).unwrap_err().to_string();
    assert!(e.contains("not finite for 3 updates in a row"), "{e}");
}

/// Resuming on other text is refused, naming both corpora.
#[test]
fn resume_on_another_corpus_is_refused() {
    let t = trainer(cpu(), WeightMode::Params, settings(2, 1));
    let path = tmp("corpus.ckpt");
    t.save(&path).unwrap();
    let other = CorpusInfo::of("other.txt", b"something else");
    let ckpt = checkpoint::read(&path).unwrap();
    let e = Trainer::resume(ckpt, cpu(), WeightMode::Params, &other).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("trained on test") && msg.contains("not on other.txt"),
        "{msg}"
    );
}

/// Every kind of damage is caught with a message that says what is wrong.
#[test]
fn damaged_checkpoints_are_rejected_clearly() {
    let t = trainer(cpu(), WeightMode::Params, settings(2, 1));
    let path = tmp("damage.ckpt");
    t.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let read = |bytes: &[u8]| {
        checkpoint::read_from(bytes, bytes.len() as u64)
            .unwrap_err()
            .to_string()
    };
    let hlen = u64::from_le_bytes(good[12..20].try_into().unwrap()) as usize;
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    cases.push((good[..10].to_vec(), "too short"));
    cases.push((good[..good.len() - 1].to_vec(), "the file has"));
    let mut magic = good.clone();
    magic[0] = b'X';
    cases.push((magic, "wrong magic"));
    let mut version = good.clone();
    version[8] = 9;
    cases.push((version, "format version 9"));
    let mut huge = good.clone();
    huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push((huge, "header length"));
    let mut json = good.clone();
    json[20] = b'[';
    cases.push((json, "header:"));
    let mut flipped = good.clone();
    let at = 20 + hlen + 5;
    flipped[at] ^= 0x40;
    cases.push((flipped, "SHA-256 mismatch"));
    let mut digest = good.clone();
    let last = digest.len() - 1;
    digest[last] ^= 1;
    cases.push((digest, "SHA-256 mismatch"));
    for (bytes, want) in cases {
        let msg = read(&bytes);
        assert!(msg.contains(want), "expected {want:?} in {msg:?}");
    }
    let e = checkpoint::read(&tmp("missing.ckpt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.ckpt"), "{e}");
    // The good bytes read back to what was saved.
    let ck = checkpoint::read_from(&good[..], good.len() as u64).unwrap();
    assert_eq!(ck.params, t.model().params());
    assert_eq!(ck.header, t.header());
}

/// The checkpoint fuzz target's seed is a valid checkpoint (so fuzzing starts past the checks).
#[test]
fn the_fuzz_seed_is_a_valid_checkpoint() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/checkpoint_read/micro.ckpt"
    );
    let ck = checkpoint::read(std::path::Path::new(path)).unwrap();
    assert_eq!(ck.header.model.name, "micro");
    assert_eq!(ck.params.len(), ck.header.model.param_count());
}

/// The default run's model (`tiny`) passes every Neural Engine rule in every weight mode on
/// `ane-sim`, and trains there (fp16 surfaces, loss scaling): `ane-train train --device ane`
/// must not stop at a rule that only a Mac would hit (as `stories260k`'s FFN of 172 did in
/// Params and Packed modes before the kernels padded narrow weight inputs).
#[test]
fn the_default_model_fits_the_neural_engine_in_every_mode() {
    let c = ModelConfig::preset("tiny").unwrap();
    let text = text();
    let d = TokenData::from_text(text.as_bytes(), 0.1).unwrap();
    for mode in WeightMode::ALL {
        let dev = ane_runtime::open("ane-sim").unwrap();
        let model = Model::new(c.clone(), dev, mode, init_params(&c, 1)).unwrap();
        let mut t = Trainer::new(model, settings(2, 1), info()).unwrap();
        let losses = run_to_end(&mut t, &d);
        assert_eq!(losses.len(), 2, "{mode:?}");
        assert!(losses.iter().all(|l| l.is_finite()), "{mode:?}: {losses:?}");
    }
}
