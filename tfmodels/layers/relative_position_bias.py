"""T5 relative position bias: learned per-head scalars indexed by log-spaced distance buckets."""

import math

import keras
import tensorflow as tf

from tfmodels.layers.initializers import clone_initializer


def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
    """Maps `key_position - query_position` (int32 tensor) to a bucket id in [0, num_buckets).

    Half the buckets (per direction when bidirectional) count exact small distances; the
    rest cover distances up to `max_distance` on a log scale, larger ones share the last.
    """
    bucket_offset = tf.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket_offset += tf.cast(relative_position > 0, tf.int32) * num_buckets
        distance = tf.abs(relative_position)
    else:
        # A causal decoder only looks back: future positions collapse to distance 0.
        distance = -tf.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # float32 log, then truncation toward zero, as the reference computes it; clamp the
    # argument so log(0) never appears (small distances take the other branch anyway).
    distance_f32 = tf.cast(tf.maximum(distance, 1), tf.float32)
    log_bucket = max_exact + tf.cast(
        tf.math.log(distance_f32 / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact),
        tf.int32,
    )
    log_bucket = tf.minimum(log_bucket, num_buckets - 1)
    return bucket_offset + tf.where(is_small, distance, log_bucket)


@keras.saving.register_keras_serializable(package="tfmodels")
class RelativePositionBias(keras.layers.Layer):
    """Produces the additive attention bias `[1, num_heads, query_len, key_len]`.

    Computed once per stack and shared by every layer in it. `query_offset` is the
    absolute position of the first query, so one decoding step at position `t` against a
    static cache of `key_length` slots is `layer(1, key_length, query_offset=t)`.

    Example:
    >>> bias = RelativePositionBias(num_heads=4, num_buckets=32, max_distance=128,
    ...                             bidirectional=True)
    >>> bias(5, 7).shape
    TensorShape([1, 4, 5, 7])
    """

    def __init__(
        self,
        num_heads,
        num_buckets,
        max_distance,
        bidirectional,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=1.0)
        )
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_buckets, self.num_heads),
            initializer=clone_initializer(self.embeddings_initializer),
        )
        super().build(input_shape)

    def __call__(self, query_length, key_length, query_offset=0, **kwargs):
        # Keras accepts only tensors as positional arguments; lengths are often Python ints.
        return super().__call__(
            tf.convert_to_tensor(query_length, tf.int32),
            tf.convert_to_tensor(key_length, tf.int32),
            query_offset=query_offset,
            **kwargs,
        )

    def call(self, query_length, key_length, query_offset=0):
        if not self.built:
            self.build()
        query_positions = tf.range(query_length, dtype=tf.int32) + tf.cast(query_offset, tf.int32)
        key_positions = tf.range(key_length, dtype=tf.int32)
        relative_position = key_positions[tf.newaxis, :] - query_positions[:, tf.newaxis]
        buckets = relative_position_bucket(
            relative_position, self.bidirectional, self.num_buckets, self.max_distance
        )
        bias_qkh = tf.gather(tf.cast(self.embeddings, tf.float32), buckets)  # [q, k, heads]
        return tf.transpose(bias_qkh, [2, 0, 1])[tf.newaxis]  # [1, heads, q, k]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "num_buckets": self.num_buckets,
                "max_distance": self.max_distance,
                "bidirectional": self.bidirectional,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
