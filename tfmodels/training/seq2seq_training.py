"""Keras `compile` / `fit` / `evaluate` for the encoder-decoder models.

`Seq2SeqTrainingMixin` is a base of `Seq2SeqModelBase`, so every model with an LM head
trains with plain Keras:

>>> import numpy as np, tensorflow as tf
>>> from tfmodels import MT5Config, MT5ForConditionalGeneration
>>> config = MT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1,
...                    num_heads=2, dropout_rate=0.0)
>>> model = MT5ForConditionalGeneration(config)
>>> model.compile()                       # Adafactor(1e-3), masked loss, token accuracy
>>> batch = {"input_ids": np.array([[5, 6, 1], [7, 1, 0]], np.int32),
...          "attention_mask": np.array([[1, 1, 1], [1, 1, 0]], np.int32),
...          "labels": np.array([[8, 1], [9, -100]], np.int32)}
>>> history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=2, verbose=0)
>>> sorted(history.history)
['loss', 'token_accuracy']

What it adds to Keras's defaults, and why:

* The loss is the model's masked LM loss (positions labelled -100 — and, by default, the
  pad id — are ignored), optionally label-smoothed, normalised by the number of target
  tokens in the *global* batch: each replica contributes `its loss sum / global token
  count`, so replicas (and micro-batches) of unequal length sum to exactly the
  single-device gradient.
* `gradient_accumulation_steps=k` splits each (per-replica) batch into `k` micro-batches
  run one after another in a `tf.while_loop` (activations of one micro-batch in memory
  at a time) and applies one update. Nothing is carried between `fit` steps, so one
  step is one optimizer update, checkpoints never fall inside an accumulation window,
  and it works under `tf.distribute` — unlike the optimizer-level
  `gradient_accumulation_steps` of Keras 3.15, whose `cond` around the gradient
  all-reduce raises under `MirroredStrategy` (see README).
* `global_clipnorm`, `clipnorm` and `clipvalue` are applied to the all-reduced (global)
  gradient. Keras clips each replica's partial gradient before the all-reduce, which is
  not what single-device training does; the optimizer's clipping options are therefore
  taken over here.
* `tf.distribute`: two Keras 3.15 code paths that fail with our int32 inputs or across
  workers are routed around (`_maybe_symbolic_build` and scalar step logs; see README).
"""

import dataclasses
import warnings
from typing import Callable, Optional

import keras
import tensorflow as tf

from tfmodels.training.losses import IGNORE_INDEX, label_mask, token_cross_entropy
from tfmodels.training.metrics import MaskedTokenAccuracy
from tfmodels.training.optimizers import get_optimizer


@dataclasses.dataclass
class TrainingOptions:
    """What `compile` records beyond Keras's own state."""

    label_smoothing: float = 0.0
    per_token_loss_fn: Optional[Callable] = None
    gradient_accumulation_steps: int = 1
    global_clipnorm: Optional[float] = None
    clipnorm: Optional[float] = None
    clipvalue: Optional[float] = None
    ignore_pad_in_labels: bool = True


# --------------------------------------------------------------------------- distribution
def in_multi_worker_mode(strategy):
    """True for a `MultiWorkerMirroredStrategy` that spans more than one worker."""
    extended = getattr(strategy, "extended", None)
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())
    )


def cross_replica_sum(value):
    """Sums `value` over all replicas (all workers) from inside a replica; identity with
    one replica or outside `strategy.run`."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _first_local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _scale_gradient(gradient, factor):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(
            gradient.values * tf.cast(factor, gradient.values.dtype),
            gradient.indices,
            gradient.dense_shape,
        )
    return gradient * tf.cast(factor, gradient.dtype)


def _norm_values(gradient):
    """float32 values whose L2 norm is the (dense) gradient's: the rows of an
    `IndexedSlices` (an embedding's gradient, one row per token occurrence) are summed
    per index first, as the dense gradient sums them. In float32: bfloat16 gradients
    would round the norm coarsely."""
    if isinstance(gradient, tf.IndexedSlices):
        unique, positions = tf.unique(gradient.indices)
        return tf.math.unsorted_segment_sum(tf.cast(gradient.values, tf.float32), positions,
                                            tf.shape(unique)[0])
    return tf.cast(gradient, tf.float32)


def _as_dense(gradient, variable):
    if gradient is None:
        return tf.zeros(variable.shape, variable.dtype)
    return tf.convert_to_tensor(gradient)


def _checked_labels(labels):
    """int32 `[batch, length]` labels, or the model call's clear error (dtype, rank, empty
    batch) instead of one from deep in the step's graph."""
    from tfmodels.models.seq2seq import as_id_tensor  # that module imports this one

    return as_id_tensor("labels", labels)


