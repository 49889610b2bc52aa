"""Checkpoints of both families (mT5 and M2M100), every head: the formats transformers
writes (safetensors and .bin, sharded or not) load through `from_pretrained` and match the
reference; `save_pretrained` round trips bit-exactly (and back into transformers);
Keras-native saving (`.keras`, `save_weights`) round trips exactly. Last, mT5's
tf_model.h5 (transformers never had a TF M2M100)."""

import json
import os

import keras
import numpy as np
import pytest

from converters import read_checkpoint
from helpers import (
    FAMILIES,
    H5_REFERENCE_DIR,
    LOGIT_RTOL,
    assert_loss_close,
    assert_rel_close,
    assert_tensors_equal,
    inputs_for_head,
    reference_state_dict,
    run_reference,
    shared_ours_from_reference,
    shared_reference_model,
    to_numpy,
    without,
)

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
# The bare heads (Model, EncoderModel) are read from one plain and one sharded format.
BARE_HEAD_FORMATS = ("safetensors", "bin-sharded")

# A save_pretrained shard size (bytes) that splits each family's golden checkpoint in several.
SHARD_BYTES = {"mt5": 60_000, "m2m100": 50_000}

# Config overrides of a tied model (lm_head is the shared embedding): M2M100 is tied by
# default; a tied mT5 is T5 v1.0 style, with a relu feed-forward (`wi`, not `wi_0`/`wi_1`).
TIED_CONFIG = {
    "mt5": dict(tie_word_embeddings=True, feed_forward_proj="relu"),
    "m2m100": dict(tie_word_embeddings=True),
}

LM = "ForConditionalGeneration"


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


def _family_heads():
    """`(family, head)` of every head of both families, with ids like `mt5-Model`."""
    return [pytest.param(family, head, id=f"{name}-{head}")
            for name, family in sorted(FAMILIES.items())
            for head in (LM,) + family.bare_heads]


def _assert_files(directory, expected_prefixes):
    names = os.listdir(directory)
    for prefix in expected_prefixes:
        assert any(name.startswith(prefix) for name in names), (prefix, names)


def _outputs_equal(first, second):
    for key in ("logits", "last_hidden_state", "encoder_last_hidden_state", "loss"):
        if first.get(key) is not None:
            np.testing.assert_array_equal(to_numpy(first[key]), to_numpy(second[key]), key)


def _main_key(head):
    return "logits" if head == LM else "last_hidden_state"


def _new_tiny_model(family, head):
    """A new, randomly initialised tiny model of `head`."""
    return family.ours(head)(family.our_tiny_config())


# ------------------------------------------------------------------ reading each format
def _reference_format_cases():
    cases = []
    for name, family in sorted(FAMILIES.items()):
        heads_formats = [(LM, format_id) for format_id in sorted(REFERENCE_FORMATS)]
        heads_formats += [(head, format_id) for head in family.bare_heads
                          for format_id in BARE_HEAD_FORMATS]
        cases += [pytest.param(family, head, format_id, id=f"{name}-{head}-{format_id}")
                  for head, format_id in heads_formats]
    return cases


@pytest.mark.torch
@pytest.mark.parametrize("family, head, format_id", _reference_format_cases())
def test_from_pretrained_reads_reference_directory(transformers, tmp_path, family, head,
                                                   format_id, report_figure):
    save_kwargs, expected_files, format_name = REFERENCE_FORMATS[format_id]
    reference = shared_reference_model(transformers, family.class_name(head),
                                       family.tiny_config)
    reference.save_pretrained(tmp_path, **save_kwargs)
    _assert_files(tmp_path, expected_files)
    is_bin = format_id.startswith("bin")
    assert read_checkpoint(tmp_path, allow_bin=is_bin)[1] == format_name

    model = family.ours(head).from_pretrained(str(tmp_path), allow_bin=is_bin)
    # Loading copies values exactly: our export equals the reference's state dict.
    reference_tensors = reference_state_dict(reference)
    for name, array in model.hf_state_dict().items():
        np.testing.assert_array_equal(array, reference_tensors[name], name)

    batch = inputs_for_head(head, family.batch("left"))
    expected = run_reference(reference, batch)
    out = model(**batch)
    label = f"{family.class_name(head)} tiny from {format_id}"
    if head != LM:
        hidden_rel = assert_rel_close(out.last_hidden_state, expected.last_hidden_state,
                                      LOGIT_RTOL, "last_hidden_state")
        report_figure(label, last_hidden_rel=hidden_rel)
        return
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(label, logits_rel=logits_rel, loss_diff=loss_diff)


