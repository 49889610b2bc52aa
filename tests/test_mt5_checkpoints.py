"""mT5 checkpoints: every file format transformers writes loads through `from_pretrained`
and matches the reference; `save_pretrained` round trips bit-exactly (and back into
transformers); Keras-native saving round trips exactly."""

import json
import os

import keras
import numpy as np
import pytest

from converters import read_checkpoint
from helpers import (
    GOLDEN_MT5_DIR,
    H5_REFERENCE_DIR,
    LOGIT_RTOL,
    TINY_MT5,
    assert_loss_close,
    assert_rel_close,
    assert_tensors_equal,
    mt5_batch,
    reference_state_dict,
    run_reference,
    shared_ours_from_reference,
    shared_reference_model,
    to_numpy,
    without,
)
from tfmodels import MT5Config, MT5EncoderModel, MT5ForConditionalGeneration, MT5Model

# format id -> (save_pretrained kwargs, files that must exist, read_checkpoint's format name)
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


# ------------------------------------------------------------------ reading each format
@pytest.mark.torch
@pytest.mark.parametrize("format_id", sorted(REFERENCE_FORMATS))
def test_from_pretrained_reads_reference_directory(transformers, tmp_path, format_id,
                                                   report_figure):
    save_kwargs, expected_files, format_name = REFERENCE_FORMATS[format_id]
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", TINY_MT5)
    reference.save_pretrained(tmp_path, **save_kwargs)
    _assert_files(tmp_path, expected_files)
    is_bin = format_id.startswith("bin")
    assert read_checkpoint(tmp_path, allow_bin=is_bin)[1] == format_name

    model = MT5ForConditionalGeneration.from_pretrained(str(tmp_path), allow_bin=is_bin)
    batch = mt5_batch("left")
    expected = run_reference(reference, batch)
    out = model(**batch)
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    # Loading copies values exactly: our export equals the reference's state dict.
    reference_tensors = reference_state_dict(reference)
    for name, array in model.hf_state_dict().items():
        np.testing.assert_array_equal(array, reference_tensors[name], name)
    report_figure(f"mt5 tiny gated-gelu from {format_id}", logits_rel=logits_rel,
                  loss_diff=loss_diff)


@pytest.mark.torch
def test_tied_checkpoint_in_bin_format_loads(transformers, tmp_path, report_figure):
    """A tied (T5 v1.0 style) .bin holds lm_head.weight as well as shared.weight."""
    config = dict(TINY_MT5, tie_word_embeddings=True, feed_forward_proj="relu")
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", config)
    reference.save_pretrained(tmp_path, safe_serialization=False)
    model = MT5ForConditionalGeneration.from_pretrained(str(tmp_path), allow_bin=True)
    batch = mt5_batch("right")
    logits_rel = assert_rel_close(model(**batch).logits, run_reference(reference, batch).logits,
                                  LOGIT_RTOL, "logits")
    report_figure("mt5 tiny tied relu from bin", logits_rel=logits_rel)


def test_tf_h5_reference_fixture_loads_the_same_weights_as_its_pytorch_copy():
    """tests/fixtures/h5_reference: one tiny mT5 written by transformers as tf_model.h5
    (TFMT5ForConditionalGeneration) and as model.safetensors (PyTorch, bfloat16 with
    weights rounded so that both copies hold identical values)."""
    tf_dir = os.path.join(H5_REFERENCE_DIR, "tf")
    pt_dir = os.path.join(H5_REFERENCE_DIR, "pt")
    assert read_checkpoint(tf_dir)[1] == "tf_h5"
    from_h5 = MT5ForConditionalGeneration.from_pretrained(tf_dir)
    from_safetensors = MT5ForConditionalGeneration.from_pretrained(pt_dir)
    assert_tensors_equal(from_h5.hf_state_dict(), from_safetensors.hf_state_dict(), "h5 vs pt")
    batch = mt5_batch("left")
    _outputs_equal(from_h5(**batch), from_safetensors(**batch))


@pytest.mark.torch
def test_tf_h5_reference_fixture_matches_reference_logits(transformers, report_figure):
    import torch

    pt_dir = os.path.join(H5_REFERENCE_DIR, "pt")
    reference = transformers.MT5ForConditionalGeneration.from_pretrained(
        pt_dir, dtype=torch.float32).eval()
    model = MT5ForConditionalGeneration.from_pretrained(os.path.join(H5_REFERENCE_DIR, "tf"))
    for side in ("right", "left"):
        batch = mt5_batch(side)
        expected = run_reference(reference, batch)
        out = model(**batch)
        logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
        loss_diff = assert_loss_close(out.loss, expected.loss)
        encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                       expected.encoder_last_hidden_state, LOGIT_RTOL, "encoder")
        report_figure(f"mt5 h5_reference from tf_model.h5 {side}-padded", logits_rel=logits_rel,
                      encoder_rel=encoder_rel, loss_diff=loss_diff)


