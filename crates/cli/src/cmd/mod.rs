//! One module per subcommand.

pub mod bench;
pub mod bench_accum;
mod bench_common;
mod bench_counting;
pub mod bench_pool;
pub mod bench_weight_modes;
pub mod corpus;
pub mod demo;
pub mod export;
mod files;
pub mod generate;
mod knobs;
mod metrics;
pub mod mil;
pub mod mil_run;
pub mod plot;
mod progress;
mod raster;
pub mod restart;
pub mod sample;
pub mod selftest;
pub mod tokenize;
pub mod tokenizer;
pub mod train;
pub mod train_inputs;
