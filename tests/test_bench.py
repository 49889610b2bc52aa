"""bench/generate.py's merging of interleaved rounds and bench/compile_breakdown.py's log
parsing (pure Python: no engine runs)."""

import doctest
import importlib.util
import os

import pytest

BENCH_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "bench", "generate.py")


def _load_script(path, module_name):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_script(BENCH_PATH, "bench_generate_under_test")


def _round(first_best_by_key, rss=100.0, build_s=None):
    result = {"results": {key: {"first": first, "best": best}
                          for key, (first, best) in first_best_by_key.items()},
              "peak_rss_mb": rss}
    if build_s is not None:
        result["build_s"] = build_s
    return result


def test_merge_keeps_each_settings_fastest_round_and_the_least_compile(bench):
    merged = bench.merge_rounds([
        _round({"1x1": (10.0, 2.0), "8x1": (12.0, 4.0)}, rss=300, build_s=1.5),
        _round({"1x1": (7.0, 2.5), "8x1": (9.0, 3.0)}, rss=200, build_s=2.5),
    ])
    # Per setting, the round with the faster best call wins (not one round for all).
    assert merged["results"]["1x1"] == {"first": 10.0, "best": 2.0}
    assert merged["results"]["8x1"] == {"first": 9.0, "best": 3.0}
    # Compile: per round, the largest first-minus-best over settings; then the least round.
    assert merged["compile_s"] == pytest.approx(min(max(8.0, 8.0), max(4.5, 6.0)))
    # Per setting: the least first-minus-best over the rounds.
    assert merged["compile_by_setting"] == pytest.approx({"1x1": 4.5, "8x1": 6.0})
    assert merged["peak_rss_mb"] == 300
    assert merged["setup_s"] == 1.5  # the round with the least set-up time
    # Spread: the slowest round's best over the fastest's, worst setting (8x1: 4/3).
    assert merged["spread"] == pytest.approx(4.0 / 3.0 - 1.0)
    assert merged["rounds"] == 2


def test_merge_drops_failed_rounds_and_keeps_an_error_when_all_failed(bench):
    merged = bench.merge_rounds([{"error": "boom"}, _round({"1x1": (5.0, 1.0)})])
    assert merged["rounds"] == 1 and merged["spread"] == 0.0
    assert merged["results"]["1x1"]["best"] == 1.0
    assert bench.merge_rounds([{"error": "first"}, {"error": "second"}]) == {"error": "first"}


def test_table_prints_the_merged_compile_time_and_spread(bench, capsys):
    rows = {
        "tfmodels": bench.merge_rounds([_round({"1x1": (5.0, 1.0)}, build_s=3.0),
                                        _round({"1x1": (3.0, 2.0)}, build_s=2.3)]),
        "ct2-fp32": _round({"1x1": (2.0, 0.5)}),
    }
    bench._print_table("tiny", [(1, 1)], {"error": "no probe"}, rows)
    table = capsys.readouterr().out
    assert "setup s" in table.splitlines()[2]
    ours = next(line for line in table.splitlines() if line.strip().startswith("tfmodels "))
    # 32 tokens / 1.0 s; compile min(4.0, 1.0) = 1.0; set-up min(3.0, 2.3); spread 100 %.
    assert ours.split()[1:6] == ["32.0", "1.0", "2.3", "100", "100%"]
    peer = next(line for line in table.splitlines() if line.strip().startswith("ct2-fp32"))
    assert peer.split()[-3:] == ["-", "100", "-"]  # no set-up time given; one round, no spread
    assert "0.50" in table  # the ratio ours / ct2-fp32 = 32 / 64
    # The per-setting first-call overheads follow the table: merged rounds give the least
    # (min(4.0, 1.0)), a single round its own (2.0 - 0.5).
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("first call minus best"))
    assert lines[start + 1].split() == ["tfmodels", "1.0"]
    assert lines[start + 2].split() == ["ct2-fp32", "1.5"]


