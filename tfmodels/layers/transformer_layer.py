"""One pre-norm transformer layer (encoder or decoder), shared by all model families."""

import keras
import numpy as np
import tensorflow as tf

from tfmodels.layers.attention import MultiHeadAttention
from tfmodels.layers.feed_forward import FeedForward
from tfmodels.layers.initializers import (
    get_optional_initializer,
    serialize_optional_initializer,
)
from tfmodels.layers.products import add_to_product
from tfmodels.layers.rms_norm import RMSNorm

NORM_TYPES = ("rms", "layer")
# Where the reference clamps float16 hidden states (only under a float16 compute dtype):
# T5 after each residual add (to the float16 maximum, less 1000 once any value is
# infinite), M2M100 at the end of each encoder layer (to the maximum less 1000).
FLOAT16_CLAMPS = (None, "after_each_sublayer", "layer_output")
# `TransformerLayer`'s constructor arguments that are stored and serialised as given (the
# initialisers are serialised apart); `TransformerStack` takes them too and hands them on.
LAYER_ARGUMENTS = (
    "hidden_dim", "num_heads", "head_dim", "intermediate_dim", "activation", "gated_ffn",
    "use_bias", "norm_type", "norm_epsilon", "scale_queries", "is_decoder", "dropout",
    "attention_dropout", "activation_dropout", "float16_clamp",
)


def layer_arguments(owner):
    """`{name: owner.<name>}` for every name in `LAYER_ARGUMENTS`."""
    return {name: getattr(owner, name) for name in LAYER_ARGUMENTS}


def clamp_float16(hidden_states, rule):
    """The reference's guard against float16 overflow (see `FLOAT16_CLAMPS`); other
    dtypes pass through untouched."""
    if rule is None or hidden_states.dtype != tf.float16:
        return hidden_states
    largest = float(np.finfo(np.float16).max)
    limit = tf.constant(largest - 1000, tf.float16)
    if rule == "after_each_sublayer":
        limit = tf.where(tf.reduce_any(tf.math.is_inf(hidden_states)), limit,
                         tf.constant(largest, tf.float16))
    return tf.clip_by_value(hidden_states, -limit, limit)


def make_norm(norm_type, epsilon, dtype_policy, name):
    """RMS norm (T5) or standard layer norm with bias (M2M100)."""
    if norm_type == "rms":
        return RMSNorm(epsilon=epsilon, dtype=dtype_policy, name=name)
    if norm_type == "layer":
        return keras.layers.LayerNormalization(epsilon=epsilon, dtype=dtype_policy, name=name)
    raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")


