//! `make bench --text-bound-only` (and part of every `make bench`): what the
//! bound on a text's word pieces (DESIGN.md "Fair use") costs the api, which
//! counts them with the model's tokenizer compiled in. At init: parsing the
//! bundled `tokenizer.json`. At each POST with `text`: counting its word
//! pieces. In this process (the perf profile; tokenizers is built at
//! opt-level 3 in release too), on one thread.

use std::time::Instant;

use anyhow::{Context, Result};
use embed::tokenizer::WordPieces;
use serde::Serialize;

use crate::measure::percentile;

#[derive(Debug, Serialize)]
pub struct Count {
    pub text: String,
    pub chars: usize,
    pub word_pieces: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct TextBound {
    /// Bytes of the tokenizer.json compiled into the api.
    pub tokenizer_bytes: usize,
    /// Parsing it (the api's init), per run.
    pub load_p50_ms: f64,
    pub load_max_ms: f64,
    pub counts: Vec<Count>,
}

/// `runs` loads and `runs` counts of each text (after 3 unmeasured ones).
pub fn measure(runs: usize) -> Result<TextBound> {
    let bytes = embed::tokenizer::bundled_bytes();
    let mut loads = Vec::with_capacity(runs);
    let mut pieces = None;
    for i in 0..runs + 3 {
        let started = Instant::now();
        let loaded = WordPieces::from_bytes(bytes).map_err(anyhow::Error::msg)?;
        if i >= 3 {
            loads.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        pieces = Some(loaded);
    }
    let pieces = pieces.context("no run")?;
    let texts = [
        (
            "search phrase (8 words)",
            "ICU nurse looking for night shifts in Berlin".to_owned(),
        ),
        (
            "resume, 1,400 words",
            jobmatch_cli::generate::long_resume(7, 1_400),
        ),
        (
            "resume, 3,000 words (~20,000 chars)",
            jobmatch_cli::generate::long_resume(8, 3_000),
        ),
        ("20,000 '!'", "!".repeat(20_000)),
    ];
    let mut counts = Vec::new();
    for (name, text) in texts {
        let word_pieces = pieces.count(&text).map_err(anyhow::Error::msg)?;
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + 3 {
            let started = Instant::now();
            std::hint::black_box(
                pieces
                    .count(std::hint::black_box(&text))
                    .map_err(anyhow::Error::msg)?,
            );
            if i >= 3 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        counts.push(Count {
            text: name.to_owned(),
            chars: text.chars().count(),
            word_pieces,
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
        });
    }
    loads.sort_by(f64::total_cmp);
    Ok(TextBound {
        tokenizer_bytes: bytes.len(),
        load_p50_ms: percentile(&loads, 0.5),
        load_max_ms: loads.last().copied().unwrap_or(f64::NAN),
        counts,
    })
}

pub fn print(f: &TextBound) {
    println!(
        "\nThe text bound in the api (its bundled tokenizer, {} bytes; one thread):",
        f.tokenizer_bytes
    );
    println!(
        "  init: parsing the tokenizer {:.1} ms p50, {:.1} ms max",
        f.load_p50_ms, f.load_max_ms
    );
    println!(
        "  {:<38} {:>7} {:>12} {:>9} {:>9}",
        "POST with text", "chars", "word pieces", "p50 ms", "p99 ms"
    );
    for c in &f.counts {
        println!(
            "  {:<38} {:>7} {:>12} {:>9.2} {:>9.2}",
            c.text, c.chars, c.word_pieces, c.p50_ms, c.p99_ms
        );
    }
}
