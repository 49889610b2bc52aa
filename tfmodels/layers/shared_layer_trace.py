"""Tracing the layers of a stack once, instead of once per layer.

Tracing a graph runs every op of every layer through TensorFlow's Python op builder, and
converting it for XLA legalises every op again. The layers of one stack are built from
one configuration and differ only in their weights, so within one traced call of a stack
`SharedLayerTrace` traces the first layer as a `tf.function` of its weights' values and
its call arguments, and calls that function for every layer of the same structure with
that layer's own weight values (`keras.StatelessScope` substitutes them for the template's
variables while the function is traced).

Under XLA the calls reach TensorFlow's graph-to-XLA converter as calls, so it converts
each traced body once, and XLA inlines them before it optimises the program: the optimised
program is the same as with the layers traced one by one (compared instruction by
instruction for mt5-small's batch-1 greedy and 8x4 beam searches and m2m100_418M's batch-1
greedy and 8x4 beam searches), so are the outputs and the speed; what shrinks is the work
before it. Traced by `generate`, mt5-small's batch-1 greedy search has 1,189 graph ops
instead of 3,106, m2m100_418M's 2,113 instead of 6,296. A plain graph (no XLA) inlines the
calls as TensorFlow always does.

A layer whose trace reads a tensor from the enclosing graph (the int8 matrices a plain
graph widens once per search, `int8_matrix.widened_int8_matrices`) would hand the
template's tensor to every layer; such a trace is dropped and those layers run one by one.
"""

import functools

import keras
import tensorflow as tf

from tfmodels.layers.products import in_xla_context

# Set to False to trace every layer separately (same results; for comparisons).
SHARE_LAYER_TRACES = True
# Keeps TensorFlow from inlining the calls before its graph-to-XLA converter (see above).
# First call minus a later one, batch-1 greedy, fresh processes, 2 threads, medians of 4
# and 3 runs: mt5-small 2.71 -> 2.57 s, m2m100_418M 4.41 -> 4.11 s.
_XLA_CALL_ATTRIBUTES = {"_noinline": True}


def shares_layer_traces(training, num_layers):
    """True when a stack call should go through `SharedLayerTrace`: inference (`training`
    a Python False or None) while tracing a graph, with at least two layers to share."""
    inference = training is None or (isinstance(training, bool) and not training)
    return SHARE_LAYER_TRACES and inference and num_layers > 1 and not tf.executing_eagerly()


def layer_structure(layer):
    """What must match for two layers to share a trace: the layer classes, dtype policies
    and weight quantisation of the layer and its sublayers, and each variable's name, shape
    and dtype, in order."""
    sublayers = tuple(
        (type(sublayer).__name__, sublayer.dtype_policy.name,
         getattr(sublayer, "weight_quantization", None))
        for sublayer in layer._flatten_layers(include_self=True, recursive=True)
    )
    variables = tuple(
        (variable.name, tuple(variable.shape), str(variable.dtype)) for variable in layer.variables
    )
    return sublayers, variables


def call_signature(args, kwargs):
    """What must match for calls to share a trace: the arguments' structure, tensors' shapes
    and dtypes, and every other argument's value (None, flags)."""
    return tuple(
        (path, ("tensor", tuple(value.shape), value.dtype.name) if tf.is_tensor(value)
         else ("value", repr(value)))
        for path, value in keras.tree.flatten_with_path((args, kwargs))
    )


def _call_with_weights(template, variables, weight_values, args, kwargs):
    """`template(*args, **kwargs)` with `weight_values` in place of `variables`."""
    with keras.StatelessScope(state_mapping=list(zip(variables, weight_values))):
        return template(*args, **kwargs)


class SharedLayerTrace:
    """Calls layers through one traced function per layer structure and call signature
    (see the module docstring). Use one instance per traced call of a stack: the traces
    are made for the graph being built, with the settings in force while it is built.

    The function takes the weights the layer reads, and only those: a first trace over
    symbolic stand-ins finds them (an int8-quantised projection reads its int8 copy, not
    its float kernel, and a SavedModel export leaves such kernels out; the graph must not
    read them).

    Example:
    >>> from tfmodels.layers import TransformerLayer
    >>> layers = [TransformerLayer(hidden_dim=8, num_heads=2, head_dim=4,
    ...                            intermediate_dim=16, name=f"layer_{i}") for i in range(3)]
    >>> @tf.function
    ... def run(states):
    ...     shared = SharedLayerTrace()
    ...     for layer in layers:
    ...         states = shared(layer, states)[0]
    ...     return states, shared.traces
    >>> states, traces = run(tf.ones([1, 5, 8]))
    >>> states.shape, int(traces)
    (TensorShape([1, 5, 8]), 1)
    """

    def __init__(self):
        # (layer_structure, call_signature) -> (concrete function, indices of the
        # variables it reads), or None where such calls run layer by layer.
        self._functions = {}
        self.traces = 0  # layer bodies traced (for tests and logging)

    def __call__(self, layer, *args, **kwargs):
        """`layer(*args, **kwargs)`, through the shared trace when it can be."""
        if not layer.built:
            return layer(*args, **kwargs)
        key = (layer_structure(layer), call_signature(args, kwargs))
        if key not in self._functions:
            self._functions[key] = self._trace(layer, args, kwargs)
        entry = self._functions[key]
        if entry is None:
            return layer(*args, **kwargs)
        function, read_indices = entry
        variables = layer.variables
        weight_values = [variables[index].value for index in read_indices]
        return function(weight_values, args, kwargs)

    def _trace(self, template, args, kwargs):
        """`(concrete function, read_indices)` for calls like this one of layers structured
        like `template`, or None if its trace reads a tensor from outside (it would hand
        every layer the same one)."""
        variables = template.variables
        read_indices = list(range(len(variables)))
        while True:
            read_variables = [variables[index] for index in read_indices]
            function = tf.function(
                functools.partial(_call_with_weights, template, read_variables),
                autograph=False,
                experimental_attributes=_XLA_CALL_ATTRIBUTES if in_xla_context() else None,
            )
            specs = [tf.TensorSpec(v.shape, v.dtype) for v in read_variables]
            concrete = function.get_concrete_function(specs, args, kwargs)
            self.traces += 1
            if concrete.captured_inputs:
                return None
            # The weights' placeholders come first among the inputs; unread ones have no
            # consumers. Trace again without them.
            weight_inputs = concrete.inputs[: len(read_indices)]
            still_read = [index for index, placeholder in zip(read_indices, weight_inputs)
                          if placeholder.consumers()]
            if len(still_read) == len(read_indices):
                return concrete, read_indices
            read_indices = still_read
