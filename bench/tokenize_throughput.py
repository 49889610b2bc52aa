"""Tokenize + pad throughput: in-graph tokenizers vs. transformers vs. SentencePiece.

For each tokenizer (mT5 and M2M100, built from `tests/data/`), encodes the
multilingual test corpus in batches of 64 lines, padded to the longest line
of each batch, and reports lines per second for:

* `tfmodels (tf.function)`: our layer inside a `tf.function` with a
  `tf.string` input signature (traced once, then timed);
* `tfmodels (tf.data)`: the same in a `tf.data` pipeline
  (`batch(64).map(tokenizer, num_parallel_calls=AUTOTUNE)`);
* `transformers fast` (mT5 only: there is no fast M2M100 tokenizer) and
  `transformers slow` (the reference; `return_tensors="np"`);
* `sentencepiece (python)`: `SentencePieceProcessor.encode` on the batch
  (one thread) + "</s>"/language ids + numpy padding; it does not split on
  added tokens, so it is a lower bound on the work, not a drop-in.

Usage (from the repository root):

    python bench/tokenize_throughput.py [--lines 8192] [--threads 0]

`--threads` sets TensorFlow's inter/intra-op threads (0 = TF default).
"""

import os
import sys

# This file is named like the standard library's `tokenize` module, which
# TensorFlow imports; keep its folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

BATCH_SIZE = 64
DATA_DIR = os.path.join(os.path.dirname(_HERE), "tests", "data")


def _lines(count):
    with open(os.path.join(DATA_DIR, "corpus.txt"), encoding="utf-8") as f:
        corpus = f.read().split("\n")[:-1]
    return [corpus[i % len(corpus)] for i in range(count)]


def _batches(lines):
    return [lines[i : i + BATCH_SIZE] for i in range(0, len(lines), BATCH_SIZE)]


def _timed(run, batches, repeats=3):
    """Best-of-`repeats` lines/s of `run(batch)` over all batches."""
    run(batches[0])  # warm-up (tracing, caches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        best = min(best, time.perf_counter() - start)
    return sum(len(b) for b in batches) / best


def _pad(rows, pad_id):
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(rows), width), dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return out, mask


def bench_tokenizer(name, ours, reference_fast, reference_slow, sentencepiece_run, lines, slow_lines):
    import tensorflow as tf

    batches = _batches(lines)
    results = {}

    encode = tf.function(
        lambda texts: ours(texts, padding="longest"), input_signature=[tf.TensorSpec([None], tf.string)]
    )
    tensor_batches = [tf.constant(b) for b in batches]
    results["tfmodels (tf.function)"] = _timed(lambda b: encode(b)["input_ids"].numpy(), tensor_batches)

    dataset = (
        tf.data.Dataset.from_tensor_slices(lines)
        .batch(BATCH_SIZE)
        .map(lambda texts: ours(texts, padding="longest"), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )

    def run_dataset():
        for _ in dataset:
            pass

    run_dataset()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run_dataset()
        best = min(best, time.perf_counter() - start)
    results["tfmodels (tf.data)"] = len(lines) / best

    if reference_fast is not None:
        results["transformers fast"] = _timed(
            lambda b: reference_fast(b, padding="longest", return_tensors="np"), batches
        )
    if reference_slow is not None:
        results["transformers slow"] = _timed(
            lambda b: reference_slow(b, padding="longest", return_tensors="np"), _batches(slow_lines), repeats=1
        )
    results["sentencepiece (python)"] = _timed(sentencepiece_run, batches)
    return name, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=8192, help="lines to encode per run")
    parser.add_argument("--slow-lines", type=int, default=1024, help="lines for the (slow) reference")
    parser.add_argument("--threads", type=int, default=0, help="TF inter/intra-op threads (0 = default)")
    args = parser.parse_args()
    for flag, value in (("--lines", args.lines), ("--slow-lines", args.slow_lines)):
        if value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import sentencepiece
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)

    from tfmodels.tokenizers import M2M100Tokenizer
    from tfmodels.tokenizers import T5Tokenizer

    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        transformers = None

    lines = _lines(args.lines)
    slow_lines = lines[: args.slow_lines]
    mt5_dir = os.path.join(DATA_DIR, "mt5_tokenizer")
    m2m_dir = os.path.join(DATA_DIR, "m2m100_tokenizer")
    all_results = []

    # mT5
    t5 = T5Tokenizer.from_pretrained(mt5_dir)
    t5_sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(mt5_dir, "spiece.model"))

    def t5_sentencepiece(batch):
        rows = [ids + [t5.eos_token_id] for ids in t5_sp.encode(batch, num_threads=1)]
        return _pad(rows, t5.pad_token_id)

    all_results.append(
        bench_tokenizer(
            "mT5 (unigram)",
            t5,
            transformers.T5TokenizerFast.from_pretrained(mt5_dir) if transformers else None,
            transformers.T5Tokenizer.from_pretrained(mt5_dir) if transformers else None,
            t5_sentencepiece,
            lines,
            slow_lines,
        )
    )

    # M2M100
    m2m = M2M100Tokenizer.from_pretrained(m2m_dir, src_lang="en")
    m2m_sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(m2m_dir, "sentencepiece.bpe.model"))
    vocab = {piece: i for i, piece in enumerate(m2m.get_vocabulary())}
    lang_id, unk_id = m2m.get_lang_id("en"), m2m.unk_token_id

    def m2m_sentencepiece(batch):
        rows = [
            [lang_id] + [vocab.get(p, unk_id) for p in pieces] + [m2m.eos_token_id]
            for pieces in m2m_sp.encode(batch, out_type=str, num_threads=1)
        ]
        return _pad(rows, m2m.pad_token_id)

    all_results.append(
        bench_tokenizer(
            "M2M100 (BPE)",
            m2m,
            None,
            transformers.M2M100Tokenizer.from_pretrained(m2m_dir, src_lang="en") if transformers else None,
            m2m_sentencepiece,
            lines,
            slow_lines,
        )
    )

    print(f"\nTokenize + pad to longest, batch {BATCH_SIZE}, {len(lines)} corpus lines "
          f"({args.slow_lines} for transformers slow); TF threads: {args.threads or 'default'}; "
          f"{os.cpu_count()} CPUs visible.\n")
    header = f"{'tokenizer':<16}{'implementation':<26}{'lines/s':>12}{'tf.function / this':>22}"
    print(header)
    print("-" * len(header))
    for name, results in all_results:
        ours = results["tfmodels (tf.function)"]
        for implementation, rate in results.items():
            print(f"{name:<16}{implementation:<26}{rate:>12,.0f}{ours / rate:>21.2f}x")
        print()


if __name__ == "__main__":
    main()
