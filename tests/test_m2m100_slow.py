"""Slow suite: the real facebook/m2m100_418M config (vocab 128112, d_model 1024, 12+12
layers, 16 heads, ffn 4096, max_position_embeddings 1024, scale_embedding, tied head) with
random weights, against transformers' PyTorch model. Short sequences; ~1.9 GB per model in
float32, freed at the end of the module."""

import gc
import json

import numpy as np
import pytest

from converters import read_checkpoint
from helpers import (
    HIDDEN_RTOL,
    LOGIT_RTOL,
    M2M100_IDS,
    M2M100_418M_CONFIG_JSON,
    assert_few_row_generation_matches_reference,
    assert_loss_close,
    assert_rel_close,
    assert_tensors_equal,
    bf16_vs_fp32,
    make_batch,
    ours_from_reference,
    run_reference,
)
from tfmodels import M2M100ForConditionalGeneration

pytest.importorskip("torch")
transformers_module = pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.torch]

VOCAB = M2M100_418M_CONFIG_JSON["vocab_size"]


@pytest.fixture(scope="module")
def reference():
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    config = transformers_module.M2M100Config.from_dict(dict(M2M100_418M_CONFIG_JSON))
    model = transformers_module.M2M100ForConditionalGeneration(config).eval()
    yield model
    del model
    gc.collect()


@pytest.fixture(scope="module")
def model(reference):
    ours = ours_from_reference(M2M100ForConditionalGeneration, reference)
    yield ours
    del ours
    gc.collect()


def test_config_is_the_real_m2m100_418m(model):
    config = model.config
    assert (config.vocab_size, config.d_model, config.max_position_embeddings) == (
        128112, 1024, 1024)
    assert (config.encoder_layers, config.decoder_layers) == (12, 12)
    assert (config.encoder_attention_heads, config.decoder_attention_heads) == (16, 16)
    assert (config.encoder_ffn_dim, config.decoder_ffn_dim) == (4096, 4096)
    assert config.scale_embedding and config.tie_word_embeddings
    assert model.count_params() == 483_905_536  # m2m100_418M's parameters (tied head)


def test_m2m100_418m_few_row_generation_matches_reference(reference, model):
    assert_few_row_generation_matches_reference(reference, model, VOCAB)


@pytest.mark.parametrize("side", ["right", "left"])
def test_m2m100_418m_parity(reference, model, side, report_figure):
    batch = make_batch(VOCAB, M2M100_IDS, (40, 11, 25), (9, 4, 7), side, seed=21)
    expected = run_reference(reference, batch)
    out = model(**batch)
    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(f"m2m100_418M {side}-padded", logits_rel=logits_rel, encoder_rel=encoder_rel,
                  loss_diff=loss_diff)


def test_m2m100_418m_sharded_checkpoint_round_trip(reference, model, tmp_path, report_figure):
    """transformers writes sharded safetensors -> from_pretrained -> parity ->
    save_pretrained -> bit-exact tensors -> transformers reads ours back."""
    source_dir, our_dir = tmp_path / "hf", tmp_path / "ours"
    reference.save_pretrained(source_dir, safe_serialization=True, max_shard_size="500MB")
    with open(source_dir / "model.safetensors.index.json") as handle:
        assert len(set(json.load(handle)["weight_map"].values())) > 1

    loaded = M2M100ForConditionalGeneration.from_pretrained(str(source_dir))
    batch = make_batch(VOCAB, M2M100_IDS, (13, 6), (5, 3), "right", seed=4)
    logits_rel = assert_rel_close(loaded(**batch).logits, run_reference(reference, batch).logits,
                                  LOGIT_RTOL, "logits")
    report_figure("m2m100_418M from sharded safetensors", logits_rel=logits_rel)

    loaded.save_pretrained(str(our_dir), max_shard_size="700MB")
    del loaded
    gc.collect()
    assert_tensors_equal(read_checkpoint(our_dir)[0], read_checkpoint(source_dir)[0],
                         "save_pretrained vs source")

    theirs = transformers_module.M2M100ForConditionalGeneration.from_pretrained(str(our_dir)).eval()
    np.testing.assert_array_equal(run_reference(theirs, batch).logits.numpy(),
                                  run_reference(reference, batch).logits.numpy())
    del theirs
    gc.collect()


def test_m2m100_418m_mixed_bfloat16(reference, model, report_figure):
    batch = make_batch(VOCAB, M2M100_IDS, (20, 11, 16, 7), (12, 8, 10, 6), "left", seed=8)
    fp32_out = model(**batch)
    bf16_model = ours_from_reference(M2M100ForConditionalGeneration, reference,
                                     dtype="mixed_bfloat16")
    figures = bf16_vs_fp32(fp32_out, bf16_model(**batch), batch["labels"])
    del bf16_model
    gc.collect()
    report_figure("m2m100_418M mixed_bfloat16 vs float32", **figures)
    assert figures["logits_rel"] < 5e-2 and figures["argmax_agreement"] > 0.9
