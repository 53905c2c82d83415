"""A word n-gram language model with interpolated Witten-Bell smoothing, written as an ARPA file.

There is no `lmplz` (KenLM's estimator) on these machines and no maintained Python estimator that writes ARPA, so the
demo LM (scripts/make_demo_lm.py) is estimated here. Witten-Bell because its backoff weights have a closed form:

    P(w | h) = (c(h w) + T(h) * P(w | h')) / (c(h) + T(h))

where c(h) counts h as a context, T(h) is the number of distinct words seen after h and h' is h without its first
word. The unigram level interpolates with a uniform distribution over the seen words plus <unk>. N-grams below a
per-order minimum count are left out of the file; their probability mass goes to the backoff weight, which is
computed exactly: alpha(h) = (1 - sum of kept P(w | h)) / (1 - sum over the same w of P(w | h')).

Optionally the unigram level is mixed with a given word distribution (a "prior", e.g. English word frequencies):

    P(w) = (1 - lambda) * P_WB(w) + lambda * prior(w) / sum(prior)

so words never seen in the sentences get a unigram (and enter the vocabulary) with their share of the prior; the
higher orders back off to this mixture as to any unigram.
"""
from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SENTENCE_START, SENTENCE_END, UNKNOWN = "<s>", "</s>", "<unk>"
NO_PROBABILITY = -99.0  # log10 "probability" of <s>, which is never predicted (ARPA convention)


