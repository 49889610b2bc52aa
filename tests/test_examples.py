"""The fine-tuning example's argument checks (they run before any data or training work)."""

import os
import sys

import pytest

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture
def example():
    sys.path.insert(0, EXAMPLES_DIR)
    try:
        import finetune_translation

        yield finetune_translation
    finally:
        sys.path.remove(EXAMPLES_DIR)


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--targets", "de,sr_Latn"], "--targets: 'sr_Latn' is not an M2M100 language code"),
])
def test_bad_arguments_are_refused_before_any_work(example, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        example.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
