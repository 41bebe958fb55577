#!/usr/bin/env bash
# Installs the local stack's tools into .venv (ignored) once; reruns are no-ops
# until requirements.txt changes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv"
req="$root/infra/local/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: installing local stack tools into $venv"
# Under load the stack's Python processes (moto's DynamoDB above all) are
# what runs out of CPU. A distribution's python3 is built with PGO and LTO,
# a pyenv or source build by default is not: the load section of `make bench`
# reached 82 tasks/s on Debian's 3.11 against 64 on pyenv's (moto's
# DynamoDB 10.7 against 14.2 ms of CPU a task). An existing .venv keeps its
# interpreter; delete it to rebuild.
python=python3
if [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  python=/usr/bin/python3
fi
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv" || { rm -rf "$venv"; python3 -m venv "$venv"; }
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
echo "$want" > "$stamp"
echo "bootstrap: done"
