"""Corpus chrF and BLEU, with sacrebleu when it is installed and a built-in fallback.

The built-in versions reproduce sacrebleu 2.x defaults:

* chrF: character n-grams 1..6 (whitespace removed), beta = 2, statistics summed over
  the corpus, F computed from precision and recall averaged over the orders that occur;
* BLEU: mteval-v13a tokenisation, n-grams 1..4 clipped against one reference, brevity
  penalty, "exp" smoothing for orders without a match.

Example:
>>> round(corpus_chrf(["the cat sat"], ["the cat sat"], backend="builtin"), 2)
100.0
>>> round(corpus_bleu(["a b c d e"], ["a b c d f"], backend="builtin"), 2)
66.87
"""

import math
import re
from collections import Counter

CHRF_CHAR_ORDER = 6
CHRF_BETA = 2.0
BLEU_MAX_ORDER = 4


def sacrebleu_available():
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backend(backend):
    if backend == "auto":
        return "sacrebleu" if sacrebleu_available() else "builtin"
    if backend not in ("sacrebleu", "builtin"):
        raise ValueError(f"backend must be 'auto', 'sacrebleu' or 'builtin', got {backend!r}")
    return backend


def _check_lengths(hypotheses, references):
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references"
        )
    return hypotheses, references


# ----------------------------------------------------------------------------------- chrF
def _char_ngram_counts(text, order):
    joined = "".join(text.split())  # chrF ignores whitespace
    return Counter(joined[start:start + order] for start in range(len(joined) - order + 1))


def chrf_statistics(hypothesis, reference, char_order=CHRF_CHAR_ORDER):
    """Per order `[hyp n-grams, ref n-grams, matched n-grams]`, flattened."""
    statistics = []
    for order in range(1, char_order + 1):
        hyp_counts = _char_ngram_counts(hypothesis, order)
        ref_counts = _char_ngram_counts(reference, order)
        matched = sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
        ref_total = sum(ref_counts.values())
        # As sacrebleu: hypothesis n-grams do not count where the reference has none.
        hyp_total = sum(hyp_counts.values()) if ref_total else 0
        statistics.extend([hyp_total, ref_total, matched])
    return statistics


def chrf_from_statistics(statistics, beta=CHRF_BETA):
    """chrF (0..100) from corpus-summed `chrf_statistics`."""
    precisions, recalls = [], []
    for start in range(0, len(statistics), 3):
        hyp_total, ref_total, matched = statistics[start:start + 3]
        if hyp_total > 0 and ref_total > 0:
            precisions.append(matched / hyp_total)
            recalls.append(matched / ref_total)
    if not precisions:
        return 0.0
    precision = sum(precisions) / len(precisions)
    recall = sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0
    weight = beta * beta
    return 100.0 * (1 + weight) * precision * recall / (weight * precision + recall)


def corpus_chrf(hypotheses, references, backend="auto"):
    """Corpus chrF (sacrebleu's `CHRF()` default) of hypothesis/reference strings."""
    hypotheses, references = _check_lengths(hypotheses, references)
    if _resolve_backend(backend) == "sacrebleu":
        import sacrebleu

        return float(sacrebleu.corpus_chrf(hypotheses, [references]).score)
    totals = [0] * (3 * CHRF_CHAR_ORDER)
    for hypothesis, reference in zip(hypotheses, references):
        totals = [a + b for a, b in zip(totals, chrf_statistics(hypothesis, reference))]
    return chrf_from_statistics(totals)


# ----------------------------------------------------------------------------------- BLEU
# mteval-v13a tokenisation rules (the WMT standard), applied in order.
_V13A_RULES = [
    # Symbols and most ASCII punctuation become separate tokens.
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    # Period and comma split off unless both neighbours are digits (1,000 / 3.5 stay).
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    # A dash after a digit splits off.
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_v13a(text):
    """mteval-v13a tokenisation (sacrebleu's default `13a`)."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        text = text.replace(entity, char)
    text = f" {text} "
    for pattern, replacement in _V13A_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def _word_ngrams(tokens, order):
    return Counter(tuple(tokens[i:i + order]) for i in range(len(tokens) - order + 1))


def corpus_bleu(hypotheses, references, backend="auto"):
    """Corpus BLEU (sacrebleu's `BLEU()` default: 13a, exp smoothing), one reference."""
    hypotheses, references = _check_lengths(hypotheses, references)
    if _resolve_backend(backend) == "sacrebleu":
        import sacrebleu

        return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    matches = [0] * BLEU_MAX_ORDER
    totals = [0] * BLEU_MAX_ORDER
    hyp_length = ref_length = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp_tokens, ref_tokens = tokenize_v13a(hypothesis), tokenize_v13a(reference)
        hyp_length += len(hyp_tokens)
        ref_length += len(ref_tokens)
        for order in range(1, BLEU_MAX_ORDER + 1):
            hyp_counts = _word_ngrams(hyp_tokens, order)
            ref_counts = _word_ngrams(ref_tokens, order)
            matches[order - 1] += sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
            totals[order - 1] += max(len(hyp_tokens) - order + 1, 0)
    if hyp_length == 0 or not any(matches):
        return 0.0  # no n-gram matched at all: 0, not a smoothed positive score
    log_precision = 0.0
    unmatched_orders = 0
    for matched, total in zip(matches, totals):
        if total == 0:
            return 0.0
        if matched == 0:
            # "exp" smoothing: 1 / (2^k * total) for the k-th order without a match.
            unmatched_orders += 1
            log_precision += math.log(1.0 / (2 ** unmatched_orders * total))
        else:
            log_precision += math.log(matched / total)
    brevity = 1.0 if hyp_length >= ref_length else math.exp(1.0 - ref_length / hyp_length)
    return 100.0 * brevity * math.exp(log_precision / BLEU_MAX_ORDER)
