"""Multi-device and multi-machine training: strategy from the environment, a one-call
multi-worker entry point, and a custom training loop over the same `train_step`.

`model.fit` works under `MirroredStrategy` and — with the fixes in
`Seq2SeqTrainingMixin` — under `MultiWorkerMirroredStrategy`. `run_custom_loop` is the
same training (same `train_step`, same callbacks) driven by an explicit
`strategy.run` loop, for setups where Keras's `fit` machinery gets in the way.

Example (run the same script on every machine, with its own `TF_CONFIG`):
>>> def model_fn():
...     model = MT5ForConditionalGeneration.from_pretrained("mt5-small")
...     model.compile(optimizer="adafactor", gradient_accumulation_steps=2)
...     return model
>>> def dataset_fn():
...     return seq2seq_dataset(pairs, tokenizer, max_tokens=8192, repeat=True, seed=0)
>>> model, history = train_multi_worker(model_fn, dataset_fn, epochs=10,
...                                     steps_per_epoch=1000,
...                                     backup_dir="gs://bucket/run1/backup")
...                                     # doctest: +SKIP
"""

import dataclasses
import json
import os
from typing import List

import keras
import tensorflow as tf

from tfmodels.training.callbacks import BackupAndRestore, fast_forward_for_resume


@dataclasses.dataclass
class ClusterSpec:
    """The worker list and this process's index, from `TF_CONFIG`."""

    workers: List[str]
    task_index: int

    @property
    def num_workers(self):
        return len(self.workers)

    @property
    def is_chief(self):
        return self.task_index == 0


def cluster_from_environment(environ=None):
    """Parses `TF_CONFIG`; None when it is absent or names no workers.

    Example:
    >>> config = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'
    >>> cluster_from_environment({"TF_CONFIG": config})
    ClusterSpec(workers=['a:1', 'b:2'], task_index=1)
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    if not raw:
        return None
    config = json.loads(raw)
    cluster = config.get("cluster", {})
    workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
    if not workers:
        return None
    task = config.get("task", {})
    index = int(task.get("index", 0))
    if task.get("type") == "worker" and cluster.get("chief"):
        index += len(cluster["chief"])  # the chief is worker 0
    return ClusterSpec(workers=workers, task_index=index)


def make_strategy(devices=None):
    """The strategy for this process: `MultiWorkerMirroredStrategy` when `TF_CONFIG`
    lists several workers, `MirroredStrategy` for several local GPUs (or the given
    `devices`), else the default strategy. Create it before any other TF work."""
    cluster = cluster_from_environment()
    if cluster is not None and cluster.num_workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices is not None:
        return tf.distribute.MirroredStrategy(devices)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_index(strategy):
    """This process's index among all the workers of `strategy`'s cluster, a `chief` task
    (when the cluster names one) first, as in `cluster_from_environment`; 0 for a single
    process.

    Example:
    >>> worker_index(tf.distribute.get_strategy())
    0
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 0
    index = int(resolver.task_id or 0)
    if resolver.task_type == "worker":
        # Worker i comes after the chief: worker 0 is not the chief when there is one.
        index += len(resolver.cluster_spec().as_dict().get("chief", []))
    return index


def is_chief(strategy):
    """True in the process that should write shared outputs (the final checkpoint, logs):
    the chief (worker 0 when the cluster names no chief) of a multi-worker strategy, and
    any single process.

    Example:
    >>> is_chief(tf.distribute.get_strategy())
    True
    """
    return worker_index(strategy) == 0


def run_custom_loop(model, dataset, *, epochs=1, steps_per_epoch=None, callbacks=None,
                    verbose=0):
    """Trains like `model.fit(dataset, ...)` with an explicit `strategy.run` loop.

    Uses the model's own `train_step` (same loss normalisation, accumulation, clipping)
    and drives Keras callbacks (`BackupAndRestore`, `EarlyStopping`, ...) the same way.
    Returns the `History`.
    """
    strategy = model.distribute_strategy
    callbacks = list(callbacks or [])
    dataset = fast_forward_for_resume(model, dataset, callbacks, steps_per_epoch)
    distributed = (
        dataset
        if isinstance(dataset, tf.distribute.DistributedDataset)
        else strategy.experimental_distribute_dataset(dataset)
    )
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch, model=model,
    )

    @tf.function(reduce_retracing=True)
    def distributed_step(batch):
        logs = strategy.run(model.train_step, args=(batch,))
        # Step logs are per-replica running metrics; average them for display.
        return {
            name: tf.reshape(strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None), [])
            for name, value in logs.items()
        }

    model.stop_training = False
    callback_list.on_train_begin()
    initial_epoch = getattr(model, "_initial_epoch", None) or 0
    epoch_logs = {}
    iterator = iter(distributed)
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        if steps_per_epoch is None:
            iterator = iter(distributed)  # finite data: one pass per epoch
        step = 0
        while steps_per_epoch is None or step < steps_per_epoch:
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            callback_list.on_train_batch_begin(step)
            logs = distributed_step(batch.get_value())
            callback_list.on_train_batch_end(step, logs)
            step += 1
            if model.stop_training:
                break
        # Read in cross-replica context: metric state summed over every replica.
        epoch_logs = {name: float(value) for name, value in model.get_metrics_result().items()}
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    model._initial_epoch = None
    return model.history


def train_multi_worker(model_fn, dataset_fn, *, epochs=1, steps_per_epoch=None,
                       backup_dir=None, callbacks=None, strategy=None,
                       use_custom_loop=False, verbose="auto"):
    """Builds, compiles and trains a model on every worker of a `TF_CONFIG` cluster.

    Args:
        model_fn: `() -> model`, called inside the strategy scope; may compile it
            (otherwise `model.compile()` with defaults is called).
        dataset_fn: `() -> tf.data.Dataset` of *global* batches (the same pipeline on
            every worker; each worker trains on its share of every batch).
        epochs, steps_per_epoch: as in `fit`; with an endless stream, `steps_per_epoch`
            is also the backup interval.
        backup_dir: fault tolerance: a `BackupAndRestore` there (shared storage on a
            real cluster); a restarted job resumes from the last epoch end.
        callbacks: more Keras callbacks (all workers run them).
        strategy: defaults to `make_strategy()`.
        use_custom_loop: train with `run_custom_loop` instead of `model.fit`.
        verbose: progress output, shown on the chief only.

    Returns:
        `(model, history)`.
    """
    strategy = strategy or make_strategy()
    with strategy.scope():
        model = model_fn()
        if not getattr(model, "compiled", False):
            model.compile()
    dataset = dataset_fn()
    callbacks = list(callbacks or [])
    if backup_dir is not None:
        callbacks.append(BackupAndRestore(backup_dir))
    if not is_chief(strategy):
        verbose = 0
    if use_custom_loop:
        history = run_custom_loop(
            model, dataset, epochs=epochs, steps_per_epoch=steps_per_epoch,
            callbacks=callbacks, verbose=0 if verbose == "auto" else verbose,
        )
    else:
        history = model.fit(
            dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
            verbose=verbose,
        )
    return model, history
