#!/usr/bin/env bash
# `sam build` for arm64 the way an operator runs it (cargo-lambda + zig from
# .venv-deploy), offline once `cargo fetch` has filled the cargo cache and
# infra/model/fetch.sh the model folder; then prints each function's bootstrap
# size against its budget, and the model layer's size. Fails on a missing or
# non-arm64 binary, one over its budget, a layer without the model files where
# the worker's MODEL_DIR expects them, or a worker or ingest over Lambda's
# 250 MB (function + layers, unzipped). See docs/deploy.md "Build".
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
venv="$root/.venv-deploy"
# cargo-lambda finds zig as `python3 -m ziglang`: the venv's python first.
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# rust-cargolambda is a SAM beta build method: opt in without a prompt (CI has no tty).
export SAM_CLI_BETA_RUST_CARGO_LAMBDA=1

# Bootstrap budgets, in bytes. status, migrate and deadletter: the 5 MB target.
target=$((5 * 1000 * 1000))
# The api links tokenizers and the model's tokenizer.json (466 kB) for the
# bound on a text's word pieces (DESIGN.md "Fair use"): 7,336,760 bytes
# measured here (arm64, Dec 2026; 3.57 MB before), plus ~2 %, rounded;
# 7,407,528 with the callback URL's check (url, issue 31). Its
# parse at init is 37 ms, beside the network init (docs/performance.md
# "Fair use").
api_budget=$((7500 * 1000))
# The worker links candle and tokenizers for the embedding model (the model
# itself is in the layer): its own budget, the size this script measured
# (6,850,304 bytes, arm64, Nov 2026) plus ~15 %, rounded.
worker_budget=$((7900 * 1000))
# The ingest (issue 28) links what the worker does (candle, tokenizers,
# sqlx, DynamoDB, SQS) plus the S3 client and gzip: the size this script
# measured (7,526,736 bytes, arm64, Dec 2026) plus ~15 %, rounded.
ingest_budget=$((8700 * 1000))
# The catalogue (issue 28): DynamoDB, sqlx, the S3 client and the token
# check; measured 4,620,848 bytes (arm64, Dec 2026), within the 5 MB target.
catalogue_budget=$target
# The callback (issue 31): SQS and Secrets Manager clients, the HMAC, and the
# shared hyper + rustls client for the deliveries themselves; measured
# 3,433,952 bytes (arm64, Dec 2026), within the 5 MB target.
callback_budget=$target
# Lambda's deployment limit: function and all its layers, unzipped.
unzipped_limit=262144000
# What the worker reads from MODEL_DIR (embed::FILES and the model's identity).
model_files=(config.json tokenizer.json model.safetensors .wheel.sha256)

mb() { python3 -c "print(f'{$1 / 1e6:.2f}')"; }
tree_size() { # bytes of the regular files under a folder
  python3 - "$1" <<'PY'
import os, sys
print(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sys.argv[1]) for f in fs))
PY
}

start=$(date +%s)
# The online part: the model (a no-op once .model/ holds it) and the crates.
infra/model/fetch.sh >/dev/null
cargo fetch --locked --quiet
# Offline from here: the build must need nothing fetched above did not bring.
CARGO_NET_OFFLINE=true sam build --region us-east-1 >"$root/.aws-sam-build.log" 2>&1 || {
  tail -40 "$root/.aws-sam-build.log" >&2
  echo "deploy-check: sam build failed (full log: .aws-sam-build.log)" >&2
  exit 1
}
echo "sam build: $(( $(date +%s) - start )) s"

fail=0
for fn in ApiFunction StatusFunction WorkerFunction MigrateFunction DeadLetterFunction IngestFunction CatalogueFunction CallbackFunction; do
  budget=$target
  [[ $fn == WorkerFunction ]] && budget=$worker_budget
  [[ $fn == ApiFunction ]] && budget=$api_budget
  [[ $fn == IngestFunction ]] && budget=$ingest_budget
  [[ $fn == CatalogueFunction ]] && budget=$catalogue_budget
  [[ $fn == CallbackFunction ]] && budget=$callback_budget
  bin=".aws-sam/build/$fn/bootstrap"
  if [[ ! -f "$bin" ]]; then
    echo "deploy-check: $bin is missing" >&2
    fail=1
    continue
  fi
  # Size and ELF machine (183 = aarch64) without `file` or `bc`.
  read -r size machine < <(python3 - "$bin" <<'PY'
import os, struct, sys
path = sys.argv[1]
with open(path, "rb") as f:
    head = f.read(20)
machine = struct.unpack("<H", head[18:20])[0] if head[:4] == b"\x7fELF" else 0
print(os.path.getsize(path), machine)
PY
)
  verdict="arm64, within its $(mb "$budget") MB budget"
  if (( size > budget )); then verdict="OVER its $(mb "$budget") MB budget"; fail=1; fi
  if (( machine != 183 )); then verdict="NOT arm64 (ELF machine $machine)"; fail=1; fi
  printf '%-16s bootstrap %s bytes (%s MB): %s\n' "$fn" "$size" "$(mb "$size")" "$verdict"
done

# The model layer: its files where the worker's MODEL_DIR points (/opt/X is
# the layer's X; rules.py checks that the ingest's is the same), and the
# unzipped total of each function that carries it.
layer=".aws-sam/build/ModelLayer"
model_dir="$(python3 infra/deploy/rules.py --model-dir template.yaml)"
sub="${model_dir#/opt/}"
if [[ "$sub" == "$model_dir" || -z "$sub" ]]; then
  echo "deploy-check: the worker's MODEL_DIR ($model_dir) is not under /opt, where layers unpack" >&2
  exit 1
fi
for f in "${model_files[@]}"; do
  if [[ ! -s "$layer/$sub/$f" ]]; then
    echo "deploy-check: $layer/$sub/$f is missing or empty (MODEL_DIR=$model_dir)" >&2
    fail=1
  fi
done
layer_size=$(tree_size "$layer")
printf '%-16s %s bytes (%s MB) unzipped, in %s\n' ModelLayer "$layer_size" "$(mb "$layer_size")" "$model_dir"
for fn in WorkerFunction IngestFunction; do
  total=$(( $(tree_size ".aws-sam/build/$fn") + layer_size ))
  verdict="within"
  if (( total > unzipped_limit )); then verdict="OVER"; fail=1; fi
  printf '%-17s %s bytes (%s MB) unzipped: %s Lambda'"'"'s limit of %s bytes (250 MiB)\n' "${fn%Function} + layer" "$total" "$(mb "$total")" "$verdict" "$unzipped_limit"
done
exit $fail
