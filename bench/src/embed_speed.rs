//! Embedding speed of all-MiniLM-L6-v2 on ONE thread, as the benchmark binary
//! (perf profile) runs it: a text of 20 word pieces and one of 254 (a full
//! 256-token window with `[CLS]` and `[SEP]`), the model's load time, and the
//! peak RSS of a process that loads it and embeds one full window.
//!
//! candle (its gemm and its own pools) and tokenizers size their rayon pools
//! from `RAYON_NUM_THREADS` (candle-core's `utils::get_num_threads`; candle's
//! barrier pool reads `CANDLE_NUM_THREADS` first) when a pool is first built,
//! so the measurement runs in a child process of this binary started with
//! `RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false`,
//! before anything can have built a pool. The child checks that candle sees one
//! thread, and measures the CPU time of all its threads against the wall time
//! of the runs: 1.00 and one busy thread is a single-threaded measurement.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::measure::percentile;

/// Hidden first argument: the timing child.
pub const SPEED_CHILD: &str = "--embed-speed-child";
/// Hidden first argument: the peak-RSS child.
pub const RSS_CHILD: &str = "--embed-rss-child";

pub const SHORT_PIECES: usize = 20;
/// One full window: 254 word pieces + `[CLS]` + `[SEP]` = 256.
pub const FULL_PIECES: usize = embed::WINDOW - 2;
const WARM_UP: usize = 5;
const LOADS: usize = 5;

/// Targets (p50) and the physical floor of a full window.
pub const SHORT_TARGET_MS: f64 = 25.0;
pub const FULL_TARGET_MS: f64 = 150.0;
/// A 256-token forward is ~5.4 GFLOP of matmuls; this core peaks near 80
/// GFLOPS (f32 FMA), so ~70 ms is the floor.
pub const FULL_FLOOR_MS: f64 = 70.0;
pub const LOAD_TARGET_MS: f64 = 400.0;
pub const RSS_TARGET_MB: f64 = 350.0;

/// A realistic resume, repeated and cut to the word pieces wanted.
const RESUME: &str = "Senior backend engineer with seven years of experience building and \
running high-traffic services for e-commerce and logistics companies. At my current employer I \
lead a team of four engineers responsible for the order management platform, written in Go and \
Python, which processes about two million orders a day. I designed the move from a monolithic \
Django application to a set of gRPC services deployed on Kubernetes, cut p99 checkout latency \
from 900 ms to 180 ms by adding a Redis cache and rewriting the inventory queries in PostgreSQL, \
and introduced Kafka for order events so that the warehouse, billing and notification systems \
could consume them independently. I own our on-call rotation and wrote the runbooks, the \
Terraform modules for our AWS accounts and the GitHub Actions pipelines that test, build and \
deploy every service. Before that I spent three years at a travel startup as a full-stack \
developer: a React front end, a Node.js API and a MySQL database, integrations with airline and \
hotel booking partners over REST and SOAP, and the first version of our data warehouse on \
BigQuery. I mentor junior developers, review most of the team's pull requests, and run a \
monthly session on system design. Skills: Go, Python, Java, SQL, PostgreSQL, MySQL, Redis, \
Kafka, RabbitMQ, gRPC, REST, Docker, Kubernetes, Helm, Terraform, AWS (EC2, ECS, Lambda, S3, \
RDS, SQS), Prometheus, Grafana, OpenTelemetry, CI/CD, distributed systems, performance tuning, \
incident response. Education: BSc in Computer Science, University of Manchester. Languages: \
English (native), Spanish (professional working proficiency).";

