"""Any head of a family loads a checkpoint written for another head, as the reference does."""

import os

import numpy as np
import pytest

from tfmodels import (
    M2M100Config,
    M2M100ForConditionalGeneration,
    M2M100Model,
    MT5EncoderModel,
    MT5ForConditionalGeneration,
    MT5Model,
)

FULL_MT5 = os.path.join(os.path.dirname(__file__), "fixtures", "h5_reference", "pt")


def test_encoder_only_and_bare_models_take_their_parts_of_a_full_mt5_checkpoint():
    ids = np.array([[5, 6, 7, 1], [8, 9, 1, 0]])
    mask = (ids != 0).astype("int32")
    full = MT5ForConditionalGeneration.from_pretrained(FULL_MT5)
    reference = full(input_ids=ids, attention_mask=mask, decoder_input_ids=ids)
    encoder_only = MT5EncoderModel.from_pretrained(FULL_MT5)
    np.testing.assert_array_equal(
        encoder_only(input_ids=ids, attention_mask=mask).last_hidden_state.numpy(),
        reference.encoder_last_hidden_state.numpy(),
    )
    bare = MT5Model.from_pretrained(FULL_MT5)
    out = bare(input_ids=ids, attention_mask=mask, decoder_input_ids=ids)
    np.testing.assert_array_equal(
        out.encoder_last_hidden_state.numpy(), reference.encoder_last_hidden_state.numpy()
    )


def test_m2m100_bare_and_lm_checkpoints_load_into_each_other(tmp_path):
    config = M2M100Config(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=24, dropout=0.0, attention_dropout=0.0,
    )
    lm = M2M100ForConditionalGeneration(config)
    lm.save_pretrained(str(tmp_path / "lm"))
    bare = M2M100Model.from_pretrained(str(tmp_path / "lm"))
    ids = np.array([[5, 6, 2]])
    np.testing.assert_array_equal(
        bare(input_ids=ids, decoder_input_ids=ids).encoder_last_hidden_state.numpy(),
        lm(input_ids=ids, decoder_input_ids=ids).encoder_last_hidden_state.numpy(),
    )
    bare.save_pretrained(str(tmp_path / "bare"))
    reloaded = M2M100ForConditionalGeneration.from_pretrained(str(tmp_path / "bare"))
    np.testing.assert_array_equal(
        reloaded(input_ids=ids, decoder_input_ids=ids).logits.numpy(),
        lm(input_ids=ids, decoder_input_ids=ids).logits.numpy(),
    )


def test_a_missing_part_is_still_reported(tmp_path):
    """Dropping another head's extra tensors must not hide real gaps."""
    encoder_only = MT5EncoderModel.from_pretrained(FULL_MT5)
    encoder_only.save_pretrained(str(tmp_path / "encoder"))
    with pytest.raises(ValueError, match="missing"):
        MT5ForConditionalGeneration.from_pretrained(str(tmp_path / "encoder"))
