"""Unit tests for tfmodels.layers: against the reference's own functions where it has
them (T5 relative position buckets, M2M100 sinusoidal positions, T5's RMS norm,
activations), and get_config/from_config for every layer."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmodels.layers as layers_module
from tfmodels.layers import (
    Dense,
    FeedForward,
    Int8Matrix,
    MultiHeadAttention,
    RelativePositionBias,
    RMSNorm,
    ScreenedHead,
    SinusoidalPositionEmbedding,
    TransformerLayer,
    TransformerStack,
    get_activation,
    padding_aware_position_ids,
)
from tfmodels.layers.activations import ACTIVATION_NAMES
from tfmodels.layers.attention import MASKED_BIAS
from tfmodels.layers.relative_position_bias import relative_position_bucket

from helpers import optimized_hlo

# (num_buckets, max_distance): mt5-small's, the tiny test config's, and odd sizes.
BUCKET_SETTINGS = [(32, 128), (8, 20), (16, 64), (10, 33), (7, 9)]
# Every distance in [-300, 300]: covers the exact/log boundary (num_buckets // 4 or // 2),
# max_distance and beyond, for every setting above.
RELATIVE_POSITIONS = np.arange(-300, 301, dtype=np.int32)


# ----------------------------------------------------------------- relative position bias
@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
@pytest.mark.parametrize("num_buckets, max_distance", BUCKET_SETTINGS)
def test_relative_position_bucket_matches_reference(torch, transformers, num_buckets,
                                                    max_distance, bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention

    expected = T5Attention._relative_position_bucket(
        torch.from_numpy(RELATIVE_POSITIONS.astype(np.int64)), bidirectional=bidirectional,
        num_buckets=num_buckets, max_distance=max_distance).numpy()
    ours = relative_position_bucket(tf.constant(RELATIVE_POSITIONS), bidirectional, num_buckets,
                                    max_distance).numpy()
    mismatches = RELATIVE_POSITIONS[ours != expected]
    assert mismatches.size == 0, f"buckets differ at relative positions {mismatches[:20]}"
    # The distances tested reach the first and the last (saturated) bucket.
    last_bucket = 2 * (num_buckets // 2) - 1 if bidirectional else num_buckets - 1
    assert expected.min() == 0 and expected.max() == last_bucket


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
@pytest.mark.parametrize("num_buckets, max_distance", BUCKET_SETTINGS)
def test_relative_position_bucket_properties(num_buckets, max_distance, bidirectional):
    """Torch-free: the bucket scheme's defining properties."""
    buckets = relative_position_bucket(tf.constant(RELATIVE_POSITIONS), bidirectional,
                                       num_buckets, max_distance).numpy()
    assert buckets.min() >= 0 and buckets.max() < num_buckets
    per_direction = num_buckets // 2 if bidirectional else num_buckets
    max_exact = per_direction // 2
    offset = np.where(bidirectional & (RELATIVE_POSITIONS > 0), per_direction, 0)
    distance = (np.abs(RELATIVE_POSITIONS) if bidirectional
                else np.maximum(-RELATIVE_POSITIONS, 0))
    within = buckets - offset
    # exact buckets for small distances
    small = distance < max_exact
    np.testing.assert_array_equal(within[small], distance[small])
    # monotone in distance, per direction
    for sign in ([-1, 1] if bidirectional else [-1]):
        side = np.sign(RELATIVE_POSITIONS) == sign
        order = np.argsort(distance[side])
        assert np.all(np.diff(within[side][order]) >= 0)
    # everything at or past max_distance shares the direction's last bucket
    far = distance >= max_distance
    assert np.all(within[far] == per_direction - 1)
    if not bidirectional:  # a causal decoder sees the future as distance 0
        assert np.all(buckets[RELATIVE_POSITIONS > 0] == 0)


