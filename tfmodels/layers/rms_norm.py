"""Root-mean-square layer normalisation (T5 style: no mean subtraction, no bias)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfmodels")
class RMSNorm(keras.layers.Layer):
    """Scales each vector by the reciprocal of its root mean square.

    The statistic is always computed in float32, so the layer is safe under
    `mixed_bfloat16`; the result is returned in the layer's compute dtype.

    Example:
    >>> norm = RMSNorm(epsilon=1e-6)
    >>> norm(tf.ones([2, 3, 8])).shape
    TensorShape([2, 3, 8])
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale", shape=(input_shape[-1],), initializer="ones"
        )
        super().build(input_shape)

    def call(self, hidden_states):
        hidden_f32 = tf.cast(hidden_states, tf.float32)
        mean_square = tf.reduce_mean(tf.square(hidden_f32), axis=-1, keepdims=True)
        normalised = hidden_f32 * tf.math.rsqrt(mean_square + self.epsilon)
        return tf.cast(tf.cast(self.scale, tf.float32) * normalised, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
