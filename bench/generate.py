"""Generation speed: tfmodels against transformers (PyTorch, TF/XLA) and CTranslate2.

    PYTHONPATH=. python bench/generate.py                  # both models, every engine
    PYTHONPATH=. python bench/generate.py --models mt5 --quick
    PYTHONPATH=. python bench/generate.py --tf-python /tmp/tfvenv/bin/python \\
        --ct2-python /tmp/ct2venv/bin/python

Every engine runs in its own subprocess (2 intra-op threads, fp32 unless stated) on the
real `mt5-small` / `m2m100_418M` configs with random weights: 32 source tokens per row,
exactly 32 new tokens (`min_new_tokens = max_new_tokens = 32`), greedy and beam 4, batch
1 and 8. Tokens/s counts returned tokens (batch x 32) over the best of the timed calls.

Engines:
  tfmodels        this package, XLA (`jit_compile=True`, the default)
  tfmodels-graph  this package without XLA (what TF Serving runs)
  torch           transformers PyTorch `generate` (torch.set_num_threads(2))
  hf-tf-xla       transformers TF `generate` in `tf.function(jit_compile=True)`, mT5 only;
                  needs tf-keras, so it runs with `--tf-python` (a virtualenv:
                  `python -m venv /tmp/tfvenv --system-site-packages &&
                  /tmp/tfvenv/bin/pip install tf-keras==2.21.0`), skipped if absent
  tfmodels-int8   this package, XLA, with weight-only int8 decoding
                  (`model.quantize_weights("int8")`: decoder projections and LM head)
  tfmodels-int8dyn  this package, XLA, with int8 weights and activations
                  (`model.quantize_weights("int8_dynamic")`, as CTranslate2's int8:
                  the encoder's projections too)
  tfmodels-int8-graph  the same as tfmodels-int8 without XLA (an int8 export's default
                  signatures)
  tfmodels-bf16-graph  this package without XLA, weights and compute in bfloat16
                  (`from_pretrained(..., dtype="bfloat16")`): half the bytes per step,
                  and TensorFlow's CPU matmul multiplies bfloat16 natively where the
                  processor has AVX512-BF16 / AMX (oneDNN)
  tfmodels-bf16   the same under XLA, for comparison: XLA's CPU backend has no bfloat16
                  matrix product, widens each weight to float32 (once per call, hoisted
                  out of the decoding loop) and then reads float32 bytes
  tfmodels-warm   this package, XLA, in a process that finds every search already in a
                  persistent XLA compilation cache (`--xla-cache` /
                  `use_persistent_compilation_cache`), filled by an earlier tfmodels
                  process that is not reported: its "compile s" is a restart's
  tfmodels-inout  this package, XLA, with mT5's LM head stored `[d_model, vocab]`
                  (`lm_head_layout="in_out"`, not the default `"out_in"`): faster at
                  one row, slower at several; M2M100's head is tied, so mT5 only
  tfmodels-screened  this package, XLA, fp32, with the LM head screened for greedy
                  search (`model.enable_head_screening()`): greedy steps bound the logits
                  from an int8 copy of the head and score only the tokens that can win
                  with the float weights; the same tokens as tfmodels; beam rows are
                  tfmodels' own search (the screen applies to greedy only)
  tfmodels-vocab  this package, XLA, with the opt-in output-vocabulary restriction to
                  `--restricted-vocab` random ids (default 32,000; a real set comes from
                  `tfmodels.generation.output_vocabulary` on target-language text)
  ct2-fp32/int8   CTranslate2 (`pip install ctranslate2`, bench only; `--ct2-python`),
                  converted with its transformers converter from a checkpoint saved by
                  transformers into a temporary directory

Also printed: the memory-bandwidth ceiling for batch-1 greedy (a 2-thread fp32
matrix-vector product reading as many bytes as the decoder + LM head, both weight layouts,
with and without XLA, and under XLA as independent products over row slices too, probed
before and after the engines; the fastest counts), the
head-shaped rate beside it (the same single-row product by a matrix of the model's own
LM-head shape, under XLA, in the probe's process), first-call
compile time, set-up time ("setup s": building or loading the model in the engine's
process, with its int8 copies or head screen where the engine makes them; CTranslate2's
conversion is not in it) and peak RSS of every engine process.

`--rounds N` runs every engine N times, interleaved (all engines, then all again, ...), and
keeps each engine's fastest call per setting: on a shared machine the speed moves by tens
of percent over minutes, and engines measured minutes apart would otherwise be compared
under different loads. The "spread" column shows how much the rounds disagreed.
"""