@pytest.mark.parametrize("is_decoder", [False, True])
def test_relative_position_bias_layer_matches_reference_compute_bias(torch, transformers,
                                                                     is_decoder):
    from transformers.models.t5.modeling_t5 import T5Attention

    config = transformers.MT5Config(d_model=16, d_kv=4, num_heads=3,
                                    relative_attention_num_buckets=8,
                                    relative_attention_max_distance=20, is_decoder=is_decoder)
    reference = T5Attention(config, has_relative_attention_bias=True).eval()
    layer = RelativePositionBias(num_heads=3, num_buckets=8, max_distance=20,
                                 bidirectional=not is_decoder)
    layer.build()
    layer.embeddings.assign(reference.relative_attention_bias.weight.detach().numpy())
    with torch.no_grad():
        expected = reference.compute_bias(13, 29).numpy()
        # one decoding step at position 11 against 29 key slots (cache_position)
        expected_step = reference.compute_bias(
            1, 29, cache_position=torch.tensor([11])).numpy()
    np.testing.assert_array_equal(layer(13, 29).numpy(), expected)
    np.testing.assert_array_equal(layer(1, 29, query_offset=11).numpy(), expected_step)


def test_relative_position_bias_query_offset_is_a_slice_of_the_full_bias():
    layer = RelativePositionBias(num_heads=2, num_buckets=8, max_distance=20, bidirectional=False)
    full = layer(12, 12).numpy()
    assert full.shape == (1, 2, 12, 12)
    for step in range(12):
        np.testing.assert_array_equal(layer(1, 12, query_offset=step).numpy(),
                                      full[:, :, step:step + 1, :])


# ------------------------------------------------------------------ sinusoidal positions
@pytest.mark.parametrize("embedding_dim", [32, 17, 1024])
def test_sinusoidal_table_matches_reference(torch, transformers, embedding_dim):
    from transformers.models.m2m_100.modeling_m2m_100 import (
        M2M100SinusoidalPositionalEmbedding,
    )

    padding_idx = 1
    positions = 2100  # past m2m100_418M's 1024 + 2 rows: the reference regrows its table
    expected = M2M100SinusoidalPositionalEmbedding.get_embedding(
        positions, embedding_dim, padding_idx).numpy()
    layer = SinusoidalPositionEmbedding(embedding_dim=embedding_dim, padding_idx=padding_idx)
    ours = layer(tf.range(positions)[tf.newaxis]).numpy()[0]
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours[padding_idx], 0.0)
    # Same float32 formula; the two libraries' exp() may differ in the last bit of an
    # inverse frequency, which shifts the angle position * frequency by up to ~2 ulp of
    # the position: allow 1e-6 + 2.5e-7 * position (measured: <= 1.2e-7 * position).
    difference = np.abs(ours - expected).max(axis=1)
    bound = 1e-6 + 2.5e-7 * np.arange(positions)
    worst = int(np.argmax(difference - bound))
    assert np.all(difference <= bound), (worst, difference[worst])


@pytest.mark.parametrize("past_length", [0, 5])
def test_padding_aware_positions_and_embedding_match_reference_forward(torch, transformers,
                                                                       past_length):
    from transformers.models.m2m_100.modeling_m2m_100 import (
        M2M100SinusoidalPositionalEmbedding,
        create_position_ids_from_input_ids,
    )

    padding_idx = 1
    ids = np.array([[5, 6, 7, 8, 2, 1, 1], [1, 1, 1, 9, 10, 11, 2], [1, 4, 1, 4, 1, 4, 2]])
    expected_ids = create_position_ids_from_input_ids(torch.from_numpy(ids), padding_idx,
                                                      past_length).numpy()
    ours_ids = padding_aware_position_ids(tf.constant(ids), padding_idx, past_length).numpy()
    np.testing.assert_array_equal(ours_ids, expected_ids)

    reference = M2M100SinusoidalPositionalEmbedding(4, 24, padding_idx)  # table regrows
    expected = reference(torch.from_numpy(ids), past_key_values_length=past_length).numpy()
    ours = SinusoidalPositionEmbedding(24, padding_idx)(ours_ids).numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_sinusoidal_embedding_torch_free_properties():
    layer = SinusoidalPositionEmbedding(embedding_dim=8, padding_idx=1)
    table = layer(tf.constant([[0, 1, 2, 3, 500]])).numpy()[0]
    np.testing.assert_array_equal(table[1], 0.0)  # padding row
    half = 4
    frequencies = np.exp(np.arange(half) * -(np.log(10000.0) / (half - 1)))
    for row, position in ((0, 0), (2, 2), (3, 3), (4, 500)):
        angles = position * frequencies
        np.testing.assert_allclose(table[row], np.concatenate([np.sin(angles), np.cos(angles)]),
                                   atol=2e-5)
    assert layer.weights == []  # no table stored: any position works


