"""Live parity with transformers' PyTorch mT5 and M2M100 on the same random checkpoint (tiny
configs), both families: conditional generation over each family's variants, labels-only
inputs, the bare model, hidden states and attention weights, encoder outputs passed in, and
how the model output behaves.

Bounds (issues 2 and 4): logits max |diff| <= 1e-5 x max |reference logit|, loss within
1e-4; encoder outputs, hidden states and attention weights to the same relative bound.
Right- and left-padded batches (M2M100's reference counts positions over non-pad tokens,
so it supports both).

Then what one family alone has: mT5's encoder-only model, M2M100's sinusoidal positions
past max_position_embeddings.
"""

import numpy as np
import pytest

from helpers import (
    FAMILIES,
    HIDDEN_RTOL,
    LOGIT_RTOL,
    make_batch,
    assert_loss_close,
    assert_rel_close,
    inputs_for_head,
    run_reference,
    shared_ours_from_reference,
    shared_reference_model,
    to_numpy,
    without,
)

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.torch

SIDES = ["right", "left"]

# Config variants (reference config overrides) run through the conditional-generation check.
VARIANTS = {
    "mt5": {
        "relu": dict(feed_forward_proj="relu"),
        "gated-gelu": dict(feed_forward_proj="gated-gelu"),
        "gated-silu": dict(feed_forward_proj="gated-silu"),
        # T5 v1.0 style: LM head tied to the shared embedding, decoder output scaled by
        # d_model**-0.5 before it.
        "tied-relu": dict(tie_word_embeddings=True, feed_forward_proj="relu"),
    },
    "m2m100": {
        "default": {},  # scaled embeddings, tied head (as m2m100_418M)
        "unscaled-untied-gelu": dict(scale_embedding=False, tie_word_embeddings=False,
                                     activation_function="gelu"),
    },
}

each_family = pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))


def _reference_and_ours(transformers, family, head="ForConditionalGeneration", **overrides):
    """The shared tiny reference of `family`'s `head` (config `overrides` applied) and ours
    loaded with its weights."""
    reference = shared_reference_model(transformers, family.class_name(head),
                                       family.tiny_config, **overrides)
    return reference, shared_ours_from_reference(family.ours(head), reference)


def _assert_outputs_match(out, expected, encoder=True):
    """Our logits, loss and (with `encoder`) encoder output against the reference's, within
    the bounds; returns the measured figures."""
    figures = {}
    if encoder:
        figures["encoder_rel"] = assert_rel_close(
            out.encoder_last_hidden_state, expected.encoder_last_hidden_state, HIDDEN_RTOL,
            "encoder")
    figures["logits_rel"] = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    figures["loss_diff"] = assert_loss_close(out.loss, expected.loss)
    return figures


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("family, variant", [
    pytest.param(FAMILIES[name], variant, id=f"{name}-{variant}")
    for name, variants in VARIANTS.items() for variant in variants
])
def test_conditional_generation_parity(transformers, family, variant, side, report_figure):
    reference, model = _reference_and_ours(transformers, family, **VARIANTS[family.name][variant])
    # A tied head reuses the shared embedding: ours then has no separate LM head (the
    # reference's state dict lists lm_head.weight either way).
    assert (model.lm_head is None) == reference.config.tie_word_embeddings
    assert "lm_head.weight" in reference.state_dict()
    batch = family.batch(side)

    figures = _assert_outputs_match(model(**batch), run_reference(reference, batch))
    report_figure(f"{family.name} tiny {variant} {side}-padded", **figures)


@each_family
def test_labels_alone_are_shifted_right_like_the_reference(transformers, family, report_figure):
    """Without decoder_input_ids, labels are shifted right with decoder_start_token_id and
    -100 replaced by pad, as the reference does; the loss ignores -100."""
    reference, model = _reference_and_ours(transformers, family)
    batch = without(family.batch("right"), "decoder_input_ids", "decoder_attention_mask")
    # Ignoring -100 matters: a loss over pad positions too would differ.
    assert (batch["labels"] == -100).any()

    figures = _assert_outputs_match(model(**batch), run_reference(reference, batch),
                                    encoder=False)
    report_figure(f"{family.name} tiny labels-only", **figures)


@each_family
def test_model_output_behaves_like_the_reference_output(transformers, family):
    _, model = _reference_and_ours(transformers, family)
    batch = family.batch("right")
    out = model(**batch)
    np.testing.assert_array_equal(to_numpy(out["logits"]), to_numpy(out.logits))
    assert out.loss is not None and out["loss"] is out.loss
    assert out.decoder_hidden_states is None and out.cross_attentions is None
    # A dict of inputs (what Keras fit passes) means the same as keyword arguments.
    np.testing.assert_array_equal(to_numpy(model(batch).logits), to_numpy(out.logits))


