"""Torch-free parity, both families: our mT5 and M2M100 against outputs the reference
produced for the committed golden checkpoints (tests/fixtures/models/{mt5,m2m100}, written by
transformers' save_pretrained; regenerate with tests/fixtures/models/make_golden_fixtures.py).

The fixtures are reference checkpoints of the tiny features asked for and fit the size
budget; conditional generation matches the stored logits, encoder output and loss on right-
and left-padded batches; the bare model loads a headless checkpoint, and mT5's encoder-only
model the encoder half.
"""

import json
import os

import numpy as np
import pytest

from helpers import (
    FAMILIES,
    GOLDEN_DIR,
    GOLDEN_FAMILIES,
    LOGIT_RTOL,
    assert_loss_close,
    assert_rel_close,
    folder_bytes,
)

INPUT_KEYS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask",
              "labels")

# What each family's tiny golden config must exercise besides different encoder and decoder
# depths (checked on its config.json).
CONFIG_FEATURES = {
    "mt5": {
        "attention width d_kv x num_heads != d_model":
            lambda config: config["d_kv"] * config["num_heads"] != config["d_model"],
    },
    "m2m100": {
        "encoder and decoder head counts differ":
            lambda config: config["encoder_attention_heads"] != config["decoder_attention_heads"],
        "scaled embeddings": lambda config: config["scale_embedding"] is True,
    },
}

# The prefix of the bare model's tensor names in a ForConditionalGeneration checkpoint: a
# bare-model checkpoint names them without it (and has no LM head).
BARE_PREFIX = {"mt5": "", "m2m100": "model."}


@pytest.fixture(scope="module", params=GOLDEN_FAMILIES)
def family(request):
    return FAMILIES[request.param]


@pytest.fixture(scope="module")
def golden(family):
    return dict(np.load(os.path.join(family.golden_dir, "reference.npz")))


@pytest.fixture(scope="module")
def model(family):
    return family.ours().from_pretrained(family.golden_dir)


def test_golden_fixture_is_a_reference_checkpoint(family, golden):
    with open(os.path.join(family.golden_dir, "config.json")) as handle:
        config = json.load(handle)
    # Written by transformers (not by us), with the tiny-config features the issues ask for.
    assert "transformers_version" in config and config["architectures"] == [
        family.class_name()
    ]
    encoder_layers, decoder_layers = family.layers(config)
    assert encoder_layers != decoder_layers
    for feature, holds in CONFIG_FEATURES[family.name].items():
        assert holds(config), feature
    assert str(golden["transformers_version"]).startswith("4.57.")
    assert os.path.isfile(os.path.join(family.golden_dir, "model.safetensors"))


def test_golden_fixtures_fit_the_size_budget():
    total = sum(folder_bytes(FAMILIES[name].golden_dir) for name in GOLDEN_FAMILIES)
    assert total < 1_500_000, f"golden fixtures under {GOLDEN_DIR} are {total} bytes"


@pytest.mark.parametrize("side", ["right", "left"])
def test_logits_encoder_output_and_loss_match_reference(family, model, golden, side,
                                                        report_figure):
    batch = {key: golden[f"{side}_{key}"] for key in INPUT_KEYS}
    # Both padding sides really are padded batches of mixed lengths.
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
    report_figure(f"{family.name} golden {side}-padded", logits_rel=logits_rel,
                  encoder_rel=encoder_rel, loss_diff=loss_diff)


def test_bare_model_loads_headless_checkpoint_and_matches_golden_encoder_output(
        family, golden, tmp_path):
    from converters import read_checkpoint, write_checkpoint

    tensors, _ = read_checkpoint(family.golden_dir)
    prefix = BARE_PREFIX[family.name]
    bare = {name[len(prefix):]: value for name, value in tensors.items()
            if name.startswith(prefix) and name != "lm_head.weight"}
    # Every tensor but the LM head belongs to the bare model.
    assert len(bare) == len(tensors) - sum(name == "lm_head.weight" for name in tensors)
    config = family.ours("Config").from_pretrained(family.golden_dir)
    config.save_pretrained(tmp_path)
    write_checkpoint(tmp_path, bare)
    bare_model = family.ours("Model").from_pretrained(str(tmp_path))
    batch = {key: golden[f"right_{key}"] for key in INPUT_KEYS if key != "labels"}
    out = bare_model(**batch)
    assert_rel_close(out.encoder_last_hidden_state, golden["right_encoder_last_hidden_state"],
                     what="encoder output")
    assert out.last_hidden_state.shape == (*batch["decoder_input_ids"].shape, config.d_model)


def test_mt5_encoder_model_loads_encoder_half_and_matches_golden_encoder_output(tmp_path):
    from converters import read_checkpoint, write_checkpoint

    family = FAMILIES["mt5"]
    golden = dict(np.load(os.path.join(family.golden_dir, "reference.npz")))
    # Only the encoder's tensors (+ shared) of the golden checkpoint: what an encoder-only
    # checkpoint holds.
    tensors, _ = read_checkpoint(family.golden_dir)
    encoder_only = {k: v for k, v in tensors.items() if k.startswith(("encoder.", "shared."))}
    family.ours("Config").from_pretrained(family.golden_dir).save_pretrained(tmp_path)
    write_checkpoint(tmp_path, encoder_only)
    encoder = family.ours("EncoderModel").from_pretrained(str(tmp_path))
    out = encoder(input_ids=golden["left_input_ids"], attention_mask=golden["left_attention_mask"])
    assert_rel_close(out.last_hidden_state, golden["left_encoder_last_hidden_state"],
                     what="encoder output")
