"""mT5 bad input: clear errors that name the problem, for call arguments and checkpoints."""

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from helpers import GOLDEN_MT5_DIR, TINY_MT5, mt5_batch, rewrite_checkpoint
from tfmodels import ConfigError, MT5Config, MT5EncoderModel, MT5ForConditionalGeneration


@pytest.fixture(scope="module")
def model():
    return MT5ForConditionalGeneration(MT5Config(**TINY_MT5))


@pytest.fixture(scope="module")
def batch():
    return mt5_batch("right")


# ------------------------------------------------------------------------ call arguments
@pytest.mark.parametrize("convert", [np.asarray, tf.constant], ids=["numpy", "tensor"])
def test_float_ids_are_rejected(model, batch, convert):
    float_ids = convert(batch["input_ids"].astype(np.float32))
    with pytest.raises(TypeError, match=r"input_ids must hold integer token ids.*float32"):
        model(input_ids=float_ids, decoder_input_ids=batch["decoder_input_ids"])
    with pytest.raises(TypeError, match="decoder_input_ids must hold integer token ids"):
        model(input_ids=batch["input_ids"],
              decoder_input_ids=convert(batch["decoder_input_ids"].astype(np.float64)))
    with pytest.raises(TypeError, match="labels must hold integer token ids"):
        model(input_ids=batch["input_ids"], labels=convert(batch["labels"].astype(np.float32)))


def test_string_ids_are_rejected(model):
    with pytest.raises(TypeError, match="input_ids must hold integer token ids"):
        model(input_ids=[["hello", "world"]], decoder_input_ids=[[0]])


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)], ids=["rank1", "rank3"])
def test_ids_of_wrong_rank_are_rejected(model, shape):
    ids = np.ones(shape, np.int32)
    with pytest.raises(ValueError, match=rf"input_ids must have rank 2.*got rank {len(shape)}"):
        model(input_ids=ids, decoder_input_ids=[[0, 5]])
    with pytest.raises(ValueError, match=r"decoder_input_ids must have rank 2"):
        model(input_ids=[[5, 6, 1]], decoder_input_ids=ids)
    with pytest.raises(ValueError, match=r"attention_mask must have rank 2"):
        model(input_ids=[[5, 6, 1]], attention_mask=ids, decoder_input_ids=[[0, 5]])


def test_decoder_ids_missing_without_labels(model, batch):
    with pytest.raises(ValueError, match="decoder_input_ids are required when no labels"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_input_ids_missing(model, batch):
    with pytest.raises(ValueError, match="input_ids is required"):
        model(decoder_input_ids=batch["decoder_input_ids"])


def test_empty_batch(model):
    with pytest.raises(ValueError, match="input_ids is an empty batch"):
        model(input_ids=np.zeros((0, 4), np.int32), decoder_input_ids=np.zeros((0, 2), np.int32))


def test_encoder_model_checks_its_inputs_too():
    encoder = MT5EncoderModel(MT5Config(**TINY_MT5))
    with pytest.raises(ValueError, match="input_ids must have rank 2"):
        encoder(input_ids=[5, 6, 1])
    with pytest.raises(TypeError, match="input_ids must hold integer token ids"):
        encoder(input_ids=[[5.0, 6.0]])


# ---------------------------------------------------------------------------- checkpoints
def _load_error(directory, **kwargs):
    with pytest.raises(Exception) as info:
        MT5ForConditionalGeneration.from_pretrained(str(directory), **kwargs)
    return info


def test_missing_tensor_is_named(tmp_path):
    gone = "decoder.block.2.layer.1.EncDecAttention.k.weight"
    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt",
                                   edit_tensors=lambda tensors: tensors.pop(gone))
    info = _load_error(directory)
    assert info.type is ValueError
    message = str(info.value)
    assert "missing" in message and gone in message
    assert directory in message  # says which checkpoint


