"""Loss pieces: label smoothing against PyTorch's formula, masking, normalisation."""

import numpy as np
import pytest
import tensorflow as tf

from tfmodels.models.seq2seq import masked_token_loss
from tfmodels.training import MaskedTokenAccuracy, masked_cross_entropy, masked_loss_terms


def random_logits_and_labels(seed=0, batch=3, length=5, vocab=11):
    rng = np.random.RandomState(seed)
    logits = rng.randn(batch, length, vocab).astype(np.float32) * 3
    labels = rng.randint(0, vocab, size=(batch, length)).astype(np.int64)
    labels[0, 3:] = -100
    labels[2, 1:] = -100
    return logits, labels


@pytest.mark.torch
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch_cross_entropy(torch, label_smoothing):
    logits, labels = random_logits_and_labels()
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=label_smoothing)
    expected = float(loss_fn(torch.from_numpy(logits).reshape(-1, logits.shape[-1]),
                             torch.from_numpy(labels).reshape(-1)))
    ours = float(masked_cross_entropy(labels, logits, label_smoothing=label_smoothing))
    assert abs(ours - expected) <= 1e-5, (ours, expected)


def test_label_smoothing_formula_by_hand():
    logits, labels = random_logits_and_labels(seed=1)
    eps = 0.2
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    counted = labels != -100
    safe = np.where(counted, labels, 0)
    nll = -np.take_along_axis(log_probs, safe[..., None], -1)[..., 0]
    smooth = -log_probs.mean(-1)
    expected = (((1 - eps) * nll + eps * smooth) * counted).sum() / counted.sum()
    assert abs(float(masked_cross_entropy(labels, logits, eps)) - expected) <= 1e-5


def test_unsmoothed_loss_is_the_models_own_loss():
    logits, labels = random_logits_and_labels(seed=2)
    assert abs(float(masked_cross_entropy(labels, logits)) -
               float(masked_token_loss(labels, logits))) <= 1e-6


def test_terms_sum_and_count_and_pad_ignored():
    logits, labels = random_logits_and_labels(seed=3)
    loss_sum, count = masked_loss_terms(labels, logits)
    assert float(count) == float((labels != -100).sum())
    # Treating id 4 as padding removes exactly its positions.
    pad_positions = (labels == 4).sum()
    _, count_without_pad = masked_loss_terms(labels, logits, pad_token_id=4)
    assert float(count_without_pad) == float(count) - pad_positions
    # No counted token: the mean is 0, not NaN.
    assert float(masked_cross_entropy(np.full((1, 2), -100), logits[:1, :2])) == 0.0


def test_token_accuracy_ignores_masked_positions_and_weights_by_tokens():
    metric = MaskedTokenAccuracy()
    # batch 1: 1 of 2 counted right; batch 2: 3 of 3 right -> 4/5 (not mean of 0.5, 1.0)
    metric.update_state(tf.constant([[2, 1, -100]]), tf.one_hot([[2, 0, 1]], 4))
    metric.update_state(tf.constant([[3, 3, 0]]), tf.one_hot([[3, 3, 0]], 4))
    assert abs(float(metric.result()) - 0.8) < 1e-7
