"""Live parity with transformers' PyTorch mT5 on the same random checkpoint (tiny configs).

Bounds (issue 2): logits max |diff| <= 1e-5 x max |reference logit|, loss within 1e-4;
encoder outputs, hidden states and attention weights to the same relative bound.
"""

import numpy as np
import pytest

from helpers import (
    HIDDEN_RTOL,
    LOGIT_RTOL,
    TINY_MT5,
    assert_loss_close,
    assert_rel_close,
    mt5_batch,
    run_reference,
    shared_ours_from_reference,
    shared_reference_model,
    to_numpy,
    without,
)
from tfmodels import MT5EncoderModel, MT5ForConditionalGeneration, MT5Model

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.torch

FEED_FORWARD_PROJS = ["relu", "gated-gelu", "gated-silu"]
SIDES = ["right", "left"]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("feed_forward_proj", FEED_FORWARD_PROJS)
def test_conditional_generation_parity(transformers, feed_forward_proj, side, report_figure):
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", TINY_MT5,
                                feed_forward_proj=feed_forward_proj)
    model = shared_ours_from_reference(MT5ForConditionalGeneration, reference)
    batch = mt5_batch(side)

    expected = run_reference(reference, batch)
    out = model(**batch)

    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure(f"mt5 tiny {feed_forward_proj} {side}-padded", logits_rel=logits_rel,
                  encoder_rel=encoder_rel, loss_diff=loss_diff)


def test_labels_alone_are_shifted_right_like_the_reference(transformers, report_figure):
    """Without decoder_input_ids, labels are shifted right with decoder_start_token_id and
    -100 replaced by pad, as the reference does; the loss ignores -100."""
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", TINY_MT5)
    model = shared_ours_from_reference(MT5ForConditionalGeneration, reference)
    batch = without(mt5_batch("right"), "decoder_input_ids", "decoder_attention_mask")

    expected = run_reference(reference, batch)
    out = model(**batch)

    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure("mt5 tiny labels-only", logits_rel=logits_rel, loss_diff=loss_diff)
    # Ignoring -100 matters: a loss over pad positions too would differ.
    assert (batch["labels"] == -100).any()


def test_model_output_behaves_like_the_reference_output(transformers):
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", TINY_MT5)
    model = shared_ours_from_reference(MT5ForConditionalGeneration, reference)
    batch = mt5_batch("right")
    out = model(**batch)
    np.testing.assert_array_equal(to_numpy(out["logits"]), to_numpy(out.logits))
    assert out.loss is not None and out["loss"] is out.loss
    assert out.decoder_hidden_states is None and out.cross_attentions is None
    # A dict of inputs (what Keras fit passes) means the same as keyword arguments.
    np.testing.assert_array_equal(to_numpy(model(batch).logits), to_numpy(out.logits))


@pytest.mark.parametrize("side", SIDES)
def test_bare_model_parity(transformers, side, report_figure):
    reference = shared_reference_model(transformers, "MT5Model", TINY_MT5)
    model = shared_ours_from_reference(MT5Model, reference)
    batch = without(mt5_batch(side), "labels")

    expected = run_reference(reference, batch)
    out = model(**batch)

    assert out.logits is None
    hidden_rel = assert_rel_close(out.last_hidden_state, expected.last_hidden_state,
                                  HIDDEN_RTOL, "decoder last_hidden_state")
    encoder_rel = assert_rel_close(out.encoder_last_hidden_state,
                                   expected.encoder_last_hidden_state, HIDDEN_RTOL, "encoder")
    report_figure(f"MT5Model tiny {side}-padded", last_hidden_rel=hidden_rel,
                  encoder_rel=encoder_rel)


@pytest.mark.parametrize("side", SIDES)
def test_encoder_model_parity(transformers, side, report_figure):
    reference = shared_reference_model(transformers, "MT5EncoderModel", TINY_MT5)
    model = shared_ours_from_reference(MT5EncoderModel, reference)
    batch = {key: mt5_batch(side)[key] for key in ("input_ids", "attention_mask")}

    expected = run_reference(reference, batch)
    out = model(**batch)

    hidden_rel = assert_rel_close(out.last_hidden_state, expected.last_hidden_state,
                                  HIDDEN_RTOL, "last_hidden_state")
    report_figure(f"MT5EncoderModel tiny {side}-padded", last_hidden_rel=hidden_rel)


