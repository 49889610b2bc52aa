"""Int8 decoding (`model.quantize_weights("int8" | "int8_dynamic")`, `Int8Matrix`, `Dense`).

The weight-only path must compute exactly what its dequantised weights stand for (checked
against float models holding those weights); the dynamic path exactly the integer product
of the quantised inputs and weights, rescaled (checked against numpy's int64 product).
Both must agree between XLA and the plain graph, stay consistent with the teacher-forced
forward and the restricted head, and refuse training; quantisation error itself is
bounded per row.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fixtures.savedmodel.weight_checks import (
    assert_serves_the_models_translations,
    export_info,
    export_variant,
    variable_elements_by_dtype,
)
from test_training_support import random_batches, small_model
from tfmodels.layers.dense import Dense
from helpers import optimized_hlo
from tfmodels.layers.int8_matrix import (PANEL_ELEMENTS, Int8Matrix, int8_panel_rows,
                                         quantize_input_rows, quantize_rows)

FAMILIES = ["mt5", "m2m100"]
MODES = ["int8", "int8_dynamic"]


# ------------------------------------------------------------------------------ pieces
def test_quantize_rows_bounds_each_rows_error_by_half_its_step():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((7, 33)).astype(np.float32) * rng.uniform(0.01, 5, (7, 1))
    matrix[3] = 0.0
    values, scale = quantize_rows(matrix)
    assert values.dtype == np.int8 and scale.dtype == np.float32
    assert scale[3] == 1.0 and not values[3].any()
    error = np.abs(values * scale[:, None] - matrix)
    assert np.all(error <= scale[:, None] / 2 + 1e-7)
    nonzero = [row for row in range(7) if row != 3]
    assert np.all(np.abs(values[nonzero]).max(axis=1) == 127)  # each row uses the full range


def test_quantize_rows_rejects_bad_matrices():
    with pytest.raises(ValueError, match=r"\[out, in\] matrix"):
        quantize_rows(np.zeros([2, 3, 4], np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_rows(np.array([[1.0, np.nan]], np.float32))


@pytest.mark.parametrize("out_dim,in_dim", [(2, 8), (384, 512), (1024, 4096), (250112, 512),
                                            (128112, 1024), (1000, 3)])
def test_panel_rows_keep_at_least_two_cache_sized_panels(out_dim, in_dim):
    rows = int8_panel_rows(out_dim, in_dim)
    assert rows & (rows - 1) == 0  # a power of two
    assert -(-out_dim // rows) >= 2
    assert rows * in_dim <= max(PANEL_ELEMENTS, 16 * in_dim)
    with pytest.raises(ValueError, match="out_dim >= 2"):
        int8_panel_rows(1, in_dim)


@pytest.mark.parametrize("path", ["xla", "graph", "graph-panels"])
@pytest.mark.parametrize("out_dim,panel_rows", [(40, None), (37, 8), (64, 32)])
def test_int8_matrix_multiplies_by_its_dequantised_matrix(out_dim, panel_rows, path, monkeypatch):
    """XLA always loops over panels; a plain graph widens small matrices at once and loops
    only over large ones ("graph-panels" lowers that size limit to take the loop)."""
    from tfmodels.layers import int8_matrix

    if path == "graph-panels":
        monkeypatch.setattr(int8_matrix, "PLAIN_GRAPH_LOOP_MIN_ELEMENTS", 0)
    jit_compile = path == "xla"
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((out_dim, 24)).astype(np.float32)
    layer = Int8Matrix(out_dim, 24, panel_rows=panel_rows)
    layer.assign(matrix)
    inputs = rng.standard_normal((3, 5, 24)).astype(np.float32)
    outputs = tf.function(layer, jit_compile=jit_compile)(inputs).numpy()
    assert outputs.shape == (3, 5, out_dim)
    expected = inputs @ layer.dequantized().numpy().T
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    # And the dequantised matrix is the float one up to half a step per row.
    step = np.abs(matrix).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(layer.dequantized().numpy() - matrix) <= step / 2 + 1e-6)
    rows = layer.dequantized_rows(tf.constant([4, 0, 4])).numpy()
    np.testing.assert_array_equal(rows, layer.dequantized().numpy()[[4, 0, 4]])


def test_quantize_input_rows_is_quantize_rows_in_the_graph():
    rng = np.random.default_rng(3)
    inputs = rng.standard_normal((6, 40)).astype(np.float32) * rng.uniform(0.01, 9, (6, 1))
    inputs[2] = 0.0
    values, scale = quantize_input_rows(tf.constant(inputs))
    expected_values, expected_scale = quantize_rows(inputs)
    assert values.dtype == tf.int8 and scale.shape == (6, 1)
    np.testing.assert_array_equal(values.numpy(), expected_values)
    np.testing.assert_array_equal(scale.numpy()[:, 0], expected_scale)


def _integer_product(inputs, matrix):
    """numpy's reference for a `quantize_inputs` Int8Matrix: the int64 sums of the int8
    products, rescaled by both scales."""
    inputs_ri = inputs.reshape(-1, inputs.shape[-1])
    input_values, input_scale = quantize_rows(inputs_ri)
    values, scale = quantize_rows(matrix)
    sums = input_values.astype(np.int64) @ values.astype(np.int64).T
    outputs = sums.astype(np.float32) * input_scale[:, None] * scale[None, :]
    return outputs.reshape(inputs.shape[:-1] + (matrix.shape[0],))


@pytest.mark.parametrize("path", ["xla", "graph", "graph-panels"])
@pytest.mark.parametrize("out_dim,in_dim,panel_rows", [(40, 24, None), (37, 1024, 8), (64, 4096, 16)])
def test_int8_matrix_with_quantized_inputs_computes_the_integer_product(
        out_dim, in_dim, panel_rows, path, monkeypatch):
    """Under XLA rows take XLA's int8 dot (one row with a zero second row), the plain
    graph the float product of the integer-valued rows; all equal the int64 product.
    4096 inputs can overflow float32's exact integers in the float product, hence the
    tolerance; XLA's int32 sums are exact, so there one row alone gives the values it gets
    among others."""
    from tfmodels.layers import int8_matrix

    if path == "graph-panels":
        monkeypatch.setattr(int8_matrix, "PLAIN_GRAPH_LOOP_MIN_ELEMENTS", 0)
    rng = np.random.default_rng(4)
    matrix = rng.standard_normal((out_dim, in_dim)).astype(np.float32)
    layer = Int8Matrix(out_dim, in_dim, panel_rows=panel_rows, quantize_inputs=True)
    layer.assign(matrix)
    assert Int8Matrix.from_config(layer.get_config()).quantize_inputs
    function = tf.function(layer, jit_compile=path == "xla")
    for shape in [(3, 5), (2, 40), (1, 1)]:  # output-major rows, row-major rows, one row
        inputs = rng.standard_normal(shape + (in_dim,)).astype(np.float32)
        expected = _integer_product(inputs, matrix)
        np.testing.assert_allclose(function(inputs).numpy(), expected, rtol=1e-6, atol=1e-5)
        # `prepare_inputs` is what the product multiplies by the dequantised matrix.
        prepared = layer.prepare_inputs(inputs).numpy()
        np.testing.assert_allclose(prepared @ layer.dequantized().numpy().T, expected,
                                   rtol=1e-5, atol=1e-4)
    if path == "xla":
        rows_inputs = rng.standard_normal((4, in_dim)).astype(np.float32)
        np.testing.assert_array_equal(function(rows_inputs[:1]).numpy(),
                                      function(rows_inputs).numpy()[:1])
    # The `[out, rows]` product (for searches over a vocabulary) is the same, transposed.
    output_major = tf.function(layer.output_major_product, jit_compile=path == "xla")
    for rows in [6, 1]:
        rows_inputs = rng.standard_normal((rows, in_dim)).astype(np.float32)
        np.testing.assert_array_equal(output_major(rows_inputs).numpy(),
                                      function(rows_inputs).numpy().T)
    # Unlike weight-only int8, the inputs' rounding shows: quantising them changes outputs.
    weight_only = Int8Matrix(out_dim, in_dim, panel_rows=panel_rows)
    weight_only.assign(matrix)
    assert np.abs(weight_only(inputs).numpy() - function(inputs).numpy()).max() > 1e-4


def test_int8_matrix_with_quantized_inputs_is_an_int8_dot_under_xla():
    """Several rows: XLA's int8 x int8 -> int32 dot on the stored values (no float copy of
    the matrix), `[out, rows]` up to 64 rows (the faster form there), `[rows, out]`
    beyond; one row: the same `[out, rows]` dot with a zero second row (XLA's int8
    matrix-vector kernel is far slower), in the layer and in `output_major_product`."""
    layer = Int8Matrix(512, 64, quantize_inputs=True)
    layer.assign(np.random.default_rng(5).standard_normal((512, 64)).astype(np.float32))

    def has_dot(hlo, shape):
        return any(f"= s32[{shape}]" in line and " dot(" in line for line in hlo.splitlines())

    rows_hlo = optimized_hlo(layer, tf.zeros([8, 64]))
    assert has_dot(rows_hlo, "512,8") and not has_dot(rows_hlo, "8,512")
    assert "f32[512,64]" not in rows_hlo and "while(" not in rows_hlo
    many_rows_hlo = optimized_hlo(layer, tf.zeros([256, 64]))
    assert has_dot(many_rows_hlo, "256,512") and "while(" not in many_rows_hlo
    for function in [layer, layer.output_major_product]:
        single_row_hlo = optimized_hlo(function, tf.zeros([1, 64]))
        assert has_dot(single_row_hlo, "512,2") and "while(" not in single_row_hlo
        assert "f32[512,64]" not in single_row_hlo and "= s32[1,512]" not in single_row_hlo


def test_int8_matrix_errors_and_dtypes():
    layer = Int8Matrix(8, 4)
    with pytest.raises(ValueError, match=r"expected a \[8, 4\] matrix"):
        layer.assign(np.zeros([4, 8], np.float32))
    with pytest.raises(ValueError, match="must end in 4 features"):
        layer(tf.zeros([2, 5]))
    assert layer(tf.zeros([2, 4], tf.bfloat16)).dtype == tf.bfloat16
    assert not layer.trainable_weights and len(layer.weights) == 2
    assert Int8Matrix.from_config(layer.get_config()).panel_rows == layer.panel_rows
    with pytest.raises(ValueError, match="at least two panels"):
        Int8Matrix(8, 4, panel_rows=8)


def test_dense_int8_inference_refuses_training_and_can_be_removed():
    dense = Dense(12, use_bias=True, activation="relu", bias_initializer="random_normal")
    dense.build((None, 10))
    inputs = np.random.default_rng(2).standard_normal((4, 10)).astype(np.float32)
    float_outputs = dense(inputs).numpy()
    dense.quantize_weights("int8")
    assert dense.weight_quantization == "int8"
    kernel = dense.int8_kernel.dequantized().numpy().T
    expected = np.maximum(inputs @ kernel + dense.bias.numpy(), 0)
    np.testing.assert_allclose(dense(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="int8 weights, which cannot be trained"):
        dense(inputs, training=True)
    with pytest.raises(ValueError, match="Unknown weight quantization mode 'int4'"):
        dense.quantize_weights("int4")
    dense.remove_weight_quantization()
    assert dense.weight_quantization is None and len(dense.weights) == 2
    np.testing.assert_array_equal(dense(inputs).numpy(), float_outputs)


# ------------------------------------------------------------------------------ models
def _batch(family, batch_size=3, seed=5):
    batch = random_batches(1, batch_size, seed=seed, family=family)[0]
    return batch["input_ids"], batch["attention_mask"], batch["labels"]


def _float_twin(model, family):
    """A float model holding the quantised model's dequantised decoder kernels (and LM
    head when untied): it must compute what the int8 path computes."""
    twin = small_model(family, seed=0)
    twin.set_weights([w.numpy() for w in model.weights if "int8" not in w.path][: len(twin.weights)])
    for ours, theirs in zip(model.quantized_dense_layers(), twin.quantized_dense_layers()):
        dequantized_oi = ours.int8_kernel.dequantized().numpy()
        theirs.assign_kernel_out_in(dequantized_oi)
    return twin


@pytest.mark.parametrize("family", FAMILIES)
def test_quantised_model_computes_what_its_dequantised_weights_compute(family):
    model = small_model(family, seed=0)
    input_ids, attention_mask, labels = _batch(family)
    float_logits = model(input_ids, attention_mask=attention_mask, labels=labels)["logits"].numpy()
    model.quantize_weights("int8")
    assert model.weight_quantization == "int8"
    quantised = model(input_ids, attention_mask=attention_mask, labels=labels)
    twin = _float_twin(model, family)
    if model.int8_tied_head is None:
        expected = twin(input_ids, attention_mask=attention_mask, labels=labels)["logits"].numpy()
    else:
        decoded = twin.decode(
            tfm_shift(model, labels), twin.encode(input_ids, attention_mask)["last_hidden_state"],
            encoder_attention_mask=attention_mask)["last_hidden_state"]
        decoded = decoded * model.lm_head_input_scale()
        expected = tf.matmul(decoded, model.int8_tied_head.dequantized(), transpose_b=True).numpy()
    np.testing.assert_allclose(quantised["logits"].numpy(), expected, rtol=1e-4, atol=1e-4)
    # Close to the float model too: int8 error is small next to the logits' spread.
    relative = np.abs(quantised["logits"].numpy() - float_logits).max() / np.abs(float_logits).max()
    assert relative < 0.03, relative
    assert np.isfinite(float(quantised["loss"]))


def tfm_shift(model, labels):
    from tfmodels.models.seq2seq import shift_tokens_right

    return shift_tokens_right(labels, model.config.pad_token_id, model.config.decoder_start_token_id)


@pytest.mark.parametrize("family", FAMILIES)
def test_dynamic_int8_model_stays_near_the_float_and_weight_only_models(family):
    model = small_model(family, seed=0)
    input_ids, attention_mask, labels = _batch(family)
    outputs = {}
    for mode in [None] + MODES:
        if mode:
            model.quantize_weights(mode)
        assert model.weight_quantization == mode
        outputs[mode] = model(input_ids, attention_mask=attention_mask, labels=labels)
    spread = np.abs(outputs[None]["logits"].numpy()).max()
    dynamic = outputs["int8_dynamic"]["logits"].numpy()
    assert np.isfinite(float(outputs["int8_dynamic"]["loss"]))
    assert np.abs(dynamic - outputs[None]["logits"].numpy()).max() / spread < 0.05
    # Its inputs' rounding is an error of its own, beyond the weights'.
    assert np.abs(dynamic - outputs["int8"]["logits"].numpy()).max() > 1e-4
    # Each projection computes the integer product of its own quantised inputs.
    head = model.int8_tied_head if model.lm_head is None else model.lm_head.int8_kernel
    assert head.quantize_inputs and all(layer.int8_kernel.quantize_inputs
                                        for layer in model.quantized_dense_layers())


@pytest.mark.parametrize("family", FAMILIES)
def test_dynamic_int8_converts_the_encoder_and_weight_only_int8_leaves_it_float(family):
    model = small_model(family, seed=0)
    input_ids, attention_mask, _ = _batch(family)
    encoder_dense = [layer for layer in model.encoder._flatten_layers(include_self=False)
                     if isinstance(layer, Dense)]
    assert encoder_dense

    def encoded(jit_compile):
        run = tf.function(lambda ids, mask: model.encode(ids, mask)["last_hidden_state"],
                          jit_compile=jit_compile)
        return run(input_ids, attention_mask).numpy()

    float_states = encoded(False)
    model.quantize_weights("int8_dynamic")
    assert all(layer.weight_quantization == "int8_dynamic" for layer in encoder_dense)
    assert set(model.quantized_dense_layers()) >= set(encoder_dense)
    dynamic_states = encoded(False)
    # The encoder's own products now carry the int8 rounding (small, but not nothing), and
    # XLA's int8 dot gives what the plain graph's float product of the same integers gives.
    difference = np.abs(dynamic_states - float_states).max()
    assert 1e-5 < difference < 0.1 * np.abs(float_states).max(), difference
    np.testing.assert_allclose(encoded(True), dynamic_states, rtol=1e-5, atol=1e-5)

    # Switching to weight-only int8 puts the encoder back on its float kernels.
    model.quantize_weights("int8")
    assert model.weight_quantization == "int8"
    assert all(layer.weight_quantization is None for layer in encoder_dense)
    assert not set(model.quantized_dense_layers()) & set(encoder_dense)
    np.testing.assert_array_equal(encoded(False), float_states)
    model.quantize_weights("int8_dynamic")
    model.remove_weight_quantization()
    assert all(layer.int8_kernel is None for layer in encoder_dense)
    np.testing.assert_array_equal(encoded(False), float_states)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", FAMILIES)
def test_quantised_generation_xla_graph_teacher_forcing_and_restriction_agree(family, mode):
    model = small_model(family, seed=0)
    input_ids, attention_mask, _ = _batch(family)
    model.quantize_weights(mode)
    options = dict(attention_mask=attention_mask, max_new_tokens=6, min_new_tokens=6)
    greedy = model.generate(input_ids, **options).numpy()
    np.testing.assert_array_equal(model.generate(input_ids, jit_compile=False, **options).numpy(),
                                  greedy)
    if mode == "int8_dynamic":
        # One input: every decoding product is a single row, which XLA takes as the int8
        # dot of a zero-padded row; still the plain graph's ids.
        one = dict(options, attention_mask=attention_mask[:1])
        np.testing.assert_array_equal(
            model.generate(input_ids[:1], **one).numpy(),
            model.generate(input_ids[:1], jit_compile=False, **one).numpy())
    beams = model.generate(input_ids, num_beams=3, **options).numpy()
    np.testing.assert_array_equal(
        model.generate(input_ids, num_beams=3, jit_compile=False, **options).numpy(), beams)
    # Each greedy token is the argmax of the teacher-forced logits at its position.
    logits = model(input_ids, attention_mask=attention_mask,
                   decoder_input_ids=greedy[:, :-1])["logits"].numpy()
    eos = model.config.eos_token_id
    min_length_mask = np.zeros(logits.shape[-1], bool)
    min_length_mask[eos] = True  # min_new_tokens forbids EOS
    np.testing.assert_array_equal(np.where(min_length_mask, -np.inf, logits).argmax(-1),
                                  greedy[:, 1:])
    # Restricted to the ids it produced, the int8 head reads the same weights.
    allowed = np.unique(greedy)
    restricted = model.generate(input_ids, output_token_ids=allowed, **options).numpy()
    np.testing.assert_array_equal(restricted, greedy)


def test_mt5_quantised_generation_equals_its_float_twin():
    """mT5's head is untied: the whole decoding path has a float twin, token for token."""
    model = small_model("mt5", seed=0)
    input_ids, attention_mask, _ = _batch("mt5")
    model.quantize_weights("int8")
    twin = _float_twin(model, "mt5")
    for beams in (1, 3):
        options = dict(attention_mask=attention_mask, max_new_tokens=6, num_beams=beams)
        np.testing.assert_array_equal(model.generate(input_ids, **options).numpy(),
                                      twin.generate(input_ids, **options).numpy())


