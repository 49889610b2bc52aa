"""Slow suite: the real google/mt5-small config (vocab 250112, d_model 512, d_kv 64,
d_ff 1024, 8+8 layers, 6 heads, gated-gelu, untied, 32 buckets, max_distance 128) with
random weights, against transformers' PyTorch model. Short sequences; ~1.2 GB per model
in float32, freed at the end of the module."""

import gc
import json

import numpy as np
import pytest

from converters import read_checkpoint
from helpers import (
    HIDDEN_RTOL,
    LOGIT_RTOL,
    MT5_IDS,
    MT5_SMALL_CONFIG_JSON,
    assert_few_row_generation_matches_reference,
    assert_loss_close,
    assert_rel_close,
    assert_tensors_equal,
    bf16_vs_fp32,
    make_batch,
    ours_from_reference,
    run_reference,
)
from tfmodels import MT5ForConditionalGeneration

pytest.importorskip("torch")
transformers_module = pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.torch]

VOCAB = MT5_SMALL_CONFIG_JSON["vocab_size"]


@pytest.fixture(scope="module")
def reference():
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    config = transformers_module.MT5Config.from_dict(dict(MT5_SMALL_CONFIG_JSON))
    model = transformers_module.MT5ForConditionalGeneration(config).eval()
    yield model
    del model
    gc.collect()


@pytest.fixture(scope="module")
def model(reference):
    ours = ours_from_reference(MT5ForConditionalGeneration, reference)
    yield ours
    del ours
    gc.collect()


def test_config_is_the_real_mt5_small(model):
    config = model.config
    assert (config.vocab_size, config.d_model, config.d_kv, config.d_ff) == (250112, 512, 64, 1024)
    assert (config.num_layers, config.num_decoder_layers, config.num_heads) == (8, 8, 6)
    assert config.feed_forward_proj == "gated-gelu" and not config.tie_word_embeddings
    assert (config.relative_attention_num_buckets, config.relative_attention_max_distance) == (
        32, 128)
    assert model.count_params() == 300_176_768  # mt5-small's parameter count


def test_mt5_small_few_row_generation_matches_reference(reference, model):
    assert_few_row_generation_matches_reference(reference, model, VOCAB)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mt5_small_parity(reference, model, side, report_figure):
    # Sources long enough to reach the log-spaced relative-position buckets.
    batch = make_batch(VOCAB, MT5_IDS, (40, 11, 25), (9, 4, 7), side, seed=21)
    expected = run_reference(reference, batch)
    out = model(**batch)
    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(f"mt5-small {side}-padded", logits_rel=logits_rel, encoder_rel=encoder_rel,
                  loss_diff=loss_diff)


def test_mt5_small_sharded_checkpoint_round_trip(reference, model, tmp_path, report_figure):
    """transformers writes sharded safetensors -> from_pretrained -> parity ->
    save_pretrained -> bit-exact tensors -> transformers reads ours back."""
    source_dir, our_dir = tmp_path / "hf", tmp_path / "ours"
    reference.save_pretrained(source_dir, safe_serialization=True, max_shard_size="300MB")
    with open(source_dir / "model.safetensors.index.json") as handle:
        assert len(set(json.load(handle)["weight_map"].values())) > 1

    loaded = MT5ForConditionalGeneration.from_pretrained(str(source_dir))
    batch = make_batch(VOCAB, MT5_IDS, (13, 6), (5, 3), "right", seed=4)
    logits_rel = assert_rel_close(loaded(**batch).logits, run_reference(reference, batch).logits,
                                  LOGIT_RTOL, "logits")
    report_figure("mt5-small from sharded safetensors", logits_rel=logits_rel)

    loaded.save_pretrained(str(our_dir), max_shard_size="400MB")
    del loaded
    gc.collect()
    assert_tensors_equal(read_checkpoint(our_dir)[0], read_checkpoint(source_dir)[0],
                         "save_pretrained vs source")

    theirs = transformers_module.MT5ForConditionalGeneration.from_pretrained(str(our_dir)).eval()
    np.testing.assert_array_equal(run_reference(theirs, batch).logits.numpy(),
                                  run_reference(reference, batch).logits.numpy())
    del theirs
    gc.collect()


def test_mt5_small_mixed_bfloat16(reference, model, report_figure):
    batch = make_batch(VOCAB, MT5_IDS, (20, 11, 16, 7), (12, 8, 10, 6), "left", seed=8)
    fp32_out = model(**batch)
    bf16_model = ours_from_reference(MT5ForConditionalGeneration, reference,
                                     dtype="mixed_bfloat16")
    figures = bf16_vs_fp32(fp32_out, bf16_model(**batch), batch["labels"])
    del bf16_model
    gc.collect()
    report_figure("mt5-small mixed_bfloat16 vs float32", **figures)
    assert figures["logits_rel"] < 5e-2 and figures["argmax_agreement"] > 0.9
