//! Training data: the built-in corpus, the byte tokenizer, and token windows.
//!
//! A corpus is text split into documents at blank lines; each document becomes `BOS` followed
//! by its bytes ([`ByteTokenizer`]). Training draws windows of `S + 1` tokens at random starts
//! ([`WindowSampler`], whose state is one `u64` so a resumed run draws the same windows);
//! evaluation uses fixed, evenly spaced windows of a held-out tail ([`TokenData::eval_windows`]).

pub mod corpus;
pub mod shards;
mod tokenizer;
mod windows;

pub use tokenizer::ByteTokenizer;
pub use windows::{held_out_start, split_documents, DataError, TokenData, WindowSampler};