@pytest.mark.parametrize("side", SIDES)
@each_family
def test_bare_model_parity(transformers, family, side, report_figure):
    reference, model = _reference_and_ours(transformers, family, "Model")
    batch = inputs_for_head("Model", family.batch(side))

    expected = run_reference(reference, batch)
    out = model(**batch)

    assert out.logits is None
    hidden_rel = assert_rel_close(out.last_hidden_state, expected.last_hidden_state,
                                  HIDDEN_RTOL, "decoder last_hidden_state")
    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    report_figure(f"{family.class_name('Model')} tiny {side}-padded",
                  last_hidden_rel=hidden_rel, encoder_rel=encoder_rel)


@pytest.mark.parametrize("side", SIDES)
@each_family
def test_hidden_states_and_attentions_match_reference(transformers, family, side):
    # Attention weights come from the reference's eager attention (sdpa returns none).
    reference, model = _reference_and_ours(transformers, family, attn_implementation="eager")
    batch = family.batch(side)

    expected = run_reference(reference, batch, output_hidden_states=True,
                             output_attentions=True)
    out = model(**batch, output_hidden_states=True, output_attentions=True)

    encoder_layers, decoder_layers = family.layers()
    encoder_heads, decoder_heads = family.heads()
    d_model = family.tiny_config["d_model"]
    batch_size, source_length = batch["input_ids"].shape
    target_length = batch["decoder_input_ids"].shape[1]
    expectations = {  # key -> (tensor count, shape of each)
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

    # Attention rows are distributions, and padded keys get no weight.
    cross = to_numpy(out.cross_attentions[0])  # [batch, heads, query, key]
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-5)
    masked_keys = np.broadcast_to(batch["attention_mask"][:, None, None, :] == 0, cross.shape)
    assert masked_keys.any() and np.all(cross[masked_keys] == 0.0)

    # Causal self-attention: real (non-pad) query rows put no weight on future positions.
    decoder_self = to_numpy(out.decoder_attentions[-1])  # [batch, heads, query, key]
    future = np.triu(np.ones((target_length, target_length), bool), k=1)
    real_queries = batch["decoder_attention_mask"].astype(bool)
    real_query_on_future = real_queries[:, :, None] & future[None]  # [batch, query, key]
    on_future = np.broadcast_to(real_query_on_future[:, None], decoder_self.shape)
    assert on_future.any() and np.all(decoder_self[on_future] == 0.0)


@each_family
def test_encoder_outputs_can_be_passed_in(transformers, family):
    """Re-using a precomputed encoder output (what generation does) gives the same logits."""
    reference, model = _reference_and_ours(transformers, family)
    batch = family.batch("left")
    full = model(**batch)
    encoder_output = model.encode(batch["input_ids"], batch["attention_mask"])[
        "last_hidden_state"]
    reused = model(**without(batch, "input_ids"), encoder_outputs=encoder_output)
    np.testing.assert_allclose(to_numpy(reused.logits), to_numpy(full.logits), rtol=0, atol=1e-6)
    expected = run_reference(reference, batch)
    assert_rel_close(reused.logits, expected.logits, LOGIT_RTOL, "logits")


# ------------------------------------------------------------------- one family's features
@pytest.mark.parametrize("side", SIDES)
def test_mt5_encoder_model_parity(transformers, side, report_figure):
    family = FAMILIES["mt5"]
    reference, model = _reference_and_ours(transformers, family, "EncoderModel")
    batch = inputs_for_head("EncoderModel", family.batch(side))

    expected = run_reference(reference, batch)
    out = model(**batch)

    hidden_rel = assert_rel_close(out.last_hidden_state, expected.last_hidden_state,
                                  HIDDEN_RTOL, "last_hidden_state")
    report_figure(f"MT5EncoderModel tiny {side}-padded", last_hidden_rel=hidden_rel)


@pytest.mark.parametrize("side", SIDES)
def test_m2m100_inputs_longer_than_max_position_embeddings(transformers, side, report_figure):
    """The reference regrows its sinusoidal table past max_position_embeddings; our
    positions are computed on the fly and must give the same numbers there."""
    family = FAMILIES["m2m100"]
    max_positions = family.tiny_config["max_position_embeddings"]
    reference, model = _reference_and_ours(transformers, family)
    source_lengths = (max_positions + 17, 5, max_positions + 3)
    target_lengths = (max_positions + 9, max_positions + 1, 4)
    batch = make_batch(family.tiny_config["vocab_size"], family.ids, source_lengths,
                       target_lengths, side, seed=3)
    # Positions start at pad_token_id + 1, so these really run past the original table.
    assert batch["input_ids"].shape[1] + family.ids["pad"] + 1 > max_positions + 2

    figures = _assert_outputs_match(model(**batch), run_reference(reference, batch),
                                    encoder=False)
    report_figure(f"m2m100 tiny past max_position_embeddings {side}-padded", **figures)
