"""From-scratch initialisation: every weight draws its own values, with the reference's
per-role scales (T5: Mesh TensorFlow's fan-in scheme with the query carrying 1/sqrt(d_kv);
M2M100: one normal with `init_std`)."""

import math

import keras
import numpy as np
import pytest

from tfmodels import (
    M2M100Config,
    M2M100ForConditionalGeneration,
    MT5Config,
    MT5ForConditionalGeneration,
)
from tfmodels.layers import FeedForward, MultiHeadAttention, TransformerStack, clone_initializer

MT5_CONFIG = dict(
    vocab_size=512, d_model=64, d_kv=16, d_ff=192, num_layers=2, num_decoder_layers=2,
    num_heads=4, relative_attention_num_buckets=32, feed_forward_proj="gated-gelu",
)
M2M100_CONFIG = dict(
    vocab_size=512, d_model=64, encoder_layers=2, decoder_layers=2,
    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
    decoder_ffn_dim=128, max_position_embeddings=64, init_std=0.05,
)


def _random_weights(model):
    """HF-named tensors that are drawn at random (norm scales and biases start constant)."""
    return {
        name: np.asarray(value)
        for name, value in model.hf_state_dict().items()
        if not name.endswith("bias") and "layer_norm" not in name
    }


def _std_tolerance(size):
    # Relative standard error of a sample std is ~1/sqrt(2n); allow 5 of them plus 2%.
    return 5.0 / math.sqrt(2 * size) + 0.02


@pytest.mark.parametrize("family", ["mt5", "m2m100"])
def test_no_two_weights_start_equal(family):
    if family == "mt5":
        model = MT5ForConditionalGeneration(MT5Config(**MT5_CONFIG))
    else:
        model = M2M100ForConditionalGeneration(M2M100Config(**M2M100_CONFIG))
    weights = _random_weights(model)
    assert len(weights) > 20
    fingerprints = {}
    for name, value in weights.items():
        fingerprint = value.ravel()[:16].tobytes()
        assert fingerprint not in fingerprints, f"{name} starts equal to {fingerprints[fingerprint]}"
        fingerprints[fingerprint] = name


def _mt5_expected_std(name, config):
    """The reference's per-role standard deviations (T5PreTrainedModel's scheme)."""
    factor = config.initializer_factor
    if name in ("shared.weight", "lm_head.weight"):
        return factor
    if name.endswith("relative_attention_bias.weight"):
        return factor * config.d_model**-0.5
    role = name.rsplit(".", 2)[-2]
    return factor * {
        "q": (config.d_model * config.d_kv) ** -0.5,
        "k": config.d_model**-0.5,
        "v": config.d_model**-0.5,
        "o": (config.num_heads * config.d_kv) ** -0.5,
        "wi_0": config.d_model**-0.5,
        "wi_1": config.d_model**-0.5,
        "wo": config.d_ff**-0.5,
    }[role]


@pytest.mark.parametrize("initializer_factor", [1.0, 0.5])
def test_mt5_scales_follow_the_reference_scheme(initializer_factor):
    config = MT5Config(**MT5_CONFIG, initializer_factor=initializer_factor)
    weights = _random_weights(MT5ForConditionalGeneration(config))
    roles = set()
    for name, value in weights.items():
        expected = _mt5_expected_std(name, config)
        assert abs(value.std() / expected - 1) < _std_tolerance(value.size), (
            f"{name}: std {value.std():.4f}, the reference draws {expected:.4f}"
        )
        assert abs(value.mean()) < 5 * expected / math.sqrt(value.size), name
        roles.add(name.rsplit(".", 2)[-2])
    assert {"q", "k", "v", "o", "wi_0", "wi_1", "wo", "relative_attention_bias"} <= roles


def test_m2m100_weights_draw_with_init_std():
    config = M2M100Config(**M2M100_CONFIG)
    weights = _random_weights(M2M100ForConditionalGeneration(config))
    for name, value in weights.items():
        if "embed_positions" in name:
            continue  # sinusoidal table, not a drawn weight
        if name.endswith("shared.weight"):
            # The padding id's embedding starts at zero, as in the reference.
            np.testing.assert_array_equal(value[config.pad_token_id], 0.0)
            value = np.delete(value, config.pad_token_id, axis=0)
        assert abs(value.std() / config.init_std - 1) < _std_tolerance(value.size), name


