"""The persistent XLA compilation cache: later processes reuse compiled searches.

Each case runs in its own Python process: TensorFlow reads its XLA flags once per process.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tfmodels.generation import use_persistent_compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GENERATE_WITH_CACHE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from tfmodels.generation import use_persistent_compilation_cache
    use_persistent_compilation_cache(sys.argv[1])
    from tests.helpers import TINY_MT5
    from tfmodels import MT5Config, MT5ForConditionalGeneration
    import keras
    keras.utils.set_random_seed(0)
    model = MT5ForConditionalGeneration(MT5Config(**TINY_MT5))
    ids = np.array([[5, 6, 7, 1], [8, 9, 1, 0]], np.int32)
    out = model.generate(ids, attention_mask=(ids != 0).astype(np.int32), max_new_tokens=6,
                         num_beams=int(sys.argv[2]))
    print("IDS " + json.dumps(out.numpy().tolist()))
    """
)


def _run(script, *args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_XLA_FLAGS", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)


def _ids(process):
    assert process.returncode == 0, process.stderr[-2000:]
    lines = [line for line in process.stdout.splitlines() if line.startswith("IDS ")]
    return json.loads(lines[-1][4:])


def test_second_process_reuses_the_compiled_search(tmp_path):
    cache = tmp_path / "xla"
    first = _ids(_run(GENERATE_WITH_CACHE, cache, 2))
    written = {name: os.stat(cache / name).st_mtime_ns for name in os.listdir(cache)}
    assert written, "the first process wrote no compiled program"
    second = _ids(_run(GENERATE_WITH_CACHE, cache, 2))
    assert second == first
    # Same plan, same architecture: read from the cache, nothing compiled or rewritten;
    # the probe that checks the setting took effect leaves nothing behind either.
    assert {name: os.stat(cache / name).st_mtime_ns for name in os.listdir(cache)} == written
    # Another plan (greedy instead of beam 2) is a new program.
    _ids(_run(GENERATE_WITH_CACHE, cache, 1))
    assert len(os.listdir(cache)) > len(written)


def test_too_late_is_an_error_that_says_what_to_do(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import tensorflow as tf
        tf.constant(1.0) + 1.0  # TensorFlow reads its XLA flags at its first op
        from tfmodels.generation import use_persistent_compilation_cache
        try:
            use_persistent_compilation_cache(sys.argv[1])
        except ValueError as error:
            print("ERROR", error)
        """
    )
    process = _run(script, tmp_path / "xla")
    assert process.returncode == 0, process.stderr[-2000:]
    assert "ERROR TensorFlow read its XLA flags before" in process.stdout
    assert "TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=" in process.stdout


def test_conflicting_cache_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_XLA_FLAGS", f"--tf_xla_persistent_cache_directory={tmp_path / 'a'}")
    with pytest.raises(ValueError, match="already sets --tf_xla_persistent_cache_directory"):
        use_persistent_compilation_cache(tmp_path / "b")


def test_cli_option_fills_the_cache(tmp_path):
    cache = tmp_path / "xla"
    script = "import sys; from tfmodels.cli import main; sys.exit(main(sys.argv[1:]))"
    process = _run(script, "translate", "--xla-cache", cache, "--max-new-tokens", "4",
                   "--num-beams", "1", "--tgt", "fr", "Albanian")
    assert process.returncode == 0, process.stderr[-2000:]
    assert process.stdout.strip()
    assert os.listdir(cache)
