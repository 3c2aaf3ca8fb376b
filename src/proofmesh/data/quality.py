"""A cheap quality score for sampled records, used by validators in their attestations.

Not a language model: a few signals that separate text from generated garbage (random
characters, keyboard mash, token soup, one line repeated), each in [0, 1], multiplied.
A validator's score for a batch is the mean over its sampled records, in basis points.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_VOWELS = set("aeiouyàáâäèéêëìíîïòóôöùúûüåæø")


def record_quality(text: str, min_tokens: int = 8) -> float:
    """Score one normalised record in [0, 1]."""
    tokens = text.split()
    if len(tokens) < min_tokens:
        return 0.0
    letters = sum(ch.isalpha() for ch in text)
    alpha = letters / max(1, len(text) - text.count(" "))
    words = _WORD.findall(text)
    if not words:
        return 0.0
    # word-likeness: plausible length and, for Latin script, a vowel
    def wordlike(w: str) -> bool:
        if not 1 <= len(w) <= 20:
            return False
        if w.isascii():
            return any(c in _VOWELS for c in w.lower())
        return True
    wl = sum(wordlike(w) for w in words) / len(words)
    # token soup: too few distinct tokens (repetition) or no repeats at all in long text
    distinct = len(set(tokens)) / len(tokens)
    rep = 1.0 if distinct >= 0.3 else distinct / 0.3
    return max(0.0, min(1.0, alpha)) * wl * rep


def batch_quality_bps(texts: list[str], min_tokens: int = 8) -> int:
    """Mean record score of a sample, in basis points (0..10000)."""
    if not texts:
        return 0
    return int(round(10_000 * sum(record_quality(t, min_tokens) for t in texts) / len(texts)))
