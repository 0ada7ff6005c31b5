"""Word and character error rates for speech recognition and OCR (plain Python, no models, no Dagster).

Conventions, stated once:

- **Normalisation.** Reference and hypothesis both go through Whisper's
  ``EnglishTextNormalizer`` (``whisper.normalizers``; its British -> American
  spelling map ``english.json`` ships in the openai-whisper wheel) before any
  counting: lower case, punctuation and filler words (``uh``, ``hmm``) removed,
  numbers written as digits, titles and contractions spelled out
  (``"Mr. Smith's 2 cats!"`` -> ``"mister smith is 2 cats"``). Codec-SUPERB does
  the same; the MPQ paper scored raw text.
- **Errors** are the Levenshtein edit distance (substitutions + deletions +
  insertions, each costing 1) between the word sequences (WER) or the
  character sequences (CER) of the normalised texts. For CER, runs of
  whitespace count as one space character, as in ``jiwer.cer``.
- **Corpus aggregation.** A partition's WER is ``sum(errors) / sum(reference
  words)`` over all its clips, not the mean of per-clip WERs (a one-word clip
  with one error would otherwise weigh as much as a 30-word clip). CER likewise
  on characters.
- **Empty references** (nothing to say after normalisation, e.g. a silent clip,
  or a reference transcript that is empty): every hypothesis word is an
  insertion. The clip gets no per-item rate (x/0 is undefined) but its
  insertions and its zero words enter the corpus sums, so hallucinated text on
  silence still raises the corpus WER. A corpus whose references are all empty
  has no rate (``nan``).
- **WRA** (word recognition accuracy, the MPQ paper's ASR score) is
  ``max(0, 1 - WER)``; WER can exceed 1 through insertions, WRA is clipped at 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mpq_assets.tasks.base import Score
from mpq_assets.weights.cache import cached

log = logging.getLogger(__name__)


def _english_normalizer() -> Any:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def _normalizer() -> Any:
    """Whisper's normaliser, built once per process (it compiles a few hundred regular expressions)."""
    return cached(("wer-normalizer",), _english_normalizer)


def normalize(text: str | None) -> str:
    """Whisper's English normalisation, with whitespace collapsed to single spaces."""
    if not text:
        return ""
    return " ".join(_normalizer()(str(text)).split())


def words(normalized: str) -> list[str]:
    return normalized.split()


def characters(normalized: str) -> list[str]:
    return list(" ".join(normalized.split()))


@dataclass(frozen=True)
class EditCounts:
    """Alignment of a hypothesis to a reference: hits, substitutions, deletions, insertions."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def length(self) -> int:
        """Number of reference tokens (the denominator of the rate)."""
        return self.hits + self.substitutions + self.deletions

    @property
    def rate(self) -> float:
        """errors / reference tokens; ``nan`` for an empty reference."""
        return self.errors / self.length if self.length else math.nan

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(self.hits + other.hits, self.substitutions + other.substitutions,
                          self.deletions + other.deletions, self.insertions + other.insertions)


def edit_counts(reference: Sequence[Any], hypothesis: Sequence[Any]) -> EditCounts:
    """Minimum edit distance alignment (unit costs) and its S/D/I/hit counts.

    The total (``errors``) is the Levenshtein distance; when several alignments
    reach it, the backtrace prefers substitutions, then deletions, then insertions.
    """
    ref, hyp = list(reference), list(hypothesis)
    if ref == hyp:
        return EditCounts(hits=len(ref))
    if not ref:
        return EditCounts(insertions=len(hyp))
    if not hyp:
        return EditCounts(deletions=len(ref))
    # map tokens to ints: comparing small ints is faster than comparing strings
    ids: dict[Any, int] = {}
    r = [ids.setdefault(t, len(ids)) for t in ref]
    h = [ids.setdefault(t, len(ids)) for t in hyp]
    n, m = len(r), len(h)
    rows = [list(range(m + 1))]
    for i in range(1, n + 1):
        prev, ri = rows[-1], r[i - 1]
        row = [i] + [0] * m
        for j in range(1, m + 1):
            diag = prev[j - 1] + (ri != h[j - 1])
            up = prev[j] + 1
            left = row[j - 1] + 1
            row[j] = diag if diag <= up and diag <= left else (up if up <= left else left)
        rows.append(row)
    hits = subs = dels = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        cost = rows[i][j]
        if i > 0 and j > 0 and rows[i - 1][j - 1] + (r[i - 1] != h[j - 1]) == cost:
            if r[i - 1] == h[j - 1]:
                hits += 1
            else:
                subs += 1
            i, j = i - 1, j - 1
        elif i > 0 and rows[i - 1][j] + 1 == cost:
            dels += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return EditCounts(hits, subs, dels, ins)


def word_counts(reference: str, hypothesis: str) -> EditCounts:
    """Word alignment of two **already normalised** texts."""
    return edit_counts(words(reference), words(hypothesis))


def char_counts(reference: str, hypothesis: str) -> EditCounts:
    """Character alignment of two **already normalised** texts (spaces count)."""
    return edit_counts(characters(reference), characters(hypothesis))


def corpus_rate(counts: Iterable[EditCounts]) -> float:
    """sum(errors) / sum(reference tokens) over a corpus; ``nan`` when there are no reference tokens."""
    return sum(counts, EditCounts()).rate


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalise: bool = True) -> float:
    """Corpus WER of raw (``normalise=True``) or normalised texts."""
    f = normalize if normalise else (lambda s: s)
    return corpus_rate(word_counts(f(r), f(h)) for r, h in zip(references, hypotheses, strict=True))


def char_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalise: bool = True) -> float:
    """Corpus CER of raw (``normalise=True``) or normalised texts."""
    f = normalize if normalise else (lambda s: s)
    return corpus_rate(char_counts(f(r), f(h)) for r, h in zip(references, hypotheses, strict=True))


def word_recognition_accuracy(wer: float) -> float:
    """The MPQ paper's WRA: ``max(0, 1 - WER)`` (``nan`` stays ``nan``)."""
    return wer if math.isnan(wer) else max(0.0, 1.0 - wer)


def error_rate_rows(item_ids: Sequence[str], pairs: Sequence[tuple[str, str]], word_metric: str, char_metric: str,
                    wra_metric: str | None) -> list[Score]:
    """Per-item rows (skipped for empty references) + corpus rows over all ``pairs`` (reference, hypothesis).

    An item's WER / CER row carries ``n`` = its reference words / characters, so the corpus rate of any
    set of items is the weighted mean of their rows (``aggregate``)."""
    rows: list[Score] = []
    word_total, char_total = EditCounts(), EditCounts()
    for item_id, (ref, hyp) in zip(item_ids, pairs, strict=True):
        w, c = word_counts(ref, hyp), char_counts(ref, hyp)
        word_total, char_total = word_total + w, char_total + c
        if w.length:
            rows.append(Score(word_metric, w.rate, item_id, n=w.length))
            rows.append(Score(char_metric, c.rate, item_id, n=c.length))
            if wra_metric:
                rows.append(Score(wra_metric, word_recognition_accuracy(w.rate), item_id))
    if not pairs:
        return rows
    if not word_total.length:
        log.warning("%s: all %d references are empty after normalisation; no corpus rate", word_metric,
                    len(pairs))
        return rows
    rows.append(Score(word_metric, word_total.rate, None, n=len(pairs)))
    rows.append(Score(char_metric, char_total.rate, None, n=len(pairs)))
    if wra_metric:
        rows.append(Score(wra_metric, word_recognition_accuracy(word_total.rate), None, n=len(pairs)))
    return rows