import os
import sys

# Scripts in bench/ would shadow the standard library (e.g. a script named like a stdlib module,
# which tracebacks and tf.function need): keep bench/ itself off the import path.
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _BENCH_DIR]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

MODELS = {
    "mt5": dict(
        family="mt5",
        label="mt5-small",
        config=dict(vocab_size=250112, d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                    num_decoder_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                    tie_word_embeddings=False, dropout_rate=0.0, decoder_start_token_id=0,
                    eos_token_id=1, pad_token_id=0),
    ),
    "m2m100": dict(
        family="m2m100",
        label="m2m100_418M",
        config=dict(vocab_size=128112, d_model=1024, encoder_layers=12, decoder_layers=12,
                    encoder_attention_heads=16, decoder_attention_heads=16,
                    encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=1024,
                    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                    encoder_layerdrop=0.0, decoder_layerdrop=0.0, decoder_start_token_id=2,
                    eos_token_id=2, pad_token_id=1, bos_token_id=0),
    ),
}
SETTINGS = [(1, 1), (8, 1), (1, 4), (8, 4)]  # (batch, beams)
QUICK_SETTINGS = [(1, 1), (8, 1), (8, 4)]
SOURCE_TOKENS = 32
NEW_TOKENS = 32
THREADS = 2
RESTRICTED_VOCAB = 32000
ENGINES = ["tfmodels", "tfmodels-warm", "tfmodels-graph", "tfmodels-inout", "tfmodels-int8", "tfmodels-int8dyn", "tfmodels-int8-graph", "tfmodels-bf16", "tfmodels-bf16-graph", "tfmodels-vocab", "tfmodels-screened", "torch", "hf-tf-xla", "ct2-fp32", "ct2-int8"]


