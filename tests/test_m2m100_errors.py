"""M2M100 bad input: clear errors that name the problem, for call arguments and checkpoints."""

import os
import re
import shutil

import numpy as np
import pytest

from helpers import GOLDEN_M2M100_DIR, TINY_M2M100, m2m100_batch, rewrite_checkpoint
from tfmodels import ConfigError, M2M100Config, M2M100ForConditionalGeneration, M2M100Model


@pytest.fixture(scope="module")
def model():
    return M2M100ForConditionalGeneration(M2M100Config(**TINY_M2M100))


@pytest.fixture(scope="module")
def batch():
    return m2m100_batch("left")


def test_float_ids_are_rejected(model, batch):
    with pytest.raises(TypeError, match=r"input_ids must hold integer token ids.*float"):
        model(input_ids=batch["input_ids"].astype(np.float32),
              decoder_input_ids=batch["decoder_input_ids"])
    with pytest.raises(TypeError, match="decoder_input_ids must hold integer token ids"):
        model(input_ids=batch["input_ids"],
              decoder_input_ids=batch["decoder_input_ids"].astype(np.float16))


def test_rank1_ids_are_rejected(model):
    with pytest.raises(ValueError, match=r"input_ids must have rank 2.*got rank 1"):
        model(input_ids=np.array([5, 6, 2]), decoder_input_ids=[[2, 5]])
    with pytest.raises(ValueError, match=r"decoder_input_ids must have rank 2.*got rank 1"):
        model(input_ids=[[5, 6, 2]], decoder_input_ids=np.array([2, 5]))


def test_decoder_ids_missing_without_labels(model, batch):
    with pytest.raises(ValueError, match="decoder_input_ids are required when no labels"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    bare = M2M100Model(M2M100Config(**TINY_M2M100))
    with pytest.raises(ValueError, match="decoder_input_ids are required"):
        bare(input_ids=batch["input_ids"])


def test_empty_batch(model):
    with pytest.raises(ValueError, match="input_ids is an empty batch"):
        model(input_ids=np.zeros((0, 3), np.int64), labels=np.zeros((0, 2), np.int64))


def _load_error(directory, model_class=M2M100ForConditionalGeneration, **kwargs):
    with pytest.raises(Exception) as info:
        model_class.from_pretrained(str(directory), **kwargs)
    return info


def test_missing_extra_and_mis_shaped_tensors_are_all_listed(tmp_path):
    gone = "model.encoder.layers.1.fc2.bias"
    extra = "model.encoder.layers.0.adapter.weight"
    bent = "model.decoder.layers.2.encoder_attn.v_proj.weight"

    def edit(tensors):
        tensors.pop(gone)
        tensors[extra] = np.zeros((4,), np.float32)
        tensors[bent] = np.zeros((32, 16), np.float32)

    directory = rewrite_checkpoint(GOLDEN_M2M100_DIR, tmp_path / "ckpt", edit_tensors=edit)
    info = _load_error(directory)
    assert info.type is ValueError
    message = str(info.value)
    # One error, listing every problem.
    assert "1 missing, 1 unexpected, 1 shape mismatch" in message
    assert re.search(rf"missing.*\n\s+{re.escape(gone)}", message)
    assert re.search(rf"unexpected.*\n\s+{re.escape(extra)} \(4,\)", message)
    assert f"{bent}: expected (32, 32), found (32, 16)" in message


def test_config_and_weights_disagree_on_vocab_size(tmp_path):
    directory = rewrite_checkpoint(GOLDEN_M2M100_DIR, tmp_path / "ckpt",
                                   edit_config=lambda config: config.update(vocab_size=100))
    message = str(_load_error(directory).value)
    assert "model.shared.weight: expected (100, 32), found (128, 32)" in message


def test_untied_lm_head_that_differs_from_tied_embedding_is_a_conflict(tmp_path):
    """A tied config with an lm_head.weight holding other values: loading would silently
    drop it, so it is reported."""
    def add_head(tensors):
        tensors["lm_head.weight"] = tensors["model.shared.weight"] + 1.0

    directory = rewrite_checkpoint(GOLDEN_M2M100_DIR, tmp_path / "ckpt", edit_tensors=add_head)
    message = str(_load_error(directory).value)
    assert "conflicting" in message and "lm_head.weight" in message


def test_tied_head_duplicate_with_equal_values_loads(tmp_path):
    def add_head(tensors):
        tensors["lm_head.weight"] = tensors["model.shared.weight"].copy()

    directory = rewrite_checkpoint(GOLDEN_M2M100_DIR, tmp_path / "ckpt", edit_tensors=add_head)
    model = M2M100ForConditionalGeneration.from_pretrained(directory)
    assert model.lm_head is None


def test_missing_config_json(tmp_path):
    directory = rewrite_checkpoint(GOLDEN_M2M100_DIR, tmp_path / "ckpt")
    os.remove(os.path.join(directory, "config.json"))
    info = _load_error(directory)
    assert info.type is FileNotFoundError and "config" in str(info.value)


def test_missing_weights(tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    shutil.copy(os.path.join(GOLDEN_M2M100_DIR, "config.json"), directory)
    info = _load_error(directory)
    assert isinstance(info.value, FileNotFoundError)
    assert "no model weights found" in str(info.value)


def test_wrong_model_type_in_folder(tmp_path):
    directory = rewrite_checkpoint(GOLDEN_M2M100_DIR, tmp_path / "ckpt",
                                   edit_config=lambda config: config.update(model_type="mt5"))
    info = _load_error(directory)
    assert info.type is ConfigError and "model_type" in str(info.value)


def test_pytorch_bin_alone_needs_allow_bin(tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    shutil.copy(os.path.join(GOLDEN_M2M100_DIR, "config.json"), directory)
    (directory / "pytorch_model.bin").write_bytes(b"not a pickle")
    info = _load_error(directory)
    assert isinstance(info.value, FileNotFoundError)
    assert "allow_bin=True" in str(info.value)
