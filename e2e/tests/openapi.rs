//! Keeps openapi.yaml true: schemathesis (PyPI, pinned in
//! infra/local/requirements.txt) generates requests from the document, valid
//! and invalid, sends them to the running local stack, and validates every
//! real response (status, content type, headers, body schema) against it; it
//! also checks that invalid requests are refused, that auth is enforced, and
//! that nothing answers 5xx. Needs the stack and `.local/env` exported.

use std::path::{Path, PathBuf};
use std::process::Command;

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| {
        panic!("{key} is not set: run `make up` and export .local/env (make test does both)")
    })
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Test cases per operation and phase; the seed makes a run repeatable.
const MAX_EXAMPLES: &str = "25";
const SEED: &str = "20261125";

#[test]
fn live_responses_conform_to_openapi_yaml() {
    let root = root();
    let schemathesis = root.join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run `make bootstrap`",
        schemathesis.display()
    );
    // demo-user has a stored profile, so valid requests without an embedding succeed.
    let token =
        shared::auth::mint_hs256(env("JWT_SECRET").as_bytes(), "demo-user", 3600).expect("token");
    // Run outside the worktree: schemathesis and hypothesis write caches into
    // the working directory, and `cargo lambda watch` restarts the functions on
    // any file change under the workspace.
    let work = std::env::temp_dir().join(format!("jobmatch-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let output = Command::new(&schemathesis)
        .current_dir(&work)
        .arg("--config-file")
        .arg(root.join("e2e/schemathesis.toml"))
        .arg("run")
        .arg(root.join("openapi.yaml"))
        .args(["--url", &env("API_URL")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,\
             negative_data_rejection,ignored_auth",
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        // One worker: the local Lambda emulator runs one invocation at a time.
        .args(["--workers", "1", "--request-timeout", "60"])
        .args(["--no-shrink", "--no-color", "--output-truncate", "true"])
        .output()
        .expect("run schemathesis");
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The summary: phases, checks and the number of generated test cases.
    let summary = stdout
        .find("SUMMARY")
        .map(|i| &stdout[i..])
        .unwrap_or(&stdout);
    println!("schemathesis against {}:\n{summary}", env("API_URL"));
    assert!(
        output.status.success(),
        "schemathesis found responses that do not match openapi.yaml:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("generated"), "no test cases ran:\n{stdout}");
}