# --------------------------------------------------------------------------------- RMSNorm
def test_rms_norm_matches_reference_t5_layer_norm(torch, transformers):
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    rng = np.random.RandomState(0)
    hidden = (rng.randn(2, 5, 16) * 3.0).astype(np.float32)
    scale = rng.randn(16).astype(np.float32)
    reference = T5LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(scale))
        expected = reference(torch.from_numpy(hidden)).numpy()
    layer = RMSNorm(epsilon=1e-6)
    layer.build(hidden.shape)
    layer.scale.assign(scale)
    np.testing.assert_allclose(layer(hidden).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_rms_norm_formula_and_mixed_precision():
    rng = np.random.RandomState(1)
    hidden = rng.randn(3, 4, 8).astype(np.float32)
    layer = RMSNorm(epsilon=1e-3)
    out = layer(hidden).numpy()  # scale starts at ones
    expected = hidden / np.sqrt(np.mean(hidden**2, axis=-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # No mean subtraction: a constant vector keeps its sign.
    assert np.all(layer(np.full((1, 1, 8), 2.0, np.float32)).numpy() > 0.99)

    bf16 = RMSNorm(epsilon=1e-3, dtype="mixed_bfloat16")
    # Values whose squares overflow bfloat16's precision still normalise correctly,
    # because the statistic is computed in float32.
    large = tf.constant(hidden * 1e4, tf.bfloat16)
    result = bf16(large)
    assert result.dtype == tf.bfloat16 and bf16.scale.dtype == "float32"
    np.testing.assert_allclose(tf.cast(result, tf.float32).numpy(), expected, atol=3e-2)


# ----------------------------------------------------------------------------- activations
def test_activations_match_reference_act2fn(torch, transformers):
    from transformers.activations import ACT2FN

    values = np.linspace(-6, 6, 101, dtype=np.float32)
    for name in ACTIVATION_NAMES:
        expected = ACT2FN[name](torch.from_numpy(values)).numpy()
        np.testing.assert_allclose(get_activation(name)(tf.constant(values)).numpy(), expected,
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="Unknown activation 'banana'"):
        get_activation("banana")


# ------------------------------------------------------------- get_config / from_config
def _hidden(shape=(2, 5, 16), seed=0):
    return tf.constant(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def _call(layer, inputs):
    """Calls a layer the way its owner does and returns a list of output tensors."""
    if isinstance(layer, RelativePositionBias):
        return [layer(*inputs)]
    if isinstance(layer, TransformerStack):
        outputs = layer(*inputs[:1], **inputs[1])
        return [outputs["last_hidden_state"], *outputs.get("hidden_states", ())]
    if isinstance(layer, (MultiHeadAttention, TransformerLayer)):
        hidden, weights, _ = layer(*inputs[:1], **inputs[1])
        weights = [w for w in (weights if isinstance(weights, tuple) else (weights,))
                   if w is not None]
        return [hidden, *weights]
    return [layer(inputs)]


def _assigned_screen():
    screen = ScreenedHead(vocab_size=40, in_dim=16, candidates=4, name="screened_head")
    screen.assign(np.random.default_rng(3).standard_normal((40, 16)).astype(np.float32))
    return screen


LAYER_CASES = {
    "Dense": (
        lambda: Dense(12, use_bias=True, activation="relu", name="dense"),
        lambda: _hidden(),
    ),
    "Int8Matrix": (
        lambda: Int8Matrix(out_dim=12, in_dim=16, name="int8_matrix"),
        lambda: _hidden(),
    ),
    "ScreenedHead": (
        lambda: _assigned_screen(),
        lambda: _hidden((3, 16)),
    ),
    "MultiHeadAttention": (
        lambda: MultiHeadAttention(num_heads=2, head_dim=6, hidden_dim=16, use_bias=True,
                                   scale_queries=True, dropout=0.1, name="attention"),
        lambda: (_hidden(), dict(key_value_states=_hidden((2, 7, 16), 1),
                                 return_attention_weights=True)),
    ),
    "FeedForward": (
        lambda: FeedForward(hidden_dim=16, intermediate_dim=24, activation="gelu_new",
                            gated=True, dropout=0.1, name="ffn"),
        lambda: _hidden(),
    ),
    "RelativePositionBias": (
        lambda: RelativePositionBias(num_heads=3, num_buckets=8, max_distance=20,
                                     bidirectional=False, name="bias"),
        lambda: (5, 9),
    ),
    "RMSNorm": (lambda: RMSNorm(epsilon=1e-3, name="norm"), lambda: _hidden()),
    "SinusoidalPositionEmbedding": (
        lambda: SinusoidalPositionEmbedding(embedding_dim=15, padding_idx=1, name="positions"),
        lambda: tf.constant([[2, 3, 4, 1], [1, 2, 3, 4]]),
    ),
    "TransformerLayer": (
        lambda: TransformerLayer(hidden_dim=16, num_heads=2, head_dim=6, intermediate_dim=24,
                                 activation="relu", gated_ffn=False, use_bias=True,
                                 norm_type="layer", norm_epsilon=1e-5, scale_queries=True,
                                 is_decoder=True, name="layer"),
        lambda: (_hidden(), dict(encoder_hidden_states=_hidden((2, 7, 16), 1),
                                 return_attention_weights=True)),
    ),
    "TransformerStack": (
        lambda: TransformerStack(num_layers=2, hidden_dim=16, num_heads=2, head_dim=6,
                                 intermediate_dim=24, activation="gelu_new", gated_ffn=True,
                                 is_decoder=True, relative_attention_num_buckets=8,
                                 relative_attention_max_distance=20, layerdrop=0.1,
                                 dropout_after_final_norm=True, name="stack"),
        lambda: (_hidden(), dict(encoder_hidden_states=_hidden((2, 7, 16), 1),
                                 padding_mask=tf.constant([[1] * 5, [1, 1, 1, 0, 0]]),
                                 output_hidden_states=True)),
    ),
}


# ----------------------------------------------------------------- Dense kernel layouts
def _out_in_and_in_out_twins(dtype=None):
    """A `kernel_layout="out_in"` Dense and an `[in, out]` twin holding the same weights."""
    out_in = Dense(6, kernel_layout="out_in", activation="relu",
                   bias_initializer="random_normal", dtype=dtype)
    out_in.build((None, 4))
    in_out = Dense(6, activation="relu", dtype=dtype)
    in_out.build((None, 4))
    in_out.kernel.assign(out_in.kernel.numpy().T)
    in_out.bias.assign(out_in.bias.numpy())
    return out_in, in_out


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("leading", [(), (2,)], ids=["rank2", "rank3"])
def test_out_in_dense_computes_what_its_in_out_twin_computes(rows, leading):
    out_in, in_out = _out_in_and_in_out_twins()
    assert tuple(out_in.kernel.shape) == (6, 4)
    inputs = tf.random.stateless_normal(leading + (rows, 4), seed=(rows, len(leading)))
    expected = in_out(inputs).numpy()
    dynamic = tf.TensorSpec([None] * (len(leading) + 1) + [4], tf.float32)
    runs = {
        "eager": out_in(inputs),
        "xla": tf.function(out_in, jit_compile=True)(inputs),
        # Unknown rows take the plain graph's (W x^T)^T orientation.
        "plain graph, dynamic rows": tf.function(out_in, input_signature=[dynamic])(inputs),
        "plain graph, static rows": tf.function(out_in)(inputs),
    }
    for how, outputs in runs.items():
        assert outputs.shape == leading + (rows, 6), how
        np.testing.assert_allclose(outputs.numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=how)


def test_out_in_dense_gradients_are_the_transposed_twin_gradients():
    out_in, in_out = _out_in_and_in_out_twins()
    inputs = tf.random.stateless_normal((2, 3, 4), seed=(1, 2))
    gradients = []
    for layer in (out_in, in_out):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs) ** 2)
        gradients.append(tape.gradient(loss, [layer.kernel, layer.bias]))
    np.testing.assert_allclose(gradients[0][0].numpy(), gradients[1][0].numpy().T, rtol=1e-5)
    np.testing.assert_allclose(gradients[0][1].numpy(), gradients[1][1].numpy(), rtol=1e-5)


def test_out_in_dense_initializer_sees_the_in_out_shape():
    """A fan-in initializer scales by the input width, not by the stored first axis."""
    fan_in_normal = keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal",
                                                       seed=0)
    layer = Dense(2048, kernel_layout="out_in", kernel_initializer=fan_in_normal)
    layer.build((None, 8))
    assert tuple(layer.kernel.shape) == (2048, 8)
    assert abs(float(np.std(layer.kernel.numpy())) - 8**-0.5) < 0.02


def test_out_in_dense_mixed_precision_and_config():
    out_in, _ = _out_in_and_in_out_twins(dtype="mixed_bfloat16")
    assert out_in.kernel.dtype == "float32"
    assert out_in(tf.ones((2, 4))).dtype == tf.bfloat16
    assert Dense.from_config(out_in.get_config()).kernel_layout == "out_in"


def test_single_row_products_are_not_fused_into_their_bias_or_residual_add():
    """XLA's CPU backend fuses a matrix-vector product into a following add and runs that
    fusion on one thread; the projections' bias and residual adds must not take that form
    (see `products.add_to_product`), and still compute the same sums."""
    dense = Dense(64, kernel_layout="out_in", bias_initializer="random_normal")
    row = tf.random.stateless_normal((1, 32), seed=(3, 4))
    dense.build(row.shape)
    # The check itself can fail: the naive form of the same computation is output-fused.
    naive = optimized_hlo(
        lambda x: tf.matmul(x, dense.kernel, transpose_b=True) + dense.bias, row
    )
    assert "kind=kOutput" in naive
    assert "kind=kOutput" not in optimized_hlo(dense, row)
    np.testing.assert_allclose(
        tf.function(dense, jit_compile=True)(row).numpy(),
        (tf.matmul(row, dense.kernel, transpose_b=True) + dense.bias).numpy(),
        rtol=1e-6, atol=1e-6,
    )

    layer = LAYER_CASES["TransformerLayer"][0]()
    hidden = tf.random.stateless_normal((1, 1, 16), seed=(5, 6))
    context = {"encoder_hidden_states": _hidden((1, 7, 16), 1)}
    eager = layer(hidden, **context)[0]
    assert "kind=kOutput" not in optimized_hlo(lambda x: layer(x, **context)[0], hidden)
    np.testing.assert_allclose(
        tf.function(lambda x: layer(x, **context)[0], jit_compile=True)(hidden).numpy(),
        eager.numpy(), rtol=1e-5, atol=1e-6,
    )


@pytest.mark.parametrize("rows,panelled", [(1, False), (2, True), (5, True), (64, True),
                                            (65, False)])
def test_few_row_products_run_in_panels_under_xla(rows, panelled):
    """Under XLA, 2-64 rows times a large [out, in] matrix run as one batched product over
    row panels (`products.rows_times_transposed`); one row and many rows keep the plain
    product; every form gives the same values as the plain graph."""
    from tfmodels.layers import products

    matrix_oi = tf.random.stateless_normal((4096, 64), seed=(1, 2))  # 2**18 entries
    inputs_ri = tf.random.stateless_normal((rows, 64), seed=(3, 4))
    assert products.panel_rows_for(4096, 64) == 2048
    hlo = optimized_hlo(lambda x: products.rows_times_transposed(x, matrix_oi), inputs_ri)
    # The panel product is the only dot with a batch dimension.
    assert ("lhs_batch_dims={0}" in hlo) == panelled
    expected = tf.function(products.rows_times_transposed)(inputs_ri, matrix_oi)
    np.testing.assert_allclose(
        tf.function(products.rows_times_transposed, jit_compile=True)(inputs_ri, matrix_oi),
        expected.numpy(), rtol=1e-5, atol=1e-4,
    )
    np.testing.assert_allclose(expected.numpy(), inputs_ri.numpy() @ matrix_oi.numpy().T,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("vendor,expected", [("AuthenticAMD", 16), ("GenuineIntel", 1), ("", 1)])
def test_the_processor_decides_the_single_row_slices_unless_they_are_set(
        vendor, expected, monkeypatch):
    """Sliced single-row products where they were measured faster (AMD), the lone product
    elsewhere; a set `SINGLE_ROW_SLICES` wins either way."""
    from tfmodels.layers import products

    monkeypatch.setattr(products, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(products, "SINGLE_ROW_SLICES", None)
    assert products.single_row_slices() == expected
    monkeypatch.setattr(products, "SINGLE_ROW_SLICES", 4)
    assert products.single_row_slices() == 4


@pytest.mark.parametrize("out_dim,slices,products_expected", [
    (4099, 16, 16), (4096, 16, 16), (4096, 1, 1), (2048, 16, 1)])
def test_single_row_products_by_huge_matrices_run_as_row_slices_under_xla(
        out_dim, slices, products_expected, monkeypatch):
    """Under XLA, one row times a matrix of at least `SINGLE_ROW_SLICE_MIN_ELEMENTS`
    entries (an LM head) runs as `single_row_slices()` independent products over row slices
    of the matrix (uneven row counts included), concatenated, or as the one product where
    that is 1; smaller matrices keep the one product; the values are the plain graph's."""
    from tfmodels.layers import products

    # The real threshold is 2**24 entries (an LM head); a smaller one keeps the test fast.
    monkeypatch.setattr(products, "SINGLE_ROW_SLICE_MIN_ELEMENTS", 4096 * 64)
    monkeypatch.setattr(products, "SINGLE_ROW_SLICES", slices)
    matrix_oi = tf.random.stateless_normal((out_dim, 64), seed=(1, 2))
    row = tf.random.stateless_normal((1, 64), seed=(3, 4))
    hlo = optimized_hlo(lambda x: products.rows_times_transposed(x, matrix_oi), row)
    assert hlo.count(" dot(") == products_expected
    compiled = tf.function(products.rows_times_transposed, jit_compile=True)(row, matrix_oi)
    plain = tf.function(products.rows_times_transposed)(row, matrix_oi)
    assert compiled.shape == plain.shape == (1, out_dim)
    np.testing.assert_allclose(compiled.numpy(), plain.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plain.numpy(), row.numpy() @ matrix_oi.numpy().T,
                               rtol=1e-4, atol=1e-4)


def test_panel_rows_need_a_divisor_that_makes_cache_sized_panels():
    from tfmodels.layers.products import PANEL_MAX_ELEMENTS, panel_rows_for

    for out_dim, in_dim in [(128112, 1024), (250112, 512), (1024, 4096), (1024, 1024)]:
        rows = panel_rows_for(out_dim, in_dim)
        assert out_dim % rows == 0 and out_dim // rows >= 2
        assert rows * in_dim <= PANEL_MAX_ELEMENTS
    assert panel_rows_for(4099, 1024) is None  # prime: no panels of at least 64 rows
    assert panel_rows_for(100, 1024) is None  # too few rows for two such panels


def test_dense_layout_errors_are_named():
    with pytest.raises(ValueError, match="kernel_layout"):
        Dense(3, kernel_layout="column_major")
    layer = Dense(3, kernel_layout="out_in")
    layer.build((None, 4))
    with pytest.raises(ValueError, match="LoRA"):
        layer.enable_lora(2)
    with pytest.raises(ValueError, match="quantize_weights"):
        layer.quantize("int8")


def test_every_layer_has_a_config_round_trip_case():
    exported = {name for name, value in vars(layers_module).items()
                if inspect.isclass(value) and issubclass(value, keras.layers.Layer)}
    assert exported == set(LAYER_CASES)


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_get_config_from_config_round_trip(name):
    make_layer, make_inputs = LAYER_CASES[name]
    layer = make_layer()
    inputs = make_inputs()
    outputs = _call(layer, inputs)  # builds it

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Through Keras' registered-name serialisation too (what .keras files use).
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"tfmodels>{name}"
    clone_via_keras = keras.saving.deserialize_keras_object(serialized)
    assert type(clone_via_keras) is type(layer)
    assert clone_via_keras.get_config() == config

    _call(clone, inputs)  # build, then copy weights: same outputs
    assert len(clone.weights) == len(layer.weights)
    clone.set_weights(layer.get_weights())
    for ours, theirs in zip(_call(clone, inputs), outputs):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_float32_inputs_under_a_mixed_policy(name):
    """Every layer built with `mixed_bfloat16` takes float32 inputs (a user's layer,
    not just the stacks that cast before calling their layers)."""
    make_layer, make_inputs = LAYER_CASES[name]
    config = {**make_layer().get_config(), "dtype": "mixed_bfloat16"}
    if name == "ScreenedHead":  # its bounds hold for float32 products only
        with pytest.raises(ValueError, match="ScreenedHead works in float32"):
            ScreenedHead(40, 16, dtype="mixed_bfloat16")
        return
    outputs = _call(type(make_layer()).from_config(config), make_inputs())
    # Int8Matrix returns its inputs' dtype; attention biases stay float32 (see the layers).
    expected = tf.float32 if name in ("Int8Matrix", "RelativePositionBias") else tf.bfloat16
    assert outputs[0].dtype == expected


@pytest.mark.parametrize("new_len", [1, 3])
def test_cache_update_is_in_place_under_xla(new_len):
    """Under XLA the KV-cache write is XLA's dynamic-update-slice (in place on the loop's
    cache, not a select over every slot); both paths write exactly the new keys at the
    dynamic position and leave the other slots as they were."""
    from tfmodels.layers.attention import _dynamic_update_slice

    cache = tf.reshape(tf.range(2 * 3 * 7 * 4, dtype=tf.float32), [2, 3, 7, 4])
    update = -1.0 - tf.reshape(tf.range(2 * 3 * new_len * 4, dtype=tf.float32), [2, 3, new_len, 4])
    position = tf.constant(2, tf.int32)

    def write(cache, update, position):
        return _dynamic_update_slice(cache, update, [0, 0, position, 0])

    expected = cache.numpy().copy()
    expected[:, :, 2:2 + new_len] = update.numpy()
    for fn in (tf.function(write, jit_compile=True), tf.function(write)):
        np.testing.assert_array_equal(fn(cache, update, position).numpy(), expected)
    hlo = optimized_hlo(write, cache, update, position)
    assert "dynamic-update-slice(" in hlo and "select(" not in hlo


@pytest.mark.parametrize("query_length", [1, 3])
def test_precomputed_keys_shared_by_groups_of_queries(query_length):
    """A search's cross-attention keeps one precomputed key/value cache per input and
    attends with that input's beams (consecutive query rows) as one group: the same
    outputs and weights as attending each row to its own copy of the cache, under XLA,
    in a plain graph with a dynamic batch, and eagerly."""
    attention = MultiHeadAttention(num_heads=2, head_dim=6, hidden_dim=16, use_bias=True,
                                   scale_queries=True, name="attention")
    groups, members, source_length = 2, 3, 7
    encoder_states = _hidden((groups, source_length, 16), 1)
    queries = _hidden((groups * members, query_length, 16), 2)
    keep = np.ones([groups, source_length], bool)
    keep[1, 5:] = False  # the second input is shorter
    bias_g = tf.where(tf.constant(keep)[:, None, None, :], 0.0, MASKED_BIAS)
    attention(queries[:groups], key_value_states=encoder_states)  # builds
    cache_g = attention.project_key_value(encoder_states)

    def repeated(tensor):
        return tf.repeat(tensor, members, axis=0)

    expected, expected_weights, _ = attention(
        queries, attention_bias=repeated(bias_g), cache=tuple(map(repeated, cache_g)),
        return_attention_weights=True)

    def grouped(queries, bias, key, value):
        output, weights, _ = attention(queries, attention_bias=bias, cache=(key, value),
                                       return_attention_weights=True)
        return output, weights

    dynamic_batch = tf.function(grouped, input_signature=[
        tf.TensorSpec([None, query_length, 16]), tf.TensorSpec([None, 1, 1, source_length]),
        tf.TensorSpec([None, 2, source_length, 6]), tf.TensorSpec([None, 2, source_length, 6])])
    for fn in (grouped, tf.function(grouped, jit_compile=True), dynamic_batch):
        output, weights = fn(queries, bias_g, *cache_g)
        np.testing.assert_allclose(output.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights.numpy(), expected_weights.numpy(), rtol=1e-5,
                                   atol=1e-7)
    assert float(tf.reduce_max(expected_weights[members:, :, :, 5:])) == 0.0
    with pytest.raises(ValueError, match="5 query rows cannot share .* cache of 2 rows"):
        attention(queries[:5], cache=cache_g)


@pytest.mark.parametrize("batch,fused", [(1, True), (2, False)])
@pytest.mark.parametrize("cache_index,projections", [(2, 4), (None, 2)])  # self, cross
def test_single_query_attention_is_fused_sums_under_xla(batch, fused, cache_index, projections):
    """Under XLA, one query of one row (batch-1 decoding) attends through a multiply and a
    sum, which XLA fuses and reuses across layers, instead of two matrix-vector products
    each compiled into its own kernel (`attention._is_single_query`); more rows keep the
    products. Every form gives the eager values, in float32 and mixed bfloat16, for the
    self-attention cache and for precomputed cross-attention keys and values."""
    for policy in ("float32", "mixed_bfloat16"):
        attention = MultiHeadAttention(num_heads=2, head_dim=6, hidden_dim=16, use_bias=True,
                                       scale_queries=True, dtype=policy, name="attention")
        query = _hidden((batch, 1, 16), 1)
        cache = tuple(_hidden((batch, 2, 5, 6), seed) for seed in (2, 3))
        bias = tf.where(tf.range(5) < 3, 0.0, MASKED_BIAS)[tf.newaxis, tf.newaxis, tf.newaxis]
        index = None if cache_index is None else tf.constant(cache_index)

        def attend(query, key, value):
            output, weights, _ = attention(query, attention_bias=bias, cache=(key, value),
                                           cache_index=index, return_attention_weights=True)
            return output, weights

        expected_output, expected_weights = attend(query, *cache)
        output, weights = tf.function(attend, jit_compile=True)(query, *cache)
        tolerance = 1e-5 if policy == "float32" else 2e-2
        np.testing.assert_allclose(np.asarray(output, np.float32),
                                   np.asarray(expected_output, np.float32),
                                   rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(np.asarray(weights, np.float32),
                                   np.asarray(expected_weights, np.float32),
                                   rtol=tolerance, atol=tolerance)
        assert float(tf.reduce_max(tf.cast(weights[..., 3:], tf.float32))) == 0.0
        # The projections are the only products left.
        dots = optimized_hlo(attend, query, *cache).count(" dot(")
        assert (dots == projections) == fused, dots
