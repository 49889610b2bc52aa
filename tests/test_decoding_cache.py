"""The contract generation relies on, for both families: decoding through
`init_decoding_cache` + `decode_step` (static cache, one token or a chunk at a time;
M2M100's positions continue from the cache index) reproduces the full teacher-forced
decoder logits, eagerly and under `tf.function(jit_compile=True)`."""

import numpy as np
import pytest

from helpers import (GOLDEN_FAMILIES, golden_family, incremental_decoder_logits, load_golden_model,
                     make_batch, to_numpy)


def _mt5_cache_dims(config):
    return config.num_decoder_layers, config.num_heads, config.d_kv


def _m2m100_cache_dims(config):
    heads = config.decoder_attention_heads
    return config.decoder_layers, heads, config.d_model // heads


# family: (layers, heads, head_dim) of its decoding cache, read from the family's config
CACHE_DIMS = {"mt5": _mt5_cache_dims, "m2m100": _m2m100_cache_dims}
# Encoder rows padded (mixed lengths); decoder rows all full length, as during generation.
SOURCE_LENGTHS = (9, 4, 6)
TARGET_LENGTHS = (7, 7, 7)
DECODE_RTOL = 1e-5


@pytest.fixture(scope="module", params=GOLDEN_FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def model(family):
    return load_golden_model(family)


def _batch(family, side):
    _, _, ids, vocab = golden_family(family)
    return make_batch(vocab, ids, SOURCE_LENGTHS, TARGET_LENGTHS, side, seed=5)


def _full_logits(model, batch):
    return to_numpy(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          decoder_input_ids=batch["decoder_input_ids"]).logits)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
def test_one_token_at_a_time_matches_teacher_forcing(family, model, side, jit_compile,
                                                     report_figure):
    batch = _batch(family, side)
    full = _full_logits(model, batch)
    stepped = incremental_decoder_logits(model, batch, jit_compile=jit_compile)
    difference = np.abs(stepped - full).max() / np.abs(full).max()
    report_figure(f"{family} decode_step vs full {'xla' if jit_compile else 'eager'} {side}",
                  logits_rel=float(difference))
    assert difference <= DECODE_RTOL
    np.testing.assert_array_equal(stepped.argmax(-1), full.argmax(-1))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
def test_prompt_chunk_then_single_tokens(family, model, jit_compile):
    batch = _batch(family, "left")
    full = _full_logits(model, batch)
    stepped = incremental_decoder_logits(model, batch, chunks=[3, 1, 1, 1, 1],
                                         jit_compile=jit_compile)
    assert np.abs(stepped - full).max() / np.abs(full).max() <= DECODE_RTOL


def test_cache_shapes_and_that_the_cache_is_used(family, model):
    batch = _batch(family, "right")
    encoder_states = model.encode(batch["input_ids"], batch["attention_mask"])["last_hidden_state"]
    cache = model.init_decoding_cache(encoder_states, 10)
    layers, heads, head_dim = CACHE_DIMS[family](model.config)
    assert len(cache["self"]) == len(cache["cross"]) == layers
    for key, value in cache["self"]:
        assert key.shape == value.shape == (3, heads, 10, head_dim)
    for key, value in cache["cross"]:
        assert key.shape == value.shape == (3, heads, 9, head_dim)
    ids = batch["decoder_input_ids"][:, :1].astype(np.int32)
    _, updated = model.decode_step(ids, cache, 0, encoder_attention_mask=batch["attention_mask"])
    # the step wrote slot 0 of every layer's self-attention cache and nothing else
    for key, _ in updated["self"]:
        written = np.abs(to_numpy(key)).sum(axis=(0, 1, 3))
        assert written[0] > 0 and np.all(written[1:] == 0)
    # a second step at position 1 with a zeroed (forgotten) cache gives different logits
    step_with_history, _ = model.decode_step(batch["decoder_input_ids"][:, 1:2], updated, 1,
                                             encoder_attention_mask=batch["attention_mask"])
    step_without, _ = model.decode_step(batch["decoder_input_ids"][:, 1:2], cache, 1,
                                        encoder_attention_mask=batch["attention_mask"])
    assert not np.allclose(to_numpy(step_with_history), to_numpy(step_without))
