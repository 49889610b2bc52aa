"""`MultiWorkerMirroredStrategy` with 2 worker processes on 127.0.0.1.

Both workers train the recipe (AdamW, clipping, label smoothing, accumulation) with
`tfmodels.training.train_multi_worker` — i.e. Keras `fit`, which fails out of the box in
Keras 3.15 across workers and works with the fixes in `Seq2SeqTrainingMixin` — and must
end with identical weights, equal (max |diff| <= 1e-5) to single-process training on the
same global batches. The slow variant also runs the custom `strategy.run` loop.
Workers are subprocesses in their own process groups, killed on timeout or failure.
"""

import json
import os
import sys

import pytest

MULTIWORKER_ATOL = 1e-5
TIMEOUT_S = 360


def worker_main(out_dir, with_custom_loop):
    from test_training_support import recipe_dataset, recipe_model, save_weights_npz
    from tfmodels.training import cluster_from_environment, make_strategy, train_multi_worker

    from tfmodels.training import BackupAndRestore

    cluster = cluster_from_environment()
    strategy = make_strategy()
    # The slow variant also writes backups from both workers (kept, to inspect them); the
    # default one backs up as the README's script does, deleted when training ends.
    callbacks = ([BackupAndRestore(os.path.join(out_dir, "backup"), delete_checkpoint=False)]
                 if with_custom_loop else [])
    backup_dir = None if with_custom_loop else os.path.join(out_dir, "deleted_backup")
    model, history = train_multi_worker(lambda: recipe_model(strategy), recipe_dataset,
                                        epochs=1, strategy=strategy, verbose=0,
                                        callbacks=callbacks, backup_dir=backup_dir)
    save_weights_npz(model, os.path.join(out_dir, f"fit_{cluster.task_index}.npz"))
    import tensorflow as tf

    result = {"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"][-1],
              "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)}
    if with_custom_loop:
        model, history = train_multi_worker(lambda: recipe_model(strategy), recipe_dataset,
                                            epochs=1, strategy=strategy,
                                            use_custom_loop=True)
        save_weights_npz(model, os.path.join(out_dir, f"loop_{cluster.task_index}.npz"))
        result["loop_loss"] = history.history["loss"][-1]
    with open(os.path.join(out_dir, f"result_{cluster.task_index}.json"), "w") as handle:
        json.dump(result, handle)


def run_workers(tmp_path, with_custom_loop):
    from test_training_support import (free_ports, read_logs, start_script, subprocess_env,
                                       wait_all)

    ports = free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes, logs = [], []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            log = tmp_path / f"worker_{index}.log"
            logs.append(log)
            args = [os.path.abspath(__file__), str(tmp_path)]
            if with_custom_loop:
                args.append("--custom-loop")
            processes.append(start_script(args, subprocess_env(TF_CONFIG=json.dumps(tf_config)),
                                          log))
        codes = wait_all(processes, timeout=TIMEOUT_S, logs=logs)
    finally:
        from test_training_support import stop_processes

        stop_processes(processes)
    assert codes == [0, 0], read_logs(logs)
    assert all(process.poll() is not None for process in processes)
    return [json.loads((tmp_path / f"result_{i}.json").read_text()) for i in range(2)]


def single_process_reference():
    from test_training_support import recipe_dataset, recipe_model

    model = recipe_model(run_eagerly=True)
    history = model.fit(recipe_dataset(), verbose=0)
    return [v.numpy() for v in model.trainable_weights], history.history["loss"][-1]


def compare(tmp_path, prefix, reference):
    from test_training_support import load_weights_npz, max_abs_diff

    worker_0 = load_weights_npz(tmp_path / f"{prefix}_0.npz")
    worker_1 = load_weights_npz(tmp_path / f"{prefix}_1.npz")
    between = max_abs_diff(worker_0, worker_1)
    vs_single = max_abs_diff(worker_0, reference)
    assert between == 0.0, f"{prefix}: workers differ by {between}"
    assert vs_single <= MULTIWORKER_ATOL, f"{prefix}: {vs_single} from single-process training"
    return between, vs_single


def check(tmp_path, results, with_custom_loop, report_figure):
    reference, reference_loss = single_process_reference()
    for result in results:
        assert result["multi_worker"]
        assert result["replicas"] == 2
        assert abs(result["loss"] - reference_loss) <= 1e-5, (result, reference_loss)
    between, vs_single = compare(tmp_path, "fit", reference)
    report_figure("MultiWorkerMirroredStrategy fit, 2 workers", workers_diff=between,
                  vs_single_process=vs_single)
    if with_custom_loop:
        between, vs_single = compare(tmp_path, "loop", reference)
        report_figure("MultiWorkerMirroredStrategy custom loop, 2 workers",
                      workers_diff=between, vs_single_process=vs_single)


def test_multi_worker_fit_matches_single_process(tmp_path, report_figure):
    results = run_workers(tmp_path, with_custom_loop=False)
    check(tmp_path, results, False, report_figure)
    # Both workers removed their backups at the end (and neither failed doing so).
    assert not (tmp_path / "deleted_backup").exists()


@pytest.mark.slow
def test_multi_worker_fit_backups_and_custom_loop(tmp_path, report_figure):
    results = run_workers(tmp_path, with_custom_loop=True)
    check(tmp_path, results, True, report_figure)
    # Each worker wrote its own backup: the chief in backup/, worker 1 in backup/worker_1/.
    assert (tmp_path / "backup" / "latest.weights.h5").exists()
    assert (tmp_path / "backup" / "worker_1" / "latest.weights.h5").exists()


if __name__ == "__main__":
    worker_main(sys.argv[1], "--custom-loop" in sys.argv[2:])


@pytest.mark.parametrize("chief, task, expected_index", [
    (False, ("worker", 0), 0), (False, ("worker", 1), 1),
    (True, ("chief", 0), 0), (True, ("worker", 0), 1), (True, ("worker", 1), 2),
])
def test_worker_index_counts_a_named_chief_first(monkeypatch, chief, task, expected_index):
    """With a `chief` task in TF_CONFIG, worker 0 is the second process: it is not the chief
    (it must not write the final checkpoint) and backs up in its own folder."""
    import types

    import tensorflow as tf

    from tfmodels.training import cluster_from_environment, is_chief
    from tfmodels.training.callbacks import _worker_index
    from tfmodels.training.distribute import worker_index

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:3"]
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
    # What a MultiWorkerMirroredStrategy exposes (a real one would wait for its peers).
    strategy = types.SimpleNamespace(
        cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver())
    assert worker_index(strategy) == expected_index == cluster_from_environment().task_index
    assert is_chief(strategy) == (expected_index == 0)
    monkeypatch.setattr("tfmodels.training.seq2seq_training.in_multi_worker_mode", lambda s: True)
    assert _worker_index(types.SimpleNamespace(distribute_strategy=strategy)) == (True, expected_index)
