#!/usr/bin/env python3
"""Check bench/data/realworld_queries.jsonl, the hand-written query set of issue 29.

What it checks, and why:

(a) Validity.  Every line must be one JSON object with the fields ``id``,
    ``style``, ``text`` and ``families`` (``note`` is optional), a known style,
    a non-empty list of family ids that all exist in cli/data/catalog.json, and
    an id used only once.  Each style must reach its minimum count
    (resume 35, phrase 30, acronym 20, neighbour 25, career_change 20,
    typo 20, non_english 10).  A label naming a family the catalogue does not
    have could never be matched, and a short style would make its per-style
    P@10 meaningless.

(b) Independence from the generator.  The benchmark exists to measure
    relevance on text that people write, not on the catalogue's own
    vocabulary.  The synthetic postings are built from the strings in
    cli/data/catalog.json, so a query that reuses their phrasing would be
    matched on shared wording rather than on meaning.  The check finds every
    run of 4 or more consecutive words (case-insensitive, punctuation
    stripped) that a query's text shares with ANY string value of the
    catalogue (walked recursively, including templates), and prints it with
    the query id.

Exit status: 0 when both checks pass, 1 otherwise.  Standard library only.

Usage: python3 bench/data/check_realworld_queries.py [queries.jsonl] [catalog.json]
"""

import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "bench" / "data" / "realworld_queries.jsonl"
CATALOG = ROOT / "cli" / "data" / "catalog.json"

MIN_PER_STYLE = {
    "resume": 35,
    "phrase": 30,
    "acronym": 20,
    "neighbour": 25,
    "career_change": 20,
    "typo": 20,
    "non_english": 10,
}
REQUIRED = {"id": str, "style": str, "text": str, "families": list}
OPTIONAL = {"note": str}
N = 4  # shortest shared phrase that counts


def words(text):
    """Lower-case words with punctuation stripped (it separates words)."""
    return re.sub(r"[^\w\s]|_", " ", text.lower()).split()


def strings(value):
    """Every string value in a JSON document, recursively (keys excluded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def catalog_ngrams(catalog):
    grams = set()
    for s in strings(catalog):
        w = words(s)
        for i in range(len(w) - N + 1):
            grams.add(tuple(w[i : i + N]))
    return grams


def shared_phrases(text, grams):
    """Maximal runs of >= N words of `text` whose every N-gram is in `grams`."""
    w = words(text)
    hits = [tuple(w[i : i + N]) in grams for i in range(len(w) - N + 1)]
    out, i = [], 0
    while i < len(hits):
        if hits[i]:
            j = i
            while j + 1 < len(hits) and hits[j + 1]:
                j += 1
            out.append(" ".join(w[i : j + N]))
            i = j + 1
        else:
            i += 1
    return out


def main(argv):
    qpath = Path(argv[1]) if len(argv) > 1 else QUERIES
    cpath = Path(argv[2]) if len(argv) > 2 else CATALOG
    catalog = json.loads(cpath.read_text(encoding="utf-8"))
    family_ids = {f["name"] for f in catalog["families"]}
    grams = catalog_ngrams(catalog)

    errors, queries, seen = [], [], set()
    for n, line in enumerate(qpath.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            errors.append(f"line {n}: empty line")
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"line {n}: not JSON ({e})")
            continue
        if not isinstance(q, dict):
            errors.append(f"line {n}: not an object")
            continue
        for key, typ in REQUIRED.items():
            if not isinstance(q.get(key), typ):
                errors.append(f"line {n}: field {key!r} missing or not {typ.__name__}")
        for key in q:
            if key not in REQUIRED and key not in OPTIONAL:
                errors.append(f"line {n}: unknown field {key!r}")
        if "note" in q and not isinstance(q["note"], str):
            errors.append(f"line {n}: field 'note' not a string")
        qid = q.get("id")
        if qid in seen:
            errors.append(f"line {n}: duplicate id {qid!r}")
        seen.add(qid)
        if q.get("style") not in MIN_PER_STYLE:
            errors.append(f"line {n}: unknown style {q.get('style')!r}")
        fams = q.get("families")
        if isinstance(fams, list):
            if not fams:
                errors.append(f"line {n}: empty families")
            if len(set(map(str, fams))) != len(fams):
                errors.append(f"line {n}: repeated family")
            for f in fams:
                if f not in family_ids:
                    errors.append(f"line {n}: unknown family {f!r}")
        if isinstance(q.get("text"), str) and not q["text"].strip():
            errors.append(f"line {n}: empty text")
        queries.append(q)

    counts = Counter(q.get("style") for q in queries)
    for style, minimum in MIN_PER_STYLE.items():
        if counts[style] < minimum:
            errors.append(f"style {style}: {counts[style]} queries, need {minimum}")

    shared = []
    for q in queries:
        if isinstance(q.get("text"), str):
            for phrase in shared_phrases(q["text"], grams):
                shared.append((q.get("id"), phrase))

    for e in errors:
        print("ERROR", e)
    for qid, phrase in shared:
        print(f"SHARED {qid}: {phrase!r}")

    covered = {f for q in queries if isinstance(q.get("families"), list) for f in q["families"]}
    print(f"{len(queries)} queries; per style: "
          + ", ".join(f"{s} {counts[s]}" for s in MIN_PER_STYLE))
    print(f"families covered: {len(covered & family_ids)} of {len(family_ids)}"
          + (f"; not covered: {', '.join(sorted(family_ids - covered))}" if family_ids - covered else ""))
    print(f"validation errors: {len(errors)}; shared phrases of {N}+ words: {len(shared)}")
    return 1 if errors or shared else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
