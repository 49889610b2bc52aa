"""Long export checks (`-m slow`): every XLA variant and warm-up bucket, and an export of
the real mt5-small architecture.

* M2M100 (beam search) and mT5 (greedy) exported with `--xla` and `xla_warmup="all"`:
  each `*_xla` signature answers exactly what its plain twin answers (in a fresh
  TensorFlow-only process), and every warm-up record (one per signature and per XLA
  batch x length bucket) replays through the TF1 session path, as TF Serving does at load.
* mt5-small's configuration (vocab 250112, random weights, the 2100-id test tokenizer with
  the LM head restricted to its ids as in `bench/export.py`) exports and serves the same
  strings as `model.generate` + `detokenize`.
"""

import os

import numpy as np
import pytest

from fixtures.savedmodel.checkpoints import (
    MT5_TOKENIZER_DIR,
    make_tiny_m2m100_checkpoint,
    make_tiny_mt5_checkpoint,
)
from fixtures.savedmodel.expected_values import python_generation
from fixtures.savedmodel.jobs import Job, finish

pytestmark = pytest.mark.slow

TEXTS = ["Hello world.", "The quick brown fox jumps over the lazy dog.", "",
         " ".join(["translation"] * 40), "Guten Morgen!"]
SOURCE_LANGUAGES = ["en", "en", "fr", "de", "de"]
TARGET_LANGUAGES = ["fr", "de", "en", "fr", "en"]


def _export(checkpoint, out_dir, **settings):
    from savedmodel import ExportSettings, export_savedmodel
    from savedmodel.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(checkpoint)
    result = export_savedmodel(checkpoint, out_dir, ExportSettings(**settings), model=model, tokenizer=tokenizer)
    family = "m2m100" if model.config.model_type == "m2m_100" else "mt5"
    return dict(model=model, tokenizer=tokenizer, settings=result.settings, family=family,
                dir=result.saved_model_dir)


@pytest.fixture(scope="module")
def xla_exports(tmp_path_factory):
    workspace = str(tmp_path_factory.mktemp("savedmodel_xla"))
    common = dict(max_new_tokens=6, max_source_length=32, max_target_length=16, xla=True,
                  max_batch_size=8, xla_warmup="all")
    exports = {
        "mt5": _export(make_tiny_mt5_checkpoint(os.path.join(workspace, "mt5")),
                       os.path.join(workspace, "out", "mt5"), num_beams=1, **common),
        "m2m100": _export(make_tiny_m2m100_checkpoint(os.path.join(workspace, "m2m100"), init_std=0.3),
                          os.path.join(workspace, "out", "m2m100"), num_beams=3, length_penalty=0.7,
                          **common),
    }
    return workspace, exports


def test_every_xla_signature_matches_its_plain_twin_and_every_warmup_record_replays(xla_exports):
    from savedmodel import warmup

    workspace, exports = xla_exports
    tf2 = Job({key: export["dir"] for key, export in exports.items()})
    tf1 = Job({key: export["dir"] for key, export in exports.items()})
    pairs, records = [], []
    texts = np.array(TEXTS, dtype=object)
    for key, export in exports.items():
        languages = {}
        if key == "m2m100":
            languages = {"src_lang": np.array(SOURCE_LANGUAGES, dtype=object),
                         "tgt_lang": np.array(TARGET_LANGUAGES, dtype=object)}
        requests = {
            "serving_default": dict(text=texts, **languages),
            "generate_with_options": dict(text=texts, **languages, max_new_tokens=np.int32(4),
                                          min_new_tokens=np.int32(1), length_penalty=np.float32(1.2)),
            "score": dict(text=texts, target=texts, **languages),
            "encode": dict(text=texts, **({"src_lang": languages["src_lang"]} if languages else {})),
        }
        for name, inputs in requests.items():
            pairs.append((key, name, tf2.add(key, name, **inputs), tf2.add(key, name + "_xla", **inputs)))
        path = os.path.join(export["dir"], warmup.WARMUP_DIR, warmup.WARMUP_FILE)
        for name, inputs in warmup.read_warmup_file(path):
            records.append((key, name, tf1.add(key, name, **inputs)))
    started = {mode: job.start(mode, workspace) for mode, job in (("tf2", tf2), ("tf1", tf1))}
    results = {mode: finish(*process) for mode, process in started.items()}

    for key, name, plain_index, xla_index in pairs:
        plain = results["tf2"]["results"][plain_index]
        compiled = results["tf2"]["results"][xla_index]
        assert "outputs" in plain and "outputs" in compiled, (key, name, plain, compiled)
        for output, value in plain["outputs"].items():
            if output == "text":
                assert compiled["outputs"][output] == value, (key, name)
            else:
                np.testing.assert_allclose(compiled["outputs"][output], value, rtol=1e-4, atol=1e-4,
                                           err_msg=f"{key} {name} {output}")
    xla_records = [record for record in records if record[1].endswith("_xla")]
    settings = exports["mt5"]["settings"]
    assert len(xla_records) == 2 * 4 * len(settings.batch_buckets) * len(settings.source_buckets)
    for key, name, index in records:
        result = results["tf1"]["results"][index]
        assert "outputs" in result, (key, name, result.get("message", "")[:1000])


def test_real_mt5_small_config_exports_and_serves(tmp_path):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
    from export import make_checkpoint  # bench/export.py

    checkpoint = str(tmp_path / "mt5-small")
    make_checkpoint(checkpoint)
    assert sorted(os.listdir(MT5_TOKENIZER_DIR))  # the test tokenizer travels with the weights
    export = _export(checkpoint, str(tmp_path / "out"), num_beams=2, max_new_tokens=8,
                     max_source_length=64, warmup=False)
    assert export["model"].config.vocab_size == 250112
    job = Job({"mt5": export["dir"]})
    index = job.add("mt5", "serving_default", text=np.array(TEXTS[:3], dtype=object))
    result = finish(*job.start("tf1", str(tmp_path)))["results"][index]
    assert "outputs" in result, result.get("message", "")[:1000]
    expected_texts, expected_scores = python_generation(export, TEXTS[:3])
    assert result["outputs"]["text"] == expected_texts
    np.testing.assert_allclose(result["outputs"]["scores"], expected_scores, rtol=1e-4, atol=1e-3)