# ----------------------------------------------------------------------------- helpers
def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _source_ids(batch, vocab_size, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randint(4, min(vocab_size, 30000), size=(batch, SOURCE_TOKENS)).astype(np.int64)


def _time_calls(run, repeats):
    """`(first_call_seconds, best_seconds)` of `run()`: one first call, then `repeats`."""
    started = time.perf_counter()
    run()
    first = time.perf_counter() - started
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return first, best


def _decoder_and_head_parameters(name):
    config = MODELS[name]["config"]
    if name == "mt5":
        d, inner, ff, layers = config["d_model"], config["num_heads"] * config["d_kv"], config["d_ff"], config["num_decoder_layers"]
        per_layer = 2 * 4 * d * inner + 3 * d * ff
    else:
        d, ff, layers = config["d_model"], config["decoder_ffn_dim"], config["decoder_layers"]
        per_layer = 2 * 4 * d * d + 2 * d * ff
    return layers * per_layer + config["vocab_size"] * config["d_model"]


# ----------------------------------------------------------------------------- workers
def _set_tf_threads():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    return tf


def worker_ceiling(name, repeats):
    """Bytes/s of a 2-thread fp32 matrix-vector product over the decoder + LM head size."""
    tf = _set_tf_threads()
    parameters = _decoder_and_head_parameters(name)
    width = 1024
    matrix = tf.Variable(tf.random.normal([width, parameters // width], stddev=0.01))
    vector = tf.random.normal([1, width])
    # The same bytes read against both layouts (a GEMV over [in, out] and over [out, in]),
    # with and without XLA: the ceiling is the fastest way stock TF streams them.
    rows_matrix = tf.Variable(tf.transpose(matrix))
    results = {}
    for jit in (False, True):
        for transposed in (False, True):
            weights = rows_matrix if transposed else matrix
            results[("xla" if jit else "graph") + ("-rows" if transposed else "")] = (
                _single_row_seconds(tf, vector, weights, transposed, jit, repeats))
    # And as independent products over row slices of the `[out, in]` matrix, the form
    # this package gives an LM head's single-row product on AMD processors
    # (`products.single_row_slices()`: enough slices for XLA to run them on two threads;
    # there a sliced product streams faster than a lone one).
    results["xla-rows-sliced"] = _single_row_seconds(
        tf, vector, rows_matrix, True, True, repeats, sliced=True)
    best = min(results.values())
    del matrix, rows_matrix
    head_gb_per_s = _head_shaped_gb_per_s(tf, name, repeats)
    return {"parameters": parameters, "seconds_per_pass": best,
            "gb_per_s": parameters * 4 / best / 1e9, "ceiling_tokens_per_s": 1.0 / best,
            "head_gb_per_s": head_gb_per_s, "peak_rss_mb": _peak_rss_mb()}


def _head_shaped_gb_per_s(tf, name, repeats):
    """Bytes/s of a single-row product by a matrix of the model's own LM-head shape, stored
    `[vocab, d_model]` and `[d_model, vocab]`, under XLA (the faster of the two).

    Not part of the ceiling, printed beside it: the ceiling probe streams the same bytes
    as a matrix 1024 floats wide, while every decoding step reads the head in its own
    shape. If this rate is near the ceiling, the head's shape is not what holds batch-1
    greedy back (session 15: 56.0 GB/s for mT5's [250112, 512] head against a 53.0 GB/s
    ceiling, while the same product inside a process holding the model read 31-38). Both
    probes are bimodal from one allocation to the next: three ceiling workers in a row
    read the head at 55.1, 54.2 and 34.2 GB/s (ceiling 34.9-35.4 each time).
    """
    config = MODELS[name]["config"]
    vocab, width = config["vocab_size"], config["d_model"]
    vector = tf.random.normal([1, width])
    best = float("inf")
    for out_in in (True, False):
        shape = [vocab, width] if out_in else [width, vocab]
        head = tf.Variable(tf.random.normal(shape, stddev=0.01))
        best = min(best, _single_row_seconds(tf, vector, head, out_in, True, repeats))
        if out_in:
            best = min(best, _single_row_seconds(tf, vector, head, True, True, repeats,
                                                 sliced=True))
        del head
    return vocab * width * 4 / best / 1e9


def _single_row_seconds(tf, vector, weights, transposed, jit_compile, repeats, sliced=False):
    """Best seconds of `vector [1, in] @ weights` (`weights^T` when `transposed`); `sliced`
    (transposed only) takes it as this package does for an LM head under XLA
    (`products.sliced_single_row_product`, in its AMD slice count)."""
    from tfmodels.layers.products import AMD_SINGLE_ROW_SLICES, sliced_single_row_product

    def product_sum(v):
        if sliced:
            return tf.reduce_sum(sliced_single_row_product(v, weights, AMD_SINGLE_ROW_SLICES))
        return tf.reduce_sum(tf.matmul(v, weights, transpose_b=transposed))

    product = tf.function(product_sum, jit_compile=jit_compile)
    _, best = _time_calls(lambda: product(vector).numpy(), repeats * 3)
    return best


def tfmodels_model(name, lm_head_layout="out_in", dtype="float32"):
    """This package's model for `MODELS[name]`, randomly initialised."""
    from tfmodels import M2M100Config, M2M100ForConditionalGeneration, MT5Config, MT5ForConditionalGeneration

    spec = MODELS[name]
    if spec["family"] == "mt5":
        return MT5ForConditionalGeneration(MT5Config(**spec["config"]),
                                           lm_head_layout=lm_head_layout, dtype=dtype)
    return M2M100ForConditionalGeneration(M2M100Config(**spec["config"]), dtype=dtype)


def worker_tfmodels(name, settings, repeats, jit_compile=True, restricted_vocab=None,
                    quantize=None, lm_head_layout="out_in", dtype="float32",
                    screen_head=False):
    _set_tf_threads()
    spec = MODELS[name]
    started = time.perf_counter()
    model = tfmodels_model(name, lm_head_layout=lm_head_layout, dtype=dtype)
    if quantize:
        model.quantize_weights(quantize)
    if screen_head:
        model.enable_head_screening()
    build = time.perf_counter() - started
    options = {}
    if restricted_vocab:
        vocab_size = spec["config"]["vocab_size"]
        ids = np.random.RandomState(1).choice(vocab_size, restricted_vocab, replace=False)
        options["output_token_ids"] = np.sort(ids)
    results = {}
    for batch, beams in settings:
        source = _source_ids(batch, spec["config"]["vocab_size"])

        def run():
            out = model.generate(source, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 num_beams=beams, jit_compile=jit_compile, **options)
            assert out.shape == (batch, NEW_TOKENS + 1), out.shape

        first, best = _time_calls(run, repeats)
        results[f"{batch}x{beams}"] = {"first": first, "best": best}
    return {"build_s": build, "results": results, "peak_rss_mb": _peak_rss_mb()}


def worker_torch(name, settings, repeats):
    import torch
    import transformers

    torch.set_num_threads(THREADS)
    spec = MODELS[name]
    started = time.perf_counter()
    if spec["family"] == "mt5":
        model = transformers.MT5ForConditionalGeneration(transformers.MT5Config(**spec["config"]))
    else:
        model = transformers.M2M100ForConditionalGeneration(transformers.M2M100Config(**spec["config"]))
    model.eval()
    build = time.perf_counter() - started
    results = {}
    for batch, beams in settings:
        source = torch.from_numpy(_source_ids(batch, spec["config"]["vocab_size"]))

        def run():
            with torch.inference_mode():
                out = model.generate(source, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                     num_beams=beams, do_sample=False)
            assert tuple(out.shape) == (batch, NEW_TOKENS + 1), out.shape

        first, best = _time_calls(run, repeats)
        results[f"{batch}x{beams}"] = {"first": first, "best": best}
    return {"build_s": build, "results": results, "peak_rss_mb": _peak_rss_mb()}


def worker_hf_tf(name, settings, repeats):
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    tf = _set_tf_threads()
    import transformers

    spec = MODELS[name]
    if spec["family"] != "mt5":
        raise RuntimeError("transformers has no TF M2M100")
    started = time.perf_counter()
    model = transformers.TFMT5ForConditionalGeneration(transformers.MT5Config(**spec["config"]))
    model(input_ids=tf.zeros([1, 4], tf.int32), decoder_input_ids=tf.zeros([1, 1], tf.int32))
    build = time.perf_counter() - started
    xla_generate = tf.function(model.generate, jit_compile=True)
    results = {}
    for batch, beams in settings:
        source = tf.constant(_source_ids(batch, spec["config"]["vocab_size"]), tf.int32)

        def run():
            out = xla_generate(source, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                               num_beams=beams, do_sample=False)
            assert tuple(out.shape) == (batch, NEW_TOKENS + 1), out.shape

        first, best = _time_calls(run, repeats)
        results[f"{batch}x{beams}"] = {"first": first, "best": best}
    return {"build_s": build, "results": results, "peak_rss_mb": _peak_rss_mb()}


class _SyntheticTokenizer:
    """What CTranslate2's converter reads from a tokenizer: a vocabulary of `tok{i}`
    strings with the family's special tokens at their ids."""

    def __init__(self, vocab_size, specials):
        self.tokens = [f"tok{i}" for i in range(vocab_size)]
        for token_id, token in specials.items():
            self.tokens[token_id] = token
        self.pad_token, self.eos_token, self.unk_token, self.bos_token = "<pad>", "</s>", "<unk>", "<s>"
        self.unk_token_id = self.tokens.index("<unk>")
        self.special_tokens_map = {}
        self.vocab_size = vocab_size

    def get_vocab(self):
        return {token: index for index, token in enumerate(self.tokens)}

    def convert_ids_to_tokens(self, ids):
        return self.tokens[ids] if isinstance(ids, int) else [self.tokens[i] for i in ids]


def _ct2_specials(family):
    if family == "mt5":
        return {0: "<pad>", 1: "</s>", 2: "<unk>"}
    return {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}


def worker_ct2_convert(name, output_dir):
    """Saves a random transformers checkpoint to a temp dir, converts it for CTranslate2."""
    import torch
    import transformers
    from ctranslate2.converters import TransformersConverter

    spec = MODELS[name]
    with tempfile.TemporaryDirectory() as checkpoint:
        if spec["family"] == "mt5":
            model = transformers.MT5ForConditionalGeneration(transformers.MT5Config(**spec["config"]))
        else:
            model = transformers.M2M100ForConditionalGeneration(transformers.M2M100Config(**spec["config"]))
        model.save_pretrained(checkpoint)
        del model
        tokenizer = _SyntheticTokenizer(spec["config"]["vocab_size"], _ct2_specials(spec["family"]))

        class Converter(TransformersConverter):
            def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
                return tokenizer

        torch.set_num_threads(THREADS)
        Converter(checkpoint).convert(output_dir, force=True)
    return {"converted": output_dir, "peak_rss_mb": _peak_rss_mb()}


def worker_ct2(name, settings, repeats, model_dir, compute_type):
    import ctranslate2

    spec = MODELS[name]
    started = time.perf_counter()
    translator = ctranslate2.Translator(model_dir, device="cpu", compute_type=compute_type,
                                        intra_threads=THREADS, inter_threads=1)
    build = time.perf_counter() - started
    specials = _ct2_specials(spec["family"])
    results = {}
    for batch, beams in settings:
        source = [[specials.get(int(i), f"tok{int(i)}") for i in row]
                  for row in _source_ids(batch, spec["config"]["vocab_size"])]

        def run():
            out = translator.translate_batch(source, beam_size=beams, max_decoding_length=NEW_TOKENS,
                                             min_decoding_length=NEW_TOKENS, max_batch_size=batch)
            assert all(len(result.hypotheses[0]) == NEW_TOKENS for result in out), [
                len(result.hypotheses[0]) for result in out]

        first, best = _time_calls(run, repeats)
        results[f"{batch}x{beams}"] = {"first": first, "best": best}
    return {"build_s": build, "results": results, "peak_rss_mb": _peak_rss_mb()}


def run_worker(arguments):
    settings = [tuple(map(int, item.split("x"))) for item in arguments.settings.split(",")] if arguments.settings else []
    engine = arguments.worker
    if engine == "ceiling":
        result = worker_ceiling(arguments.model, arguments.repeats)
    elif engine == "tfmodels":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats)
    elif engine == "tfmodels-warm":  # the parent passes the cache in TF_XLA_FLAGS
        result = worker_tfmodels(arguments.model, settings, arguments.repeats)
    elif engine == "tfmodels-inout":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats,
                                 lm_head_layout="in_out")
    elif engine == "tfmodels-graph":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats, jit_compile=False)
    elif engine == "tfmodels-int8":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats, quantize="int8")
    elif engine == "tfmodels-int8dyn":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats,
                                 quantize="int8_dynamic")
    elif engine == "tfmodels-int8-graph":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats, jit_compile=False,
                                 quantize="int8")
    elif engine in ("tfmodels-bf16", "tfmodels-bf16-graph"):
        result = worker_tfmodels(arguments.model, settings, arguments.repeats,
                                 jit_compile=engine == "tfmodels-bf16", dtype="bfloat16")
    elif engine == "tfmodels-screened":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats, screen_head=True)
    elif engine == "tfmodels-vocab":
        result = worker_tfmodels(arguments.model, settings, arguments.repeats,
                                 restricted_vocab=arguments.restricted_vocab)
    elif engine == "torch":
        result = worker_torch(arguments.model, settings, arguments.repeats)
    elif engine == "hf-tf-xla":
        result = worker_hf_tf(arguments.model, settings, arguments.repeats)
    elif engine == "ct2-convert":
        result = worker_ct2_convert(arguments.model, arguments.ct2_dir)
    elif engine in ("ct2-fp32", "ct2-int8"):
        result = worker_ct2(arguments.model, settings, arguments.repeats, arguments.ct2_dir,
                            "float32" if engine == "ct2-fp32" else "int8")
    else:
        raise SystemExit(f"unknown worker {engine}")
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------ driver
def _spawn(python, engine, model, settings, repeats, extra=(), timeout=3600, env_extra=None):
    command = [python, os.path.abspath(__file__), "--worker", engine, "--model", model,
               "--repeats", str(repeats)]
    if settings:
        command += ["--settings", ",".join(f"{b}x{k}" for b, k in settings)]
    command += list(extra)
    env = dict(os.environ)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["OMP_NUM_THREADS"] = str(THREADS)
    env.update(env_extra or {})
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result["process_s"] = time.perf_counter() - started
            return result
    tail = (process.stderr or process.stdout).strip().splitlines()[-6:]
    return {"error": " | ".join(tail) or f"exit code {process.returncode}"}


