#!/usr/bin/env python3
"""scripts/pii_cv.py: held-out-template cross-validation of the PII tagger on train.json only.

Splits train.json by template_id % 4 into four folds; for each fold and seed it trains with
`slmesh guard train` on the other three (same recipe as docs/governance.md, extra training
options appended) and scores the held-out templates through `slmesh redact --jsonl --json`
with the rule of tests/test_guard_quality.c: a true span is caught when findings of any type
cover >= 70% of it; a finding is correct when >= 70% of it lies in true spans. Counts are
pooled over folds and seeds. test.json is never read.

Usage: scripts/pii_cv.py SLMESH_BIN SHARED_DIR [--seeds 1,2,3] [-- extra guard-train options]
Non-goals: hyper-parameter search (run it once per setting and compare).
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

COVER_SHARE = 0.7
FOLDS = 4
CONTEXT_TYPES = ("PERSON", "STREET_ADDRESS", "GPE", "ORGANIZATION")


def score(sentences, lines, counts):
    """Add [spans, caught, found, correct] per type for one fold to counts."""
    for sent, line in zip(sentences, lines):
        findings = json.loads(line)["findings"]
        gold = [False] * (len(sent["full_text"]) + 1)
        for sp in sent["spans"]:
            a, b = sp["start_position"], sp["end_position"]
            gold[a:b] = [True] * (b - a)
            covered = sum(max(0, min(f["end"], b) - max(f["start"], a)) for f in findings)
            c = counts[sp["entity_type"]]
            c[0] += 1
            c[1] += covered >= COVER_SHARE * (b - a)
        for f in findings:
            inside = sum(gold[f["start"]:f["end"]])
            c = counts["DOMAIN_NAME" if f["type"] == "URL" else f["type"]]
            c[2] += 1
            c[3] += inside >= COVER_SHARE * (f["end"] - f["start"])


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    binary, shared = argv[1], argv[2]
    rest = argv[3:]
    extra = rest[rest.index("--") + 1:] if "--" in rest else []
    opts = rest[:rest.index("--")] if "--" in rest else rest
    seeds = opts[opts.index("--seeds") + 1].split(",") if "--seeds" in opts else ["1", "2", "3"]
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = json.load(open(os.path.join(shared, "data/pii/train.json"), encoding="utf-8"))
    counts = collections.defaultdict(lambda: [0, 0, 0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for k in range(FOLDS):
                train = [s for s in data if s["template_id"] % FOLDS != k]
                held = [s for s in data if s["template_id"] % FOLDS == k]
                path, model = os.path.join(tmp, "train.json"), os.path.join(tmp, "tagger.bin")
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump(train, fh)
                subprocess.run([binary, "guard", "train", "--data", path, "--templates",
                                os.path.join(src, "models/pii-templates.txt"), "--dropout", "0.3",
                                "--seed", seed, "-o", model] + extra, check=True, capture_output=True)
                text = "".join(json.dumps({"text": s["full_text"]}) + "\n" for s in held)
                out = subprocess.run([binary, "redact", "--jsonl", "--json", "--tagger", model],
                                     input=text.encode(), capture_output=True, check=True)
                score(held, out.stdout.decode().splitlines(), counts)
    print(f"{'type':18} {'spans':>6} {'caught':>6} {'recall':>7} {'found':>6} {'correct':>7} {'prec':>6}")
    for t, c in sorted(counts.items()):
        print(f"{t:18} {c[0]:6} {c[1]:6} {100 * c[1] / max(1, c[0]):6.1f}% {c[2]:6} {c[3]:7} "
              f"{100 * c[3] / max(1, c[2]):5.1f}%")
    tot = [sum(c[i] for c in counts.values()) for i in range(4)]
    ctx = [sum(counts[t][i] for t in CONTEXT_TYPES) for i in range(2)]
    print(f"overall recall {100 * tot[1] / tot[0]:.1f}% precision {100 * tot[3] / tot[2]:.1f}% "
          f"names+addresses+organisations+places recall {100 * ctx[1] / ctx[0]:.1f}%")


if __name__ == "__main__":
    main(sys.argv)
