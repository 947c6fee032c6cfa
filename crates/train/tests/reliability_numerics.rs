//! Numerics reliability on an fp16 device (`ane-sim`): a real fp16 overflow (a loss scale so
//! high the scaled gradient does not fit fp16) is skipped and the scale backs off; clean
//! updates grow it again; resume carries the scaler bit-exactly; a checkpoint with a NaN is
//! refused and the previous file stays as it was; old-format checkpoints keep the old scale.

use std::path::PathBuf;
use std::sync::Arc;

use ane_runtime::Device;
use ane_train::checkpoint::{self, CorpusInfo, TrainSettings};
use ane_train::data::{corpus, TokenData};
use ane_train::kernels::WeightMode;
use ane_train::llama::{init_params, Model};
use ane_train::loss_scale;
use ane_train::model::ModelConfig;
use ane_train::optim::{AdamWConfig, Schedule};
use ane_train::trainer::{StepOutcome, StepReport, Trainer};

fn cfg() -> ModelConfig {
    ModelConfig::from_toml_str(
        r#"
        name = "tiny-bytes"
        dim = 16
        n_layers = 1
        n_heads = 2
        n_kv_heads = 1
        head_dim = 8
        hidden_dim = 32
        vocab_size = 259
        seq_len = 32
        "#,
    )
    .unwrap()
}

fn settings(steps: u64) -> TrainSettings {
    TrainSettings {
        steps,
        accum: 1,
        batch: 1,
        schedule: Schedule {
            lr: 3e-3,
            min_lr: 3e-4,
            warmup: 1,
            total: steps,
        },
        adamw: AdamWConfig::default(),
        seed: 5,
    }
}

fn text() -> String {
    corpus::generate(corpus::DEFAULT_SEED, 20)
}

fn data() -> TokenData {
    TokenData::from_text(text().as_bytes(), 0.1).unwrap()
}

fn sim() -> Arc<dyn Device> {
    ane_runtime::open("ane-sim").unwrap()
}

fn trainer(steps: u64) -> Trainer {
    let c = cfg();
    let s = settings(steps);
    let model = Model::new(
        c.clone(),
        sim(),
        WeightMode::Packed,
        init_params(&c, s.seed),
    )
    .unwrap();
    Trainer::new(model, s, CorpusInfo::of("test", text().as_bytes())).unwrap()
}

