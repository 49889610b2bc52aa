"""A persistent XLA compilation cache: compiled searches survive the process.

A generate call's first use of a (bucket, options) plan traces the search, converts it
to XLA and compiles it: seconds on CPU (`bench/generate.py`, column "compile s"). The
in-process cache (`generate.compiled_functions`) saves the repeats within one process;
TensorFlow's persistent cache, a directory of serialised executables keyed by the
compiled program, saves the XLA compilation (most of the first call) for every later
process that compiles the same plan for the same model architecture. Weights are inputs
of the compiled program, so a cache stays valid when they change (fine-tuning, another
checkpoint of the same config).

The key includes the traced function's name, which TensorFlow numbers in the order a
process traces functions: a later process hits the cache only where it traces the same
functions in the same order (a fixed warm-up sequence at start-up, before other
`tf.function`s; `tfmodels translate` always traces in the same order).

TensorFlow reads the setting (`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`)
once, when it runs its first op. `use_persistent_compilation_cache(DIR)` sets it and then
checks that it took effect; run it before any TensorFlow op, or set the variable in the
environment (as for any other process that runs XLA, e.g. a model server).
"""

import os
import uuid

CACHE_FLAG = "--tf_xla_persistent_cache_directory"


def use_persistent_compilation_cache(directory):
    """Makes this process read and write compiled XLA programs under `directory`.

    Raises ValueError when TensorFlow had already read its XLA flags (an op ran before
    this call), or when `TF_XLA_FLAGS` names another cache directory.

    Example (first thing in a process; not run by the tests, whose process has read its
    XLA flags by then):
    >>> import tfmodels.generation as generation  # doctest: +SKIP
    >>> generation.use_persistent_compilation_cache("/var/cache/tfmodels-xla")  # doctest: +SKIP
    """
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    flags = os.environ.get("TF_XLA_FLAGS", "").split()
    named = [flag.split("=", 1)[1] for flag in flags if flag.startswith(CACHE_FLAG + "=")]
    if any(os.path.abspath(other) != directory for other in named):
        raise ValueError(
            f"TF_XLA_FLAGS already sets {CACHE_FLAG}={named[0]}; cannot also use {directory}"
        )
    if not named:
        os.environ["TF_XLA_FLAGS"] = " ".join(flags + [f"{CACHE_FLAG}={directory}"])
    if not _cache_receives_programs(directory):
        raise ValueError(
            "TensorFlow read its XLA flags before use_persistent_compilation_cache() was "
            f"called, so {directory} is not used; call it before running any TensorFlow "
            f"op, or start the process with TF_XLA_FLAGS={CACHE_FLAG}={directory}"
        )


def _cache_receives_programs(directory):
    """Compiles a throwaway program no run has compiled before (a fresh constant) and
    reports whether its executable appeared in `directory`; removes it again."""
    import tensorflow as tf

    before = set(os.listdir(directory))
    marker = float(uuid.uuid4().int % 2**20)
    probe = tf.function(lambda x: x * marker + 1.0, jit_compile=True)
    probe(tf.zeros([1], tf.float32)).numpy()
    written = set(os.listdir(directory)) - before
    for name in written:
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass
    return bool(written)
