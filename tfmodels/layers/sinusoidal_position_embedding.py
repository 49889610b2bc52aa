"""Fixed sinusoidal position embeddings with fairseq's padding-aware position ids (M2M100)."""

import math

import keras
import tensorflow as tf


def padding_aware_position_ids(input_ids, padding_idx, past_length=0):
    """Position ids that count only non-pad tokens, starting at `padding_idx + 1`.

    Pad tokens get `padding_idx`, whose embedding row is zero. `past_length` shifts the
    count for tokens that follow a cache of that many earlier tokens.
    """
    is_token = tf.cast(tf.not_equal(input_ids, padding_idx), tf.int32)
    running_count = tf.cumsum(is_token, axis=1) + tf.cast(past_length, tf.int32)
    return running_count * is_token + padding_idx


@keras.saving.register_keras_serializable(package="tfmodels")
class SinusoidalPositionEmbedding(keras.layers.Layer):
    """Looks up sin/cos position vectors, computed on the fly for any position.

    The reference keeps a table of `max_position_embeddings + 2` rows and regrows it when
    a longer input arrives; computing rows on demand gives the same values at every
    position, inside or past that size, and needs no weights.

    Example:
    >>> embed = SinusoidalPositionEmbedding(embedding_dim=16, padding_idx=1)
    >>> embed(tf.constant([[5, 6, 1]])).shape
    TensorShape([1, 3, 16])
    """

    def __init__(self, embedding_dim, padding_idx, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx

    def call(self, position_ids):
        half_dim = self.embedding_dim // 2
        inverse_frequency = tf.exp(
            tf.range(half_dim, dtype=tf.float32) * -(math.log(10000.0) / (half_dim - 1))
        )
        angles = tf.cast(position_ids, tf.float32)[..., tf.newaxis] * inverse_frequency
        embedding = tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)
        if self.embedding_dim % 2 == 1:
            embedding = tf.pad(embedding, [[0, 0]] * (embedding.shape.rank - 1) + [[0, 1]])
        is_padding = tf.equal(position_ids, self.padding_idx)[..., tf.newaxis]
        embedding = tf.where(is_padding, tf.zeros_like(embedding), embedding)
        return tf.cast(embedding, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim, "padding_idx": self.padding_idx})
        return config
