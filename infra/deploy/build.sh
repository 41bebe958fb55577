#!/usr/bin/env bash
# `sam build` for arm64 the way an operator runs it (cargo-lambda + zig from
# .venv-deploy), offline once `cargo fetch` has filled the cargo cache; then
# prints each function's bootstrap size against the 5 MB (5,000,000 bytes)
# target. A missing or non-arm64 binary, or one over the target, fails (see
# README "Deploy", Build, for the sizes and what keeps them down).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
venv="$root/.venv-deploy"
# cargo-lambda finds zig as `python3 -m ziglang`: the venv's python first.
export PATH="$venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# rust-cargolambda is a SAM beta build method: opt in without a prompt (CI has no tty).
export SAM_CLI_BETA_RUST_CARGO_LAMBDA=1
target=$((5 * 1000 * 1000))

start=$(date +%s)
cargo fetch --locked --quiet
# Offline from here: the build must need nothing `cargo fetch` did not bring.
CARGO_NET_OFFLINE=true sam build --region us-east-1 >"$root/.aws-sam-build.log" 2>&1 || {
  tail -40 "$root/.aws-sam-build.log" >&2
  echo "deploy-check: sam build failed (full log: .aws-sam-build.log)" >&2
  exit 1
}
echo "sam build: $(( $(date +%s) - start )) s"

fail=0
for fn in ApiFunction StatusFunction WorkerFunction MigrateFunction; do
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
  verdict="arm64, within the 5 MB target"
  if (( size > target )); then verdict="OVER the 5 MB target"; fail=1; fi
  if (( machine != 183 )); then verdict="NOT arm64 (ELF machine $machine)"; fail=1; fi
  printf '%-16s bootstrap %s bytes (%s MB): %s\n' "$fn" "$size" \
    "$(python3 -c "print(f'{$size / 1e6:.2f}')")" "$verdict"
done
exit $fail