@pytest.mark.parametrize("family", FAMILIES)
def test_quantise_refuses_training_and_removing_restores_the_float_model(family):
    model = small_model(family, seed=0)
    input_ids, attention_mask, labels = _batch(family)
    before = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy()
    weights = len(model.weights)
    model.quantize_weights("int8")
    assert len(model.weights) > weights
    assert not any("int8" in w.path for w in model.trainable_weights)
    model.compile(optimizer="sgd")
    data = tf.data.Dataset.from_tensors(
        {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
    with pytest.raises(ValueError, match="remove_weight_quantization"):
        model.fit(data, verbose=0)
    model.remove_weight_quantization()
    assert model.weight_quantization is None and len(model.weights) == weights
    np.testing.assert_array_equal(
        model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy(), before)
    model.fit(data, verbose=0)  # trains again


@pytest.mark.parametrize("mode,how", [
    ("int8", "hf_state_dict"), ("int8_dynamic", "hf_state_dict"), ("int8", "load_weights"),
    ("int8", "float_list"),
    pytest.param("int8_dynamic", "load_weights", marks=pytest.mark.slow)])
@pytest.mark.parametrize("family", FAMILIES)
def test_loading_new_weights_quantises_them_again(family, mode, how, tmp_path):
    """`load_hf_state_dict`, `load_weights` of a file saved from a float model, or
    `set_weights` of a float model's `get_weights()`, into a quantised model: the int8
    copies follow the new weights (as if the model had been quantised after loading), not
    the ones they were made from."""
    model = small_model(family, seed=0)
    source = small_model(family, seed=1)
    model.quantize_weights(mode)
    input_ids, attention_mask, _ = _batch(family)
    stale = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy()
    if how == "hf_state_dict":
        model.load_hf_state_dict(source.hf_state_dict())
    elif how == "float_list":
        model.set_weights(source.get_weights())
    else:
        source.save_weights(str(tmp_path / "float.weights.h5"))
        model.load_weights(str(tmp_path / "float.weights.h5"))
    source.quantize_weights(mode)
    assert model.weight_quantization == mode
    for ours, theirs in zip(model.int8_matrices(), source.int8_matrices(), strict=True):
        np.testing.assert_array_equal(ours.panels.numpy(), theirs.panels.numpy(), err_msg=ours.path)
        np.testing.assert_array_equal(ours.scale.numpy(), theirs.scale.numpy(), err_msg=ours.path)
    expected = source.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy()
    got = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy()
    assert got.tolist() == expected.tolist()
    assert got.tolist() != stale.tolist()  # the two weight sets generate differently


def test_quantise_errors_name_the_problem():
    model = small_model("m2m100", seed=0)
    with pytest.raises(ValueError, match="Unknown weight quantization mode 'bf16'.*int8, int8_dynamic"):
        model.quantize_weights("bf16")
    assert model.weight_quantization is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family", ["mt5", "m2m100"])
def test_quantise_under_mixed_bfloat16(family, mode):
    """Two layers per stack: from the second layer on, the shared layer trace reads the
    int8 scales under the mixed policy's autocast, which must leave them float32."""
    layers = (dict(num_layers=2, num_decoder_layers=2) if family == "mt5"
              else dict(encoder_layers=2, decoder_layers=2))
    model = small_model(family, seed=0, dtype="mixed_bfloat16", **layers)
    input_ids, attention_mask, _ = _batch(family)
    float_ids = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy()
    model.quantize_weights(mode)
    int8_ids = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy()
    assert int8_ids.shape == float_ids.shape
    assert (int8_ids == float_ids).mean() > 0.6
    graph_ids = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5,
                               jit_compile=False).numpy()
    assert (graph_ids == int8_ids).mean() > 0.8
    logits = model(input_ids, attention_mask=attention_mask, decoder_input_ids=int8_ids)["logits"]
    assert logits.dtype == tf.float32 and np.isfinite(logits.numpy()).all()


@pytest.mark.parametrize("mode", MODES)
def test_keras_file_keeps_the_quantisation(tmp_path, mode):
    model = small_model("m2m100", seed=0)
    input_ids, attention_mask, _ = _batch("m2m100")
    model.quantize_weights(mode)
    expected = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.weight_quantization == mode
    for ours, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    np.testing.assert_array_equal(
        loaded.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5).numpy(),
        expected)


