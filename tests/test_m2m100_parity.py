"""Live parity with transformers' PyTorch M2M100 on the same random checkpoint (tiny configs).

Bounds (issue 4): logits max |diff| <= 1e-5 x max |reference logit|, loss within 1e-4,
right- and left-padded batches (the reference's position ids count non-pad tokens, so it
supports both).
"""

import numpy as np
import pytest

from helpers import (
    HIDDEN_RTOL,
    LOGIT_RTOL,
    M2M100_IDS,
    TINY_M2M100,
    assert_loss_close,
    assert_rel_close,
    m2m100_batch,
    make_batch,
    run_reference,
    shared_ours_from_reference,
    shared_reference_model,
    to_numpy,
    without,
)
from tfmodels import M2M100ForConditionalGeneration, M2M100Model

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.torch

SIDES = ["right", "left"]
VARIANTS = {
    "default": {},  # scaled embeddings, tied head (as m2m100_418M)
    "unscaled-untied-gelu": dict(scale_embedding=False, tie_word_embeddings=False,
                                 activation_function="gelu"),
}


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_conditional_generation_parity(transformers, variant, side, report_figure):
    reference = shared_reference_model(transformers, "M2M100ForConditionalGeneration", TINY_M2M100,
                                **VARIANTS[variant])
    model = shared_ours_from_reference(M2M100ForConditionalGeneration, reference)
    assert (model.lm_head is None) == reference.config.tie_word_embeddings
    batch = m2m100_batch(side)

    expected = run_reference(reference, batch)
    out = model(**batch)

    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(f"m2m100 tiny {variant} {side}-padded", logits_rel=logits_rel,
                  encoder_rel=encoder_rel, loss_diff=loss_diff)


def test_labels_alone_are_shifted_right_like_the_reference(transformers, report_figure):
    reference = shared_reference_model(transformers, "M2M100ForConditionalGeneration", TINY_M2M100)
    model = shared_ours_from_reference(M2M100ForConditionalGeneration, reference)
    batch = without(m2m100_batch("right"), "decoder_input_ids", "decoder_attention_mask")
    assert (batch["labels"] == -100).any()

    expected = run_reference(reference, batch)
    out = model(**batch)

    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure("m2m100 tiny labels-only", logits_rel=logits_rel, loss_diff=loss_diff)


@pytest.mark.parametrize("side", SIDES)
def test_bare_model_parity(transformers, side, report_figure):
    reference = shared_reference_model(transformers, "M2M100Model", TINY_M2M100)
    model = shared_ours_from_reference(M2M100Model, reference)
    batch = without(m2m100_batch(side), "labels")

    expected = run_reference(reference, batch)
    out = model(**batch)

    assert out.logits is None
    hidden_rel = assert_rel_close(out.last_hidden_state, expected.last_hidden_state,
                                  HIDDEN_RTOL, "decoder last_hidden_state")
    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    report_figure(f"M2M100Model tiny {side}-padded", last_hidden_rel=hidden_rel,
                  encoder_rel=encoder_rel)


@pytest.mark.parametrize("side", SIDES)
def test_hidden_states_and_attentions_match_reference(transformers, side):
    # Attention weights come from the reference's eager attention (sdpa returns none).
    reference = shared_reference_model(transformers, "M2M100ForConditionalGeneration", TINY_M2M100,
                                attn_implementation="eager")
    model = shared_ours_from_reference(M2M100ForConditionalGeneration, reference)
    batch = m2m100_batch(side)

    expected = run_reference(reference, batch, output_hidden_states=True,
                             output_attentions=True)
    out = model(**batch, output_hidden_states=True, output_attentions=True)

    encoder_layers, decoder_layers = TINY_M2M100["encoder_layers"], TINY_M2M100["decoder_layers"]
    batch_size, source_length = batch["input_ids"].shape
    target_length = batch["decoder_input_ids"].shape[1]
    encoder_heads = TINY_M2M100["encoder_attention_heads"]
    decoder_heads = TINY_M2M100["decoder_attention_heads"]
    d_model = TINY_M2M100["d_model"]
    expectations = {
        "encoder_hidden_states": (encoder_layers + 1, (batch_size, source_length, d_model)),
        "decoder_hidden_states": (decoder_layers + 1, (batch_size, target_length, d_model)),
        "encoder_attentions": (encoder_layers,
                               (batch_size, encoder_heads, source_length, source_length)),
        "decoder_attentions": (decoder_layers,
                               (batch_size, decoder_heads, target_length, target_length)),
        "cross_attentions": (decoder_layers,
                             (batch_size, decoder_heads, target_length, source_length)),
    }
    for key, (count, shape) in expectations.items():
        ours, theirs = out[key], expected[key]
        assert len(ours) == count == len(theirs), key
        for index, (mine, reference_tensor) in enumerate(zip(ours, theirs)):
            assert tuple(mine.shape) == shape, (key, index)
            assert_rel_close(mine, reference_tensor, HIDDEN_RTOL, f"{key}[{index}]")
    # Causal self-attention: real (non-pad) query rows put no weight on future positions.
    decoder_self = to_numpy(out.decoder_attentions[-1])  # [batch, heads, query, key]
    future = np.triu(np.ones((target_length, target_length), bool), k=1)
    real_queries = batch["decoder_attention_mask"].astype(bool)
    weights_on_future = decoder_self[:, :, future]  # [batch, heads, pairs]
    query_of_pair = np.nonzero(future)[0]
    assert np.all(weights_on_future[real_queries[:, query_of_pair][:, None, :].repeat(
        decoder_heads, axis=1)] == 0.0)


@pytest.mark.parametrize("side", SIDES)
def test_inputs_longer_than_max_position_embeddings(transformers, side, report_figure):
    """The reference regrows its sinusoidal table past max_position_embeddings; our
    positions are computed on the fly and must give the same numbers there."""
    max_positions = TINY_M2M100["max_position_embeddings"]
    reference = shared_reference_model(transformers, "M2M100ForConditionalGeneration", TINY_M2M100)
    model = shared_ours_from_reference(M2M100ForConditionalGeneration, reference)
    source_lengths = (max_positions + 17, 5, max_positions + 3)
    target_lengths = (max_positions + 9, max_positions + 1, 4)
    batch = make_batch(TINY_M2M100["vocab_size"], M2M100_IDS, source_lengths, target_lengths,
                       side, seed=3)
    # Positions start at pad_token_id + 1, so these really run past the original table.
    assert batch["input_ids"].shape[1] + M2M100_IDS["pad"] + 1 > max_positions + 2

    expected = run_reference(reference, batch)
    out = model(**batch)

    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(f"m2m100 tiny past max_position_embeddings {side}-padded",
                  logits_rel=logits_rel, loss_diff=loss_diff)


def test_encoder_outputs_can_be_passed_in(transformers):
    reference = shared_reference_model(transformers, "M2M100ForConditionalGeneration", TINY_M2M100)
    model = shared_ours_from_reference(M2M100ForConditionalGeneration, reference)
    batch = m2m100_batch("left")
    full = model(**batch)
    encoder_output = model.encode(batch["input_ids"], batch["attention_mask"])[
        "last_hidden_state"]
    reused = model(**without(batch, "input_ids"), encoder_outputs=encoder_output)
    np.testing.assert_allclose(to_numpy(reused.logits), to_numpy(full.logits), rtol=0, atol=1e-6)
    expected = run_reference(reference, batch)
    assert_rel_close(reused.logits, expected.logits, LOGIT_RTOL, "logits")
