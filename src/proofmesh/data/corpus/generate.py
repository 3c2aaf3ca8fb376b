"""Generate the small bundled corpus used by the demo and tests (deterministic).

    python -m proofmesh.data.corpus.generate

Writes three JSONL files next to this script:
- ``contributor_a.jsonl``: 300 records: 240 distinct documents, 30 exact copies (some
  differing only in case/whitespace/Unicode width, which normalisation folds) and 30
  near-duplicates (one or two words edited);
- ``contributor_b.jsonl``: 120 records: 80 new documents, 20 exact and 20 near copies
  of contributor A's documents (what a cross-batch check must drop);
- ``eval.jsonl``: 60 records, 12 of them lifted from contributor A (contamination).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

SUBJECTS = ["the river", "a small robot", "the old library", "our city council", "the research team",
            "a young farmer", "the night train", "the mountain village", "an open dataset", "the harbour",
            "a quiet student", "the weather station", "the museum guide", "a local bakery", "the chess club"]
VERBS = ["described", "measured", "repaired", "announced", "discovered", "collected", "painted",
         "translated", "organised", "questioned", "recorded", "improved", "shared", "explained", "mapped"]
OBJECTS = ["the seasonal floods", "a broken bridge", "new reading rooms", "the migration of birds",
           "an unusual signal", "records of rainfall", "a forgotten manuscript", "the price of bread",
           "the solar panels", "a map of old roads", "the spring festival", "noise near the school",
           "the water quality", "ancient coins", "a faster timetable"]
TAILS = ["after a long winter", "with help from volunteers", "for the first time in decades",
         "despite the heavy rain", "using simple tools", "before the elections", "during the night",
         "in a public meeting", "with surprising results", "as part of a larger study",
         "to everyone's relief", "while tourists watched", "on a tight budget", "near the northern gate"]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."


def document(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(3, 6)))


def near_copy(rng: random.Random, text: str, lo: float = 0.005, hi: float = 0.02) -> str:
    words = text.split()
    for _ in range(max(1, round(len(words) * rng.uniform(lo, hi)))):
        p = rng.randrange(len(words))
        words[p] = rng.choice(["indeed", "also", "then", "again", "quickly", "finally"])
    return " ".join(words)


def surface_variant(rng: random.Random, text: str) -> str:
    """Same normalised text: case, spacing or full-width letters differ."""
    k = rng.randrange(3)
    if k == 0:
        return text.upper()
    if k == 1:
        return "  " + text.replace(" ", "   \t") + "\n"
    return "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" and rng.random() < 0.3 else c for c in text)


def write(name: str, rows: list[dict]) -> None:
    with open(HERE / name, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    rng = random.Random(20240601)
    docs_a = [document(rng) for _ in range(240)]
    rows_a = [{"id": f"a-{i}", "text": t} for i, t in enumerate(docs_a)]
    for j in range(30):
        rows_a.append({"id": f"a-exact-{j}", "text": surface_variant(rng, rng.choice(docs_a))})
    for j in range(30):
        rows_a.append({"id": f"a-near-{j}", "text": near_copy(rng, rng.choice(docs_a))})
    rng.shuffle(rows_a)
    write("contributor_a.jsonl", rows_a)

    rows_b = [{"id": f"b-{i}", "text": document(rng)} for i in range(80)]
    picks = rng.sample(docs_a, 40)
    rows_b += [{"id": f"b-copy-{j}", "text": surface_variant(rng, t)} for j, t in enumerate(picks[:20])]
    rows_b += [{"id": f"b-near-{j}", "text": near_copy(rng, t)} for j, t in enumerate(picks[20:])]
    rng.shuffle(rows_b)
    write("contributor_b.jsonl", rows_b)

    rows_e = [{"id": f"e-{i}", "text": document(rng)} for i in range(48)]
    rows_e += [{"id": f"e-leak-{j}", "text": t} for j, t in enumerate(rng.sample(docs_a, 12))]
    rng.shuffle(rows_e)
    write("eval.jsonl", rows_e)


if __name__ == "__main__":
    main()
