"""Kill a training run with SIGKILL midway, restart it: it resumes from the last backup
and ends where an uninterrupted run ends.

The run trains the recipe on an endless deterministic stream with `steps_per_epoch=2`
(the backup interval) for 4 epochs. The first run, a subprocess, SIGKILLs itself after
step 5 (mid-epoch 3; the backup holds the end of epoch 2); an uninterrupted run goes on
in a second subprocess at the same time. The restart restores weights, optimizer state
and epoch and skips the 4 batches already trained on. Bound: max |diff| with the
uninterrupted run <= 1e-6 (the same computation: in practice bit-identical).
"""

import json
import os
import signal
import sys

import keras
import pytest

EPOCHS, STEPS_PER_EPOCH, KILL_AFTER_STEP = 4, 2, 5
RESUME_ATOL = 1e-6


class StepCounter(keras.callbacks.Callback):
    """Counts trained steps; optionally SIGKILLs the process after `kill_after` of them."""

    def __init__(self, kill_after=None):
        super().__init__()
        self.kill_after, self.steps = kill_after, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.kill_after is not None and self.steps >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a real crash


def train(backup_dir, counter):
    from test_training_support import recipe_dataset, recipe_model
    from tfmodels.training import BackupAndRestore

    # accumulation=1: no training state spans steps either way.
    model = recipe_model(accumulation=1)
    callbacks = [] if backup_dir is None else [BackupAndRestore(backup_dir)]
    model.fit(recipe_dataset(repeat=True), epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
              callbacks=callbacks + [counter], verbose=0)
    return model


def test_sigkill_and_resume_ends_where_uninterrupted_run_ends(tmp_path, report_figure):
    from test_training_support import (load_weights_npz, max_abs_diff, read_logs, start_script,
                                       subprocess_env, wait_all)

    backup_dir = tmp_path / "backup"
    reference_path = tmp_path / "uninterrupted.npz"
    logs = [tmp_path / "killed_run.log", tmp_path / "uninterrupted_run.log"]
    processes = [
        start_script([os.path.abspath(__file__), "--killed", str(backup_dir)], subprocess_env(),
                     logs[0]),
        start_script([os.path.abspath(__file__), "--uninterrupted", str(reference_path)],
                     subprocess_env(), logs[1]),
    ]
    codes = wait_all(processes, timeout=300, logs=logs)
    assert codes == [-signal.SIGKILL, 0], read_logs(logs)
    with open(backup_dir / "training_metadata.json") as handle:
        assert json.load(handle)["epoch"] == KILL_AFTER_STEP // STEPS_PER_EPOCH

    counter = StepCounter()
    resumed = train(str(backup_dir), counter)
    # Only the 4 steps after the backup ran again (epochs 3 and 4).
    assert counter.steps == EPOCHS * STEPS_PER_EPOCH - 4
    assert not backup_dir.exists()  # deleted after a completed run, as Keras does

    uninterrupted = load_weights_npz(reference_path)
    difference = max_abs_diff([v.numpy() for v in resumed.trainable_weights], uninterrupted)
    assert difference <= RESUME_ATOL
    assert int(resumed.optimizer.iterations) == EPOCHS * STEPS_PER_EPOCH
    report_figure("SIGKILL after step 5 + resume vs uninterrupted (8 steps)",
                  max_weight_diff=difference)


if __name__ == "__main__":
    if sys.argv[1] == "--killed":
        train(sys.argv[2], StepCounter(kill_after=KILL_AFTER_STEP))
        sys.exit("the run should have been killed")
    from test_training_support import save_weights_npz

    save_weights_npz(train(None, StepCounter()), sys.argv[2])