@pytest.mark.torch
def test_tied_checkpoint_in_bin_format_loads(transformers, tmp_path, family, report_figure):
    """A tied .bin holds lm_head.weight as well as the shared embedding (torch.save keeps
    every name of a shared tensor)."""
    config = dict(family.tiny_config, **TIED_CONFIG[family.name])
    reference = shared_reference_model(transformers, family.class_name(), config)
    reference.save_pretrained(tmp_path, safe_serialization=False)
    model = family.ours().from_pretrained(str(tmp_path), allow_bin=True)
    batch = family.batch("right")
    logits_rel = assert_rel_close(model(**batch).logits, run_reference(reference, batch).logits,
                                  LOGIT_RTOL, "logits")
    report_figure(f"{family.name} tiny tied from bin", logits_rel=logits_rel)


# ------------------------------------------------------------------------ writing back
def test_save_pretrained_is_bit_exact(tmp_path, family):
    model = family.ours().from_pretrained(family.golden_dir)
    model.save_pretrained(str(tmp_path))
    assert os.path.isfile(tmp_path / "model.safetensors")

    source, _ = read_checkpoint(family.golden_dir)
    written, format_name = read_checkpoint(tmp_path)
    assert format_name == "safetensors"
    with open(os.path.join(family.golden_dir, "config.json")) as handle:
        source_config = json.load(handle)
    # transformers stores a tied embedding once (no lm_head.weight); so do we
    # (assert_tensors_equal compares the names).
    tied = source_config.get("tie_word_embeddings", True)
    assert ("lm_head.weight" in source) == (not tied)
    assert_tensors_equal(written, source, "save_pretrained vs source file")

    # config.json: every key of the source survives with its value (unknown keys too),
    # except `dtype` (see the next test).
    with open(tmp_path / "config.json") as handle:
        written_config = json.load(handle)
    assert written_config["dtype"] == "float32" == next(iter(written.values())).dtype.name
    for key, value in source_config.items():
        if key != "dtype":
            assert written_config.get(key) == value, key

    reloaded = family.ours().from_pretrained(str(tmp_path))
    batch = family.batch("right")
    _outputs_equal(reloaded(**batch), model(**batch))


def test_config_dtype_names_the_tensors_written(tmp_path, family):
    """transformers' `dtype="auto"` loads in config.json's `dtype`, so it must name the
    tensors written, not the ones the checkpoint was read from."""
    from helpers import rewrite_checkpoint

    bf16_source = rewrite_checkpoint(family.golden_dir, tmp_path / "source",
                                     edit_config=lambda config: config.update(dtype="bfloat16"))
    for dtype, expected in ((None, "float32"), ("bfloat16", "bfloat16")):
        target = tmp_path / f"saved-{expected}"
        family.ours().from_pretrained(bf16_source, dtype=dtype).save_pretrained(str(target))
        with open(target / "config.json") as handle:
            assert json.load(handle)["dtype"] == expected
        assert {array.dtype.name for array in read_checkpoint(target)[0].values()} == {expected}


def test_sharded_save_pretrained_round_trip(tmp_path, family):
    model = family.ours().from_pretrained(family.golden_dir)
    model.save_pretrained(str(tmp_path), max_shard_size=SHARD_BYTES[family.name])
    with open(tmp_path / "model.safetensors.index.json") as handle:
        index = json.load(handle)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all(os.path.isfile(tmp_path / shard) for shard in shards)
    assert not os.path.exists(tmp_path / "model.safetensors")

    written, format_name = read_checkpoint(tmp_path)
    assert format_name == "safetensors_sharded"
    assert_tensors_equal(written, read_checkpoint(family.golden_dir)[0], "sharded vs source")
    reloaded = family.ours().from_pretrained(str(tmp_path))
    batch = family.batch("left")
    _outputs_equal(reloaded(**batch), model(**batch))


