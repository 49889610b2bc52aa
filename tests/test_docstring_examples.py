"""Every docstring example in the package runs as written.

Modules are found by scanning the sources for `>>>`, so a new example is tested without
being listed here. Examples that load a checkpoint use the bundled translator
(`tfmodels.BUNDLED_TRANSLATOR_DIR`) or build a tiny model; a few read tokenizer files
under `tests/data` by a path relative to the repository root, the directory this runs in.
"""

import doctest
import importlib
import os

import pytest

from test_training_support import REPO_DIR

PACKAGES = ("tfmodels", "savedmodel", "converters")
# Examples that cannot run inside a test process; the modules still hold runnable ones
# or say why not.
EXAMPLES_NOT_RUN = {
    # Sets the process's XLA flags, which TensorFlow has read by then.
    "tfmodels.generation.compilation_cache",
}


def modules_with_examples():
    names = []
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO_DIR, package)):
            for file_name in sorted(files):
                if not file_name.endswith(".py"):
                    continue
                with open(os.path.join(folder, file_name), encoding="utf-8") as f:
                    if ">>>" not in f.read():
                        continue
                relative = os.path.relpath(os.path.join(folder, file_name), REPO_DIR)
                module = relative[: -len(".py")].replace(os.sep, ".")
                names.append(module[: -len(".__init__")] if module.endswith(".__init__")
                             else module)
    return sorted(names)


MODULES = modules_with_examples()


def test_scan_finds_the_packages_examples():
    # Guards the scan itself: a broken walk would pass every test below by finding none.
    assert len(MODULES) > 40
    assert {"tfmodels.models.seq2seq", "savedmodel", "converters.safetensors_io",
            "tfmodels.layers.attention"} <= set(MODULES)
    assert SLOW_EXAMPLES <= set(MODULES)


# Modules whose examples need an optional dependency, which the core suite runs without.
OPTIONAL_DEPENDENCY = {"converters.torch_bin_io": "torch"}
# Examples that export a SavedModel, fit, or compile several searches of the bundled
# translator: 5-20 s each on 2 cores, so they run with the slow tests.
SLOW_EXAMPLES = {"savedmodel", "savedmodel.export", "savedmodel.serving_module",
                 "tfmodels.models.seq2seq", "tfmodels.training.callbacks",
                 "tfmodels.generation.vocabulary"}


@pytest.mark.parametrize("module_name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_EXAMPLES else name
    for name in MODULES])
def test_docstring_examples_run(module_name, monkeypatch):
    if module_name in OPTIONAL_DEPENDENCY:
        pytest.importorskip(OPTIONAL_DEPENDENCY[module_name])
    monkeypatch.chdir(REPO_DIR)
    result = doctest.testmod(importlib.import_module(module_name),
                             optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
    if module_name not in EXAMPLES_NOT_RUN:
        assert result.attempted > 0, f"{module_name}: every example is skipped"