# --------------------------------------------------------------------------------- mixin
class Seq2SeqTrainingMixin:
    """`compile`, `train_step`, `test_step` and `compute_loss` for encoder-decoder LMs.

    Mixed into `Seq2SeqModelBase` (before `keras.Model` in its bases). Expects
    `self.config` with `pad_token_id`, `decoder_start_token_id` and optionally
    `model_type`, and `self(x_dict, training=...)` returning a dict with `logits`.
    """

    # -- compile --------------------------------------------------------------------------
    def compile(
        self,
        optimizer="auto",
        loss="auto",
        metrics="auto",
        *,
        learning_rate=None,
        label_smoothing=0.0,
        gradient_accumulation_steps=1,
        global_clipnorm=None,
        clipnorm=None,
        clipvalue=None,
        ignore_pad_in_labels=True,
        **kwargs,
    ):
        """Configures training. Call it inside `strategy.scope()` when distributing.

        Args:
            optimizer: `"auto"` (Adafactor 1e-3 for mT5, AdamW 5e-5 for M2M100),
                `"adafactor"`, `"adamw"`, another Keras optimizer name, or an instance.
                See `tfmodels.training.optimizers`.
            loss: `"auto"`: the model's masked cross-entropy. Or a callable
                `(labels, logits) -> [batch, length]` per-token losses (ignored positions
                arrive as label 0 and are masked afterwards), e.g.
                `keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                reduction=None)`.
            metrics: `"auto"`: `[MaskedTokenAccuracy()]`. Or a list of Keras metrics;
                each is updated with `(labels, logits)` where ignored labels are -100.
            learning_rate: Learning rate (or schedule) for an optimizer given by name.
            label_smoothing: Epsilon of `torch.nn.CrossEntropyLoss(label_smoothing=...)`
                (the built-in loss only).
            gradient_accumulation_steps: Split every batch into this many micro-batches
                and apply one update for the whole batch (same update as without
                splitting, less activation memory).
            global_clipnorm: Clip the global gradient (all replicas) to this L2 norm.
            clipnorm, clipvalue: Clip each variable's global gradient to this L2 norm /
                to [-clipvalue, clipvalue]. At most one of the three clipping options;
                set on the optimizer instead, they are taken over (see the module doc).
            ignore_pad_in_labels: Also ignore labels equal to `config.pad_token_id`
                (a target never legitimately contains pad), not only -100.
            **kwargs: Passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, `run_eagerly`, ...).
        """
        if self.dtype_policy.variable_dtype in ("bfloat16", "float16"):
            warnings.warn(
                f"Training a model whose variables are {self.dtype_policy.variable_dtype}: "
                "updates smaller than the weights' rounding step are lost (at 5e-5, most "
                "of them). Train with dtype='mixed_bfloat16' (float32 variables) and "
                "convert afterwards.", stacklevel=2)
        if tf.distribute.has_strategy() and self._distribute_strategy is None:
            raise ValueError(
                "This model was built outside the strategy.scope() it is compiled in; build "
                "or load it inside the scope (its variables must be the strategy's)")
        with self.distribute_strategy.scope():  # an optimizer made from a name belongs to it
            optimizer = get_optimizer(optimizer, getattr(self.config, "model_type", None),
                                      learning_rate)
        if getattr(optimizer, "_distribution_strategy", self.distribute_strategy) is not (
                self.distribute_strategy):
            # Keras would count its steps once per replica (a schedule running too fast).
            raise ValueError(
                f"The optimizer {type(optimizer).__name__} was created outside the model's "
                "strategy.scope(); create it inside the scope, or pass its name")
        if not self._trains_lm_head:
            # Encoder-only / headless models: plain Keras (custom heads, custom losses).
            return super().compile(
                optimizer=optimizer,
                loss=None if loss == "auto" else loss,
                metrics=None if metrics == "auto" else metrics,
                **kwargs,
            )
        steps = 1 if gradient_accumulation_steps is None else int(gradient_accumulation_steps)
        if steps < 1:
            raise ValueError(f"gradient_accumulation_steps must be >= 1, got {steps}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        for unsupported in ("loss_weights",):
            if kwargs.get(unsupported) is not None:
                raise ValueError(f"{unsupported} is not supported by seq2seq models")

        if steps > 1 and getattr(optimizer, "gradient_accumulation_steps", None):
            raise ValueError(
                "Use compile(gradient_accumulation_steps=...) or the optimizer's "
                "gradient_accumulation_steps, not both"
            )
        # Keras would clip each replica's partial gradient; clip the sum instead.
        clipping = {"global_clipnorm": global_clipnorm, "clipnorm": clipnorm,
                    "clipvalue": clipvalue}
        for name in clipping:
            if getattr(optimizer, name, None) is not None:
                if clipping[name] is not None:
                    raise ValueError(f"{name} is set both on the optimizer and in compile()")
                clipping[name] = getattr(optimizer, name)
                setattr(optimizer, name, None)
        chosen = [name for name, value in clipping.items() if value is not None]
        if len(chosen) > 1:
            raise ValueError(f"Use one gradient clipping option, got {', '.join(chosen)}")

        if loss in ("auto", None):
            per_token_loss_fn = None
        elif callable(loss):
            if float(label_smoothing):
                raise ValueError(
                    "label_smoothing applies to the built-in loss (loss='auto'); a custom loss "
                    "does its own smoothing (e.g. keras.losses.CategoricalCrossentropy("
                    "label_smoothing=...)), so pass one or the other")
            per_token_loss_fn = loss
        else:
            raise ValueError(
                f"loss must be 'auto' or a callable (labels, logits) -> per-token losses, "
                f"got {loss!r}"
            )
        if metrics == "auto":
            metrics = [MaskedTokenAccuracy()]

        self._training_options = TrainingOptions(
            label_smoothing=float(label_smoothing),
            per_token_loss_fn=per_token_loss_fn,
            gradient_accumulation_steps=steps,
            **{name: None if value is None else float(value) for name, value in clipping.items()},
            ignore_pad_in_labels=bool(ignore_pad_in_labels),
        )
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)
        # Build the optimizer's slots now, in the scope of the model's strategy: later
        # they would be created inside a traced, replicated step.
        with self.distribute_strategy.scope():
            self.optimizer.build(self.trainable_variables)

    # -- saving the compile state (`model.save("x.keras")` / `keras.saving.load_model`) ---
    def get_compile_config(self):
        config = super().get_compile_config()
        # Keras gives {} for a model never compiled: keep it so, or loading would compile it.
        if not config or not self._trains_lm_head:
            return config
        options = self.training_options
        loss_fn = options.per_token_loss_fn
        return {
            **config,
            "tfmodels_training": {
                "label_smoothing": options.label_smoothing,
                "gradient_accumulation_steps": options.gradient_accumulation_steps,
                "global_clipnorm": options.global_clipnorm,
                "clipnorm": options.clipnorm,
                "clipvalue": options.clipvalue,
                "ignore_pad_in_labels": options.ignore_pad_in_labels,
                # Keras losses serialise; a plain function is only kept by name.
                "loss": keras.saving.serialize_keras_object(loss_fn) if loss_fn else None,
            },
        }

    def compile_from_config(self, config):
        config = dict(config)
        options = config.pop("tfmodels_training", None)
        config = keras.saving.deserialize_keras_object(config)
        if options is not None:  # a model trained with the LM loss (else plain Keras')
            options = dict(options)
            loss = options.pop("loss", None)
            config["loss"] = keras.saving.deserialize_keras_object(loss) if loss else "auto"
        self.compile(**config, **(options or {}))

    @property
    def _trains_lm_head(self):
        return bool(getattr(self, "has_lm_head", True))

    @property
    def training_options(self):
        """The `TrainingOptions` of the last `compile` (defaults before it)."""
        return getattr(self, "_training_options", None) or TrainingOptions()

    # -- labels, loss terms ---------------------------------------------------------------
    @staticmethod
    def _split_inputs(x, y):
        """`(model inputs without labels, labels or None)` from a `fit`-style batch."""
        if not isinstance(x, dict):
            raise TypeError(
                "seq2seq training batches must be dicts with input_ids, attention_mask and "
                f"labels (or labels as y); got {type(x).__name__}"
            )
        inputs = {key: value for key, value in x.items() if key != "labels"}
        labels = y if y is not None else x.get("labels")
        if isinstance(labels, dict):
            labels = labels.get("labels")
        return inputs, labels

    def _decoder_inputs(self, inputs, labels):
        if inputs.get("decoder_input_ids") is None:
            from tfmodels.models.seq2seq import shift_tokens_right  # avoid an import cycle

            inputs = dict(inputs)
            inputs["decoder_input_ids"] = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        return inputs

    def _token_weights(self, labels, sample_weight=None):
        """float32 `[batch, length]`: 1 for counted label tokens (times sample weights)."""
        options = self.training_options
        pad = self.config.pad_token_id if options.ignore_pad_in_labels else None
        weights = tf.cast(label_mask(labels, pad), tf.float32)
        if sample_weight is not None:
            sample_weight = tf.cast(sample_weight, tf.float32)
            if sample_weight.shape.rank == 1:
                sample_weight = sample_weight[:, tf.newaxis]
            weights = weights * sample_weight
        return weights

    def _per_token_loss(self, labels, logits, weights):
        options = self.training_options
        safe_labels = tf.where(weights > 0, tf.cast(labels, tf.int32), tf.zeros_like(labels, tf.int32))
        if options.per_token_loss_fn is not None:
            losses = tf.convert_to_tensor(options.per_token_loss_fn(safe_labels, logits))
            if losses.shape.rank != 2:
                # A reduced (e.g. mean) loss would count the ignored positions as label 0.
                raise ValueError(
                    f"The custom loss returned shape {losses.shape}; it must return per-token "
                    "losses [batch, length] (a Keras loss needs reduction=None)")
            return tf.cast(losses, tf.float32)
        return token_cross_entropy(safe_labels, logits, options.label_smoothing)

    def _metric_labels(self, labels, weights):
        return tf.where(weights > 0, tf.cast(labels, tf.int32), tf.constant(IGNORE_INDEX, tf.int32))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """This replica's share of the global-batch mean token loss.

        Summed over replicas it is the mean over every counted token of the global batch
        (Keras convention: per-replica losses are pre-scaled so gradients can be summed).
        """
        inputs, labels = self._split_inputs(x, y) if isinstance(x, dict) else (x, y)
        if labels is None or not self._trains_lm_head:
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                        training=training)
        logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
        weights = self._token_weights(labels, sample_weight)
        global_count = tf.maximum(cross_replica_sum(tf.reduce_sum(weights)), 1.0)
        loss_sum = tf.reduce_sum(self._per_token_loss(labels, logits, weights) * weights)
        return loss_sum / global_count

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates compiled metrics with `(labels, logits)` (ignored labels = -100)."""
        if not self._trains_lm_head:
            return super().compute_metrics(x, y, y_pred, sample_weight)
        inputs, labels = self._split_inputs(x, y) if isinstance(x, dict) else (x, y)
        if labels is not None and self._compile_metrics is not None:
            logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
            weights = self._token_weights(labels, sample_weight)
            self._compile_metrics.update_state(self._metric_labels(labels, weights), logits)
        return self.get_metrics_result()

    # -- the training step ----------------------------------------------------------------
    def _micro_batch_gradients(self, inputs, labels, weights, global_count, variables):
        """Gradients of `(this micro-batch's loss sum) / global_count`; updates metrics."""
        with tf.GradientTape() as tape:
            outputs = self(inputs, training=True)
            logits = outputs["logits"]
            loss_sum = tf.reduce_sum(self._per_token_loss(labels, logits, weights) * weights)
            loss = loss_sum / global_count
            if self.losses:  # regularisers added with add_loss, shared among replicas
                loss += tf.add_n(self.losses) / tf.cast(
                    tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype
                )
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(self._metric_labels(labels, weights), logits)
        return gradients, loss_sum

    def _accumulated_gradients(self, inputs, labels, weights, global_count, variables, steps):
        """Sums micro-batch gradients over `steps` slices of the batch, one at a time."""
        batch = tf.shape(labels)[0]
        size = (batch + steps - 1) // steps

        def micro_batch(index):
            start = index * size
            take = lambda tensor: tensor[start:start + size]  # noqa: E731
            return (tf.nest.map_structure(take, inputs), take(labels), take(weights))

        # Nothing may be created inside the loop: metric state is built here first.
        self._build_compile_metrics(labels)
        totals = [tf.zeros(v.shape, v.dtype) for v in variables]

        def body(index, loss_total, gradient_totals):
            gradients, loss_sum = self._micro_batch_gradients(
                *micro_batch(index), global_count, variables
            )
            gradient_totals = [
                total + _as_dense(g, v) for total, g, v in zip(gradient_totals, gradients, variables)
            ]
            return index + 1, loss_total + loss_sum, gradient_totals

        _, loss_total, totals = tf.while_loop(
            lambda index, *_: index < steps,
            body,
            (tf.constant(0), tf.constant(0.0), totals),
            parallel_iterations=1,  # one micro-batch's activations at a time
        )
        return totals, loss_total

    def _build_compile_metrics(self, labels):
        metrics = self._compile_metrics
        if metrics is not None and not metrics.built:
            # Only ranks and dtypes matter to the build: a [1, 1, vocab] logits stand-in.
            stand_in = tf.zeros([1, 1, self.config.vocab_size], tf.float32)
            metrics.build(labels[:1, :1], stand_in)

    def _clip_gradients(self, gradients):
        """The replica's part of the clipped *global* gradient (replicas hold partial sums
        of it, which the optimizer's all-reduce adds up)."""
        options = self.training_options
        if options.global_clipnorm is None and options.clipnorm is None and options.clipvalue is None:
            return gradients
        # Under loss scaling the gradients are scaled too; so are the thresholds.
        scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        present = [g for g in gradients if g is not None]
        context = tf.distribute.get_replica_context()
        replicas = 1 if context is None else context.num_replicas_in_sync
        if replicas > 1:
            present = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
        if options.global_clipnorm is not None:
            threshold = options.global_clipnorm * scale
            norm = tf.linalg.global_norm([_norm_values(g) for g in present])
            factor = threshold / tf.maximum(norm, threshold)
            return [_scale_gradient(g, factor) for g in gradients]
        totals = iter(present)
        clipped = []
        for gradient in gradients:
            if gradient is None:
                clipped.append(None)
                continue
            total = next(totals)
            if options.clipnorm is not None:  # a factor: each replica scales its part
                threshold = options.clipnorm * scale
                norm = tf.norm(_norm_values(total))
                clipped.append(_scale_gradient(gradient, threshold / tf.maximum(norm, threshold)))
            else:  # elementwise: each replica sends an equal share of the clipped sum
                limit = options.clipvalue * scale
                total = tf.cast(tf.convert_to_tensor(total), tf.float32)
                share = tf.clip_by_value(total, -limit, limit) / replicas
                clipped.append(tf.cast(share, gradient.dtype))
        return clipped

    def train_step(self, data):
        if getattr(self, "head_screen", None) is not None:
            # The screen is a snapshot of the head; trained weights would outgrow its bounds.
            raise ValueError(
                "This model screens its LM head for greedy decoding (a snapshot of the "
                "weights); call model.disable_head_screening() before training and "
                "enable_head_screening() again after"
            )
        if not self._trains_lm_head:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, labels = self._split_inputs(x, y)
        if labels is None:
            raise ValueError("Training batches need `labels` (in the input dict or as y)")
        labels = _checked_labels(labels)
        inputs = self._decoder_inputs(inputs, labels)
        weights = self._token_weights(labels, sample_weight)
        local_count = tf.reduce_sum(weights)
        global_count = tf.maximum(cross_replica_sum(local_count), 1.0)
        variables = self.trainable_variables
        steps = self.training_options.gradient_accumulation_steps
        if steps == 1:
            gradients, loss_sum = self._micro_batch_gradients(
                inputs, labels, weights, global_count, variables
            )
        else:
            gradients, loss_sum = self._accumulated_gradients(
                inputs, labels, weights, global_count, variables, steps
            )
        gradients = self._clip_gradients(gradients)
        self.optimizer.apply(gradients, variables)
        # Token-weighted: at epoch end the (summed) tracker holds the exact token mean.
        self._loss_tracker.update_state(
            tf.math.divide_no_nan(loss_sum, local_count), sample_weight=local_count
        )
        return self._step_logs()

    def test_step(self, data):
        if not self._trains_lm_head:
            return super().test_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, labels = self._split_inputs(x, y)
        if labels is None:
            raise ValueError("Evaluation batches need `labels` (in the input dict or as y)")
        labels = _checked_labels(labels)
        inputs = self._decoder_inputs(inputs, labels)
        weights = self._token_weights(labels, sample_weight)
        logits = self(inputs, training=False)["logits"]
        loss_sum = tf.reduce_sum(self._per_token_loss(labels, logits, weights) * weights)
        local_count = tf.reduce_sum(weights)
        self._loss_tracker.update_state(
            tf.math.divide_no_nan(loss_sum, local_count), sample_weight=local_count
        )
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(self._metric_labels(labels, weights), logits)
        return self._step_logs()

    def predict_step(self, data):
        """`predict`: the model's outputs as a plain dict, which Keras gathers across
        batches (logits teacher-forced from the batch's labels when it has no
        decoder_input_ids, as in `evaluate`); the per-batch scalar loss is left out."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        inputs = x
        if isinstance(x, dict):
            inputs, labels = self._split_inputs(x, y)
            if labels is not None and self.decoder is not None:
                inputs = self._decoder_inputs(inputs, _checked_labels(labels))
        outputs = self(inputs, training=False)
        return {key: value for key, value in outputs.items() if value is not None and key != "loss"}

    def _step_logs(self):
        logs = self.get_metrics_result()
        if in_multi_worker_mode(self.distribute_strategy):
            # Keras 3.15 reduces step logs across workers with
            # `strategy.reduce("MEAN", value, axis=0)`, which rejects scalars; a [1]
            # vector reduces to the same mean.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    # -- Keras internals that fail across workers -----------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3.15 peeks one distributed batch and `strategy.reduce("MEAN", ...)`s it to
        get shapes for building metrics. That breaks twice for us: MEAN turns the int32
        token ids into float32 (which the model rightly rejects), and `Strategy.reduce`
        does not take nested batches, which across workers raises `Attempt to convert a
        value (PerReplica...)`. Shapes and dtypes only need one local replica's value."""
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if data_batch is None and iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(_first_local_value, next(batches))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    # -- resume support -------------------------------------------------------------------
    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`; with a `tfmodels.training.BackupAndRestore` among the
        callbacks and `steps_per_epoch` set, a dataset stream resumes exactly where the
        backup was taken (already consumed batches are skipped)."""
        from tfmodels.training.callbacks import fast_forward_for_resume  # import cycle

        x = fast_forward_for_resume(
            self, x, kwargs.get("callbacks"), kwargs.get("steps_per_epoch")
        )
        if isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)) and not args:
            # A dataset is shuffled in its pipeline; Keras ignores `shuffle` for it (and
            # warns on every call with its default True).
            kwargs.setdefault("shuffle", False)
        return super().fit(x, y, *args, **kwargs)