@pytest.mark.parametrize("mode", MODES)
def test_keras_file_keeps_a_quantised_dense_in_a_users_model(tmp_path, mode):
    """A `Dense` quantised on its own (in a user's functional model) records its mode in
    `get_config`, so the loaded layer reads the int8 weights again."""
    inputs = keras.Input((8,))
    dense = Dense(6, kernel_layout="out_in", bias_initializer="random_normal")
    model = keras.Model(inputs, dense(inputs))
    dense.quantize_weights(mode)
    rows = np.random.RandomState(0).randn(3, 8).astype(np.float32)
    expected = model(rows).numpy()
    float_outputs = rows @ dense.kernel.numpy().T + dense.bias.numpy()
    assert not np.allclose(expected, float_outputs, atol=1e-4)  # the int8 copy is read
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.layers[-1].weight_quantization == mode
    np.testing.assert_array_equal(loaded(rows).numpy(), expected)


def test_a_dense_built_with_weight_quantization_reads_its_initial_kernel_as_int8():
    dense = Dense(6, weight_quantization="int8")
    dense.build((None, 8))
    rows = np.random.RandomState(1).randn(2, 8).astype(np.float32)
    twin = Dense(6)
    twin.build((None, 8))
    twin.kernel.assign(dense.kernel)
    twin.bias.assign(dense.bias)
    twin.quantize_weights("int8")
    np.testing.assert_array_equal(dense(rows).numpy(), twin(rows).numpy())
    with pytest.raises(ValueError, match="Unknown weight quantization mode 'int4'"):
        Dense(6, weight_quantization="int4")


