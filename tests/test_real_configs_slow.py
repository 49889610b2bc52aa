"""Slow suite: the real configs of google/mt5-small (vocab 250112, d_model 512, d_kv 64,
d_ff 1024, 8+8 layers, 6 heads, gated-gelu, untied, 32 buckets, max_distance 128) and
facebook/m2m100_418M (vocab 128112, d_model 1024, 12+12 layers, 16 heads, ffn 4096,
max_position_embeddings 1024, scale_embedding, tied head) with random weights, against
transformers' PyTorch models. Short sequences; ~1.2 GB (mt5-small) and ~1.9 GB
(m2m100_418M) per model in float32. One family's models are freed before the next
family's are built (module-scoped fixtures, grouped by family)."""

import gc
import json

import numpy as np
import pytest

from converters import read_checkpoint
from helpers import (
    FAMILIES,
    HIDDEN_RTOL,
    LOGIT_RTOL,
    assert_few_row_generation_matches_reference,
    assert_loss_close,
    assert_rel_close,
    assert_tensors_equal,
    bf16_vs_fp32,
    make_batch,
    ours_from_reference,
    run_reference,
)

pytest.importorskip("torch")
transformers_module = pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.torch]

# Written out here rather than read from helpers' config dicts, so a wrong dict fails.
REAL_CONFIG_VALUES = {
    "mt5": dict(vocab_size=250112, d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                num_decoder_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                tie_word_embeddings=False, relative_attention_num_buckets=32,
                relative_attention_max_distance=128),
    "m2m100": dict(vocab_size=128112, d_model=1024, max_position_embeddings=1024,
                   encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                   decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096,
                   scale_embedding=True, tie_word_embeddings=True),
}
# The published checkpoints' parameter counts (m2m100_418M's head is tied: counted once).
PARAMETER_COUNTS = {"mt5": 300_176_768, "m2m100": 483_905_536}
# (transformers' max_shard_size, ours): both split the checkpoint into several shards.
SHARD_SIZES = {"mt5": ("300MB", "400MB"), "m2m100": ("500MB", "700MB")}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


@pytest.fixture(scope="module")
def reference(family):
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    config_class = getattr(transformers_module, family.class_name("Config"))
    config = config_class.from_dict(dict(family.real_config))
    model = getattr(transformers_module, family.class_name())(config).eval()
    yield model
    del model
    gc.collect()


@pytest.fixture(scope="module")
def model(family, reference):
    ours = ours_from_reference(family.ours(), reference)
    yield ours
    del ours
    gc.collect()


def _real_batch(family, source_lengths, target_lengths, side, seed):
    return make_batch(family.real_config["vocab_size"], family.ids, source_lengths,
                      target_lengths, side, seed)


def test_config_is_the_real_one(family, model):
    for key, value in REAL_CONFIG_VALUES[family.name].items():
        assert getattr(model.config, key) == value, key
    assert model.count_params() == PARAMETER_COUNTS[family.name]


def test_few_row_generation_matches_reference(family, reference, model):
    assert_few_row_generation_matches_reference(reference, model,
                                                family.real_config["vocab_size"])


@pytest.mark.parametrize("side", ["right", "left"])
def test_parity(family, reference, model, side, report_figure):
    # Sources long enough to reach mT5's log-spaced relative-position buckets.
    batch = _real_batch(family, (40, 11, 25), (9, 4, 7), side, seed=21)
    expected = run_reference(reference, batch)
    out = model(**batch)
    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(f"{family.real_name} {side}-padded", logits_rel=logits_rel,
                  encoder_rel=encoder_rel, loss_diff=loss_diff)


def test_sharded_checkpoint_round_trip(family, reference, model, tmp_path, report_figure):
    """transformers writes sharded safetensors -> from_pretrained -> parity ->
    save_pretrained -> bit-exact tensors -> transformers reads ours back."""
    source_dir, our_dir = tmp_path / "hf", tmp_path / "ours"
    their_shard_size, our_shard_size = SHARD_SIZES[family.name]
    reference.save_pretrained(source_dir, safe_serialization=True, max_shard_size=their_shard_size)
    with open(source_dir / "model.safetensors.index.json") as handle:
        assert len(set(json.load(handle)["weight_map"].values())) > 1

    loaded = family.ours().from_pretrained(str(source_dir))
    batch = _real_batch(family, (13, 6), (5, 3), "right", seed=4)
    logits_rel = assert_rel_close(loaded(**batch).logits, run_reference(reference, batch).logits,
                                  LOGIT_RTOL, "logits")
    report_figure(f"{family.real_name} from sharded safetensors", logits_rel=logits_rel)

    loaded.save_pretrained(str(our_dir), max_shard_size=our_shard_size)
    del loaded
    gc.collect()
    assert_tensors_equal(read_checkpoint(our_dir)[0], read_checkpoint(source_dir)[0],
                         "save_pretrained vs source")

    their_class = getattr(transformers_module, family.class_name())
    theirs = their_class.from_pretrained(str(our_dir)).eval()
    np.testing.assert_array_equal(run_reference(theirs, batch).logits.numpy(),
                                  run_reference(reference, batch).logits.numpy())
    del theirs
    gc.collect()


def test_mixed_bfloat16(family, reference, model, report_figure):
    batch = _real_batch(family, (20, 11, 16, 7), (12, 8, 10, 6), "left", seed=8)
    fp32_out = model(**batch)
    bf16_model = ours_from_reference(family.ours(), reference, dtype="mixed_bfloat16")
    figures = bf16_vs_fp32(fp32_out, bf16_model(**batch), batch["labels"])
    del bf16_model
    gc.collect()
    report_figure(f"{family.real_name} mixed_bfloat16 vs float32", **figures)
    assert figures["logits_rel"] < 5e-2 and figures["argmax_agreement"] > 0.9
