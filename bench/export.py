"""Export benchmark: the real mt5-small configuration (random weights) through `tfmodels export`.

Reports export time, size on disk, load time and first-request latency with and without
the warm-up file, each load in a fresh process that imports only tensorflow and
tensorflow_text and loads through the TF1 session path TF Serving uses.

The checkpoint is `google/mt5-small`'s config.json (vocab 250112, d_model 512, 8+8 layers)
with random weights and the 2100-id test tokenizer (tests/data/mt5_tokenizer): the real
250k-piece spiece.model is not available offline. So that every generated id decodes, the
LM head's columns for ids >= 2100 are zeroed (their logits are 0, below the best of the
2100 random ones); sizes and timings are those of the real architecture.

Usage:
    PYTHONPATH=. python bench/export.py [--workdir DIR] [--num-beams 4] [--max-new-tokens 32]
        [--xla] [--reuse-export]
"""

import os
import sys

# Run as `python bench/export.py`, this folder is sys.path[0]; a sibling benchmark named like
# a standard module (a script named like a stdlib module) would shadow it, so look modules up without it.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != BENCH_DIR]

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MT5_TOKENIZER_DIR = os.path.join(REPO_DIR, "tests", "data", "mt5_tokenizer")
REQUEST_TEXTS = [
    "summarize: The tower is 324 metres tall, about the same height as an 81-storey building.",
    "translate English to German: The house is wonderful.",
    "question: What is the capital of France? context: Paris is the capital of France.",
    "Hello world.",
]

# The worker runs in a fresh process: tensorflow + tensorflow_text only, TF1 session path.
WORKER = r"""
import json, sys, time
started = time.perf_counter()
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401
imported = time.perf_counter() - started
saved_model_dir, signature_name, texts_json, warmup = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
texts = np.array(json.loads(texts_json), dtype=object)
warmup_records = []
if warmup:
    # The PredictionLog records, parsed with the serving protos as the server does.
    from tensorflow_serving.apis import prediction_log_pb2
    path = saved_model_dir + "/assets.extra/tf_serving_warmup_requests"
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        warmup_records.append((request.model_spec.signature_name,
                               {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}))
graph = tf.Graph()
with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    started = time.perf_counter()
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], saved_model_dir)
    load_seconds = time.perf_counter() - started

    def run(name, inputs):
        signature = meta_graph.signature_def[name]
        feed = {signature.inputs[key].name: value for key, value in inputs.items()}
        fetches = {key: info.name for key, info in signature.outputs.items()}
        return session.run(fetches, feed_dict=feed)

    started = time.perf_counter()
    for name, inputs in warmup_records:  # what the server does before it serves
        run(name, inputs)
    warmup_seconds = time.perf_counter() - started
    latencies = []
    for _ in range(3):
        started = time.perf_counter()
        outputs = run(signature_name, {"text": texts})
        latencies.append(time.perf_counter() - started)
print(json.dumps({
    "import_seconds": imported, "load_seconds": load_seconds, "warmup_seconds": warmup_seconds,
    "first_request_seconds": latencies[0], "next_request_seconds": min(latencies[1:]),
    "outputs": [t.decode("utf-8", "backslashreplace") for t in outputs["text"]],
}))
"""


