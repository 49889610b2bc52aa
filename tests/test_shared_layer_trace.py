"""A stack traces its layers once (`tfmodels.layers.shared_layer_trace`).

Through the shared trace, every layer must still compute with its own weights: outputs,
updated caches, gradients and generated ids are compared bit for bit with the layers
traced one by one, under XLA and in a plain graph, in float, int8 and mixed bfloat16. The
traced graph must hold one call per layer and one traced body per layer structure, and a
trace that reads a tensor from the enclosing graph must fall back to layer-by-layer calls.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_training_support import random_batches, small_model
from tfmodels.layers import TransformerStack, shared_layer_trace
from tfmodels.layers.shared_layer_trace import shares_layer_traces
from tfmodels.generation.generate import compiled_functions

CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")
NUM_LAYERS = 3


def _stack(is_decoder, dtype=None):
    stack = TransformerStack(
        num_layers=NUM_LAYERS, hidden_dim=16, num_heads=2, head_dim=8, intermediate_dim=24,
        use_bias=True, norm_type="layer", is_decoder=is_decoder, dtype=dtype,
        name="decoder" if is_decoder else "encoder",
    )
    hidden_shape = (2, 5, 16)
    stack.build(hidden_shape, hidden_shape if is_decoder else None)
    rng = np.random.default_rng(3)
    # Distinct random weights per layer, biases and norm scales included.
    stack.set_weights([rng.normal(0.0, 0.3, w.shape).astype(w.dtype) for w in stack.get_weights()])
    return stack


def _inputs(is_decoder):
    rng = np.random.default_rng(4)
    hidden = tf.constant(rng.normal(size=(2, 5, 16)).astype(np.float32))
    mask = tf.constant([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], tf.int32)
    if not is_decoder:
        return dict(inputs_embeds=hidden, padding_mask=mask)
    step = tf.constant(rng.normal(size=(2, 1, 16)).astype(np.float32))
    caches = [
        tuple(tf.constant(rng.normal(size=(2, 2, 7, 8)).astype(np.float32)) for _ in range(2))
        for _ in range(NUM_LAYERS)
    ]
    cross = [
        tuple(tf.constant(rng.normal(size=(2, 2, 5, 8)).astype(np.float32)) for _ in range(2))
        for _ in range(NUM_LAYERS)
    ]
    return dict(inputs_embeds=step, encoder_hidden_states=hidden, encoder_padding_mask=mask,
                padding_mask=tf.ones([2, 7], tf.int32), self_attention_caches=caches,
                cross_attention_caches=cross, cache_index=tf.constant(3, tf.int32))


def _traced(stack, inputs, jit_compile, share, monkeypatch, training=False):
    """(outputs as numpy, the concrete function) of `stack(**inputs)` traced in a graph."""
    monkeypatch.setattr(shared_layer_trace, "SHARE_LAYER_TRACES", share)
    function = tf.function(lambda inputs: stack(**inputs, training=training),
                           jit_compile=jit_compile, autograph=False)
    concrete = function.get_concrete_function(inputs)
    return tf.nest.map_structure(lambda t: t.numpy(), function(inputs)), concrete


def _call_ops(concrete):
    """Layer-call nodes of the graph: `[(op type, called function name)]`."""
    return [(op.type, op.get_attr("f").name) for op in concrete.graph.get_operations()
            if op.type in CALL_OPS]


def _assert_same(actual, expected):
    tf.nest.map_structure(np.testing.assert_array_equal, actual, expected)


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
@pytest.mark.parametrize("is_decoder", [False, True], ids=["encoder", "decoding-step"])
def test_shared_trace_gives_the_layer_by_layer_bits_with_one_traced_body(
        is_decoder, jit_compile, monkeypatch):
    stack, inputs = _stack(is_decoder), _inputs(is_decoder)
    expected, unshared = _traced(stack, inputs, jit_compile, False, monkeypatch)
    actual, shared = _traced(stack, inputs, jit_compile, True, monkeypatch)
    _assert_same(actual, expected)  # hidden states and every layer's updated cache
    calls = _call_ops(shared)
    assert len(calls) == NUM_LAYERS and len({name for _, name in calls}) == 1
    assert _call_ops(unshared) == []
    assert len(shared.graph.get_operations()) < len(unshared.graph.get_operations()) / 2
    # Eager calls keep the layer-by-layer path and agree too.
    eager = stack(**inputs)
    np.testing.assert_allclose(eager["last_hidden_state"].numpy(),
                               expected["last_hidden_state"], rtol=1e-5, atol=1e-5)


def test_layers_of_different_structure_get_their_own_trace(monkeypatch):
    """Quantising one layer's feed-forward changes its structure: two traced bodies, and
    that layer reads its int8 weights while the others stay float."""
    stack, inputs = _stack(False), _inputs(False)
    float_outputs, _ = _traced(stack, inputs, True, False, monkeypatch)
    for dense in (stack.transformer_layers[1].feed_forward.intermediate_dense,
                  stack.transformer_layers[1].feed_forward.output_dense):
        dense.quantize_weights("int8")
    for jit_compile in (True, False):
        expected, _ = _traced(stack, inputs, jit_compile, False, monkeypatch)
        actual, shared = _traced(stack, inputs, jit_compile, True, monkeypatch)
        _assert_same(actual, expected)
        names = [name for _, name in _call_ops(shared)]
        assert len(names) == NUM_LAYERS and names[0] == names[2] != names[1]
    assert not np.array_equal(expected["last_hidden_state"], float_outputs["last_hidden_state"])


def test_shared_trace_under_mixed_bfloat16(monkeypatch):
    stack, inputs = _stack(True, dtype="mixed_bfloat16"), _inputs(True)
    inputs = dict(inputs, inputs_embeds=tf.cast(inputs["inputs_embeds"], tf.bfloat16),
                  encoder_hidden_states=tf.cast(inputs["encoder_hidden_states"], tf.bfloat16))
    expected, _ = _traced(stack, inputs, True, False, monkeypatch)
    actual, shared = _traced(stack, inputs, True, True, monkeypatch)
    _assert_same(actual, expected)
    assert actual["last_hidden_state"].dtype == tf.bfloat16.as_numpy_dtype
    assert len(_call_ops(shared)) == NUM_LAYERS


def test_gradients_through_the_shared_trace_reach_each_layers_weights(monkeypatch):
    stack, inputs = _stack(False), _inputs(False)

    def gradients(share):
        monkeypatch.setattr(shared_layer_trace, "SHARE_LAYER_TRACES", share)

        @tf.function(autograph=False)
        def run(inputs):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(stack(**inputs, training=False)["last_hidden_state"] ** 2)
            return tape.gradient(loss, stack.trainable_variables)

        return [g.numpy() for g in run(inputs)]

    expected, actual = gradients(False), gradients(True)
    assert len(actual) == len(stack.trainable_variables)
    for ours, theirs in zip(actual, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_training_and_eager_calls_trace_layer_by_layer(monkeypatch):
    stack, inputs = _stack(False), _inputs(False)
    _, concrete = _traced(stack, inputs, False, True, monkeypatch, training=True)
    assert _call_ops(concrete) == []
    assert shares_layer_traces(False, 2) is False  # eager: nothing to trace
    graph_checks = []

    @tf.function(autograph=False)
    def check():
        graph_checks.extend([shares_layer_traces(False, 2), shares_layer_traces(None, 2),
                             shares_layer_traces(True, 2), shares_layer_traces(False, 1),
                             shares_layer_traces(tf.constant(False), 2)])
        return tf.constant(0)

    check()
    assert graph_checks == [True, True, False, False, False]


def _search_call_ops(model, jit_compile):
    """Layer-call nodes in the compiled searches of `model` (loop bodies included)."""
    count = 0
    for (_, jit), function in compiled_functions(model).items():
        if jit == jit_compile:
            graph_def = function.get_concrete_function().graph.as_graph_def()
            nodes = list(graph_def.node) + [
                node for library_function in graph_def.library.function
                for node in library_function.node_def]
            count += sum(node.op in CALL_OPS for node in nodes)
    return count


# The plain m2m100 case runs in the slow suite (the default suite's time budget): its
# int8 case and every other m2m100 generation test run the same shared traces.
@pytest.mark.parametrize("family, mode", [("mt5", None),
                                          pytest.param("m2m100", None, marks=pytest.mark.slow),
                                          ("mt5", "int8_dynamic"), ("m2m100", "int8")])
def test_generation_with_shared_traces_gives_the_same_ids(family, mode, monkeypatch):
    depth = (dict(num_layers=2, num_decoder_layers=3) if family == "mt5"
             else dict(encoder_layers=2, decoder_layers=3))
    model = small_model(family, seed=0, **depth)
    if mode:
        model.quantize_weights(mode)
    layers = sum(stack.num_layers for stack in model._flatten_layers()
                 if isinstance(stack, TransformerStack))
    batch = random_batches(1, 3, seed=5, family=family)[0]
    options = dict(attention_mask=batch["attention_mask"], max_new_tokens=5, min_new_tokens=5)
    results = {}
    for share in (False, True):
        monkeypatch.setattr(shared_layer_trace, "SHARE_LAYER_TRACES", share)
        compiled_functions(model).clear()
        for jit_compile in (True, False):
            for beams in ((1, 3) if mode is None else (1,)):
                out = model.generate(batch["input_ids"], num_beams=beams, jit_compile=jit_compile,
                                     return_dict_in_generate=True, **options)
                results[share, jit_compile, beams] = {
                    key: value.numpy() for key, value in out.items() if value is not None}
            results[share, jit_compile] = _search_call_ops(model, jit_compile)
    for key in [k for k in results if k[0] is True and len(k) == 3]:
        _assert_same(results[key], results[(False,) + key[1:]])
    assert results[False, True] == results[False, False] == 0
    # Each search calls every layer of both stacks at least once.
    searches = 2 if mode is None else 1
    assert results[True, True] >= searches * layers
    # Without XLA an int8 model's decoder reads matrices widened once per search: those
    # layers fall back to one by one (same ids, checked above).
    if mode is None:
        assert results[True, False] >= searches * layers
    else:
        assert results[True, False] < results[True, True]


def test_calls_with_other_arguments_get_their_own_trace():
    """Tensor shapes and non-tensor arguments are part of a trace's key: a call that
    asks for attention weights, or passes other shapes, is traced anew."""
    from tfmodels.layers.shared_layer_trace import SharedLayerTrace

    stack = _stack(False)
    first, second, third = stack.transformer_layers
    hidden = _inputs(False)["inputs_embeds"]
    counts = []

    @tf.function(autograph=False)
    def run(hidden):
        shared = SharedLayerTrace()
        plain = shared(first, hidden)[0]
        weighted, (weights, _), _ = shared(second, hidden, return_attention_weights=True)
        shorter = shared(third, hidden[:, :3])[0]
        again = shared(third, hidden)[0]
        counts.append(shared.traces)
        return plain, weighted, weights, shorter, again

    plain, weighted, weights, shorter, again = run(hidden)
    assert counts == [3]
    np.testing.assert_allclose(plain, first(hidden)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weighted, second(hidden)[0], rtol=1e-5, atol=1e-5)
    assert weights.shape == (2, 2, 5, 5)
    np.testing.assert_allclose(shorter, third(hidden[:, :3])[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(again, third(hidden)[0], rtol=1e-5, atol=1e-5)
