"""`tfmodels demo` and `tfmodels translate` with the bundled translator, end to end.

Each check runs the real command line (`python -m tfmodels ...`) in a subprocess,
as a user on a fresh machine would, and compares the bundled model's translations
of CLDR *training* items with the CLDR references (held-out items may legitimately
differ). The two slow commands run concurrently to keep the file under a minute.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfmodels import BUNDLED_TRANSLATOR_DIR as BUNDLE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(BUNDLE, "model.safetensors.index.json")),
    reason="bundled translator missing (run examples/finetune_translation.py --bundle)",
)

# Training items and their CLDR references. The bundled model reproduces 90% of its
# training items exactly (not all: it is a 1.3M-parameter model over six languages).
EXPECTED = {
    "de": {"Switzerland": "Schweiz", "January": "Januar", "Germany": "Deutschland"},
    "fr": {"Switzerland": "Suisse", "January": "janvier"},
}


def _start(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(
        [sys.executable, "-m", "tfmodels", *args], cwd=REPO_ROOT, env=env, text=True,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _finish(process, stdin=None, timeout=300):
    stdout, stderr = process.communicate(stdin, timeout=timeout)
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def runs():
    """Starts every command at once (they are independent), then collects them."""
    german = list(EXPECTED["de"])
    # A blank line in the middle: the output keeps one line per input line.
    french = "\n\n".join(EXPECTED["fr"]) + "\n"
    processes = {
        "demo": (_start("demo", "--tgt", "de"), None),
        "translate_de": (_start("translate", "--src", "en", "--tgt", "de", *german), None),
        "translate_fr_stdin": (_start("translate", "--tgt", "fr", stdin=french), french),
        "bad_code": (_start("translate", "--tgt", "xx", "Switzerland"), None),
        "demo_without_examples": (_start("demo", "--tgt", "ja"), None),
    }
    return {name: _finish(process, stdin) for name, (process, stdin) in processes.items()}


def test_translate_arguments(runs):
    code, stdout, stderr = runs["translate_de"]
    assert code == 0, stderr
    assert stdout.splitlines() == list(EXPECTED["de"].values())


def test_translate_stdin(runs):
    code, stdout, stderr = runs["translate_fr_stdin"]
    assert code == 0, stderr
    first, second = EXPECTED["fr"].values()
    assert stdout.splitlines() == [first, "", second]


def test_demo_shows_translations(runs):
    code, stdout, stderr = runs["demo"]
    assert code == 0, stderr
    assert "loaded M2M100ForConditionalGeneration" in stdout
    assert "en -> de" in stdout
    assert "[held-out]" in stdout and "[training]" in stdout
    # Training items come out exactly as in CLDR.
    assert "Switzerland -> Schweiz   [training] reference: Schweiz (exact)" in stdout
    assert "Germany -> Deutschland   [training] reference: Deutschland (exact)" in stdout
    assert "beam 4" in stdout.splitlines()[0]  # the bundled generation_config.json


def test_unknown_language_code(runs):
    code, stdout, stderr = runs["bad_code"]
    assert code == 2
    assert "unknown language code 'xx' for --tgt" in stderr
    assert "valid codes:" in stderr and " de " in stderr and " fr " in stderr
    assert stdout == ""


def test_demo_for_a_language_without_examples_says_so(runs):
    code, stdout, stderr = runs["demo_without_examples"]
    assert code == 2
    assert "no examples for --tgt 'ja'" in stderr and "de, es, fr, it, nl, pt" in stderr


def test_cli_errors_name_the_flags(tmp_path, capsys):
    from tfmodels.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["export", BUNDLE, str(tmp_path / "out"), "--early-stopping", "maybe"])
    assert exit_info.value.code == 2
    assert "--early-stopping: must be true, false or never, got 'maybe'" in capsys.readouterr().err
    # Read before the model loads, and named by its flag.
    assert main(["convert", BUNDLE, str(tmp_path / "out"), "--max-shard-size", "2 gigs"]) == 2
    assert "--max-shard-size: cannot read '2 gigs'" in capsys.readouterr().err
    assert main(["export", BUNDLE, str(tmp_path / "out"), "--screen-head"]) == 2
    assert "(--xla with --screen-head)" in capsys.readouterr().err


@pytest.mark.torch
def test_convert_in_place_writes_safetensors_next_to_the_bin(torch, tmp_path):
    """What the `.bin` opt-in error suggests: `tfmodels convert DIR DIR --allow-bin`."""
    import shutil

    from converters import read_checkpoint, write_torch_bin
    from tfmodels.cli import main

    folder = tmp_path / "translator"
    shutil.copytree(BUNDLE, folder)
    tensors, _ = read_checkpoint(str(folder))
    for name in os.listdir(folder):
        if name.startswith("model"):
            os.remove(folder / name)
    write_torch_bin(str(folder / "pytorch_model.bin"), tensors)
    side_files = {name: (folder / name).read_bytes() for name in os.listdir(folder)
                  if name.endswith((".json", ".model")) and name != "config.json"}
    assert main(["convert", str(folder), str(folder), "--allow-bin"]) == 0
    written, format_name = read_checkpoint(str(folder))
    assert format_name == "safetensors"
    for name, value in tensors.items():
        np.testing.assert_array_equal(np.asarray(written[name], np.float32),
                                      np.asarray(value, np.float32), name)
    for name, content in side_files.items():  # untouched (the generation config is rewritten)
        if name != "generation_config.json":
            assert (folder / name).read_bytes() == content, name


def test_translate_batches_and_warns_about_what_it_cannot_honour(tmp_path, capsys):
    """`--batch-size` splits the texts; input that is not UTF-8 (which Python hands over as
    lone surrogates) and `--screen-head` with beams get warnings, not tracebacks; flags that
    cannot apply and file errors are one-line errors."""
    from tfmodels.cli import main

    assert main(["translate", "--batch-size", "1", "--screen-head", "Switzerland", "January",
                 "Caf\udce9"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[:2] == ["Schweiz", "Januar"] and len(lines) == 3
    assert "input line 3 not valid UTF-8; invalid bytes read as U+FFFD" in captured.err
    assert "--screen-head speeds up greedy search only; this run uses 4 beams" in captured.err
    assert main(["translate", "--batch-size", "0", "x"]) == 2
    assert "--batch-size must be at least 1, got 0" in capsys.readouterr().err
    assert main(["convert", BUNDLE, str(tmp_path / "k"), "--keras", "--max-shard-size", "1MB"]) == 2
    assert "a .keras file is written whole" in capsys.readouterr().err
    assert main(["export", BUNDLE, str(tmp_path / "out"), "--xla-warmup", "4x32",
                 "--max-batch-size", "4"]) == 2
    assert "(--xla with --xla-warmup)" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["convert", BUNDLE, str(tmp_path / "a_file")]) == 2
    assert "error: " in capsys.readouterr().err


def test_convert_to_keras_reports_the_file_it_wrote(tmp_path, capsys):
    from tfmodels.cli import main

    assert main(["convert", BUNDLE, str(tmp_path / "translator"), "--keras"]) == 0
    written = tmp_path / "translator.keras"
    assert written.is_file()
    assert f"to {written} " in capsys.readouterr().out
