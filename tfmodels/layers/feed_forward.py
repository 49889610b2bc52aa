"""Position-wise feed-forward block: plain (relu/gelu) or gated (GEGLU/SwiGLU)."""

import keras

from tfmodels.layers.activations import get_activation
from tfmodels.layers.dense import PROJECTION_KERNEL_LAYOUT, Dense
from tfmodels.layers.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="tfmodels")
class FeedForward(keras.layers.Layer):
    """`output_dense(dropout(act(intermediate_dense(x)) [* linear_dense(x)]))`.

    With `gated=True` the activated projection is multiplied by a second, linear one
    (T5 v1.1's gated-GELU); otherwise it is the classic two-layer MLP.

    Example:
    >>> ffn = FeedForward(hidden_dim=8, intermediate_dim=16, activation="gelu_new",
    ...                   gated=True)
    >>> ffn(keras.ops.zeros([2, 3, 8])).shape
    TensorShape([2, 3, 8])
    """

    def __init__(
        self,
        hidden_dim,
        intermediate_dim,
        activation="relu",
        gated=False,
        use_bias=False,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.gated = gated
        self.use_bias = use_bias
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        def dense(units, name):
            return Dense(
                units,
                kernel_layout=PROJECTION_KERNEL_LAYOUT,
                use_bias=use_bias,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=name,
            )

        self.intermediate_dense = dense(intermediate_dim, "intermediate")
        self.linear_dense = dense(intermediate_dim, "linear") if gated else None
        self.output_dense = dense(hidden_dim, "output")
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.intermediate_dense.build(input_shape)
        if self.linear_dense is not None:
            self.linear_dense.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        super().build(input_shape)

    def call(self, hidden_states, training=False):
        intermediate = self.activation_fn(self.intermediate_dense(hidden_states))
        if self.linear_dense is not None:
            intermediate = intermediate * self.linear_dense(hidden_states)
        intermediate = self.dropout_layer(intermediate, training=training)
        return self.output_dense(intermediate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
                "gated": self.gated,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
