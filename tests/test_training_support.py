"""Shared pieces of the training / distribution tests (no tests here).

* `RecordingSGD`: SGD that also stores the gradient it applied last, so a test can read
  the exact gradient `fit`'s `train_step` produced (after all-reduce, accumulation,
  clipping) instead of recomputing it.
* tiny models with fixed weights, batches, weight comparisons;
* subprocess helpers: free localhost ports, running a script with a timeout and making
  sure no child process outlives the test.
"""

import os
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
MT5_TOKENIZER_DIR = os.path.join(TESTS_DIR, "data", "mt5_tokenizer")
M2M100_TOKENIZER_DIR = os.path.join(TESTS_DIR, "data", "m2m100_tokenizer")

# Small enough for 2 shared CPU cores, big enough to have every weight kind.
SMALL_MT5 = dict(vocab_size=64, d_model=16, d_kv=4, d_ff=24, num_layers=1,
                 num_decoder_layers=1, num_heads=2, relative_attention_num_buckets=8,
                 relative_attention_max_distance=16, dropout_rate=0.0)
SMALL_M2M100 = dict(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=2, decoder_attention_heads=2,
                    encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=64,
                    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                    encoder_layerdrop=0.0, decoder_layerdrop=0.0)


class RecordingSGD(keras.optimizers.SGD):
    """Plain SGD that keeps a dense copy of the last gradient applied to each variable."""

    def build(self, variables):
        super().build(variables)
        self.recorded = [self.add_variable_from_reference(v, name="recorded") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        slot = self.recorded[self._get_variable_index(variable)]
        self.assign(slot, tf.convert_to_tensor(gradient))
        super().update_step(gradient, variable, learning_rate)

    def recorded_gradient(self, variable):
        return self.recorded[self._get_variable_index(variable)].numpy()


def favour_token(model, token_id, weight=5.0):
    """Sets every LM-head weight of `token_id` (an untied head, either layout) to `weight`,
    so that the token wins every decoding step."""
    kernel_vd = np.array(model.lm_head.kernel_out_in())
    kernel_vd[token_id, :] = weight
    model.lm_head.assign_kernel_out_in(kernel_vd)


def small_model(family="mt5", seed=0, dtype=None, **overrides):
    """A tiny model with weights fixed by `seed`."""
    from tfmodels import (M2M100Config, M2M100ForConditionalGeneration, MT5Config,
                          MT5ForConditionalGeneration)

    keras.utils.set_random_seed(seed)
    if family == "mt5":
        return MT5ForConditionalGeneration(MT5Config(**{**SMALL_MT5, **overrides}), dtype=dtype)
    return M2M100ForConditionalGeneration(M2M100Config(**{**SMALL_M2M100, **overrides}),
                                          dtype=dtype)


SPECIAL_IDS = {"mt5": dict(pad=0, eos=1), "m2m100": dict(pad=1, eos=2)}


def random_batches(num_batches, batch_size, vocab_size=64, seed=0, family="mt5",
                   max_source=9, max_target=7):
    """Batches of mixed-length rows (the family's pad / eos ids): right padding, labels
    -100 after the end."""
    pad, eos = SPECIAL_IDS[family]["pad"], SPECIAL_IDS[family]["eos"]
    rng = np.random.RandomState(seed)
    batches = []
    for _ in range(num_batches):
        src_len = rng.randint(2, max_source + 1, size=batch_size)
        tgt_len = rng.randint(1, max_target + 1, size=batch_size)
        input_ids = np.full((batch_size, src_len.max()), pad, np.int32)
        attention_mask = np.zeros_like(input_ids)
        labels = np.full((batch_size, tgt_len.max()), -100, np.int32)
        for row in range(batch_size):
            input_ids[row, :src_len[row]] = rng.randint(3, vocab_size, size=src_len[row])
            input_ids[row, src_len[row] - 1] = eos
            attention_mask[row, :src_len[row]] = 1
            labels[row, :tgt_len[row]] = rng.randint(3, vocab_size, size=tgt_len[row])
            labels[row, tgt_len[row] - 1] = eos
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask,
                        "labels": labels})
    return batches


