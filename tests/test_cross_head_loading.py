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


@pytest.mark.torch
def test_mt5_task_head_checkpoints_load_into_the_encoder_and_bare_models(transformers, tmp_path):
    """The reference's MT5ForSequenceClassification / ForTokenClassification (backbone under
    `transformer.`) and ForQuestionAnswering checkpoints load into our encoder-only and
    bare models, as into the reference's `MT5EncoderModel`; their head layers are left out."""
    import torch

    config = transformers.MT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=24, num_layers=1,
                                    num_heads=2, dropout_rate=0.0, num_labels=3)
    ids = np.array([[5, 6, 7, 1], [8, 9, 1, 0]])
    mask = (ids != 0).astype("int64")
    for name in ("MT5ForSequenceClassification", "MT5ForTokenClassification",
                 "MT5ForQuestionAnswering"):
        torch.manual_seed(0)
        directory = str(tmp_path / name)
        getattr(transformers, name)(config).save_pretrained(directory)
        reference = transformers.MT5EncoderModel.from_pretrained(directory).eval()
        with torch.no_grad():
            expected = reference(input_ids=torch.from_numpy(ids),
                                 attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
        ours = MT5EncoderModel.from_pretrained(directory)
        np.testing.assert_allclose(
            ours(input_ids=ids, attention_mask=mask).last_hidden_state.numpy(), expected,
            rtol=1e-5, atol=1e-6, err_msg=name)
        if name != "MT5ForTokenClassification":  # the other two hold a decoder too
            bare = MT5Model.from_pretrained(directory)
            np.testing.assert_allclose(
                bare(input_ids=ids, attention_mask=mask,
                     decoder_input_ids=ids).encoder_last_hidden_state.numpy(),
                expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_saved_head_names_its_own_architecture(tmp_path):
    """`architectures` in config.json names the saving class (the reference's behaviour), so
    `load_seq2seq_lm` and the reference's Auto classes read the right head."""
    import json

    from tfmodels.auto import load_seq2seq_lm

    MT5EncoderModel.from_pretrained(FULL_MT5).save_pretrained(str(tmp_path / "encoder"))
    with open(tmp_path / "encoder" / "config.json", encoding="utf-8") as handle:
        assert json.load(handle)["architectures"] == ["MT5EncoderModel"]
    MT5ForConditionalGeneration.from_pretrained(FULL_MT5).save_pretrained(str(tmp_path / "lm"))
    assert type(load_seq2seq_lm(str(tmp_path / "lm"))) is MT5ForConditionalGeneration
