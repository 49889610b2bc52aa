"""mixed_bfloat16 (bfloat16 compute, float32 variables), both families: the forward pass
runs and stays close to float32. The measured figures are printed (see "measured
figures")."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import (FAMILIES, GOLDEN_FAMILIES, bf16_vs_fp32, golden_family, incremental_decoder_logits,
                     load_golden_model, make_batch, to_numpy)

SOURCE_LENGTHS = (14, 7, 3, 11, 9, 5, 12, 2)
TARGET_LENGTHS = (12, 6, 9, 3, 12, 7, 10, 5)
# Bounds: relative logit error < 5e-2, argmax agreement > 90%.
MAX_LOGITS_REL = 5e-2
MIN_ARGMAX_AGREEMENT = 0.9


@pytest.fixture(scope="module", params=GOLDEN_FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def fp32_model(family):
    return load_golden_model(family)


def _bf16_model(family, how):
    if how == "global_policy":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            return load_golden_model(family)
        finally:
            keras.mixed_precision.set_global_policy("float32")
    return load_golden_model(family, dtype="mixed_bfloat16")


@pytest.mark.parametrize("how, side", [("global_policy", "right"), ("dtype_argument", "left")])
def test_mixed_bfloat16_forward_stays_close_to_float32(family, fp32_model, how, side,
                                                       report_figure):
    _, _, ids, vocab = golden_family(family)
    batch = make_batch(vocab, ids, SOURCE_LENGTHS, TARGET_LENGTHS, side, seed=11)
    fp32_out = fp32_model(**batch)
    model = _bf16_model(family, how)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored

    assert model.compute_dtype == "bfloat16"
    assert all(variable.dtype == "float32" for variable in model.weights)
    out = model(**batch)
    assert out.logits.dtype == tf.float32  # logits and loss are returned in float32
    assert out.encoder_last_hidden_state.dtype == tf.bfloat16
    assert np.all(np.isfinite(to_numpy(out.logits))) and np.isfinite(float(out.loss))

    figures = bf16_vs_fp32(fp32_out, out, batch["labels"])
    report_figure(f"{type(model).__name__} mixed_bfloat16 vs float32 ({how}, {side})",
                  **figures)
    assert figures["logits_rel"] < MAX_LOGITS_REL
    assert figures["argmax_agreement"] > MIN_ARGMAX_AGREEMENT
    assert figures["loss_diff"] < 0.05 * float(fp32_out.loss)
    # bfloat16 really was used: the result is not bit-identical to float32.
    assert figures["logits_rel"] > 0


def test_mixed_bfloat16_incremental_decoding_matches_its_full_pass(family, report_figure):
    _, _, ids, vocab = golden_family(family)
    batch = make_batch(vocab, ids, (9, 4, 6), (7, 7, 7), "left", seed=5)
    model = _bf16_model(family, "dtype_argument")
    full = to_numpy(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          decoder_input_ids=batch["decoder_input_ids"]).logits)
    stepped = incremental_decoder_logits(model, batch)
    relative = float(np.abs(stepped - full).max() / np.abs(full).max())
    agreement = float(np.mean(stepped.argmax(-1) == full.argmax(-1)))
    report_figure(f"{type(model).__name__} mixed_bfloat16 decode_step vs full pass",
                  logits_rel=relative, argmax_agreement=agreement)
    assert relative < MAX_LOGITS_REL and agreement > MIN_ARGMAX_AGREEMENT


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "bfloat16"])
def test_keras_file_keeps_the_dtype_policy(family, dtype, tmp_path):
    """A `.keras` round trip computes at the precision it was saved with, whatever the
    global policy is when it is loaded."""
    family = FAMILIES[family]
    model = family.ours().from_pretrained(family.golden_dir, dtype=dtype)
    model.save(tmp_path / "model.keras")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        loaded = keras.saving.load_model(tmp_path / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert loaded.dtype_policy.name == dtype
    assert {w.dtype for w in loaded.weights if "int8" not in w.path} == {model.weights[0].dtype}
    batch = family.batch("right")
    np.testing.assert_array_equal(loaded(**batch).logits.numpy(), model(**batch).logits.numpy())


def test_mixed_float16_clamps_hidden_states_like_the_reference(family):
    """Weights that push the encoder's residual stream past float16's maximum (65504):
    the reference clamps float16 hidden states instead of letting them overflow to
    inf and NaN, and so do we."""
    from converters import read_checkpoint

    family = FAMILIES[family]
    tensors, _ = read_checkpoint(family.golden_dir)
    # Scaled so that each weight still fits float16.
    factors = ({"encoder.block.0.layer.1.DenseReluDense.wo.weight": 40000} if family.name == "mt5"
               else {"model.encoder.layers.0.fc1.weight": 1700,
                     "model.encoder.layers.0.fc2.weight": 1700})
    tensors = dict(tensors, **{name: np.asarray(tensors[name], np.float32) * factor
                               for name, factor in factors.items()})
    batch = family.batch("right")
    losses = {}
    for dtype in ("float32", "mixed_float16"):
        model = family.ours().from_pretrained(family.golden_dir, dtype=dtype)
        model.load_hf_state_dict(tensors)
        out = model(**batch, output_hidden_states=True)
        largest = max(float(np.abs(np.asarray(h, np.float32)).max())
                      for h in out["encoder_hidden_states"])
        losses[dtype] = float(out.loss)
        if dtype == "float32":
            assert largest > 65504  # the float32 stream does go past float16's range
        else:
            assert largest <= 65504 and np.isfinite(out.logits.numpy()).all()
    assert abs(losses["mixed_float16"] - losses["float32"]) < 0.5, losses