def _our_save_pretrained_cases():
    """Every head of both families written as one file; the LM head also sharded, and
    tied (explicitly: M2M100 is tied anyway, mT5 is not by default)."""
    cases = []
    for name, family in sorted(FAMILIES.items()):
        cases += [
            pytest.param(family, LM, {}, SHARD_BYTES[name], id=f"{name}-{LM}-sharded"),
            pytest.param(family, LM, dict(tie_word_embeddings=True), None,
                         id=f"{name}-{LM}-tied-single"),
        ]
        cases += [pytest.param(family, head, {}, None, id=f"{name}-{head}-single")
                  for head in family.bare_heads]
    return cases


@pytest.mark.torch
@pytest.mark.parametrize("family, head, config_overrides, max_shard_size",
                         _our_save_pretrained_cases())
def test_reference_loads_our_save_pretrained(transformers, tmp_path, family, head,
                                             config_overrides, max_shard_size):
    class_name = family.class_name(head)
    config = dict(family.tiny_config, **config_overrides)
    source = shared_reference_model(transformers, class_name, config)
    model = shared_ours_from_reference(family.ours(head), source)
    model.save_pretrained(str(tmp_path), max_shard_size=max_shard_size)

    loaded, info = getattr(transformers, class_name).from_pretrained(
        str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    loaded.eval()
    for name, tensor in loaded.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), source.state_dict()[name].numpy(), name)

    batch = inputs_for_head(head, without(family.batch("right"), "labels"))
    key = _main_key(head)
    theirs = run_reference(loaded, batch)
    np.testing.assert_array_equal(theirs[key].numpy(), run_reference(source, batch)[key])
    assert_rel_close(model(**batch)[key], theirs[key], LOGIT_RTOL, key)


@pytest.mark.torch
@pytest.mark.parametrize("safe_serialization, with_feed_forward_proj", [
    pytest.param(False, True, id="bin"),
    pytest.param(True, False, id="safetensors-v1.0-config"),
])
def test_plain_t5_checkpoint_loads_with_t5_defaults_and_saves_as_t5(
        transformers, tmp_path, safe_serialization, with_feed_forward_proj):
    """transformers leaves T5's default `tie_word_embeddings=True` out of config.json, and
    T5 v1.0 configs have no `feed_forward_proj`: both must mean T5's defaults (tied, relu),
    not mT5's. A .bin also holds the tied copy `lm_head.weight`, so reading it untied
    would load without an error and give wrong logits."""
    mt5 = FAMILIES["mt5"]
    values = {key: value for key, value in mt5.tiny_config.items()
              if key not in ("tie_word_embeddings", "feed_forward_proj")}
    reference = transformers.T5ForConditionalGeneration(transformers.T5Config(**values)).eval()
    source = tmp_path / "t5"
    reference.save_pretrained(source, safe_serialization=safe_serialization)
    with open(source / "config.json") as handle:
        config = json.load(handle)
    assert config["model_type"] == "t5" and "tie_word_embeddings" not in config
    if not with_feed_forward_proj:
        del config["feed_forward_proj"]
        with open(source / "config.json", "w") as handle:
            json.dump(config, handle)

    from tfmodels.auto import load_seq2seq_lm

    model = load_seq2seq_lm(str(source), allow_bin=True)
    assert model.config.tie_word_embeddings and model.config.feed_forward_proj == "relu"
    batch = without(mt5.batch("right"), "labels")
    assert_rel_close(model(**batch).logits, run_reference(reference, batch).logits,
                     LOGIT_RTOL, "logits")

    model.save_pretrained(str(tmp_path / "back"))
    with open(tmp_path / "back" / "config.json") as handle:
        assert json.load(handle)["model_type"] == "t5"
    loaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "back")).eval()
    assert type(loaded).__name__ == "T5ForConditionalGeneration"
    np.testing.assert_array_equal(run_reference(loaded, batch).logits.numpy(),
                                  run_reference(reference, batch).logits.numpy())


def test_stale_cross_attention_position_bias_of_old_t5_checkpoints_is_ignored(tmp_path):
    """transformers < 4.0 saved a cross-attention position bias that no layer reads; the
    reference skips it on load, and so do we (other unexpected tensors stay errors)."""
    from helpers import rewrite_checkpoint

    mt5 = FAMILIES["mt5"]
    stale = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"

    def add_stale(tensors):
        tensors[stale] = np.zeros((32, 4), np.float32)

    directory = rewrite_checkpoint(mt5.golden_dir, tmp_path / "ckpt", edit_tensors=add_stale)
    batch = mt5.batch("right")
    np.testing.assert_array_equal(
        to_numpy(mt5.ours().from_pretrained(directory)(**batch).logits),
        to_numpy(mt5.ours().from_pretrained(mt5.golden_dir)(**batch).logits))