# ------------------------------------------------------------------------ writing back
def test_save_pretrained_is_bit_exact(tmp_path):
    model = MT5ForConditionalGeneration.from_pretrained(GOLDEN_MT5_DIR)
    model.save_pretrained(str(tmp_path))
    assert os.path.isfile(tmp_path / "model.safetensors")

    source, _ = read_checkpoint(GOLDEN_MT5_DIR)
    written, format_name = read_checkpoint(tmp_path)
    assert format_name == "safetensors"
    assert_tensors_equal(written, source, "save_pretrained vs source file")

    # config.json: every key of the source survives with its value (unknown keys too).
    with open(os.path.join(GOLDEN_MT5_DIR, "config.json")) as handle:
        source_config = json.load(handle)
    with open(tmp_path / "config.json") as handle:
        written_config = json.load(handle)
    for key, value in source_config.items():
        assert written_config.get(key) == value, key

    reloaded = MT5ForConditionalGeneration.from_pretrained(str(tmp_path))
    batch = mt5_batch("right")
    _outputs_equal(reloaded(**batch), model(**batch))


def test_sharded_save_pretrained_round_trip(tmp_path):
    model = MT5ForConditionalGeneration.from_pretrained(GOLDEN_MT5_DIR)
    model.save_pretrained(str(tmp_path), max_shard_size=60_000)
    with open(tmp_path / "model.safetensors.index.json") as handle:
        index = json.load(handle)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(os.path.isfile(tmp_path / shard) for shard in shards)
    assert not os.path.exists(tmp_path / "model.safetensors")

    written, format_name = read_checkpoint(tmp_path)
    assert format_name == "safetensors_sharded"
    assert_tensors_equal(written, read_checkpoint(GOLDEN_MT5_DIR)[0], "sharded vs source")
    reloaded = MT5ForConditionalGeneration.from_pretrained(str(tmp_path))
    batch = mt5_batch("left")
    _outputs_equal(reloaded(**batch), model(**batch))


@pytest.mark.torch
@pytest.mark.parametrize("tied, max_shard_size", [(False, 60_000), (True, None)],
                         ids=["untied-sharded", "tied-single"])
def test_reference_loads_our_save_pretrained(transformers, tmp_path, max_shard_size, tied):
    config = dict(TINY_MT5, tie_word_embeddings=tied)
    source = shared_reference_model(transformers, "MT5ForConditionalGeneration", config)
    model = shared_ours_from_reference(MT5ForConditionalGeneration, source)
    model.save_pretrained(str(tmp_path), max_shard_size=max_shard_size)

    loaded, info = transformers.MT5ForConditionalGeneration.from_pretrained(
        str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    loaded.eval()
    for name, tensor in loaded.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), source.state_dict()[name].numpy(), name)

    batch = mt5_batch("right")
    theirs = run_reference(loaded, batch)
    np.testing.assert_array_equal(theirs.logits.numpy(), run_reference(source, batch).logits)
    assert_rel_close(model(**batch).logits, theirs.logits, LOGIT_RTOL, "logits")


# ------------------------------------------------------------------- Keras-native saving
MODEL_CLASSES = [MT5ForConditionalGeneration, MT5Model, MT5EncoderModel]


def _tiny_config(**overrides):
    return MT5Config(**{**TINY_MT5, **overrides})


def _inputs_for(model_class, batch):
    if model_class is MT5EncoderModel:
        return {key: batch[key] for key in ("input_ids", "attention_mask")}
    if model_class is MT5Model:
        return without(batch, "labels")
    return batch


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
    inputs = _inputs_for(model_class, mt5_batch("left"))
    _outputs_equal(loaded(**inputs), model(**inputs))


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_save_weights_load_weights_round_trip(tmp_path, model_class):
    model = model_class(_tiny_config())
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    fresh = model_class(_tiny_config())
    inputs = _inputs_for(model_class, mt5_batch("right"))
    # A fresh model has other random weights, so outputs differ before loading ...
    assert not np.array_equal(to_numpy(fresh(**inputs)[_main_key(model_class)]),
                              to_numpy(model(**inputs)[_main_key(model_class)]))
    fresh.load_weights(path)
    # ... and are identical after.
    _outputs_equal(fresh(**inputs), model(**inputs))


def _main_key(model_class):
    return "logits" if model_class is MT5ForConditionalGeneration else "last_hidden_state"


def test_keras_file_keeps_tied_head_and_unknown_config_keys(tmp_path):
    config = _tiny_config(tie_word_embeddings=True, feed_forward_proj="relu")
    config.extra["architectures"] = ["MT5ForConditionalGeneration"]
    model = MT5ForConditionalGeneration(config)
    path = str(tmp_path / "tied.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.lm_head is None and loaded.config.tie_word_embeddings
    assert loaded.config.extra["architectures"] == ["MT5ForConditionalGeneration"]
    batch = mt5_batch("left")
    _outputs_equal(loaded(**batch), model(**batch))
