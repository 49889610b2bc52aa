"""Activation functions addressed by the names Hugging Face configs use."""

import math

import tensorflow as tf


def _gelu_tanh(x):
    # "gelu_new" / "gelu_pytorch_tanh": the tanh approximation T5 v1.1 was trained with.
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


def _gelu_exact(x):
    return tf.nn.gelu(x, approximate=False)


_ACTIVATIONS = {
    "relu": tf.nn.relu,
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}

ACTIVATION_NAMES = tuple(sorted(_ACTIVATIONS))


def get_activation(name):
    """Returns the activation function for a config name such as `"gelu_new"`.

    >>> get_activation("relu")(tf.constant([-1.0, 2.0])).numpy().tolist()
    [0.0, 2.0]
    """
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; supported: {', '.join(ACTIVATION_NAMES)}"
        ) from None
