"""Token-level losses for sequence-to-sequence training.

The model's own loss (`Seq2SeqModelBase.call(..., labels=...)`) is the reference's: mean
cross-entropy over label positions that are not -100. Training needs two more things:

* label smoothing, with exactly the formula of PyTorch's
  `CrossEntropyLoss(label_smoothing=eps, ignore_index=-100)`;
* the loss as a *sum* plus a token *count*, so that data-parallel replicas and
  accumulated micro-batches can be normalised by the token count of the whole global
  batch (then 2 replicas or 4 micro-batches give the same update as one big batch).

Example:
>>> import tensorflow as tf
>>> labels = tf.constant([[3, 1, -100]])
>>> logits = tf.zeros([1, 3, 5])
>>> loss_sum, count = masked_loss_terms(labels, logits)
>>> round(float(loss_sum / count), 4), float(count)   # log(5) per counted token
(1.6094, 2.0)
"""

import tensorflow as tf

IGNORE_INDEX = -100


def label_mask(labels, pad_token_id=None):
    """`[batch, length]` bool: True where a label is counted (not -100, not pad)."""
    labels = tf.convert_to_tensor(labels)
    counted = tf.not_equal(labels, tf.cast(IGNORE_INDEX, labels.dtype))
    if pad_token_id is not None:
        counted = tf.logical_and(
            counted, tf.not_equal(labels, tf.cast(pad_token_id, labels.dtype))
        )
    return counted


def token_cross_entropy(labels, logits, label_smoothing=0.0):
    """Per-token cross-entropy `[batch, length]` (float32), unmasked.

    With `label_smoothing = eps` the target distribution is `(1 - eps)` on the label plus
    `eps / vocab` on every class, i.e. `(1 - eps) * nll + eps * mean_c(-log p_c)` — the
    formula of `torch.nn.CrossEntropyLoss(label_smoothing=eps)`. Labels must be valid ids
    here (replace -100 before calling); masking is the caller's job.
    """
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)  # softmax statistics in float32 even under bf16
    if not label_smoothing:
        # The fused kernel never materialises log-probabilities: least memory.
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    eps = tf.constant(float(label_smoothing), tf.float32)
    log_normalizer = tf.reduce_logsumexp(logits, axis=-1)
    label_logit = tf.squeeze(
        tf.gather(logits, labels[..., tf.newaxis], axis=-1, batch_dims=labels.shape.rank), -1
    )
    # -log p_c = logsumexp(z) - z_c, so mean_c(-log p_c) = logsumexp(z) - mean(z).
    return log_normalizer - (1.0 - eps) * label_logit - eps * tf.reduce_mean(logits, axis=-1)


def masked_loss_terms(labels, logits, label_smoothing=0.0, pad_token_id=None,
                      per_token_loss_fn=None):
    """`(sum of counted per-token losses, number of counted tokens)`, both float32 scalars.

    `per_token_loss_fn(labels, logits) -> [batch, length]` replaces the built-in
    (label-smoothed) cross-entropy, e.g.
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)`; it
    receives labels with ignored positions set to 0.
    """
    labels = tf.cast(labels, tf.int32)
    counted = label_mask(labels, pad_token_id)
    safe_labels = tf.where(counted, labels, tf.zeros_like(labels))
    if per_token_loss_fn is None:
        per_token = token_cross_entropy(safe_labels, logits, label_smoothing)
    else:
        per_token = tf.cast(per_token_loss_fn(safe_labels, logits), tf.float32)
    weights = tf.cast(counted, tf.float32)
    return tf.reduce_sum(per_token * weights), tf.reduce_sum(weights)


def masked_cross_entropy(labels, logits, label_smoothing=0.0, pad_token_id=None):
    """Mean (label-smoothed) cross-entropy over counted tokens; 0 when none are counted.

    With `label_smoothing=0` this equals the model's own loss.
    """
    loss_sum, count = masked_loss_terms(labels, logits, label_smoothing, pad_token_id)
    return tf.math.divide_no_nan(loss_sum, count)