fn step(t: &mut Trainer, d: &TokenData) -> StepReport {
    match t.step(d).unwrap() {
        StepOutcome::Updated(r) => r,
        other => panic!("expected an update, got {other:?}"),
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ane-train-numerics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bytes(a: &[f32]) -> Vec<u8> {
    a.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn an_fp16_overflow_is_skipped_and_the_scale_backs_off_then_grows() {
    let d = data();
    let mut t = trainer(12)
        .with_loss_scale(loss_scale::MAX)
        .unwrap()
        .with_loss_scale_interval(2);
    assert!(t.model().is_fp16());
    let (p0, m0, v0) = (
        t.model().params().to_vec(),
        t.optimizer().m.clone(),
        t.optimizer().v.clone(),
    );
    let r = step(&mut t, &d);
    assert!(r.skipped, "2^24 should overflow fp16 gradients: {r:?}");
    assert_eq!(r.loss_scale, loss_scale::MAX);
    assert!(
        r.loss.is_finite(),
        "the forward pass does not see the scale"
    );
    assert_eq!(
        t.model().params(),
        &p0[..],
        "a skipped update changes nothing"
    );
    assert_eq!((&t.optimizer().m, &t.optimizer().v), (&m0, &v0));
    assert_eq!(t.optimizer().t, 0);
    assert_eq!(t.loss_scaler().scale(), loss_scale::MAX / 2.0);
    assert_eq!(t.model().loss_scale(), loss_scale::MAX / 2.0);
    // Back off until an update goes through, then two clean ones double the scale.
    let mut r = step(&mut t, &d);
    while r.skipped {
        assert_eq!(t.loss_scaler().scale(), r.loss_scale / 2.0);
        r = step(&mut t, &d);
    }
    let clean_at = r.loss_scale;
    assert!((loss_scale::MIN..loss_scale::MAX).contains(&clean_at));
    assert_ne!(t.model().params(), &p0[..]);
    assert_eq!(t.loss_scaler().clean_run(), 1);
    let r2 = step(&mut t, &d);
    assert!(!r2.skipped && r2.loss.is_finite(), "{r2:?}");
    assert_eq!(r2.loss_scale, clean_at);
    assert_eq!(t.loss_scaler().scale(), clean_at * 2.0);
    assert_eq!(t.loss_scaler().clean_run(), 0);
    assert!(t.totals().skipped >= 1);
}

#[test]
fn resume_mid_way_is_bit_exact_with_the_scaler_state() {
    let d = data();
    let start = || {
        trainer(8)
            .with_loss_scale(loss_scale::MAX)
            .unwrap()
            .with_loss_scale_interval(3)
    };
    let mut whole = start();
    while !matches!(whole.step(&d).unwrap(), StepOutcome::Finished) {}
    let mut first = start();
    for _ in 0..4 {
        step(&mut first, &d);
    }
    let path = tmp("mid.ckpt");
    first.save(&path).unwrap();
    let saved = first.loss_scaler();
    let ck = checkpoint::read(&path).unwrap();
    assert_eq!(
        (
            ck.header.loss_scale,
            ck.header.loss_scale_clean_run,
            ck.header.loss_scale_interval
        ),
        (saved.scale(), saved.clean_run(), 3)
    );
    let info = ck.header.corpus.clone();
    let mut resumed = Trainer::resume(ck, sim(), WeightMode::Packed, &info).unwrap();
    assert_eq!(resumed.loss_scaler(), saved);
    assert_eq!(resumed.model().loss_scale(), saved.scale());
    while !matches!(resumed.step(&d).unwrap(), StepOutcome::Finished) {}
    assert_eq!(resumed.loss_scaler(), whole.loss_scaler());
    assert_eq!(
        bytes(resumed.model().params()),
        bytes(whole.model().params())
    );
    assert_eq!(bytes(&resumed.optimizer().m), bytes(&whole.optimizer().m));
    assert_eq!(bytes(&resumed.optimizer().v), bytes(&whole.optimizer().v));
}

#[test]
fn a_nan_parameter_is_refused_and_the_old_checkpoint_stays() {
    let d = data();
    let mut t = trainer(4);
    step(&mut t, &d);
    let path = tmp("nan.ckpt");
    t.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    t.model_mut()
        .update_params(|p| {
            let last = p.len() - 1;
            p[last] = f32::NAN;
        })
        .unwrap();
    let e = t.save(&path).unwrap_err().to_string();
    assert!(e.contains("parameter") && e.contains("NaN"), "{e}");
    let last_tensor = cfg().params().last().unwrap().name.clone();
    assert!(e.contains(&last_tensor), "{e} should name {last_tensor}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let dir: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("nan.ckpt"))
        .collect();
    assert_eq!(dir.len(), 1, "no temporary file left: {dir:?}");
}

#[test]
fn an_old_version_checkpoint_resumes_at_the_fixed_old_scale() {
    let path = format!(
        "{}/../../fuzz/seeds/checkpoint_read/micro.ckpt",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read(&path).unwrap();
    let version = u32::from_le_bytes(raw[8..12].try_into().unwrap());
    assert!(
        version < 3,
        "the seed is an old-format file (version {version})"
    );
    let ck = checkpoint::read(std::path::Path::new(&path)).unwrap();
    assert_eq!(
        (ck.header.loss_scale, ck.header.loss_scale_clean_run),
        (loss_scale::LEGACY_SCALE, 0)
    );
    let info = ck.header.corpus.clone();
    let t = Trainer::resume(ck, sim(), WeightMode::Packed, &info).unwrap();
    assert_eq!(t.loss_scaler().scale(), 256.0);
    assert_eq!(t.model().loss_scale(), 256.0);
}

#[test]
fn fp32_devices_keep_scale_one() {
    let c = cfg();
    let s = settings(2);
    let cpu = ane_runtime::open("cpu").unwrap();
    let model = Model::new(c.clone(), cpu, WeightMode::Params, init_params(&c, 5)).unwrap();
    let mut t = Trainer::new(model, s, CorpusInfo::of("test", text().as_bytes()))
        .unwrap()
        .with_loss_scale_interval(1);
    assert!(!t.loss_scaler().is_dynamic());
    let d = data();
    for _ in 0..2 {
        let r = step(&mut t, &d);
        assert_eq!(r.loss_scale, 1.0);
    }
    assert_eq!(t.loss_scaler().scale(), 1.0);
    assert_eq!(t.model().grad_scale(), 1.0);
}

#[test]
fn a_checkpoint_with_a_bad_scaler_state_is_refused() {
    let t = trainer(2);
    let (p, m, v) = (t.model().params(), &t.optimizer().m, &t.optimizer().v);
    let good = t.header();
    let read = |h: &checkpoint::Header| {
        let buf = checkpoint::write_to(Vec::new(), h, p, m, v, t.tokenizer()).unwrap();
        checkpoint::read_from(&buf[..], buf.len() as u64)
    };
    assert_eq!(read(&good).unwrap().header.loss_scale, loss_scale::START);
    for (scale, clean, interval) in [
        (3.0, 0, 10),
        (0.0, 0, 10),
        (loss_scale::MAX * 2.0, 0, 10),
        (256.0, 10, 10),
        (256.0, 0, 0),
    ] {
        let h = checkpoint::Header {
            loss_scale: scale,
            loss_scale_clean_run: clean,
            loss_scale_interval: interval,
            ..good.clone()
        };
        let e = read(&h).unwrap_err().to_string();
        assert!(e.contains("loss"), "{scale} {clean} {interval}: {e}");
    }
    // JSON has no infinity: it is written as null, which the reader refuses too.
    let inf = checkpoint::Header {
        loss_scale: f32::INFINITY,
        ..good
    };
    assert!(read(&inf).is_err());
}