def dataset_of(batches):
    """A `tf.data.Dataset` yielding the given (differently shaped) batches in order."""
    return tf.data.Dataset.from_generator(
        lambda: iter(batches),
        output_signature={key: tf.TensorSpec([None, None], tf.int32)
                          for key in ("input_ids", "attention_mask", "labels")},
    )


def concat_batches(batches):
    """Concatenates batches row-wise, padding to the longest (pad 0 / mask 0 / -100)."""
    out = {}
    for key, fill in (("input_ids", 0), ("attention_mask", 0), ("labels", -100)):
        width = max(b[key].shape[1] for b in batches)
        out[key] = np.concatenate(
            [np.pad(b[key], ((0, 0), (0, width - b[key].shape[1])), constant_values=fill)
             for b in batches]
        )
    return out


def weights_of(model):
    return [np.array(v.numpy()) for v in model.weights]


def max_abs_diff(weights_a, weights_b):
    assert len(weights_a) == len(weights_b)
    return max(float(np.max(np.abs(a - b))) if a.size else 0.0
               for a, b in zip(weights_a, weights_b))


def save_weights_npz(model, path):
    np.savez(path, *[v.numpy() for v in model.trainable_weights])


def load_weights_npz(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


# --------------------------------------------------------------------------- subprocesses
def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets, ports = [], []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return ports


def subprocess_env(**extra):
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([REPO_DIR, TESTS_DIR, env.get("PYTHONPATH", "")]),
               KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def start_script(args, env, log_path):
    """Starts `python args...` in its own process group, output to `log_path`."""
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, *args], cwd=REPO_DIR, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_processes(processes):
    """Kills whatever is still running (whole process groups); never leaves strays."""
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)


def wait_all(processes, timeout, logs):
    """Waits for every process; on timeout kills all and fails with their logs."""
    import time

    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            remaining = max(deadline - time.monotonic(), 0.1)
            process.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        stop_processes(processes)
        raise AssertionError(f"subprocesses timed out after {timeout}s:\n" + read_logs(logs))
    finally:
        stop_processes(processes)
    return [process.returncode for process in processes]


def read_logs(paths, tail=4000):
    text = []
    for path in paths:
        try:
            with open(path) as handle:
                content = handle.read()
        except OSError:
            content = "<no log>"
        text.append(f"---- {path}\n{content[-tail:]}")
    return "\n".join(text)


# ---------------------------------------------------------- the distributed-training recipe
# Shared by the MirroredStrategy, multi-worker and resume tests: global batches of rows
# with very different real lengths (so replicas hold unequal token counts), AdamW with an
# active global-norm clip, label smoothing and gradient accumulation — every piece whose
# distributed form differs from the single-device one.
GLOBAL_BATCH = 8
RECIPE_STEPS = 4


def recipe_rows(num_rows=GLOBAL_BATCH * RECIPE_STEPS, seed=0):
    """Rows padded to one width, real lengths varying from 1 token to the full width."""
    batch = random_batches(1, num_rows, seed=seed, max_source=10, max_target=8)[0]
    return batch


def recipe_dataset(rows=None, global_batch=GLOBAL_BATCH, repeat=False):
    rows = recipe_rows() if rows is None else rows
    dataset = tf.data.Dataset.from_tensor_slices(rows)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(global_batch, drop_remainder=True)


def recipe_model(strategy=None, accumulation=2, run_eagerly=False):
    """The tiny mT5 of the recipe, built and compiled in `strategy`'s scope.

    References run eagerly (same `train_step` code, no tracing cost on 2 shared cores)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = small_model("mt5", seed=0)
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-2, weight_decay=0.01),
                      global_clipnorm=0.5, label_smoothing=0.1,
                      gradient_accumulation_steps=accumulation, run_eagerly=run_eagerly)
    return model
