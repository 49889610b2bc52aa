"""Training metrics computed from `(labels, logits)`, ignoring -100 label positions.

Example:
>>> import tensorflow as tf
>>> metric = MaskedTokenAccuracy()
>>> labels = tf.constant([[2, 1, -100]])
>>> logits = tf.one_hot([[2, 0, 0]], depth=4)      # right, wrong, ignored
>>> metric.update_state(labels, logits)
>>> float(metric.result())
0.5
"""

import keras
import tensorflow as tf

from tfmodels.training.losses import label_mask


@keras.saving.register_keras_serializable(package="tfmodels")
class MaskedTokenAccuracy(keras.metrics.Metric):
    """Share of counted label tokens whose arg-max prediction is right.

    Counts are summed over batches (and replicas), so the result is a token-weighted
    accuracy, not a mean of per-batch accuracies.
    """

    def __init__(self, name="token_accuracy", pad_token_id=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pad_token_id = pad_token_id
        self.correct = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                         name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                       name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = tf.cast(y_true, tf.int32)
        counted = tf.cast(label_mask(labels, self.pad_token_id), tf.float32)
        if sample_weight is not None:
            weight = tf.cast(sample_weight, tf.float32)
            counted = counted * tf.reshape(weight, [-1, 1]) if weight.shape.rank == 1 else (
                counted * weight
            )
        predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        hits = tf.cast(tf.equal(predicted, labels), tf.float32)
        self.correct.assign_add(tf.reduce_sum(hits * counted))
        self.total.assign_add(tf.reduce_sum(counted))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "pad_token_id": self.pad_token_id}