# ------------------------------------------------------------------- Keras-native saving
@pytest.mark.parametrize("family, head", _family_heads())
def test_keras_file_round_trip(tmp_path, family, head):
    model = _new_tiny_model(family, head)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert type(loaded) is family.ours(head)
    assert loaded.config.to_dict() == model.config.to_dict()
    assert len(loaded.weights) == len(model.weights)
    for ours, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), ours.path)
    inputs = inputs_for_head(head, family.batch("left"))
    _outputs_equal(loaded(**inputs), model(**inputs))


def test_keras_file_keeps_the_generation_config(tmp_path, family):
    """The checkpoint's `generation_config.json` defaults (or a set one) survive a `.keras`
    file, so `generate()` keeps its defaults."""
    from tfmodels.generation import GenerationConfig

    model = _new_tiny_model(family, LM)
    model.generation_config = GenerationConfig.from_dict(
        {**model.generation_config.to_dict(), "num_beams": 3, "max_length": 6,
         "no_repeat_ngram_size": 2})
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.generation_config.to_dict() == model.generation_config.to_dict()
    assert loaded.generation_config.num_beams == 3


@pytest.mark.parametrize("family, head", _family_heads())
def test_save_weights_load_weights_round_trip(tmp_path, family, head):
    model = _new_tiny_model(family, head)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    fresh = _new_tiny_model(family, head)
    inputs = inputs_for_head(head, family.batch("right"))
    key = _main_key(head)
    # A fresh model has other random weights, so outputs differ before loading ...
    assert not np.array_equal(to_numpy(fresh(**inputs)[key]), to_numpy(model(**inputs)[key]))
    fresh.load_weights(path)
    # ... and are identical after.
    _outputs_equal(fresh(**inputs), model(**inputs))


def test_keras_file_keeps_tied_head_and_unknown_config_keys(tmp_path, family):
    config = family.our_tiny_config(**TIED_CONFIG[family.name])
    config.extra["architectures"] = [family.class_name()]
    model = family.ours()(config)
    path = str(tmp_path / "tied.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.lm_head is None and loaded.config.tie_word_embeddings
    assert loaded.config.extra["architectures"] == [family.class_name()]
    batch = family.batch("left")
    _outputs_equal(loaded(**batch), model(**batch))


# ------------------------------------------------------------------ mT5's tf_model.h5
def test_tf_h5_reference_fixture_loads_the_same_weights_as_its_pytorch_copy():
    """tests/fixtures/h5_reference: one tiny mT5 written by transformers as tf_model.h5
    (TFMT5ForConditionalGeneration) and as model.safetensors (PyTorch, bfloat16 with
    weights rounded so that both copies hold identical values)."""
    family = FAMILIES["mt5"]
    tf_dir = os.path.join(H5_REFERENCE_DIR, "tf")
    pt_dir = os.path.join(H5_REFERENCE_DIR, "pt")
    assert read_checkpoint(tf_dir)[1] == "tf_h5"
    from_h5 = family.ours().from_pretrained(tf_dir)
    from_safetensors = family.ours().from_pretrained(pt_dir)
    assert_tensors_equal(from_h5.hf_state_dict(), from_safetensors.hf_state_dict(), "h5 vs pt")
    batch = family.batch("left")
    _outputs_equal(from_h5(**batch), from_safetensors(**batch))


@pytest.mark.torch
def test_tf_h5_reference_fixture_matches_reference_logits(transformers, report_figure):
    import torch

    family = FAMILIES["mt5"]
    reference = getattr(transformers, family.class_name()).from_pretrained(
        os.path.join(H5_REFERENCE_DIR, "pt"), dtype=torch.float32).eval()
    model = family.ours().from_pretrained(os.path.join(H5_REFERENCE_DIR, "tf"))
    for side in ("right", "left"):
        batch = family.batch(side)
        expected = run_reference(reference, batch)
        out = model(**batch)
        logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
        loss_diff = assert_loss_close(out.loss, expected.loss)
        encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                       expected.encoder_last_hidden_state, LOGIT_RTOL, "encoder")
        report_figure(f"mt5 h5_reference from tf_model.h5 {side}-padded", logits_rel=logits_rel,
                      encoder_rel=encoder_rel, loss_diff=loss_diff)
