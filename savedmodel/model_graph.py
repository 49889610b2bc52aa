"""The model computations behind `score`, `encode` and the greedy `scores` output.

Plain functions of `(model, int32 tensors)`: the exported signatures call them inside
their graphs, with or without XLA, and tests call them eagerly to get the expected values.
"""

import tensorflow as tf


def shift_right(labels, decoder_start_token_id):
    """Teacher-forcing decoder inputs: `[start] + labels[:, :-1]`."""
    batch = tf.shape(labels)[0]
    start = tf.fill([batch, 1], tf.constant(decoder_start_token_id, tf.int32))
    return tf.concat([start, labels[:, :-1]], axis=1)


def target_log_likelihood(model, input_ids, attention_mask, labels, labels_mask):
    """Sum of `log p(label_t | source, labels_<t)` over the unmasked target positions.

    Args:
        input_ids, attention_mask: `[batch, source_length]` int32 (right padding).
        labels: `[batch, target_length]` int32 target ids (what the decoder must produce,
            EOS included), right-padded; `labels_mask` marks the real ones.

    Returns:
        `(log_likelihood [batch] float32, num_tokens [batch] int32)`.

    Example (a tiny random mT5):
    >>> from tfmodels import MT5Config, MT5ForConditionalGeneration
    >>> model = MT5ForConditionalGeneration(MT5Config(
    ...     vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    >>> ll, n = target_log_likelihood(model, tf.constant([[5, 6, 1]]), tf.constant([[1, 1, 1]]),
    ...                               tf.constant([[7, 8, 1, 0]]), tf.constant([[1, 1, 1, 0]]))
    >>> n.numpy().tolist(), bool(ll[0] < 0)   # three scored tokens, log-probabilities < 0
    ([3], True)
    """
    labels = tf.cast(labels, tf.int32)
    labels_mask = tf.cast(labels_mask, tf.int32)
    encoder_states = model.encode(input_ids, attention_mask)["last_hidden_state"]
    decoder_input_ids = shift_right(labels, model.config.decoder_start_token_id)
    decoder_states = model.decode(
        decoder_input_ids, encoder_states, encoder_attention_mask=attention_mask
    )["last_hidden_state"]
    log_probs = tf.nn.log_softmax(model.compute_logits(decoder_states), axis=-1)
    token_log_probs = tf.gather(log_probs, labels, batch_dims=2)  # [batch, target_length]
    counted = tf.cast(labels_mask, tf.float32)
    log_likelihood = tf.reduce_sum(token_log_probs * counted, axis=1)
    return log_likelihood, tf.reduce_sum(labels_mask, axis=1)


def generated_log_likelihood(model, input_ids, attention_mask, sequences, lengths):
    """Log-likelihood of generated sequences (decoder start token first, `lengths` long).

    This is what `score` returns for the same output: the greedy `scores` output.
    """
    labels = sequences[:, 1:]
    positions = tf.range(tf.shape(labels)[1], dtype=tf.int32)[tf.newaxis, :]
    labels_mask = tf.cast(positions < (lengths - 1)[:, tf.newaxis], tf.int32)
    log_likelihood, _ = target_log_likelihood(model, input_ids, attention_mask, labels, labels_mask)
    return log_likelihood


def mean_pooled_encoding(model, input_ids, attention_mask):
    """Encoder output averaged over the real (unmasked) tokens: `[batch, d_model]` float32.

    Returns `(embedding, num_tokens [batch] int32)`.
    """
    states = tf.cast(model.encode(input_ids, attention_mask)["last_hidden_state"], tf.float32)
    weights = tf.cast(attention_mask, tf.float32)[:, :, tf.newaxis]
    total = tf.reduce_sum(states * weights, axis=1)
    count = tf.reduce_sum(weights, axis=1)
    return total / tf.maximum(count, 1.0), tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=1)
