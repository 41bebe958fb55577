//! The loader's model: all-MiniLM-L6-v2 (the `embed` crate), loaded when the
//! first line without an embedding needs it, with an optional file cache so
//! that a text is never embedded twice across loads (`make up` keeps one
//! under `.local/`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::load::Embed;

/// One cache line: the key (model id and text, hashed) and the vector.
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheLine {
    key: String,
    embedding: Vec<f32>,
}

pub struct LazyModel {
    dir: PathBuf,
    model: Option<embed::MiniLm>,
    cache_path: Option<PathBuf>,
    cache: HashMap<String, Vec<f32>>,
    /// Milliseconds the model took to load (0 until it is).
    pub load_ms: f64,
    pub cache_hits: usize,
}

impl LazyModel {
    /// The model in `dir`; with `cache_path`, vectors are read from and
    /// appended to that JSON Lines file.
    pub fn new(dir: PathBuf, cache_path: Option<PathBuf>) -> LazyModel {
        LazyModel {
            dir,
            model: None,
            cache_path,
            cache: HashMap::new(),
            load_ms: 0.0,
            cache_hits: 0,
        }
    }

    fn model(&mut self) -> Result<&embed::MiniLm, String> {
        if self.model.is_none() {
            let started = Instant::now();
            let model = embed::MiniLm::load(&self.dir).map_err(|e| e.to_string())?;
            self.load_ms = started.elapsed().as_secs_f64() * 1000.0;
            if let Some(path) = &self.cache_path {
                self.cache = read_cache(path)?;
            }
            self.model = Some(model);
        }
        self.model.as_ref().ok_or_else(|| "no model".to_string())
    }
}

fn key(model_id: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(model_id.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache's vectors; a line of another model simply never matches.
fn read_cache(path: &Path) -> Result<HashMap<String, Vec<f32>>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = HashMap::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        // A line cut short by an interrupted run is skipped, not fatal.
        if let Ok(entry) = serde_json::from_str::<CacheLine>(&line) {
            if shared::domain::check_embedding(&entry.embedding).is_ok() {
                out.insert(entry.key, entry.embedding);
            }
        }
    }
    Ok(out)
}

impl Embed for LazyModel {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let id = self.model()?.id().to_owned();
        let keys: Vec<String> = texts.iter().map(|t| key(&id, t)).collect();
        let (missing, missing_keys): (Vec<&str>, Vec<&String>) = texts
            .iter()
            .zip(&keys)
            .filter(|(_, k)| !self.cache.contains_key(*k))
            .unzip();
        self.cache_hits += texts.len() - missing.len();
        if !missing.is_empty() {
            let vectors = self.model()?.embed(&missing).map_err(|e| e.to_string())?;
            if let Some(path) = &self.cache_path {
                append_cache(path, &missing_keys, &vectors)?;
            }
            for (k, vector) in missing_keys.into_iter().zip(vectors) {
                self.cache.insert(k.clone(), vector);
            }
        }
        Ok(keys.iter().map(|k| self.cache[k].clone()).collect())
    }
}

fn append_cache(path: &Path, keys: &[&String], vectors: &[Vec<f32>]) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| fail(&e))?;
    let mut out = BufWriter::new(file);
    for (key, embedding) in keys.iter().zip(vectors) {
        let line = CacheLine {
            key: (*key).clone(),
            embedding: embedding.clone(),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| fail(&e))?;
        out.write_all(b"\n").map_err(|e| fail(&e))?;
    }
    out.flush().map_err(|e| fail(&e))
}
