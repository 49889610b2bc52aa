"""M2M100 checkpoints: the formats transformers writes for it (safetensors, sharded or not,
and .bin; transformers never had a TF M2M100, so there is no tf_model.h5) load through
`from_pretrained` and match the reference; `save_pretrained` round trips bit-exactly (and
back into transformers); Keras-native saving round trips exactly."""

import json
import os

import keras
import numpy as np
import pytest

from converters import read_checkpoint
from helpers import (
    GOLDEN_M2M100_DIR,
    LOGIT_RTOL,
    TINY_M2M100,
    assert_loss_close,
    assert_rel_close,
    assert_tensors_equal,
    m2m100_batch,
    reference_state_dict,
    run_reference,
    shared_ours_from_reference,
    shared_reference_model,
    to_numpy,
    without,
)
from tfmodels import M2M100Config, M2M100ForConditionalGeneration, M2M100Model

REFERENCE_FORMATS = {
    "safetensors": (dict(safe_serialization=True), ["model.safetensors"], "safetensors"),
    "safetensors-sharded": (
        dict(safe_serialization=True, max_shard_size="40KB"),
        ["model.safetensors.index.json", "model-00001-of-"],
        "safetensors_sharded",
    ),
    "bin": (dict(safe_serialization=False), ["pytorch_model.bin"], "pytorch_bin"),
    "bin-sharded": (
        dict(safe_serialization=False, max_shard_size="40KB"),
        ["pytorch_model.bin.index.json", "pytorch_model-00001-of-"],
        "pytorch_bin_sharded",
    ),
}


def _assert_files(directory, expected_prefixes):
    names = os.listdir(directory)
    for prefix in expected_prefixes:
        assert any(name.startswith(prefix) for name in names), (prefix, names)


def _outputs_equal(first, second):
    for key in ("logits", "last_hidden_state", "encoder_last_hidden_state", "loss"):
        if first.get(key) is not None:
            np.testing.assert_array_equal(to_numpy(first[key]), to_numpy(second[key]), key)


@pytest.mark.torch
@pytest.mark.parametrize(
    "class_name, format_id",
    [("M2M100ForConditionalGeneration", format_id) for format_id in sorted(REFERENCE_FORMATS)]
    + [("M2M100Model", "safetensors"), ("M2M100Model", "bin-sharded")],
)
def test_from_pretrained_reads_reference_directory(transformers, tmp_path, format_id,
                                                   class_name, report_figure):
    save_kwargs, expected_files, format_name = REFERENCE_FORMATS[format_id]
    reference = shared_reference_model(transformers, class_name, TINY_M2M100)
    reference.save_pretrained(tmp_path, **save_kwargs)
    _assert_files(tmp_path, expected_files)
    is_bin = format_id.startswith("bin")
    assert read_checkpoint(tmp_path, allow_bin=is_bin)[1] == format_name

    our_class = {"M2M100ForConditionalGeneration": M2M100ForConditionalGeneration,
                 "M2M100Model": M2M100Model}[class_name]
    model = our_class.from_pretrained(str(tmp_path), allow_bin=is_bin)
    batch = m2m100_batch("left")
    if our_class is M2M100Model:
        batch = without(batch, "labels")
    expected = run_reference(reference, batch)
    out = model(**batch)
    reference_tensors = reference_state_dict(reference)
    for name, array in model.hf_state_dict().items():
        np.testing.assert_array_equal(array, reference_tensors[name], name)
    if our_class is M2M100Model:
        hidden_rel = assert_rel_close(out.last_hidden_state, expected.last_hidden_state,
                                      LOGIT_RTOL, "last_hidden_state")
        report_figure(f"M2M100Model tiny from {format_id}", last_hidden_rel=hidden_rel)
        return
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(f"m2m100 tiny from {format_id}", logits_rel=logits_rel, loss_diff=loss_diff)


