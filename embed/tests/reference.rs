//! Our vectors against the fixture that embed/reference/make_fixture.py made
//! with an independent numpy forward pass and windowing done by hand: every
//! component within 1e-4, short texts and long ones (several windows) alike.

use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    window: usize,
    texts: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    word_pieces: usize,
    windows: usize,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    );
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture json")
}

fn model() -> embed::MiniLm {
    let dir = embed::default_dir();
    embed::MiniLm::load(&dir).unwrap_or_else(|e| {
        panic!("{e}\n(infra/model/fetch.sh puts the model in .model/; `make bootstrap` runs it)")
    })
}

#[test]
fn vectors_match_the_independent_reference() {
    let fixture = fixture();
    assert_eq!(fixture.window, embed::WINDOW);
    assert!(fixture.texts.len() >= 12);
    assert!(
        fixture.texts.iter().any(|t| t.windows > 2),
        "the fixture needs a text of several windows"
    );
    let model = model();
    let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
    // All at once (batched, padded) and one by one must both agree.
    let batched = model.embed(&texts).expect("embed");
    for (reference, got) in fixture.texts.iter().zip(&batched) {
        let alone = model.embed(&[&reference.text]).expect("embed").remove(0);
        assert_eq!(
            model.word_pieces(&reference.text).expect("tokenize"),
            reference.word_pieces,
            "{:.40}",
            reference.text
        );
        for (name, vector) in [("batched", got), ("alone", &alone)] {
            assert_eq!(vector.len(), 384);
            let worst = vector
                .iter()
                .zip(&reference.embedding)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-4,
                "{name}: {:.40}: off by {worst} ({} windows)",
                reference.text,
                reference.windows
            );
        }
    }
}

#[test]
fn a_long_text_counts_past_its_first_window() {
    let fixture = fixture();
    let long = fixture
        .texts
        .iter()
        .find(|t| t.windows > 2)
        .expect("long text");
    let model = model();
    let whole = model.embed(&[&long.text]).expect("embed").remove(0);
    // The first window alone: cut the text well inside it.
    let head: String = long
        .text
        .split_whitespace()
        .take(120)
        .collect::<Vec<_>>()
        .join(" ");
    let first = model.embed(&[&head]).expect("embed").remove(0);
    let cosine: f32 = whole.iter().zip(&first).map(|(a, b)| a * b).sum();
    assert!(
        cosine < 0.95,
        "the rest of the text changed nothing: {cosine}"
    );
    // Appending text changes the vector: nothing after a window is dropped.
    let tail = format!(
        "{} Also a licensed crane operator and beekeeper.",
        long.text
    );
    let longer = model.embed(&[&tail]).expect("embed").remove(0);
    assert_ne!(whole, longer);
}

#[test]
fn a_missing_or_corrupt_model_names_its_path() {
    let dir = std::env::temp_dir().join(format!("jobmatch-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let err = embed::MiniLm::load(&dir)
        .err()
        .expect("missing")
        .to_string();
    assert!(
        err.contains(&dir.join("config.json").display().to_string()),
        "{err}"
    );
    let real = embed::default_dir();
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(real.join(name), dir.join(name)).expect("copy");
    }
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").expect("write");
    let err = embed::MiniLm::load(&dir)
        .err()
        .expect("corrupt")
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    // Weights of the right shape but wrong values fail the self-check.
    let mut weights = std::fs::read(real.join("model.safetensors")).expect("weights");
    let n = weights.len();
    for b in &mut weights[n / 2..n / 2 + 4_000_000] {
        *b = b.wrapping_add(1);
    }
    std::fs::write(dir.join("model.safetensors"), weights).expect("write");
    let err = embed::MiniLm::load(&dir)
        .err()
        .expect("self-check")
        .to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