def make_checkpoint(directory):
    """mt5-small config, random weights, LM head restricted to the test tokenizer's ids."""
    sys.path.insert(0, os.path.join(REPO_DIR, "tests"))
    import numpy as np

    from helpers import MT5_SMALL_CONFIG_JSON
    from tfmodels import MT5Config, MT5ForConditionalGeneration
    from tfmodels.tokenizers import T5Tokenizer

    tokenizer = T5Tokenizer.from_pretrained(MT5_TOKENIZER_DIR)
    config = MT5Config.from_dict(dict(MT5_SMALL_CONFIG_JSON, dropout_rate=0.0))
    model = MT5ForConditionalGeneration(config)
    head = model.lm_head
    weights_vd = np.array(head.kernel_out_in())  # [vocab, d_model], whatever the layout
    weights_vd[tokenizer.vocabulary_size():] = 0.0
    head.assign_kernel_out_in(weights_vd)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    parameters = sum(int(np.prod(v.shape)) for v in model.weights)
    return parameters


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def fresh_process_run(saved_model_dir, signature_name, warmup):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", WORKER, saved_model_dir, signature_name, json.dumps(REQUEST_TEXTS),
         "1" if warmup else "0"],
        capture_output=True, text=True, env=environment, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-4000:])
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="keep the checkpoint and export here (default: a temp dir)")
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--xla", action="store_true", help="also export and time serving_default_xla")
    parser.add_argument("--reuse-export", action="store_true",
                        help="time the export already in --workdir instead of exporting again")
    args = parser.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-export-")
    checkpoint = os.path.join(workdir, "mt5-small-random")
    out_dir = os.path.join(workdir, "exported", "mt5")
    report_path = os.path.join(workdir, "bench_export.json")
    if not args.reuse_export:
        shutil.rmtree(out_dir, ignore_errors=True)
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        started = time.perf_counter()
        parameters = make_checkpoint(checkpoint)
        print(f"checkpoint: mt5-small config, {parameters:,} parameters, random weights "
              f"({time.perf_counter() - started:.1f}s, {folder_bytes(checkpoint) / 1e6:.0f} MB)")

    from tfmodels import cli

    command = ["export", checkpoint, out_dir, "--num-beams", str(args.num_beams),
               "--max-new-tokens", str(args.max_new_tokens), "--model-name", "mt5"]
    if args.xla:
        # Warm the XLA variant up at the benchmark request's own shape bucket.
        from tfmodels.tokenizers import T5Tokenizer

        lengths = T5Tokenizer.from_pretrained(checkpoint)(REQUEST_TEXTS)["attention_mask"].numpy().sum(axis=1)
        command += ["--xla", "--xla-warmup", f"{len(REQUEST_TEXTS)}x{int(lengths.max())}"]
    if args.reuse_export:
        with open(report_path, encoding="utf-8") as handle:
            export_seconds = json.load(handle)["export_seconds"]
    else:
        started = time.perf_counter()
        exit_code = cli.main(command)
        export_seconds = time.perf_counter() - started
        if exit_code != 0:
            return exit_code
        with open(report_path, "w", encoding="utf-8") as handle:
            json.dump({"export_seconds": export_seconds}, handle)
    saved_model_dir = os.path.join(out_dir, "1")
    sizes = {
        "saved_model.pb": os.path.getsize(os.path.join(saved_model_dir, "saved_model.pb")),
        "variables": folder_bytes(os.path.join(saved_model_dir, "variables")),
        "total": folder_bytes(saved_model_dir),
    }

    report = {"export_seconds": export_seconds, "bytes": sizes, "runs": {}}
    signatures = ["serving_default"] + (["serving_default_xla"] if args.xla else [])
    for signature in signatures:
        for warmup in (False, True):
            label = f"{signature} {'with' if warmup else 'without'} warm-up"
            report["runs"][label] = fresh_process_run(saved_model_dir, signature, warmup)

    print(f"\nexport (tfmodels export, incl. checkpoint load and op check): {export_seconds:.1f}s")
    print(f"size on disk: {sizes['total'] / 1e6:.1f} MB (saved_model.pb {sizes['saved_model.pb'] / 1e6:.1f} MB, "
          f"variables {sizes['variables'] / 1e6:.1f} MB)")
    print(f"request: {len(REQUEST_TEXTS)} texts, {args.num_beams} beams, up to {args.max_new_tokens} new tokens")
    for label, run in report["runs"].items():
        print(f"{label}: load {run['load_seconds']:.1f}s, warm-up {run['warmup_seconds']:.1f}s, "
              f"first request {run['first_request_seconds']:.2f}s, next {run['next_request_seconds']:.2f}s "
              f"(import {run['import_seconds']:.1f}s, process {run['process_seconds']:.1f}s)")
    with open(report_path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print(f"(details in {report_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
