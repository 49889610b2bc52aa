"""Test-session setup shared by every test file.

* Keras runs on the TensorFlow backend and TF's C++ logging is quiet; both must be set
  before TensorFlow / Keras are imported, which is why they sit at module top.
* Every test starts from the same seeds and the float32 global dtype policy (a test that
  switches to `mixed_bfloat16` cannot leak it into the next one).
* `torch_available` tells whether the PyTorch reference stack (torch + transformers) can
  be imported; the `torch` / `transformers` fixtures hand the module over or skip the test
  (live parity tests only: the golden fixtures cover torch-free runs).
* `report_figure(name, **figures)` records measured numbers (parity, precision); they
  are printed at the end of the run under "measured figures".
"""

import importlib.util
import os
import random

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SEED = 1234

_FIGURES = []


def _module_available(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


TORCH_AVAILABLE = _module_available("torch")
TRANSFORMERS_AVAILABLE = TORCH_AVAILABLE and _module_available("transformers")


@pytest.fixture(autouse=True)
def _seed_and_float32_policy():
    """Same seeds for every test; the global Keras dtype policy is float32 before and after."""
    import keras

    random.seed(SEED)
    np.random.seed(SEED)
    keras.utils.set_random_seed(SEED)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def torch_available():
    """True where torch and transformers (the reference stack) are importable."""
    return TRANSFORMERS_AVAILABLE


@pytest.fixture
def torch():
    """The torch module, seeded; skips the test where torch is not installed."""
    module = pytest.importorskip("torch")
    module.manual_seed(SEED)
    # The reference models here are tiny: one thread avoids oversubscribing shared cores.
    module.set_num_threads(1)
    return module


@pytest.fixture
def transformers(torch):
    """The transformers module (implies torch); skips the test where it is missing."""
    module = pytest.importorskip("transformers")
    module.logging.set_verbosity_error()
    return module


@pytest.fixture
def report_figure(request):
    """`report_figure(label, **numbers)`: prints and records a measured figure."""

    def record(label, **figures):
        line = f"{request.node.nodeid} | {label} | " + ", ".join(
            f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in figures.items()
        )
        print(line)
        _FIGURES.append(line)

    return record


@pytest.fixture(scope="session")
def tiny_m2m100_float_export(tmp_path_factory):
    """`(checkpoint, float_saved_model_dir)`: a tiny M2M100 checkpoint and its float32
    SavedModel, exported once for the tests that compare other exports with it."""
    from fixtures.savedmodel.weight_checks import export_tiny_m2m100_float

    return export_tiny_m2m100_float(str(tmp_path_factory.mktemp("m2m100_float_export")))


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
