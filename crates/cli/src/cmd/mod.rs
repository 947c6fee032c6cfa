//! One module per subcommand.

pub mod bench;
pub mod corpus;
pub mod demo;
pub mod export;
pub mod generate;
pub mod mil;
pub mod mil_run;
pub mod restart;
pub mod sample;
pub mod selftest;
pub mod tokenize;
pub mod tokenizer;
pub mod train;
pub mod train_inputs;