/// What the timing child measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    pub runs: usize,
    pub warm_up: usize,
    /// `candle_core::utils::get_num_threads()` in the child.
    pub candle_threads: usize,
    pub short_pieces: usize,
    pub short_p50_ms: f64,
    pub short_p90_ms: f64,
    pub short_min_ms: f64,
    pub full_pieces: usize,
    pub full_p50_ms: f64,
    pub full_p90_ms: f64,
    pub full_min_ms: f64,
    /// CPU time of all the child's threads / wall time, over the timed runs.
    pub cpu_per_wall: f64,
    /// Threads that used more than 2% of the runs' wall time in CPU.
    pub busy_threads: usize,
    /// The machine's 1-minute load average before and after the runs.
    pub load_average: (f64, f64),
    pub load_ms: Vec<f64>,
    pub load_median_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rss {
    pub peak_rss_mb: f64,
    pub rss_after_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbedSpeed {
    pub profile: String,
    pub env: String,
    pub timings: Timings,
    pub rss: Rss,
    /// FULL_FLOOR_MS / full_p50_ms.
    pub full_share_of_peak: f64,
}

/// A text of exactly `pieces` word pieces: the resume's words (repeated)
/// while they fit, then one-piece words up to the count.
pub fn text_of(model: &embed::MiniLm, pieces: usize) -> Result<String> {
    let mut text = String::new();
    for word in RESUME.split_whitespace().cycle() {
        let next = if text.is_empty() {
            word.to_owned()
        } else {
            format!("{text} {word}")
        };
        if model.word_pieces(&next)? > pieces {
            break;
        }
        text = next;
    }
    while model.word_pieces(&text)? < pieces {
        text.push_str(" and");
    }
    let got = model.word_pieces(&text)?;
    if got != pieces {
        bail!("built a text of {got} word pieces, wanted {pieces}");
    }
    Ok(text)
}

/// On-CPU nanoseconds of each thread of this process (schedstat).
fn thread_cpu_ns() -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let s = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
            let ns = s.split_whitespace().next()?.parse().ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect()
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn status_mb(field: &str) -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/self/status"))?;
    Ok(kb / 1024.0)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn require_one_thread() -> Result<usize> {
    if std::env::var("RAYON_NUM_THREADS").as_deref() != Ok("1") {
        bail!("the embedding-speed child must run with RAYON_NUM_THREADS=1");
    }
    let threads = candle_core::utils::get_num_threads();
    if threads != 1 {
        bail!("candle would use {threads} threads");
    }
    Ok(threads)
}

/// The timing child: prints [`Timings`] as JSON on stdout.
pub fn speed_child(dir: &Path, runs: usize) -> Result<()> {
    let candle_threads = require_one_thread()?;
    let mut load_ms = Vec::new();
    let mut model = None;
    for _ in 0..LOADS {
        drop(model.take());
        let t = Instant::now();
        let loaded = embed::MiniLm::load(dir)?;
        load_ms.push(ms(t));
        model = Some(loaded);
    }
    let model = model.context("no model")?;
    let short = text_of(&model, SHORT_PIECES)?;
    let full = text_of(&model, FULL_PIECES)?;

    let time = |text: &str| -> Result<Vec<f64>> {
        for _ in 0..WARM_UP {
            model.embed(&[text])?;
        }
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let out = model.embed(&[text])?;
            v.push(ms(t));
            std::hint::black_box(out);
        }
        Ok(v)
    };
    let load_before = load_average();
    let before = thread_cpu_ns();
    let wall = Instant::now();
    let short_ms = time(&short)?;
    let full_ms = time(&full)?;
    let wall_ns = wall.elapsed().as_nanos() as f64;
    let after = thread_cpu_ns();
    let mut cpu_ns = 0f64;
    let mut busy = 0;
    for (tid, ns) in &after {
        let start = before.iter().find(|(t, _)| t == tid).map_or(0, |(_, n)| *n);
        let used = ns.saturating_sub(start) as f64;
        cpu_ns += used;
        busy += usize::from(used > 0.02 * wall_ns);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let timings = Timings {
        runs,
        warm_up: WARM_UP,
        candle_threads,
        short_pieces: model.word_pieces(&short)?,
        short_p50_ms: percentile(&short_ms, 0.5),
        short_p90_ms: percentile(&short_ms, 0.9),
        short_min_ms: min(&short_ms),
        full_pieces: model.word_pieces(&full)?,
        full_p50_ms: percentile(&full_ms, 0.5),
        full_p90_ms: percentile(&full_ms, 0.9),
        full_min_ms: min(&full_ms),
        cpu_per_wall: cpu_ns / wall_ns,
        busy_threads: busy,
        load_average: (load_before, load_average()),
        load_median_ms: percentile(&load_ms, 0.5),
        load_ms,
    };
    println!("{}", serde_json::to_string(&timings)?);
    Ok(())
}

/// The peak-RSS child: loads the model, embeds one full window, prints [`Rss`].
pub fn rss_child(dir: &Path) -> Result<()> {
    require_one_thread()?;
    let model = embed::MiniLm::load(dir)?;
    let full = text_of(&model, FULL_PIECES)?;
    std::hint::black_box(model.embed(&[full.as_str()])?);
    let rss = Rss {
        peak_rss_mb: status_mb("VmHWM:")?,
        rss_after_mb: status_mb("VmRSS:")?,
    };
    println!("{}", serde_json::to_string(&rss)?);
    Ok(())
}

const CHILD_ENV: [(&str, &str); 3] = [
    ("RAYON_NUM_THREADS", "1"),
    ("CANDLE_NUM_THREADS", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
];

fn run_child<T: for<'de> Deserialize<'de>>(args: &[String]) -> Result<T> {
    let exe = std::env::current_exe().context("the benchmark's own path")?;
    let out = Command::new(exe)
        .args(args)
        .envs(CHILD_ENV)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("starting the embedding child")?;
    if !out.status.success() {
        bail!("the embedding child {args:?} failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the embedding child's output: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs both children one after the other (blocking: call off the runtime).
pub fn measure(runs: usize) -> Result<EmbedSpeed> {
    let timings: Timings = run_child(&[SPEED_CHILD.to_owned(), runs.to_string()])?;
    let rss: Rss = run_child(&[RSS_CHILD.to_owned()])?;
    Ok(EmbedSpeed {
        profile: if cfg!(debug_assertions) {
            "debug (not representative: use --profile perf)".into()
        } else {
            "optimised (make bench: perf)".into()
        },
        env: CHILD_ENV
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        full_share_of_peak: FULL_FLOOR_MS / timings.full_p50_ms,
        timings,
        rss,
    })
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

pub fn print(e: &EmbedSpeed) {
    let t = &e.timings;
    println!(
        "\nembedding speed: all-MiniLM-L6-v2, {} build, one thread ({}; candle sees {} thread), \
         {} runs after {} warm-up",
        e.profile, e.env, t.candle_threads, t.runs, t.warm_up
    );
    println!(
        "{:<18} {:>8} {:>8} {:>8}  target",
        "text", "p50 ms", "p90 ms", "min ms"
    );
    println!(
        "{:<18} {:>8.1} {:>8.1} {:>8.1}  p50 <= {SHORT_TARGET_MS:.0} ms  {}",
        format!("{} word pieces", t.short_pieces),
        t.short_p50_ms,
        t.short_p90_ms,
        t.short_min_ms,
        verdict(t.short_p50_ms <= SHORT_TARGET_MS)
    );
    println!(
        "{:<18} {:>8.1} {:>8.1} {:>8.1}  p50 <= {FULL_TARGET_MS:.0} ms  {}; floor ~{FULL_FLOOR_MS:.0} ms \
         (5.4 GFLOP at ~80 GFLOPS): {:.0}% of peak",
        format!("{} word pieces", t.full_pieces),
        t.full_p50_ms,
        t.full_p90_ms,
        t.full_min_ms,
        verdict(t.full_p50_ms <= FULL_TARGET_MS),
        100.0 * e.full_share_of_peak
    );
    let loads: Vec<String> = t.load_ms.iter().map(|v| format!("{v:.0}")).collect();
    println!(
        "model load (MiniLm::load incl. self-check, median of {}): {:.0} ms  (runs: {} ms)  \
         target <= {LOAD_TARGET_MS:.0} ms  {}",
        t.load_ms.len(),
        t.load_median_ms,
        loads.join(", "),
        verdict(t.load_median_ms <= LOAD_TARGET_MS)
    );
    println!(
        "peak RSS (a process that loads the model and embeds one 254-piece text; VmHWM): {:.0} MB \
         (RSS after {:.0} MB)  target <= {RSS_TARGET_MB:.0} MB  {}",
        e.rss.peak_rss_mb,
        e.rss.rss_after_mb,
        verdict(e.rss.peak_rss_mb <= RSS_TARGET_MB)
    );
    println!(
        "single-thread check: CPU time of all threads / wall time over the runs {:.2}, \
         threads busy {}",
        t.cpu_per_wall, t.busy_threads
    );
    if t.cpu_per_wall < 0.95 {
        println!(
            "  the runs waited for the CPU ({:.0}% of their time; load average {:.2} -> {:.2} on {} cores): \
             other work competed and the times include that wait; rerun on an idle machine",
            100.0 * (1.0 - t.cpu_per_wall),
            t.load_average.0,
            t.load_average.1,
            std::thread::available_parallelism().map_or(1, usize::from)
        );
    }
}