def test_keras_file_keeps_compile_options_and_optimizer_state(tmp_path):
    """`model.save("x.keras")` + `keras.saving.load_model`: same weights, same optimizer
    state and training options, so training continues identically."""
    import numpy as np
    import tensorflow as tf

    from test_training_support import max_abs_diff, random_batches, small_model, weights_of

    batches = [tf.data.Dataset.from_tensors(b) for b in random_batches(2, 4, seed=11)]
    model = small_model("mt5")
    model.compile(label_smoothing=0.1, gradient_accumulation_steps=2, global_clipnorm=0.5,
                  run_eagerly=True)
    model.fit(batches[0], verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.training_options == model.training_options
    assert int(loaded.optimizer.iterations) == 1
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(batches[1], verbose=0)
    loaded.fit(batches[1], verbose=0)
    assert max_abs_diff(weights_of(model), weights_of(loaded)) == 0.0


def test_keras_file_of_a_model_never_compiled_loads_uncompiled(tmp_path):
    """Saving writes no compile options for a model that was never compiled, so loading
    neither compiles it nor builds (and warns about) an optimizer the file never had."""
    import warnings

    from test_training_support import max_abs_diff, small_model, weights_of

    model = small_model("mt5")
    assert not model.compiled
    model.save(tmp_path / "model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert not loaded.compiled and getattr(loaded, "optimizer", None) is None
    assert not [w for w in caught if "optimizer" in str(w.message)], [str(w.message) for w in caught]
    assert max_abs_diff(weights_of(model), weights_of(loaded)) == 0.0


def test_backup_directory_created_by_another_worker_meanwhile(tmp_path, monkeypatch):
    """Another worker can create `backup_dir` between Keras's existence check and its
    `makedirs` (worker i writes `backup_dir/worker_i`, which creates `backup_dir` too);
    the backup must still be written instead of failing `fit` with `FileExistsError`."""
    from keras.src.utils import file_utils

    from test_training_support import random_batches, small_model
    from tfmodels.training import BackupAndRestore
    import tensorflow as tf

    backup_dir = str(tmp_path / "backup")
    real_exists = file_utils.exists
    raced = []

    def exists_while_another_worker_creates_it(path):
        found = real_exists(path)
        if str(path) == backup_dir and not found:
            os.makedirs(backup_dir)  # the other worker wins the race right now
            raced.append(path)
        return found

    monkeypatch.setattr(file_utils, "exists", exists_while_another_worker_creates_it)
    model = small_model("mt5")
    model.compile(run_eagerly=True)
    batches = tf.data.Dataset.from_tensors(random_batches(1, 2, seed=3)[0])
    model.fit(batches, epochs=1, verbose=0,
              callbacks=[BackupAndRestore(backup_dir, delete_checkpoint=False)])
    assert os.path.exists(os.path.join(backup_dir, "latest.weights.h5"))
    assert not raced, "the directory should exist before Keras looks for it"


@pytest.mark.parametrize("first_to_finish", ["chief", "worker_1"])
def test_workers_each_delete_only_their_own_backup_at_the_end(tmp_path, monkeypatch,
                                                              first_to_finish):
    """At the end of a multi-worker run (`delete_checkpoint=True`) the chief removes its own
    files from `backup_dir` and worker 1 its `backup_dir/worker_1`, whichever finishes
    first; the root goes with the last. Keras' own callback removes the whole root from the
    chief, pulling worker 1's folder from under it (worker 1 then fails)."""
    from tfmodels.training import BackupAndRestore
    from tfmodels.training import callbacks as callbacks_module

    root = tmp_path / "backup"
    backups = {}
    for index, name in enumerate(["chief", "worker_1"]):
        monkeypatch.setattr(callbacks_module, "_worker_index", lambda model, i=index: (True, i))
        backup = BackupAndRestore(str(root))
        backup.set_model(None)
        os.makedirs(backup.backup_dir, exist_ok=True)
        for path in (backup._weights_path, backup._training_metadata_path):
            with open(path, "w") as handle:
                handle.write("{}")
        backups[name] = backup
    last_to_finish = "worker_1" if first_to_finish == "chief" else "chief"

    backups[first_to_finish].on_train_end()
    assert not os.path.exists(backups[first_to_finish]._weights_path)
    for path in (backups[last_to_finish]._weights_path,
                 backups[last_to_finish]._training_metadata_path):
        assert os.path.exists(path), f"{first_to_finish} deleted {path}"
    backups[last_to_finish].on_train_end()
    assert not root.exists()


@pytest.mark.parametrize("family", ["mt5", "m2m100"])
def test_keras_file_keeps_frozen_parts_and_the_default_optimizer(tmp_path, family):
    """Frozen sublayers stay frozen (so the saved optimizer state fits the trainable
    variables), and M2M100's default AdamW keeps its no-decay names: one more step after
    loading changes the weights exactly as on the original model."""
    import numpy as np
    import tensorflow as tf

    from test_training_support import max_abs_diff, random_batches, small_model, weights_of

    batches = [tf.data.Dataset.from_tensors(b)
               for b in random_batches(2, 4, seed=11, family=family)]
    model = small_model(family)
    model.token_embedding.trainable = False
    model.encoder.trainable = False
    model.compile(run_eagerly=True)
    model.fit(batches[0], verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert [v.path for v in loaded.trainable_weights] == [v.path for v in model.trainable_weights]
    assert not loaded.encoder.trainable and loaded.decoder.trainable
    if family == "m2m100":
        assert loaded.optimizer.get_config()["exclude_from_weight_decay_names"]
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(batches[1], verbose=0)
    loaded.fit(batches[1], verbose=0)
    assert max_abs_diff(weights_of(model), weights_of(loaded)) == 0.0

    model.trainable = False  # the whole model frozen comes back frozen too
    model.save(tmp_path / "frozen.keras")
    assert not keras.saving.load_model(tmp_path / "frozen.keras").trainable_weights


def test_backup_resume_is_exact_with_dropout(tmp_path):
    """The backup keeps the dropout layers' random states (which `save_weights` leaves
    out): with dropout on, a run stopped after epoch 2 and resumed ends bit-identical to
    an uninterrupted one."""
    import tensorflow as tf

    from test_training_support import max_abs_diff, random_batches, small_model, weights_of
    from tfmodels.training import BackupAndRestore

    stream = None
    for batch in random_batches(3, 4, seed=5):
        piece = tf.data.Dataset.from_tensors(batch)
        stream = piece if stream is None else stream.concatenate(piece)
    stream = stream.repeat()

    class StopInEpoch3(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("machine lost")

    def run(callbacks):
        model = small_model("mt5", dropout_rate=0.1)
        model.compile(optimizer="adafactor", learning_rate=1e-2, run_eagerly=True)
        model.fit(stream, epochs=4, steps_per_epoch=2, verbose=0, callbacks=callbacks)
        return model

    uninterrupted = run([])
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="machine lost"):
        run([BackupAndRestore(backup), StopInEpoch3()])
    resumed = run([BackupAndRestore(backup)])
    assert int(resumed.optimizer.iterations) == 8
    assert max_abs_diff(weights_of(resumed), weights_of(uninterrupted)) == 0.0