@pytest.mark.parametrize("side", SIDES)
def test_hidden_states_and_attentions_match_reference(transformers, side):
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", TINY_MT5)
    model = shared_ours_from_reference(MT5ForConditionalGeneration, reference)
    batch = mt5_batch(side)

    expected = run_reference(reference, batch, output_hidden_states=True,
                             output_attentions=True)
    out = model(**batch, output_hidden_states=True, output_attentions=True)

    encoder_layers, decoder_layers = TINY_MT5["num_layers"], TINY_MT5["num_decoder_layers"]
    expected_counts = {
        "encoder_hidden_states": encoder_layers + 1,
        "decoder_hidden_states": decoder_layers + 1,
        "encoder_attentions": encoder_layers,
        "decoder_attentions": decoder_layers,
        "cross_attentions": decoder_layers,
    }
    batch_size, source_length = batch["input_ids"].shape
    target_length = batch["decoder_input_ids"].shape[1]
    heads = TINY_MT5["num_heads"]
    expected_shapes = {
        "encoder_hidden_states": (batch_size, source_length, TINY_MT5["d_model"]),
        "decoder_hidden_states": (batch_size, target_length, TINY_MT5["d_model"]),
        "encoder_attentions": (batch_size, heads, source_length, source_length),
        "decoder_attentions": (batch_size, heads, target_length, target_length),
        "cross_attentions": (batch_size, heads, target_length, source_length),
    }
    for key, count in expected_counts.items():
        ours, theirs = out[key], expected[key]
        assert len(ours) == count == len(theirs), key
        for index, (mine, reference_tensor) in enumerate(zip(ours, theirs)):
            assert tuple(mine.shape) == expected_shapes[key], (key, index)
            assert_rel_close(mine, reference_tensor, HIDDEN_RTOL, f"{key}[{index}]")
    # Attention rows are distributions, and padded keys get no weight.
    cross = to_numpy(out.cross_attentions[0])
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-5)
    masked_keys = np.broadcast_to(batch["attention_mask"][:, None, None, :] == 0, cross.shape)
    assert masked_keys.any() and np.all(cross[masked_keys] == 0.0)


def test_tied_word_embeddings_parity(transformers, report_figure):
    """T5 v1.0 style: relu, LM head tied to the shared embedding, decoder output scaled by
    d_model**-0.5 before it. The reference's state dict lists lm_head.weight too."""
    config = dict(TINY_MT5, tie_word_embeddings=True, feed_forward_proj="relu")
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", config)
    assert "lm_head.weight" in reference.state_dict()
    model = shared_ours_from_reference(MT5ForConditionalGeneration, reference)
    assert model.lm_head is None
    batch = mt5_batch("right")

    expected = run_reference(reference, batch)
    out = model(**batch)

    logits_rel = assert_rel_close(out.logits, expected.logits, LOGIT_RTOL, "logits")
    loss_diff = assert_loss_close(out.loss, expected.loss)
    report_figure("mt5 tiny tied relu", logits_rel=logits_rel, loss_diff=loss_diff)


def test_encoder_outputs_can_be_passed_in(transformers):
    """Re-using a precomputed encoder output (what generation does) gives the same logits."""
    reference = shared_reference_model(transformers, "MT5ForConditionalGeneration", TINY_MT5)
    model = shared_ours_from_reference(MT5ForConditionalGeneration, reference)
    batch = mt5_batch("left")
    full = model(**batch)
    encoder_output = model.encode(batch["input_ids"], batch["attention_mask"])[
        "last_hidden_state"]
    reused = model(**without(batch, "input_ids"), encoder_outputs=encoder_output)
    np.testing.assert_allclose(to_numpy(reused.logits), to_numpy(full.logits), rtol=0, atol=1e-6)
    expected = run_reference(reference, batch)
    assert_rel_close(reused.logits, expected.logits, LOGIT_RTOL, "logits")