@pytest.mark.parametrize("mode", MODES)
def test_savedmodel_export_reads_and_stores_int8_weights(tiny_m2m100_float_export, tmp_path,
                                                         mode):
    """`tfmodels export --quantize int8|int8_dynamic`: the served translations are the
    quantised model's, the float kernels it replaced (with int8_dynamic the encoder's
    too) are left out, and the ops are stock."""
    from savedmodel.checkpoint import load_checkpoint

    checkpoint, float_dir, int8_dir = export_variant(
        tiny_m2m100_float_export, tmp_path, mode, ["--quantize", mode])
    assert export_info(int8_dir)["settings"]["weight_quantization"] == mode

    model, tokenizer = load_checkpoint(checkpoint)
    float_counts = variable_elements_by_dtype(float_dir)
    int8_counts = variable_elements_by_dtype(int8_dir)
    converted = model.quantized_dense_layers(mode)
    assert any(layer in converted for layer in model.encoder._flatten_layers()) == (
        mode == "int8_dynamic")
    replaced = sum(int(np.prod(layer.kernel.shape)) for layer in converted)
    scales = sum(int(layer.units) for layer in converted)
    scales += model.config.vocab_size  # the tied head's per-token scales
    assert "int8" not in float_counts
    assert int8_counts["float32"] == float_counts["float32"] - replaced + scales
    assert int8_counts["int8"] >= replaced + model.config.vocab_size * model.config.d_model

    model.quantize_weights(mode)
    assert_serves_the_models_translations(int8_dir, model, tokenizer)


def test_command_lines_offer_every_quantization_mode():
    """`--quantize` is declared without importing TensorFlow, so its choices are written
    out; they must be the modes `quantize_weights` takes."""
    from tfmodels.cli import build_parser
    from tfmodels.layers.dense import WEIGHT_QUANTIZATION_MODES

    parser = build_parser()
    for command in (["translate", "x", "--src", "en", "--tgt", "de"], ["demo"], ["export", "c", "o"]):
        for mode in WEIGHT_QUANTIZATION_MODES:
            assert parser.parse_args(command + ["--quantize", mode]).quantize == mode
        with pytest.raises(SystemExit):
            parser.parse_args(command + ["--quantize", "int4"])
