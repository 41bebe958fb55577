//! sentence-transformers `all-MiniLM-L6-v2` in pure Rust (candle's BERT,
//! Hugging Face's tokenizers), behind `shared::ports::Embedder` (module
//! `model`, feature `model`), and its tokenizer alone, which bounds what a
//! text may cost (module [`tokenizer`]; all the api links).

pub mod tokenizer;

#[cfg(feature = "model")]
mod model;
#[cfg(feature = "model")]
pub use model::*;
