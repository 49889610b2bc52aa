"""Initializer helpers shared by the layers."""

import keras


def clone_initializer(initializer):
    """A fresh copy of `initializer` for exactly one weight.

    A Keras 3 initializer fixes its seed when it is constructed, so one unseeded instance
    handed to several weights gives every weight of the same shape the same values (all
    q/k/v kernels of every layer equal, both halves of a gated FFN equal). Each clone of an
    unseeded initializer draws its own seed; `keras.utils.set_random_seed` still makes the
    draws reproducible. A seeded initializer is copied as is (the caller asked for it).

    Example:
    >>> init = keras.initializers.RandomNormal(stddev=1.0)
    >>> a, b = clone_initializer(init)((3,)), clone_initializer(init)((3,))
    >>> bool(keras.ops.all(a == b))
    False
    """
    initializer = keras.initializers.get(initializer)
    if isinstance(initializer, keras.initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


def get_optional_initializer(initializer):
    """`keras.initializers.get`, keeping None (meaning "use the layer's default")."""
    return None if initializer is None else keras.initializers.get(initializer)


def serialize_optional_initializer(initializer):
    """`keras.initializers.serialize`, keeping None; for `get_config`."""
    return None if initializer is None else keras.initializers.serialize(initializer)


@keras.saving.register_keras_serializable(package="tfmodels")
class NormalWithZeroRow(keras.initializers.Initializer):
    """Normal(0, stddev) for a `[rows, width]` table whose row `zero_row` starts at zero.

    The embedding of a padding id starts at zero in fairseq-style models (M2M100), so
    padding contributes nothing until training moves it.

    Example:
    >>> table = NormalWithZeroRow(stddev=0.02, zero_row=1)((4, 3))
    >>> [float(v) for v in table[1]]
    [0.0, 0.0, 0.0]
    """

    def __init__(self, stddev=0.05, zero_row=None, seed=None):
        self.stddev = stddev
        self.zero_row = zero_row
        self.seed = seed
        self._normal = keras.initializers.RandomNormal(stddev=stddev, seed=seed)

    def __call__(self, shape, dtype=None):
        values = self._normal(shape, dtype=dtype)
        if self.zero_row is None:
            return values
        is_zero_row = keras.ops.equal(keras.ops.arange(shape[0]), self.zero_row)
        return keras.ops.where(
            keras.ops.expand_dims(is_zero_row, -1), keras.ops.zeros_like(values), values
        )

    def get_config(self):
        return {"stddev": self.stddev, "zero_row": self.zero_row, "seed": self.seed}
