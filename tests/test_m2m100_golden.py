"""Torch-free parity: our M2M100 against outputs the reference produced for the committed
golden checkpoint (tests/fixtures/models/m2m100, written by transformers' save_pretrained;
regenerate with tests/fixtures/models/make_golden_fixtures.py)."""

import json
import os

import numpy as np
import pytest

from helpers import GOLDEN_M2M100_DIR, LOGIT_RTOL, assert_loss_close, assert_rel_close
from tfmodels import M2M100Config, M2M100ForConditionalGeneration, M2M100Model

INPUT_KEYS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask",
              "labels")


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(os.path.join(GOLDEN_M2M100_DIR, "reference.npz")))


@pytest.fixture(scope="module")
def model():
    return M2M100ForConditionalGeneration.from_pretrained(GOLDEN_M2M100_DIR)


def test_golden_fixture_is_a_reference_checkpoint(golden):
    with open(os.path.join(GOLDEN_M2M100_DIR, "config.json")) as handle:
        config = json.load(handle)
    assert "transformers_version" in config and config["architectures"] == [
        "M2M100ForConditionalGeneration"
    ]
    assert config["encoder_layers"] != config["decoder_layers"]
    assert config["encoder_attention_heads"] != config["decoder_attention_heads"]
    assert config["scale_embedding"] is True
    assert str(golden["transformers_version"]).startswith("4.57.")


@pytest.mark.parametrize("side", ["right", "left"])
def test_logits_encoder_output_and_loss_match_reference(model, golden, side, report_figure):
    batch = {key: golden[f"{side}_{key}"] for key in INPUT_KEYS}
    lengths = batch["attention_mask"].sum(axis=1)
    assert len(set(lengths.tolist())) > 1
    pad_column = 0 if side == "left" else -1
    assert batch["attention_mask"][:, pad_column].min() == 0

    out = model(**batch)
    encoder_rel = assert_rel_close(
        out.encoder_last_hidden_state, golden[f"{side}_encoder_last_hidden_state"],
        what="encoder output")
    logits_rel = assert_rel_close(out.logits, golden[f"{side}_logits"], LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, golden[f"{side}_loss"])
    report_figure(f"m2m100 golden {side}-padded", logits_rel=logits_rel,
                  encoder_rel=encoder_rel, loss_diff=loss_diff)


def test_bare_model_uses_unprefixed_names_and_matches_golden_encoder_output(golden, tmp_path):
    # M2M100Model checkpoints name tensors without the "model." prefix and have no head.
    from converters import read_checkpoint, write_checkpoint

    tensors, _ = read_checkpoint(GOLDEN_M2M100_DIR)
    bare = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    assert len(bare) == len(tensors) - sum(k == "lm_head.weight" for k in tensors)
    M2M100Config.from_pretrained(GOLDEN_M2M100_DIR).save_pretrained(tmp_path)
    write_checkpoint(tmp_path, bare)
    bare_model = M2M100Model.from_pretrained(str(tmp_path))
    batch = {key: golden[f"right_{key}"] for key in INPUT_KEYS if key != "labels"}
    out = bare_model(**batch)
    assert_rel_close(out.encoder_last_hidden_state, golden["right_encoder_last_hidden_state"],
                     what="encoder output")
    assert out.last_hidden_state.shape == (*batch["decoder_input_ids"].shape, 32)