def test_initialisation_is_reproducible_under_set_random_seed():
    def build():
        keras.utils.set_random_seed(7)
        return _random_weights(MT5ForConditionalGeneration(MT5Config(**MT5_CONFIG)))

    first, second = build(), build()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_layers_clone_a_shared_initializer_per_weight():
    shared = keras.initializers.RandomNormal(stddev=1.0)
    attention = MultiHeadAttention(num_heads=2, head_dim=4, hidden_dim=8,
                                   kernel_initializer=shared)
    attention.build((1, 3, 8))
    kernels = [attention.query_dense.kernel, attention.key_dense.kernel,
               attention.value_dense.kernel, attention.output_dense.kernel]
    for index, kernel in enumerate(kernels[1:], start=1):
        assert not np.array_equal(kernels[0].numpy(), kernel.numpy()), index
    ffn = FeedForward(hidden_dim=8, intermediate_dim=8, gated=True, kernel_initializer=shared)
    ffn.build((1, 3, 8))
    assert not np.array_equal(ffn.intermediate_dense.kernel.numpy(),
                              ffn.linear_dense.kernel.numpy())
    # A clone of an unseeded initializer draws differently from its original.
    assert not np.array_equal(np.asarray(shared((4,))), np.asarray(clone_initializer(shared)((4,))))


def test_query_and_position_initializers_survive_get_config():
    stack = TransformerStack(
        num_layers=1, hidden_dim=8, num_heads=2, head_dim=4, intermediate_dim=16,
        relative_attention_num_buckets=8,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.5),
        query_kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        position_bias_initializer=keras.initializers.RandomNormal(stddev=0.02),
    )
    rebuilt = TransformerStack.from_config(stack.get_config())
    rebuilt.build((1, 3, 8))
    query = rebuilt.transformer_layers[0].self_attention.query_dense.kernel.numpy()
    key = rebuilt.transformer_layers[0].self_attention.key_dense.kernel.numpy()
    bias = rebuilt.relative_position_bias.embeddings.numpy()
    assert query.std() < 0.05 < key.std()
    assert bias.std() < 0.05


def test_mt5_scales_match_a_reference_model(transformers, torch):
    """The same config built by the reference: every tensor's std agrees with ours."""
    config = MT5Config(**MT5_CONFIG)
    ours = _random_weights(MT5ForConditionalGeneration(config))
    torch.manual_seed(0)
    reference = transformers.MT5ForConditionalGeneration(transformers.MT5Config(**MT5_CONFIG))
    theirs = {name: tensor.detach().numpy() for name, tensor in reference.state_dict().items()}
    compared = 0
    for name, value in ours.items():
        reference_std = float(theirs[name].std())
        tolerance = _std_tolerance(value.size) + _std_tolerance(theirs[name].size)
        assert abs(value.std() / reference_std - 1) < tolerance, (
            f"{name}: ours {value.std():.4f}, reference {reference_std:.4f}"
        )
        compared += 1
    assert compared == len(ours) > 20


def test_m2m100_scales_match_a_reference_model(transformers, torch):
    config = M2M100Config(**M2M100_CONFIG)
    ours = _random_weights(M2M100ForConditionalGeneration(config))
    torch.manual_seed(0)
    reference = transformers.M2M100ForConditionalGeneration(
        transformers.M2M100Config(**M2M100_CONFIG))
    theirs = {name: tensor.detach().numpy() for name, tensor in reference.state_dict().items()}
    compared = 0
    for name, value in ours.items():
        if "embed_positions" in name:
            continue
        reference_value = theirs[name]
        if name.endswith("shared.weight"):
            np.testing.assert_array_equal(reference_value[config.pad_token_id], 0.0)
        tolerance = _std_tolerance(value.size) + _std_tolerance(reference_value.size)
        assert abs(value.std() / reference_value.std() - 1) < tolerance, name
        compared += 1
    assert compared > 20