def test_bench_doctests_pass(bench):
    result = doctest.testmod(bench, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


def test_head_shaped_rate_is_reported_beside_the_ceiling(bench, capsys):
    probes = [
        {"parameters": 1_000_000_000, "gb_per_s": 40.0, "ceiling_tokens_per_s": 10.0,
         "head_gb_per_s": 20.0},
        {"parameters": 1_000_000_000, "gb_per_s": 50.0, "ceiling_tokens_per_s": 12.5,
         "head_gb_per_s": 30.0},
        {"error": "probe failed"},
    ]
    ceiling = bench._best_probe(probes)
    # The fastest probe is the ceiling; the fastest head-shaped read comes with it.
    assert ceiling["gb_per_s"] == 50.0 and ceiling["head_gb_per_s"] == 30.0
    assert ceiling["probes_gb_per_s"] == [40.0, 50.0]
    rows = {"tfmodels": _round({"1x1": (4.0, 8.0)})}  # 32 tokens / 8 s = 4 tokens/s
    bench._print_table("tiny", [(1, 1)], ceiling, rows)
    table = capsys.readouterr().out
    # 30 GB/s over 4 GB (1e9 fp32 parameters) -> 7.5 tokens/s; 4 / 7.5 = 53 %.
    assert "head-shaped rate: 30.0 GB/s" in table and "-> 7.5 tokens/s" in table
    assert "batch-1 greedy at 32% of the bandwidth ceiling" in table  # 4 / 12.5
    assert "batch-1 greedy at 53% of the head-shaped rate" in table


def test_a_probe_without_the_head_shaped_rate_prints_the_ceiling_alone(bench, capsys):
    ceiling = bench._best_probe([{"parameters": 10, "gb_per_s": 1.0, "ceiling_tokens_per_s": 2.0}])
    assert "head_gb_per_s" not in ceiling
    bench._print_table("tiny", [(1, 1)], ceiling, {"tfmodels": _round({"1x1": (2.0, 1.0)})})
    table = capsys.readouterr().out
    assert "bandwidth ceiling" in table and "head-shaped" not in table


BREAKDOWN_PATH = os.path.join(os.path.dirname(BENCH_PATH), "compile_breakdown.py")


@pytest.fixture(scope="module")
def breakdown():
    return _load_script(BREAKDOWN_PATH, "bench_breakdown_under_test")


def _log_line(stamp, source, message, thread=7):
    return f"I0000 00:00:{stamp:.6f} {thread:7d} {source}] {message}"


def test_breakdown_splits_the_first_call_at_the_xla_markers(breakdown):
    log = "\n".join([
        # Before the measured call (the warm-up's compilation): ignored.
        _log_line(99.0, "xla_compiler.cc:820", "XlaCompiler::CompileFunction warmup"),
        _log_line(99.1, "ir_compiler.cc:256", "Compiled LLVM module: __compute_module_w "
                  "time: 5 ms (5000 us)"),
        _log_line(101.0, "xla_compiler.cc:820", "XlaCompiler::CompileFunction search"),
        _log_line(101.5, "xla_compiler.cc:820", "XlaCompiler::CompileFunction body"),
        _log_line(101.6, "hlo_pass_pipeline.cc:296", "Running HLO pass pipeline on search"),
        _log_line(101.9, "hlo_pass_pipeline.cc:296", "Running HLO pass pipeline on search"),
        _log_line(102.0, "cpu_compiler.cc:2060", "Compiling: search"),
        _log_line(102.2, "thunk_emitter.cc:882", "Reusing kernel: add.1 for fusion: add.2"),
        _log_line(102.3, "thunk_emitter.cc:882", "Reusing kernel: add.1 for fusion: add.3"),
        _log_line(102.4, "ir_compiler.cc:256", "Compiled LLVM module: "
                  "__compute_module_dot.7_elemental_kernel_module time: 20 ms (20000 us)", 8),
        _log_line(102.5, "ir_compiler.cc:256", "Compiled LLVM module: "
                  "__compute_module_add_fusion_kernel_module time: 1.5 s (1500000 us)", 9),
        "a line that is not a log line",
        _log_line(103.0, "cpu_compiler.cc:2109", "Compilation finished"),
    ])
    report = breakdown.phases_from_log(log, started=100.0, overhead=3.5)
    phases = [report[phase] for phase in breakdown.PHASES]
    assert phases == pytest.approx([1.0, 0.6, 0.4, 1.0, 0.5])
    counts = report["llvm_modules"], report["llvm_dot_modules"], report["reused_kernels"]
    assert counts == (2, 1, 2)
    assert report["llvm_cpu_s"] == pytest.approx(1.52)


def test_breakdown_reports_missing_markers_as_unknown(breakdown, capsys):
    report = breakdown.phases_from_log("no xla log here", started=0.0, overhead=2.0)
    assert all(report[phase] is None for phase in breakdown.PHASES)
    assert report["llvm_modules"] == 0 and report["overhead"] == 2.0
    breakdown.print_table([("mt5 1x1", [report, dict(report, overhead=4.0)]),
                           ("m2m100 1x1", [{"error": "worker failed"}])])
    lines = capsys.readouterr().out.splitlines()
    ours = next(line for line in lines if line.startswith("mt5 1x1 (n=2)"))
    assert ours.split()[3:5] == ["3.00", "n/a"]  # the median overhead; no phases
    assert any(line.startswith("m2m100 1x1") and "error: worker failed" in line for line in lines)


def test_breakdown_doctests_pass(breakdown):
    result = doctest.testmod(breakdown, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


def test_unknown_model_and_engine_names_are_refused_before_any_work(bench, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="generate.py")
    assert bench.check_names(parser, "--models", "mt5, m2m100", list(bench.MODELS)) == [
        "mt5", "m2m100"]
    for text, message in (("mt5-small", "--models: unknown mt5-small; choose from mt5, m2m100"),
                          (",", "--models: unknown (empty)")):
        with pytest.raises(SystemExit):
            bench.check_names(parser, "--models", text, list(bench.MODELS))
        assert message in capsys.readouterr().err