@keras.saving.register_keras_serializable(package="tfmodels")
class TransformerLayer(keras.layers.Layer):
    """`x + dropout(sublayer(norm(x)))` for self-attention, cross-attention (decoder only)
    and the feed-forward block.

    Both T5 and M2M100 are pre-norm; they differ only in the norm type, projection
    biases, query scaling and feed-forward kind, which are constructor arguments here.

    Example:
    >>> layer = TransformerLayer(hidden_dim=8, num_heads=2, head_dim=4,
    ...                          intermediate_dim=16, is_decoder=False)
    >>> hidden, weights, cache = layer(keras.ops.zeros([1, 3, 8]))
    >>> hidden.shape
    TensorShape([1, 3, 8])
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        head_dim,
        intermediate_dim,
        activation="relu",
        gated_ffn=False,
        use_bias=False,
        norm_type="rms",
        norm_epsilon=1e-6,
        scale_queries=False,
        is_decoder=False,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        float16_clamp=None,
        kernel_initializer="glorot_uniform",
        query_kernel_initializer=None,
        **kwargs,
    ):
        if float16_clamp not in FLOAT16_CLAMPS:
            raise ValueError(f"float16_clamp must be one of {FLOAT16_CLAMPS}, got {float16_clamp!r}")
        # Float32 attention biases must not be autocast to the compute dtype (bfloat16
        # turns the mask value into -inf); `call` casts the hidden states itself.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.intermediate_dim = intermediate_dim
        self.activation = activation
        self.gated_ffn = gated_ffn
        self.use_bias = use_bias
        self.norm_type = norm_type
        self.norm_epsilon = norm_epsilon
        self.scale_queries = scale_queries
        self.is_decoder = is_decoder
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.float16_clamp = float16_clamp
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.query_kernel_initializer = get_optional_initializer(query_kernel_initializer)

        policy = self.dtype_policy

        def attention(name):
            return MultiHeadAttention(
                num_heads=num_heads,
                head_dim=head_dim,
                hidden_dim=hidden_dim,
                use_bias=use_bias,
                scale_queries=scale_queries,
                dropout=attention_dropout,
                kernel_initializer=self.kernel_initializer,
                query_kernel_initializer=self.query_kernel_initializer,
                dtype=policy,
                name=name,
            )

        self.self_attention_norm = make_norm(norm_type, norm_epsilon, policy, "self_attention_norm")
        self.self_attention = attention("self_attention")
        if is_decoder:
            self.cross_attention_norm = make_norm(
                norm_type, norm_epsilon, policy, "cross_attention_norm"
            )
            self.cross_attention = attention("cross_attention")
        else:
            self.cross_attention_norm = None
            self.cross_attention = None
        self.feed_forward_norm = make_norm(norm_type, norm_epsilon, policy, "feed_forward_norm")
        self.feed_forward = FeedForward(
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            activation=activation,
            gated=gated_ffn,
            use_bias=use_bias,
            dropout=activation_dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=policy,
            name="feed_forward",
        )
        self.residual_dropout = keras.layers.Dropout(dropout, dtype=policy)

    # Argument names are `call()`'s plus `_shape` (Keras matches them on a first call).
    def build(self, hidden_states_shape, encoder_hidden_states_shape=None):
        input_shape, encoder_shape = hidden_states_shape, encoder_hidden_states_shape
        self.self_attention_norm.build(input_shape)
        self.self_attention.build(input_shape)
        if self.is_decoder:
            encoder_shape = encoder_shape or input_shape
            self.cross_attention_norm.build(input_shape)
            self.cross_attention.build(input_shape, encoder_shape)
        self.feed_forward_norm.build(input_shape)
        self.feed_forward.build(input_shape)
        super().build(input_shape)

    def call(
        self,
        hidden_states,
        self_attention_bias=None,
        encoder_hidden_states=None,
        cross_attention_bias=None,
        self_attention_cache=None,
        cross_attention_cache=None,
        cache_index=None,
        training=False,
        return_attention_weights=False,
    ):
        """Returns `(hidden_states, (self_weights, cross_weights), updated_self_cache)`."""
        # Autocast is off (see __init__): cast the states here, a no-op inside the stack.
        hidden_states = keras.ops.cast(hidden_states, self.compute_dtype)
        if encoder_hidden_states is not None:
            encoder_hidden_states = keras.ops.cast(encoder_hidden_states, self.compute_dtype)
        attended, self_weights, updated_cache = self.self_attention(
            self.self_attention_norm(hidden_states),
            attention_bias=self_attention_bias,
            cache=self_attention_cache,
            cache_index=cache_index,
            training=training,
            return_attention_weights=return_attention_weights,
        )
        hidden_states = self._add_residual(hidden_states, attended, training)

        cross_weights = None
        if self.is_decoder:
            attended, cross_weights, _ = self.cross_attention(
                self.cross_attention_norm(hidden_states),
                key_value_states=encoder_hidden_states,
                attention_bias=cross_attention_bias,
                cache=cross_attention_cache,
                training=training,
                return_attention_weights=return_attention_weights,
            )
            hidden_states = self._add_residual(hidden_states, attended, training)

        transformed = self.feed_forward(self.feed_forward_norm(hidden_states), training=training)
        hidden_states = self._add_residual(hidden_states, transformed, training)
        if self.float16_clamp == "layer_output":
            hidden_states = clamp_float16(hidden_states, "layer_output")
        return hidden_states, (self_weights, cross_weights), updated_cache

    def _add_residual(self, hidden_states, sublayer_output, training):
        """`hidden_states + dropout(sublayer_output)`, unfused from the sublayer's last
        product under XLA (see `products.add_to_product`)."""
        hidden_states = add_to_product(
            self.residual_dropout(sublayer_output, training=training), hidden_states
        )
        if self.float16_clamp == "after_each_sublayer":
            hidden_states = clamp_float16(hidden_states, "after_each_sublayer")
        return hidden_states

    def get_config(self):
        config = super().get_config()
        config.update(layer_arguments(self))
        config.update(
            {
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "query_kernel_initializer": serialize_optional_initializer(
                    self.query_kernel_initializer
                ),
            }
        )
        return config
