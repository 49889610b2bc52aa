"""Beam-search candidates from block bounds against the full pass, in one process.

    PYTHONPATH=. python bench/beam_candidates.py --models mt5,m2m100 --settings 8x4 --rounds 8

Two copies of a model with the same random weights (the real `mt5-small` /
`m2m100_418M` configs, 2 threads, 32 source tokens -> exactly 32 new tokens, as
`bench/generate.py`): one compiled with beam search scoring its candidates from block
bounds (the default, `top_k.top_k_vocab_major_within_bounds`), one compiled with the full
pass over the processed scores. The calls alternate, so the machine's drift hits both; it
prints tokens/s (best and median) and the ratios, and checks that both give the same ids.
"""

import argparse
import importlib.util
import os
import time

import numpy as np
import tensorflow as tf


def _bench_module():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generate.py")
    spec = importlib.util.spec_from_file_location("bench_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mt5,m2m100")
    parser.add_argument("--settings", default="8x4", help="comma-separated BATCHxBEAMS")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    bench = _bench_module()
    models = bench.check_names(parser, "--models", args.models, list(bench.MODELS))
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from tfmodels.generation import search

    bounded_fn = search.block_maxima_vocab_major
    for name in models:
        vocab_size = bench.MODELS[name]["config"]["vocab_size"]
        bounded, full = bench.tfmodels_model(name), bench.tfmodels_model(name)
        full.set_weights(bounded.get_weights())
        for setting in args.settings.split(","):
            batch, beams = (int(part) for part in setting.split("x"))
            source = bench._source_ids(batch, vocab_size)

            def run(model):
                return model.generate(source, max_new_tokens=32, min_new_tokens=32,
                                      num_beams=beams).numpy()

            # Each copy compiles its search on its first call; the full pass is chosen
            # at trace time by making the block maxima unavailable.
            search.block_maxima_vocab_major = lambda *args: None
            try:
                full_ids = run(full)
            finally:
                search.block_maxima_vocab_major = bounded_fn
            if not np.array_equal(run(bounded), full_ids):
                raise SystemExit(f"{name} {setting}: the two paths gave different ids")
            times = {"full": [], "bounded": []}
            for _ in range(args.rounds):
                for label, model in (("full", full), ("bounded", bounded)):
                    start = time.perf_counter()
                    run(model)
                    times[label].append(time.perf_counter() - start)
            best = {label: batch * 32 / min(values) for label, values in times.items()}
            median = {label: batch * 32 / float(np.median(values)) for label, values in times.items()}
            print(f"{name} {setting}: tokens/s full {best['full']:.1f} bounded {best['bounded']:.1f}"
                  f" (best; ratio {best['bounded'] / best['full']:.3f}), median ratio"
                  f" {median['bounded'] / median['full']:.3f}", flush=True)


if __name__ == "__main__":
    main()