def test_unexpected_tensor_is_named(tmp_path):
    def add_extra(tensors):
        tensors["encoder.block.0.layer.0.SelfAttention.extra_gate.weight"] = np.zeros(
            (3, 3), np.float32)

    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt", edit_tensors=add_extra)
    info = _load_error(directory)
    assert info.type is ValueError
    assert re.search(r"unexpected.*\n.*extra_gate\.weight", str(info.value))


def test_mis_shaped_tensor_is_named_with_both_shapes(tmp_path):
    def shrink(tensors):
        tensors["decoder.block.0.layer.2.DenseReluDense.wo.weight"] = np.zeros((32, 40), np.float32)

    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt", edit_tensors=shrink)
    message = str(_load_error(directory).value)
    assert re.search(r"decoder\.block\.0\.layer\.2\.DenseReluDense\.wo\.weight: expected "
                     r"\(32, 48\), found \(32, 40\)", message), message


def test_config_and_weights_disagree_on_vocab_size(tmp_path):
    """config.json says vocab 100, the weights have 96 rows."""
    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt",
                                   edit_config=lambda config: config.update(vocab_size=100))
    info = _load_error(directory)
    assert info.type is ValueError
    message = str(info.value)
    assert "does not match its config.json" in message
    for name in ("shared.weight", "lm_head.weight"):
        assert re.search(rf"{re.escape(name)}: expected \(100, 32\), found \(96, 32\)", message)


def test_config_and_weights_disagree_on_layer_count(tmp_path):
    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt",
                                   edit_config=lambda config: config.update(num_layers=3))
    message = str(_load_error(directory).value)
    assert "missing" in message and "encoder.block.2.layer.0.SelfAttention.q.weight" in message


def test_missing_config_json(tmp_path):
    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt")
    os.remove(os.path.join(directory, "config.json"))
    info = _load_error(directory)
    assert info.type is FileNotFoundError and "config" in str(info.value)


def test_missing_weights(tmp_path):
    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt")
    os.remove(os.path.join(directory, "model.safetensors"))
    info = _load_error(directory)
    assert isinstance(info.value, FileNotFoundError)
    assert "no model weights found" in str(info.value)
    assert "model.safetensors" in str(info.value)  # lists what it looked for


def test_missing_directory(tmp_path):
    info = _load_error(tmp_path / "does-not-exist")
    assert isinstance(info.value, FileNotFoundError) and "does-not-exist" in str(info.value)


def test_wrong_model_type_in_folder(tmp_path):
    directory = rewrite_checkpoint(GOLDEN_MT5_DIR, tmp_path / "ckpt",
                                   edit_config=lambda config: config.update(model_type="m2m_100"))
    info = _load_error(directory)
    assert info.type is ConfigError and "model_type" in str(info.value)


def test_invalid_config_value_in_folder(tmp_path):
    directory = rewrite_checkpoint(
        GOLDEN_MT5_DIR, tmp_path / "ckpt",
        edit_config=lambda config: config.update(feed_forward_proj="gated-nope"))
    info = _load_error(directory)
    assert info.type is ConfigError and "feed_forward_proj" in str(info.value)


def test_pytorch_bin_alone_needs_allow_bin_and_is_never_unpickled(tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    shutil.copy(os.path.join(GOLDEN_MT5_DIR, "config.json"), directory)
    # Not a valid pickle: if anything tried to unpickle it, the error would be different.
    (directory / "pytorch_model.bin").write_bytes(b"this is not a pickle")
    info = _load_error(directory)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "pytorch_model.bin" in message and "allow_bin=True" in message


def test_pytorch_bin_with_allow_bin_but_without_torch_says_so(tmp_path, monkeypatch):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    shutil.copy(os.path.join(GOLDEN_MT5_DIR, "config.json"), directory)
    (directory / "pytorch_model.bin").write_bytes(b"this is not a pickle")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` fails
    info = _load_error(directory, allow_bin=True)
    assert isinstance(info.value, ImportError)
    assert "needs torch" in str(info.value) and "safetensors" in str(info.value)