def test_save_pretrained_is_bit_exact(tmp_path):
    model = M2M100ForConditionalGeneration.from_pretrained(GOLDEN_M2M100_DIR)
    model.save_pretrained(str(tmp_path))

    source, _ = read_checkpoint(GOLDEN_M2M100_DIR)
    written, format_name = read_checkpoint(tmp_path)
    assert format_name == "safetensors"
    # transformers stores the tied embedding once (model.shared.weight); so do we.
    assert "lm_head.weight" not in source
    assert_tensors_equal(written, source, "save_pretrained vs source file")

    with open(os.path.join(GOLDEN_M2M100_DIR, "config.json")) as handle:
        source_config = json.load(handle)
    with open(tmp_path / "config.json") as handle:
        written_config = json.load(handle)
    for key, value in source_config.items():
        assert written_config.get(key) == value, key

    reloaded = M2M100ForConditionalGeneration.from_pretrained(str(tmp_path))
    batch = m2m100_batch("right")
    _outputs_equal(reloaded(**batch), model(**batch))


def test_sharded_save_pretrained_round_trip(tmp_path):
    model = M2M100ForConditionalGeneration.from_pretrained(GOLDEN_M2M100_DIR)
    model.save_pretrained(str(tmp_path), max_shard_size=50_000)
    with open(tmp_path / "model.safetensors.index.json") as handle:
        index = json.load(handle)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(os.path.isfile(tmp_path / shard) for shard in shards)

    written, format_name = read_checkpoint(tmp_path)
    assert format_name == "safetensors_sharded"
    assert_tensors_equal(written, read_checkpoint(GOLDEN_M2M100_DIR)[0], "sharded vs source")
    reloaded = M2M100ForConditionalGeneration.from_pretrained(str(tmp_path))
    batch = m2m100_batch("left")
    _outputs_equal(reloaded(**batch), model(**batch))


@pytest.mark.torch
@pytest.mark.parametrize(
    "class_name, max_shard_size",
    [("M2M100ForConditionalGeneration", 50_000), ("M2M100Model", None)],
    ids=["M2M100ForConditionalGeneration-sharded", "M2M100Model-single"],
)
def test_reference_loads_our_save_pretrained(transformers, tmp_path, max_shard_size,
                                             class_name):
    our_class = {"M2M100ForConditionalGeneration": M2M100ForConditionalGeneration,
                 "M2M100Model": M2M100Model}[class_name]
    source = shared_reference_model(transformers, class_name, TINY_M2M100)
    model = shared_ours_from_reference(our_class, source)
    model.save_pretrained(str(tmp_path), max_shard_size=max_shard_size)

    loaded, info = getattr(transformers, class_name).from_pretrained(
        str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    loaded.eval()
    for name, tensor in loaded.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), source.state_dict()[name].numpy(), name)

    batch = without(m2m100_batch("right"), "labels")
    theirs = run_reference(loaded, batch)
    key = "logits" if our_class is M2M100ForConditionalGeneration else "last_hidden_state"
    np.testing.assert_array_equal(theirs[key].numpy(), run_reference(source, batch)[key])
    assert_rel_close(model(**batch)[key], theirs[key], LOGIT_RTOL, key)


MODEL_CLASSES = [M2M100ForConditionalGeneration, M2M100Model]


def _tiny_config(**overrides):
    return M2M100Config(**{**TINY_M2M100, **overrides})


def _inputs_for(model_class, batch):
    return batch if model_class is M2M100ForConditionalGeneration else without(batch, "labels")


def _main_key(model_class):
    return "logits" if model_class is M2M100ForConditionalGeneration else "last_hidden_state"


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_keras_file_round_trip(tmp_path, model_class):
    model = model_class(_tiny_config())
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert type(loaded) is model_class
    assert loaded.config.to_dict() == model.config.to_dict()
    assert len(loaded.weights) == len(model.weights)
    for ours, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), ours.path)
    inputs = _inputs_for(model_class, m2m100_batch("left"))
    _outputs_equal(loaded(**inputs), model(**inputs))


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_save_weights_load_weights_round_trip(tmp_path, model_class):
    model = model_class(_tiny_config())
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    fresh = model_class(_tiny_config())
    inputs = _inputs_for(model_class, m2m100_batch("right"))
    key = _main_key(model_class)
    assert not np.array_equal(to_numpy(fresh(**inputs)[key]), to_numpy(model(**inputs)[key]))
    fresh.load_weights(path)
    _outputs_equal(fresh(**inputs), model(**inputs))
