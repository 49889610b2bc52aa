"""`compile` / `fit` / `evaluate` on one device: defaults, loss normalisation, gradient
accumulation, clipping, mixed precision, custom losses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_training_support import (RecordingSGD, concat_batches, dataset_of, max_abs_diff,
                                   random_batches, small_model, weights_of)
from tfmodels.models.seq2seq import masked_token_loss
from tfmodels.training import Adafactor

ACCUMULATION_ATOL = 1e-6


def gradients_of_fit_step(model, batch, run_eagerly=True, **compile_kwargs):
    """The gradient `fit` applies for `batch` (learning rate 0: weights unchanged).

    Eager by default: the same `train_step` code, without seconds of tracing per call on
    2 shared cores; tests that need the graph path (while_loop, bf16) pass False."""
    optimizer = RecordingSGD(learning_rate=0.0)
    model.compile(optimizer=optimizer, metrics=[], run_eagerly=run_eagerly, **compile_kwargs)
    model.fit(tf.data.Dataset.from_tensors(batch), verbose=0)
    return [optimizer.recorded_gradient(v) for v in model.trainable_variables]


def test_defaults_fit_evaluate_and_learn():
    model = small_model("mt5")
    model.compile()
    assert isinstance(model.optimizer, Adafactor)
    batches = random_batches(2, 4, seed=1)
    history = model.fit(dataset_of(batches), epochs=6, verbose=0)
    losses = history.history["loss"]
    assert set(history.history) == {"loss", "token_accuracy"}
    assert losses[-1] < losses[0] - 0.5, losses
    results = model.evaluate(dataset_of(batches), verbose=0, return_dict=True)
    # evaluate's loss is the token-weighted mean over the data (same model, no update).
    tokens = sum(int((b["labels"] != -100).sum()) for b in batches)
    expected = sum(float(masked_token_loss(b["labels"], model(b).logits)) *
                   int((b["labels"] != -100).sum()) for b in batches) / tokens
    assert abs(results["loss"] - expected) < 1e-4
    assert 0.0 <= results["token_accuracy"] <= 1.0


def test_labels_as_y_and_decoder_inputs_given():
    batch = random_batches(1, 3, seed=2, family="m2m100")[0]
    model = small_model("m2m100")
    reference = gradients_of_fit_step(model, batch)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    optimizer = RecordingSGD(learning_rate=0.0)
    model.compile(optimizer=optimizer, metrics=[], run_eagerly=True)
    model.fit(tf.data.Dataset.from_tensors((inputs, batch["labels"])), verbose=0)
    as_y = [optimizer.recorded_gradient(v) for v in model.trainable_variables]
    assert max_abs_diff(reference, as_y) == 0.0


@pytest.mark.parametrize("family", ["mt5", "m2m100"])
def test_fit_step_is_the_gradient_of_the_models_loss(family):
    batch = random_batches(1, 4, seed=3, family=family)[0]
    model = small_model(family)
    recorded = gradients_of_fit_step(model, batch, run_eagerly=family == "mt5")
    with tf.GradientTape() as tape:
        loss = model(batch, training=True).loss
    expected = [tf.convert_to_tensor(g).numpy()
                for g in tape.gradient(loss, model.trainable_variables)]
    assert max_abs_diff(recorded, expected) < 1e-6


def test_gradient_accumulation_equals_one_big_batch(report_figure):
    """3 micro-batches of very different lengths and token counts (rows 3 + 3 + 1): the
    traced `fit` step applies the gradient of the whole batch, in one update."""
    big = concat_batches(random_batches(1, 7, seed=4, max_source=12, max_target=9))
    model = small_model("mt5")
    one_go = gradients_of_fit_step(model, big)
    accumulated = gradients_of_fit_step(model, big, run_eagerly=False,
                                        gradient_accumulation_steps=3)
    assert int(model.optimizer.iterations) == 1
    gradient_diff = max_abs_diff(one_go, accumulated)
    assert gradient_diff < ACCUMULATION_ATOL
    report_figure("accumulation: 3 micro-batches vs one batch", max_grad_diff=gradient_diff)


def test_gradient_accumulation_on_unequal_micro_batches_is_token_weighted():
    """The micro-batches of `micro` hold 1 and 12 target tokens: averaging their means
    (what optimizer-level accumulation does) would be far off; ours is not."""
    micro = random_batches(2, 2, seed=10)
    micro[0]["labels"][:, :] = -100
    micro[0]["labels"][0, 0] = 5
    micro[1]["labels"] = np.random.RandomState(0).randint(3, 60, (2, 6)).astype(np.int32)
    big = concat_batches(micro)
    model = small_model("mt5")
    # Gradients reach 0.4: summing them in two parts differs from one sum by float32
    # rounding (about 1e-6); averaging the micro-batch means would be off by 1.4.
    assert max_abs_diff(gradients_of_fit_step(model, big),
                        gradients_of_fit_step(model, big, gradient_accumulation_steps=2)) < 1e-5


def test_keras_optimizer_accumulation_runs_and_averages_micro_batch_means():
    """Keras's own `gradient_accumulation_steps` works with the model on one device; it
    averages micro-batch *means*, so it equals the big batch only when micro-batches hold
    equally many tokens (ours weights by tokens; see the test above)."""
    micro = random_batches(2, 2, seed=5)
    for batch in micro:  # make both micro-batches hold the same number of target tokens
        batch["labels"][:, 1:] = -100
    model = small_model("mt5")
    expected_sgd_step = gradients_of_fit_step(model, concat_batches(micro))
    start = weights_of(model)

    model = small_model("mt5")
    model.compile(optimizer=keras.optimizers.SGD(1.0, gradient_accumulation_steps=2),
                  metrics=[], run_eagerly=True)
    model.fit(dataset_of(micro), verbose=0)
    moved = [a - b for a, b in zip(start, weights_of(model))]
    trainable = [i for i, v in enumerate(model.weights) if v.trainable]
    assert max_abs_diff([moved[i] for i in trainable], expected_sgd_step) < 1e-5


@pytest.mark.parametrize("family", ["m2m100", "mt5"])
def test_global_clipnorm_clips_the_global_gradient(family):
    """Against the dense gradient's norm; mT5's untied embedding gets `IndexedSlices`
    with a row per token occurrence (repeated ids in the batch)."""
    batch = random_batches(1, 4, seed=6, family=family)[0]
    model = small_model(family)
    raw = gradients_of_fit_step(model, batch)
    norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in raw)))
    clip = norm / 4
    clipped = gradients_of_fit_step(model, batch, global_clipnorm=clip)
    assert max_abs_diff(clipped, [g * (clip / norm) for g in raw]) < 1e-6
    # A global_clipnorm on the optimizer is taken over (applied after the all-reduce).
    optimizer = RecordingSGD(learning_rate=0.0, global_clipnorm=clip)
    model.compile(optimizer=optimizer, metrics=[])
    assert optimizer.global_clipnorm is None
    assert model.training_options.global_clipnorm == pytest.approx(clip)


@pytest.mark.parametrize("family", ["m2m100", "mt5"])
def test_per_variable_clipping_is_taken_over_from_the_optimizer(family):
    """`clipnorm` / `clipvalue` clip each variable's (dense) gradient as on one device (and,
    taken over from the optimizer, after the all-reduce under a strategy)."""
    batch = random_batches(1, 4, seed=6, family=family)[0]
    model = small_model(family)
    raw = gradients_of_fit_step(model, batch)
    limit = float(np.median([np.sqrt(np.sum(g * g)) for g in raw]))
    expected = [g * min(1.0, limit / np.sqrt(np.sum(g * g))) for g in raw]
    assert max_abs_diff(gradients_of_fit_step(model, batch, clipnorm=limit), expected) < 1e-6
    value = float(np.median(np.abs(np.concatenate([g.ravel() for g in raw]))))
    clipped = gradients_of_fit_step(model, batch, clipvalue=value)
    assert max_abs_diff(clipped, [np.clip(g, -value, value) for g in raw]) < 1e-7
    for option in ("clipnorm", "clipvalue"):
        optimizer = RecordingSGD(learning_rate=0.0, **{option: 0.5})
        model.compile(optimizer=optimizer, metrics=[])
        assert getattr(optimizer, option) is None
        assert getattr(model.training_options, option) == 0.5
    with pytest.raises(ValueError, match="one gradient clipping option, got global_clipnorm, clipnorm"):
        model.compile(global_clipnorm=1.0, clipnorm=1.0)


def test_pad_labels_are_ignored_like_minus_100():
    batch = random_batches(1, 3, seed=7)[0]
    model = small_model("mt5")
    expected = gradients_of_fit_step(model, batch)
    with_pad = dict(batch, labels=np.where(batch["labels"] == -100, 0, batch["labels"]))
    assert max_abs_diff(gradients_of_fit_step(model, with_pad), expected) < 1e-7


def test_custom_per_token_loss():
    batch = random_batches(1, 3, seed=8)[0]
    model = small_model("mt5")
    expected = gradients_of_fit_step(model, batch)
    per_token = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    assert max_abs_diff(gradients_of_fit_step(model, batch, loss=per_token), expected) < 1e-6
    with pytest.raises(ValueError, match="loss must be"):
        model.compile(loss="mse")
    # A Keras loss with its default reduction would average the ignored positions in.
    reduced = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(ValueError, match=r"must return per-token losses \[batch, length\] "
                                         r"\(a Keras loss needs reduction=None\)"):
        gradients_of_fit_step(model, batch, loss=reduced)


def test_mixed_bfloat16_training(report_figure):
    batches = random_batches(2, 4, seed=9)
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        model = small_model("mt5", dtype=policy)
        # The float32 reference runs eagerly; the bf16 run is the traced `fit` users run.
        model.compile(optimizer=Adafactor(learning_rate=1e-2), run_eagerly=policy == "float32")
        history = model.fit(dataset_of(batches), epochs=2, verbose=0)
        assert all(v.dtype == "float32" for v in model.trainable_variables)
        results[policy] = history.history["loss"]
    assert np.all(np.isfinite(results["mixed_bfloat16"]))
    relative = max(abs(a - b) / a for a, b in zip(results["float32"], results["mixed_bfloat16"]))
    assert relative < 3e-2, results
    report_figure("mixed_bfloat16 vs float32 fit losses (2 epochs)", max_rel_loss_diff=relative)


def test_bfloat16_variables_warn_at_compile_and_clip_in_float32():
    """A bfloat16 model is for inference: compile warns. Its global-norm clipping still
    runs (bfloat16 gradients, float32 threshold), with the float32 norm."""
    batch = random_batches(1, 4, seed=6, family="m2m100")[0]
    model = small_model("m2m100", dtype="bfloat16")
    with pytest.warns(UserWarning, match="variables are bfloat16: updates smaller"):
        raw = gradients_of_fit_step(model, batch, run_eagerly=False)
    norm = float(np.sqrt(sum(float(np.sum(np.square(np.asarray(g, np.float32)))) for g in raw)))
    with pytest.warns(UserWarning):
        clipped = gradients_of_fit_step(model, batch, run_eagerly=False, global_clipnorm=norm / 4)
    ratios = [np.asarray(c, np.float32) / np.asarray(r, np.float32)
              for c, r in zip(clipped, raw)]
    ratios = np.concatenate([r[np.isfinite(r) & (r != 0)].ravel() for r in ratios])
    assert np.allclose(ratios, 0.25, rtol=2e-2), (ratios.min(), ratios.max())


def test_predict_gives_the_logits_of_each_batch():
    """`predict` gathers plain dicts across batches: labels in the batch give the
    teacher-forced logits, as in `evaluate`; the per-batch scalar loss is left out."""
    batch = random_batches(1, 4, seed=10, family="m2m100", max_source=6, max_target=5)[0]
    model = small_model("m2m100")
    outputs = model.predict(dict(batch), batch_size=2, verbose=0)
    assert set(outputs) == {"logits", "encoder_last_hidden_state"}
    np.testing.assert_allclose(outputs["logits"], model(batch).logits.numpy(), atol=1e-5)


def test_compile_argument_errors():
    model = small_model("mt5")
    with pytest.raises(ValueError, match="both"):
        model.compile(optimizer=keras.optimizers.SGD(gradient_accumulation_steps=2),
                      gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="label_smoothing applies to the built-in loss"):
        model.compile(loss=lambda labels, logits: tf.zeros(tf.shape(labels)), label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        model.compile(label_smoothing=1.0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        model.compile(gradient_accumulation_steps=0)


@pytest.mark.parametrize("labels, error, message", [
    (np.array([7, 1], np.int32), ValueError, "labels must have rank 2"),
    (np.array([[[7, 1]]], np.int32), ValueError, "labels must have rank 2"),
    (np.array([[7.0, 1.0]], np.float32), TypeError, "labels must hold integer token ids"),
])
def test_fit_and_evaluate_name_bad_labels(labels, error, message):
    """Labels of the wrong rank or dtype get the model call's error naming them, in the
    traced train and test steps too (not a shape error from deep inside the step)."""
    model = small_model("mt5")
    model.compile()
    inputs = {"input_ids": np.array([[5, 6, 1]], np.int32),
              "attention_mask": np.array([[1, 1, 1]], np.int32)}
    data = tf.data.Dataset.from_tensors((inputs, labels))
    with pytest.raises(error, match=message):
        model.fit(data, verbose=0)
    with pytest.raises(error, match=message):
        model.evaluate(data, verbose=0)


def test_sample_weights_scale_each_sequences_tokens():
    """Per-sequence weights multiply that sequence's token weights: weight 0 is the same
    as leaving the row out."""
    batch = random_batches(1, 4, seed=12)[0]
    model = small_model("mt5")
    without_last = {key: value[:3] for key, value in batch.items()}
    expected = gradients_of_fit_step(model, without_last)
    optimizer = RecordingSGD(learning_rate=0.0)
    model.compile(optimizer=optimizer, metrics=[], run_eagerly=True)
    weights = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    model.fit(tf.data.Dataset.from_tensors((inputs, batch["labels"], weights)), verbose=0)
    recorded = [optimizer.recorded_gradient(v) for v in model.trainable_variables]
    assert max_abs_diff(recorded, expected) < 1e-6


# m2m100's case runs in the slow suite (the default suite's time budget).
@pytest.mark.parametrize("family", ["mt5", pytest.param("m2m100", marks=pytest.mark.slow)])
def test_xla_compiled_train_step(family):
    """`compile(jit_compile=True)`: the XLA-compiled train step applies the same gradient
    as the eager one (Adafactor / AdamW defaults also run compiled and learn)."""
    batch = random_batches(1, 4, seed=5, family=family)[0]
    eager = gradients_of_fit_step(small_model(family), batch)
    compiled = gradients_of_fit_step(small_model(family), batch, run_eagerly=False,
                                     jit_compile=True)
    assert max_abs_diff(eager, compiled) < 1e-5
    model = small_model(family)
    model.compile(jit_compile=True, learning_rate=3e-3)
    history = model.fit(dataset_of(random_batches(2, 4, seed=6, family=family)), epochs=5,
                        verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] - 0.3, history.history
