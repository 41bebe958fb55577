#!/usr/bin/env bash
# The offline deployment checks of `make deploy-check` (and so `make test`),
# each timed: cfn-lint, sam validate, checkov, the project's rules (and their
# self-test), and the arm64 `sam build` with bootstrap sizes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export PATH="$root/.venv-deploy/bin:$PATH"
export SAM_CLI_TELEMETRY=0

step() { # name command...
  local name=$1 start rc=0
  shift
  start=$(date +%s)
  echo "== deploy-check: $name"
  "$@" || rc=$?
  echo "== deploy-check: $name: $([[ $rc == 0 ]] && echo ok || echo FAILED) in $(( $(date +%s) - start )) s"
  return $rc
}

step "cfn-lint" cfn-lint template.yaml
step "sam validate" sam validate --region us-east-1 --template-file template.yaml
# --skip-download: no platform calls (CI has no network but the registries).
step "checkov" "$root/.venv-checkov/bin/checkov" -f template.yaml \
  --framework cloudformation secrets --skip-download --compact --quiet
step "rules" python infra/deploy/rules.py template.yaml
step "rules self-test" python infra/deploy/rules.py --self-test
if [[ "${SKIP_SAM_BUILD:-}" == 1 ]]; then
  echo "== deploy-check: sam build skipped (SKIP_SAM_BUILD=1)"
else
  step "sam build (arm64)" infra/deploy/build.sh
fi