def check_names(parser, flag, text, known):
    """The comma list `text` of `flag`, every item one of `known` (else a parser error)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"{flag}: unknown {', '.join(unknown) or '(empty)'}; choose from "
                     f"{', '.join(known)}")
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mt5,m2m100", help="comma list: mt5, m2m100")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma list of engines")
    parser.add_argument("--quick", action="store_true", help="fewer settings and repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per setting")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every engine this many times, interleaved; keep the fastest")
    parser.add_argument("--tf-python", default="/tmp/tfvenv/bin/python",
                        help="python of a virtualenv with tf-keras (for hf-tf-xla)")
    parser.add_argument("--ct2-python", default=None,
                        help="python with ctranslate2 installed (default: this one)")
    parser.add_argument("--json", default=None, help="also write all results to this file")
    parser.add_argument("--restricted-vocab", type=int, default=RESTRICTED_VOCAB,
                        help="output-vocabulary size of the tfmodels-vocab engine")
    # Worker mode (internal).
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ct2-dir", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        arguments.repeats = arguments.repeats or 3
        return run_worker(arguments)

    settings = QUICK_SETTINGS if arguments.quick else SETTINGS
    repeats = arguments.repeats or (2 if arguments.quick else 3)
    if arguments.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, got {arguments.rounds}")
    engines = check_names(parser, "--engines", arguments.engines, ENGINES)
    models = check_names(parser, "--models", arguments.models, list(MODELS))
    ct2_python = arguments.ct2_python or sys.executable
    report = {}
    for name in models:
        spec = MODELS[name]
        print(f"\n=== {spec['label']} ({SOURCE_TOKENS} source tokens -> {NEW_TOKENS} new, "
              f"fp32 unless noted, {THREADS} threads) ===", flush=True)
        # Probed before and after the engines and both printed: on a shared machine the
        # bandwidth moves (37 vs 48 GB/s minutes apart has been seen); the faster probe is
        # used, so the ceiling is an upper estimate and the spread shows how firm it is.
        probes = [_spawn(sys.executable, "ceiling", name, [], repeats)]
        rounds = {}  # engine -> one result per round
        # tfmodels-warm's compilation cache: filled by an unreported process before its first
        # round, reused by the later rounds, removed after the last.
        warm_cache_dir = tempfile.mkdtemp(prefix="tfmodels_bench_xla_cache_")
        for round_index in range(arguments.rounds):
            if arguments.rounds > 1:
                print(f"  round {round_index + 1} of {arguments.rounds}", flush=True)
                if round_index:
                    probes.append(_spawn(sys.executable, "ceiling", name, [], repeats))
            _run_engines_once(arguments, name, spec, engines, settings, repeats, ct2_python,
                              warm_cache_dir, rounds)
        shutil.rmtree(warm_cache_dir, ignore_errors=True)
        rows = {engine: merge_rounds(results) for engine, results in rounds.items()}
        probes.append(_spawn(sys.executable, "ceiling", name, [], repeats))
        ceiling = _best_probe(probes)
        report[name] = {"ceiling": ceiling, "engines": rows}
        _print_table(spec["label"], settings, ceiling, rows)
    if arguments.json:
        with open(arguments.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


def _run_engines_once(arguments, name, spec, engines, settings, repeats, ct2_python,
                      warm_cache_dir, rounds):
    """One process per engine, in order; appends each result to `rounds[engine]`."""
    for engine in engines:
        python = sys.executable
        extra = []
        if engine in ("hf-tf-xla", "tfmodels-inout") and spec["family"] != "mt5":
            continue
        if engine == "hf-tf-xla":
            if not os.path.exists(arguments.tf_python):
                print(f"  skip hf-tf-xla: no python at {arguments.tf_python} (see --help)")
                continue
            python = arguments.tf_python
        if engine.startswith("ct2"):
            python = ct2_python
            check = subprocess.run([python, "-c", "import ctranslate2"], capture_output=True)
            if check.returncode:
                print(f"  skip {engine}: ctranslate2 is not importable by {python}")
                continue
            ct2_dir = os.path.join(tempfile.gettempdir(), f"tfmodels_bench_ct2_{name}")
            if not os.path.exists(os.path.join(ct2_dir, "model.bin")):
                print(f"  converting {spec['label']} for CTranslate2 ...", flush=True)
                converted = _spawn(python, "ct2-convert", name, [], 1, ["--ct2-dir", ct2_dir])
                if "error" in converted:
                    print(f"  skip ct2: conversion failed: {converted['error']}")
                    continue
            extra = ["--ct2-dir", ct2_dir]
        if engine == "tfmodels-vocab":
            extra = ["--restricted-vocab", str(arguments.restricted_vocab)]
        env_extra = None
        if engine == "tfmodels-warm":
            env_extra = {"TF_XLA_FLAGS": f"--tf_xla_persistent_cache_directory={warm_cache_dir}"}
            if engine not in rounds:
                print(f"  filling an XLA compilation cache for {engine} ...", flush=True)
                _spawn(python, engine, name, settings, 1, extra, env_extra=env_extra)
        print(f"  running {engine} ...", flush=True)
        result = _spawn(python, engine, name, settings, repeats, extra, env_extra=env_extra)
        if "error" in result:
            print(f"    failed: {result['error']}")
        rounds.setdefault(engine, []).append(result)


def merge_rounds(results):
    """One engine's per-round results -> one result: per setting, the fastest call of any
    round; the compile and set-up times of the rounds with the least (`compile_s` per
    process, `compile_by_setting` per setting); the largest peak RSS. `spread` is
    the largest ratio, over settings, of the slowest round's best call to the fastest's
    (0.0 with one round). A failed round is dropped; if all failed, the first error stays.

    >>> merge_rounds([{"results": {"1x1": {"first": 9.0, "best": 1.0}}, "peak_rss_mb": 10,
    ...                "build_s": 2.0},
    ...               {"results": {"1x1": {"first": 6.0, "best": 1.25}}, "peak_rss_mb": 12,
    ...                "build_s": 1.5}])
    {'results': {'1x1': {'first': 9.0, 'best': 1.0}}, 'peak_rss_mb': 12, 'compile_s': 4.75, 'compile_by_setting': {'1x1': 4.75}, 'setup_s': 1.5, 'spread': 0.25, 'rounds': 2}
    """
    good = [result for result in results if "error" not in result]
    if not good:
        return results[0]
    merged, spreads = {}, []
    for key in good[0]["results"]:
        timings = [result["results"][key] for result in good if key in result["results"]]
        bests = [timing["best"] for timing in timings]
        merged[key] = dict(timings[bests.index(min(bests))])
        spreads.append(max(bests) / min(bests) - 1.0)
    return {
        "results": merged,
        "peak_rss_mb": max(result["peak_rss_mb"] for result in good),
        "compile_s": min(_compile_seconds(result["results"]) for result in good),
        "compile_by_setting": {
            key: min(result["results"][key]["first"] - result["results"][key]["best"]
                     for result in good if key in result["results"])
            for key in good[0]["results"]
        },
        "setup_s": min((result["build_s"] for result in good if "build_s" in result),
                       default=None),
        "spread": max(spreads),
        "rounds": len(good),
    }


def _compile_seconds(results):
    """First-call overhead of one process: the largest `first - best` over its settings."""
    return max(timing["first"] - timing["best"] for timing in results.values())


def _best_probe(probes):
    good = [probe for probe in probes if "error" not in probe]
    if not good:
        return probes[0]
    best = dict(max(good, key=lambda probe: probe["gb_per_s"]))
    best["probes_gb_per_s"] = [round(probe["gb_per_s"], 1) for probe in good]
    head_rates = [probe["head_gb_per_s"] for probe in good if probe.get("head_gb_per_s")]
    if head_rates:
        best["head_gb_per_s"] = max(head_rates)
        # The same bytes per token as the ceiling, read at the head-shaped rate.
        best["head_tokens_per_s"] = best["head_gb_per_s"] * 1e9 / (best["parameters"] * 4)
    return best


def _print_table(label, settings, ceiling, rows):
    columns = [f"b{batch} {'greedy' if beams == 1 else f'beam{beams}'}" for batch, beams in settings]
    keys = [f"{batch}x{beams}" for batch, beams in settings]
    print(f"\n{label}: tokens/s (batch x {NEW_TOKENS} new tokens / best call)")
    print(f"  {'engine':<20}" + "".join(f"{c:>14}" for c in columns)
          + f"{'compile s':>11}{'setup s':>9}{'peak RSS MB':>13}{'spread':>9}")
    speeds = {}
    for engine, row in rows.items():
        if "error" in row:
            continue
        speeds[engine] = {}
        cells = []
        for batch_beams, key in zip(settings, keys):
            timing = row["results"].get(key)
            tokens = batch_beams[0] * NEW_TOKENS / timing["best"] if timing else float("nan")
            speeds[engine][key] = tokens
            cells.append(f"{tokens:>14.1f}")
        compile_s = row.get("compile_s", _compile_seconds(row["results"]))
        setup_s = row.get("setup_s", row.get("build_s"))
        setup = f"{setup_s:>9.1f}" if setup_s is not None else f"{'-':>9}"
        spread = f"{100 * row['spread']:>8.0f}%" if row.get("rounds", 1) > 1 else f"{'-':>9}"
        print(f"  {engine:<20}" + "".join(cells) + f"{compile_s:>11.1f}{setup}"
              f"{row['peak_rss_mb']:>13.0f}{spread}")
    print("  first call minus best call, per setting (s; the bucket's tracing and compilation):")
    for engine, row in rows.items():
        if "error" in row:
            continue
        by_setting = row.get("compile_by_setting") or {
            key: timing["first"] - timing["best"] for key, timing in row["results"].items()}
        print(f"    {engine:<18}" + "".join(
            f"{by_setting[key]:>14.1f}" if key in by_setting else f"{'-':>14}" for key in keys))
    if "error" not in ceiling:
        print(f"  bandwidth ceiling: {ceiling['gb_per_s']:.1f} GB/s over "
              f"{ceiling['parameters'] * 4 / 1e6:.0f} MB (decoder + LM head) -> "
              f"{ceiling['ceiling_tokens_per_s']:.1f} tokens/s for batch-1 greedy (probes: "
              + ", ".join(f"{v} GB/s" for v in ceiling.get("probes_gb_per_s", [])) + ")")
        if "head_tokens_per_s" in ceiling:
            print(f"  head-shaped rate: {ceiling['head_gb_per_s']:.1f} GB/s for a single row by a "
                  f"matrix of the LM head's shape -> {ceiling['head_tokens_per_s']:.1f} tokens/s "
                  "over the same bytes")
    ours = speeds.get("tfmodels")
    if not ours:
        return
    peers = [e for e in speeds if not e.startswith("tfmodels")]
    fp32_peers = [e for e in peers if e in ("torch", "hf-tf-xla", "ct2-fp32")]
    if peers:
        print("  ratios (tfmodels / peer):")
    for engine in peers:
        print(f"    vs {engine:<14}" + "".join(f"{ours[k] / speeds[engine][k]:>14.2f}" for k in keys))
    for engine in [e for e in speeds if e.startswith("tfmodels")]:
        if fp32_peers:
            print(f"  {engine} / best fp32 peer".ljust(36) + "".join(
                f"{speeds[engine][k] / max(speeds[e][k] for e in fp32_peers):>14.2f}" for k in keys))
        if "ct2-int8" in speeds:
            print(f"  {engine} / ct2-int8".ljust(36) + "".join(
                f"{speeds[engine][k] / speeds['ct2-int8'][k]:>14.2f}" for k in keys))
    if "error" not in ceiling and "1x1" in ours:
        print(f"  batch-1 greedy at {100 * ours['1x1'] / ceiling['ceiling_tokens_per_s']:.0f}% "
              "of the bandwidth ceiling")
        if "head_tokens_per_s" in ceiling:
            print(f"  batch-1 greedy at {100 * ours['1x1'] / ceiling['head_tokens_per_s']:.0f}% "
                  "of the head-shaped rate")
        screened = speeds.get("tfmodels-screened", {}).get("1x1")
        if screened:
            # The float tokens from fewer bytes (decoder + int8 head), so it can pass 100 %.
            print(f"  tfmodels-screened batch-1 greedy at "
                  f"{100 * screened / ceiling['ceiling_tokens_per_s']:.0f}% of the fp32 bandwidth "
                  "ceiling (the same tokens as fp32, from the decoder's fp32 and the head's int8 "
                  "bytes)")
        int8 = speeds.get("tfmodels-int8", {}).get("1x1")
        if int8:
            # Same bandwidth, a quarter of the weight bytes (scales are negligible).
            int8_ceiling = 4 * ceiling["ceiling_tokens_per_s"]
            print(f"  tfmodels-int8 batch-1 greedy at {100 * int8 / int8_ceiling:.0f}% of the "
                  f"int8 ceiling ({int8_ceiling:.1f} tokens/s: the same bandwidth over a quarter "
                  "of the bytes)")


if __name__ == "__main__":
    sys.exit(main())