class WittenBellModel:
    """Counts and probabilities; `probability(word, context)` is the model exactly as the ARPA file encodes it."""

    def __init__(self, sentences: Iterable[Sequence[str]], order: int, min_counts: Sequence[int] | None = None,
                 unigram_prior: Mapping[str, float] | None = None, prior_weight: float = 0.0):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        min_counts = tuple(min_counts or (1,) * order)
        if len(min_counts) != order or any(m < 1 for m in min_counts) or list(min_counts) != sorted(min_counts):
            raise ValueError(f"min_counts must be {order} non-decreasing counts >= 1, got {min_counts}")
        self.order = order
        self.counts: list[Counter] = [Counter() for _ in range(order)]  # counts[n-1][n-gram tuple]
        for words in sentences:
            if any(word in (SENTENCE_START, SENTENCE_END, UNKNOWN) or not word or any(c.isspace() for c in word)
                   for word in words):
                raise ValueError(f"a sentence holds a reserved or empty word: {' '.join(words)!r}")
            tokens = (SENTENCE_START, *words, SENTENCE_END)
            for n in range(1, order + 1):
                for start in range(len(tokens) - n + 1):
                    gram = tokens[start:start + n]
                    if n == 1 and gram[0] == SENTENCE_START:
                        continue  # <s> is a context, never a predicted word
                    self.counts[n - 1][gram] += 1
        if not self.counts[0]:
            raise ValueError("no sentences to estimate from")
        self.unigram_prior, self.prior_weight = self._normalized_prior(unigram_prior or {}, prior_weight)
        # Context statistics over all n-grams (before pruning): c(h) and T(h).
        self.context_total: dict[tuple, int] = defaultdict(int)
        self.context_types: dict[tuple, int] = defaultdict(int)
        for n in range(2, order + 1):
            for gram, count in self.counts[n - 1].items():
                self.context_total[gram[:-1]] += count
                self.context_types[gram[:-1]] += 1
        # predicted words, with </s>, and the prior's words
        self.vocabulary = sorted({gram[0] for gram in self.counts[0]} | set(self.unigram_prior))
        self.kept = [{gram for gram, count in self.counts[n].items() if count >= min_counts[n]}
                     for n in range(order)]
        self.kept[0] = set(self.counts[0])  # every word keeps its unigram
        self._probabilities: list[dict[tuple, float]] = [{} for _ in range(order)]
        self._backoffs: dict[tuple, float] = {}
        self._estimate()

    # ---------------------------------------------------------------- estimation

    @staticmethod
    def _normalized_prior(prior: Mapping[str, float], weight: float) -> tuple[dict[str, float], float]:
        if not 0.0 <= weight < 1.0 or (weight > 0.0) != bool(prior):
            raise ValueError(f"prior_weight must be in (0, 1) with a unigram prior and 0 without, got {weight}")
        for word, value in prior.items():
            if word in (SENTENCE_START, SENTENCE_END, UNKNOWN) or not word or any(c.isspace() for c in word):
                raise ValueError(f"the unigram prior holds a reserved or empty word: {word!r}")
            if not value > 0.0 or not math.isfinite(value):
                raise ValueError(f"the unigram prior's values must be positive, got {value} for {word!r}")
        total = math.fsum(prior.values())
        return {word: value / total for word, value in prior.items()}, weight

    def _unigram(self, word: str) -> float:
        total = sum(self.counts[0].values())
        types = len(self.counts[0])
        uniform = 1.0 / (types + 1)  # the seen words and <unk>
        seen = (self.counts[0].get((word,), 0) + types * uniform) / (total + types)
        if (word,) not in self.counts[0] and word != UNKNOWN:
            seen = 0.0  # a word only the prior knows
        return (1.0 - self.prior_weight) * seen + self.prior_weight * self.unigram_prior.get(word, 0.0)

    def _estimate(self) -> None:
        for word in self.vocabulary:
            self._probabilities[0][(word,)] = self._unigram(word)
        self._probabilities[0][(UNKNOWN,)] = self._unigram(UNKNOWN)
        for n in range(2, self.order + 1):
            for gram in self.kept[n - 1]:
                context = gram[:-1]
                interpolated = (self.counts[n - 1][gram] + self.context_types[context] * self.probability(
                    gram[-1], context[1:])) / (self.context_total[context] + self.context_types[context])
                self._probabilities[n - 1][gram] = interpolated
            self._backoffs.update(self._backoffs_of_order(n))

    def _backoffs_of_order(self, n: int) -> dict[tuple, float]:
        """alpha(h) for the contexts h of length n-1, from the kept n-grams (estimated just before)."""
        kept_mass: dict[tuple, float] = defaultdict(float)
        lower_mass: dict[tuple, float] = defaultdict(float)
        for gram in self.kept[n - 1]:
            kept_mass[gram[:-1]] += self._probabilities[n - 1][gram]
            lower_mass[gram[:-1]] += self.probability(gram[-1], gram[1:-1])
        backoffs = {}
        for context in self.context_total:
            if len(context) != n - 1 or context not in self.kept[n - 2] and context != (SENTENCE_START,):
                continue
            backoffs[context] = (1.0 - kept_mass[context]) / (1.0 - lower_mass[context])
        return backoffs

    # ---------------------------------------------------------------- querying

    def probability(self, word: str, context: Sequence[str] = ()) -> float:
        """P(word | context) with ARPA backoff semantics; unknown words are <unk>."""
        context = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        if (word,) not in self._probabilities[0]:
            word = UNKNOWN
        gram = (*context, word)
        if len(gram) == 1:
            return self._probabilities[0][gram]
        if gram in self._probabilities[len(gram) - 1]:
            return self._probabilities[len(gram) - 1][gram]
        return self._backoffs.get(context, 1.0) * self.probability(word, context[1:])

    # ---------------------------------------------------------------- ARPA

    def arpa_lines(self) -> Iterable[str]:
        sections = []
        for n in range(1, self.order + 1):
            entries = sorted(self._probabilities[n - 1].items())
            if n == 1:
                entries = sorted([*entries, ((SENTENCE_START,), None)])
            sections.append(entries)
        yield "\\data\\"
        for n, entries in enumerate(sections, start=1):
            yield f"ngram {n}={len(entries)}"
        for n, entries in enumerate(sections, start=1):
            yield ""
            yield f"\\{n}-grams:"
            for gram, probability in entries:
                log_probability = NO_PROBABILITY if probability is None else math.log10(probability)
                line = f"{log_probability:.6f}\t{' '.join(gram)}"
                if n < self.order and gram in self._backoffs:
                    line += f"\t{math.log10(self._backoffs[gram]):.6f}"
                yield line
        yield ""
        yield "\\end\\"

    def write_arpa(self, path: Path) -> None:
        """Write the ARPA file; a path ending in .gz is gzip-compressed (KenLM reads both)."""
        text = "\n".join(self.arpa_lines()) + "\n"
        path = Path(path)
        if path.suffix == ".gz":
            with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as handle:
                handle.write(text.encode("utf-8"))  # no name, mtime=0: the same text gives the same bytes
        else:
            path.write_text(text, encoding="utf-8")
