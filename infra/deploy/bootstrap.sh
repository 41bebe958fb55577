#!/usr/bin/env bash
# Installs the deployment check tools once, each set into its own ignored venv
# (aws-sam-cli and checkov cannot share one): .venv-deploy (sam, cfn-lint,
# cargo-lambda, zig, PyYAML) and .venv-checkov (checkov); and the arm64 Rust
# target that `sam build` compiles for. Reruns are no-ops until a
# requirements file changes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

install() { # venv-dir requirements-file
  local venv="$root/$1" req="$root/infra/deploy/$2"
  local stamp="$venv/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "bootstrap-deploy: installing $2 into $1"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$req"
  echo "$want" > "$stamp"
}

if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  echo "bootstrap-deploy: adding the Rust target aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi
install .venv-deploy requirements.txt
install .venv-checkov requirements-checkov.txt
