"""Training loss and gradients against transformers 4.57 (PyTorch) on the same checkpoint.

The gradients are the ones `fit`'s `train_step` applies (read back from a recording
optimizer), compared tensor by tensor with `param.grad` after `loss.backward()`.
Bound: max |ours - reference| <= 1e-4 x max |reference| per tensor, loss within 1e-4.
"""

import numpy as np
import pytest
import tensorflow as tf

from helpers import (TINY_M2M100, TINY_MT5, m2m100_batch, mt5_batch, ours_from_reference,
                     reference_model)
from test_training_support import RecordingSGD
from tfmodels import M2M100ForConditionalGeneration, MT5ForConditionalGeneration

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.torch

GRAD_RTOL = 1e-4
LOSS_ATOL = 1e-4

FAMILIES = {
    "mt5": ("MT5ForConditionalGeneration", MT5ForConditionalGeneration, TINY_MT5, mt5_batch),
    "m2m100": ("M2M100ForConditionalGeneration", M2M100ForConditionalGeneration, TINY_M2M100,
               m2m100_batch),
}


def reference_loss_and_grads(torch, reference, batch, label_smoothing):
    reference.zero_grad()
    inputs = {key: torch.from_numpy(batch[key]) for key in ("input_ids", "attention_mask",
                                                            "labels")}
    out = reference(**inputs)
    if label_smoothing:
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=label_smoothing)
        loss = loss_fn(out.logits.reshape(-1, out.logits.shape[-1]), inputs["labels"].reshape(-1))
    else:
        loss = out.loss
    loss.backward()
    # remove_duplicate=False: tied weights appear under every name they are saved with.
    grads = {name: param.grad.detach().numpy().copy()
             for name, param in reference.named_parameters(remove_duplicate=False)
             if param.grad is not None}
    return float(loss.detach()), grads


# Default suite: each family once, one with label smoothing; the other two combinations
# run with the slow suite.
CASES = [
    ("mt5", 0.0),
    ("m2m100", 0.1),
    pytest.param("mt5", 0.1, marks=pytest.mark.slow),
    pytest.param("m2m100", 0.0, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("family,label_smoothing", CASES)
def test_fit_step_loss_and_gradients_match_reference(torch, transformers, family,
                                                     label_smoothing, report_figure):
    class_name, our_class, tiny, make_batch = FAMILIES[family]
    reference = reference_model(transformers, class_name, tiny)
    model = ours_from_reference(our_class, reference)
    batch = make_batch("right")

    expected_loss, expected_grads = reference_loss_and_grads(torch, reference, batch,
                                                             label_smoothing)

    optimizer = RecordingSGD(learning_rate=0.0)  # records the gradient, changes nothing
    model.compile(optimizer=optimizer, label_smoothing=label_smoothing, metrics=[])
    inputs = {key: batch[key].astype(np.int32) for key in ("input_ids", "attention_mask",
                                                           "labels")}
    history = model.fit(tf.data.Dataset.from_tensors(inputs), epochs=1, verbose=0)
    loss = history.history["loss"][0]
    assert abs(loss - expected_loss) <= LOSS_ATOL, (loss, expected_loss)

    worst = 0.0
    checked = 0
    largest = max(float(np.max(np.abs(g))) for g in expected_grads.values())
    for name, variable, transpose in model.hf_weight_names():
        ours = optimizer.recorded_gradient(variable)
        if transpose:
            ours = ours.T
        expected = expected_grads[name]
        checked += 1
        scale = float(np.max(np.abs(expected)))
        if scale < 1e-6 * largest:
            # Zero in exact arithmetic (attention key biases shift every score of a query
            # equally; softmax ignores that): both sides are rounding noise, so bound
            # them against the model's largest gradient instead.
            assert float(np.max(np.abs(ours))) <= GRAD_RTOL * largest, name
            continue
        relative = float(np.max(np.abs(ours - expected))) / scale
        assert relative <= GRAD_RTOL, f"{name}: gradient rel diff {relative:.3g}"
        worst = max(worst, relative)
    assert checked == len(list(model.hf_weight_names()))
    report_figure(f"{family} fit-step vs torch (label_smoothing={label_smoothing})",
                  loss_diff=abs(loss - expected_loss), worst_grad_rel=worst, tensors=checked)
