"""A stack of pre-norm transformer layers with a final norm: the encoder or the decoder."""

import keras
import tensorflow as tf

from tfmodels.layers.attention import mask_to_bias
from tfmodels.layers.initializers import (
    get_optional_initializer,
    serialize_optional_initializer,
)
from tfmodels.layers.relative_position_bias import RelativePositionBias
from tfmodels.layers.shapes import dimension
from tfmodels.layers.shared_layer_trace import SharedLayerTrace, shares_layer_traces
from tfmodels.layers.transformer_layer import TransformerLayer, layer_arguments, make_norm


@keras.saving.register_keras_serializable(package="tfmodels")
class TransformerStack(keras.layers.Layer):
    """Encoder (`is_decoder=False`) or decoder stack over already-embedded inputs.

    Masks and the optional T5 relative position bias are turned into one additive bias
    per stack, once, and handed to every layer. While a graph is traced for inference, the
    layers go through one shared trace (`SharedLayerTrace`). Decoding with a static cache:
    pass one `(key, value)` pair per layer in `self_attention_caches` (each
    `[batch, heads, cache_len, head_dim]`), precomputed `cross_attention_caches`, and the
    int32 scalar `cache_index` where the new tokens go; `padding_mask` then covers the
    `cache_len` cache slots. The cross-attention caches and `encoder_padding_mask` may
    have one row per group of consecutive batch rows (a search's beams of one input; see
    `MultiHeadAttention`).

    Example:
    >>> stack = TransformerStack(num_layers=2, hidden_dim=8, num_heads=2, head_dim=4,
    ...                          intermediate_dim=16, relative_attention_num_buckets=8)
    >>> stack(tf.zeros([1, 5, 8]))["last_hidden_state"].shape
    TensorShape([1, 5, 8])
    """

    def __init__(
        self,
        num_layers,
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
        relative_attention_num_buckets=None,
        relative_attention_max_distance=128,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        float16_clamp=None,
        layerdrop=0.0,
        dropout_after_final_norm=False,
        kernel_initializer="glorot_uniform",
        query_kernel_initializer=None,
        position_bias_initializer=None,
        **kwargs,
    ):
        # Float32 attention biases must not be autocast to the compute dtype (bfloat16
        # turns the mask value into -inf); inputs arrive in the compute dtype already.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.num_layers = num_layers
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
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.float16_clamp = float16_clamp
        self.layerdrop = layerdrop
        self.dropout_after_final_norm = dropout_after_final_norm
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.query_kernel_initializer = get_optional_initializer(query_kernel_initializer)
        self.position_bias_initializer = get_optional_initializer(position_bias_initializer)

        policy = self.dtype_policy
        if relative_attention_num_buckets:
            self.relative_position_bias = RelativePositionBias(
                num_heads=num_heads,
                num_buckets=relative_attention_num_buckets,
                max_distance=relative_attention_max_distance,
                bidirectional=not is_decoder,
                embeddings_initializer=self.position_bias_initializer,
                dtype=policy,
                name="relative_position_bias",
            )
        else:
            self.relative_position_bias = None
        self.transformer_layers = [
            TransformerLayer(
                **layer_arguments(self),
                kernel_initializer=self.kernel_initializer,
                query_kernel_initializer=self.query_kernel_initializer,
                dtype=policy,
                name=f"layer_{index}",
            )
            for index in range(num_layers)
        ]
        self.final_norm = make_norm(norm_type, norm_epsilon, policy, "final_norm")
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=policy)

    # Argument names are `call()`'s plus `_shape` (Keras matches them on a first call).
    def build(self, inputs_embeds_shape, encoder_hidden_states_shape=None):
        input_shape, encoder_shape = inputs_embeds_shape, encoder_hidden_states_shape
        if self.relative_position_bias is not None:
            self.relative_position_bias.build()
        for layer in self.transformer_layers:
            layer.build(input_shape, encoder_shape)
        self.final_norm.build(input_shape)
        super().build(input_shape)

    def _self_attention_bias(self, query_length, key_length, query_offset, padding_mask):
        """Additive float32 bias `[batch or 1, heads or 1, query_len, key_len]`, or None."""
        keep = None
        if self.is_decoder:
            query_positions = tf.range(query_length) + query_offset
            key_positions = tf.range(key_length)
            keep = (key_positions[tf.newaxis, :] <= query_positions[:, tf.newaxis])[
                tf.newaxis, tf.newaxis
            ]
        if padding_mask is not None:
            keep_keys = tf.cast(padding_mask, tf.bool)[:, tf.newaxis, tf.newaxis, :]
            keep = keep_keys if keep is None else tf.logical_and(keep, keep_keys)
        bias = None if keep is None else mask_to_bias(keep)
        if self.relative_position_bias is not None:
            position_bias = self.relative_position_bias(
                query_length, key_length, query_offset=query_offset
            )
            bias = position_bias if bias is None else bias + position_bias
        return bias

    def call(
        self,
        inputs_embeds,
        padding_mask=None,
        encoder_hidden_states=None,
        encoder_padding_mask=None,
        self_attention_caches=None,
        cross_attention_caches=None,
        cache_index=None,
        training=False,
        output_hidden_states=False,
        output_attentions=False,
    ):
        """Returns a dict with `last_hidden_state` and, when asked, `hidden_states`,
        `attentions`, `cross_attentions`; `caches` holds the updated self-attention caches
        when decoding with them."""
        query_length = dimension(inputs_embeds, 1)
        if self_attention_caches is not None:
            key_length = dimension(self_attention_caches[0][0], 2)
            query_offset = tf.cast(cache_index, tf.int32)
        else:
            key_length = query_length
            query_offset = tf.constant(0, tf.int32)
        self_bias = self._self_attention_bias(
            query_length, key_length, query_offset, padding_mask
        )
        cross_bias = None
        if self.is_decoder and encoder_padding_mask is not None:
            cross_bias = mask_to_bias(
                tf.cast(encoder_padding_mask, tf.bool)[:, tf.newaxis, tf.newaxis, :]
            )

        hidden_states = self.dropout_layer(inputs_embeds, training=training)
        call_layer = (
            SharedLayerTrace()
            if shares_layer_traces(training, len(self.transformer_layers))
            else lambda layer, *args, **kwargs: layer(*args, **kwargs)
        )
        all_hidden_states, self_weights, cross_weights, updated_caches = [], [], [], []
        for index, layer in enumerate(self.transformer_layers):
            if output_hidden_states:
                all_hidden_states.append(hidden_states)

            def run_layer(states, layer=layer, index=index):
                return call_layer(
                    layer,
                    states,
                    self_attention_bias=self_bias,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_bias=cross_bias,
                    self_attention_cache=(
                        None if self_attention_caches is None else self_attention_caches[index]
                    ),
                    cross_attention_cache=(
                        None if cross_attention_caches is None else cross_attention_caches[index]
                    ),
                    cache_index=cache_index,
                    training=training,
                    return_attention_weights=output_attentions,
                )

            if training and self.layerdrop > 0.0:
                # LayerDrop (training only): skip the whole layer with probability layerdrop.
                skip = tf.random.uniform([]) < self.layerdrop
                hidden_states = tf.cond(
                    skip, lambda s=hidden_states: s, lambda s=hidden_states: run_layer(s)[0]
                )
                continue
            hidden_states, (layer_self, layer_cross), layer_cache = run_layer(hidden_states)
            self_weights.append(layer_self)
            cross_weights.append(layer_cross)
            updated_caches.append(layer_cache)

        hidden_states = self.final_norm(hidden_states)
        if self.dropout_after_final_norm:
            hidden_states = self.dropout_layer(hidden_states, training=training)
        outputs = {"last_hidden_state": hidden_states}
        if output_hidden_states:
            outputs["hidden_states"] = tuple(all_hidden_states) + (hidden_states,)
        if output_attentions:
            outputs["attentions"] = tuple(self_weights)
            if self.is_decoder:
                outputs["cross_attentions"] = tuple(cross_weights)
        if self_attention_caches is not None:
            outputs["caches"] = updated_caches
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(layer_arguments(self))
        config.update(
            {
                "num_layers": self.num_layers,
                "relative_attention_num_buckets": self.relative_attention_num_buckets,
                "relative_attention_max_distance": self.relative_attention_max_distance,
                "layerdrop": self.layerdrop,
                "dropout_after_final_norm": self.dropout_after_final_norm,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "query_kernel_initializer": serialize_optional_initializer(
                    self.query_kernel_initializer
                ),
                "position_bias_initializer": serialize_optional_initializer(
                    self.position_bias_initializer
                ),
            }
        )
        return config
