"""Where a bucket's first `generate` call spends its time: tracing, XLA compilation, LLVM.

    PYTHONPATH=. python bench/compile_breakdown.py                 # mt5 and m2m100, 1x1 8x1 8x4
    PYTHONPATH=. python bench/compile_breakdown.py --models mt5 --settings 8x4 --runs 3

Each (model, batch x beams) runs in a fresh process (2 threads, fp32, the real
`mt5-small` / `m2m100_418M` configs with random weights, 32 source and exactly 32 new
tokens, as in `bench/generate.py`): one first call, then two more. The process runs with
XLA's own timing logs switched on (`TF_CPP_VMODULE`), and the first call's overhead (first
call minus the best later one) is split by the logs' timestamps into:

  python+trace  `generate`'s Python, tracing the search, TensorFlow's function set-up
  tf->xla       TensorFlow's graph-to-XLA conversion
  hlo passes    XLA's HLO optimisation pipeline
  backend       XLA's CPU backend: kernel emission and LLVM code generation
  rest          what remains of the overhead (the first run's own extra costs)

and the backend's work is counted: LLVM modules compiled (CPU seconds over all compile
threads), how many of them are matrix products XLA emits as its own loops (one module per
product: XLA reuses a kernel only for identical fusions, which is the "reused" count).

The phases come from log lines of TensorFlow 2.21's XLA (`xla_compiler.cc`,
`hlo_pass_pipeline.cc`, `cpu_compiler.cc`, `ir_compiler.cc`, `thunk_emitter.cc`); a build
that logs differently prints "n/a" for what it cannot find. Timings move by tens of
percent between processes on a shared machine: use `--runs` and read the medians.
"""

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _BENCH_DIR]

# The modules whose VLOG(1) timers and markers the phases are read from.
LOGGED_MODULES = ("xla_compiler", "hlo_pass_pipeline", "cpu_compiler", "ir_compiler",
                  "thunk_emitter")
# "I0000 00:00:1796543026.614621   15541 xla_compiler.cc:820] message"
_LOG_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:(\d+\.\d+)\s+\d+ ([\w.]+):\d+\] (.*)$")
_DURATION = re.compile(r" time: ([0-9.]+) (us|ms|s) ")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
PHASES = ("python+trace", "tf->xla", "hlo passes", "backend", "rest")


def _generate_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_generate", os.path.join(_BENCH_DIR, "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def phases_from_log(log_text, started, overhead):
    """Splits the `overhead` seconds of a first call that started at epoch time `started`
    by the XLA log lines in `log_text`; also counts the LLVM modules.

    Example (a synthetic log, one line per marker):
    >>> log = "\\n".join([
    ...     "I0000 00:00:100.50 7 xla_compiler.cc:820] XlaCompiler::CompileFunction f",
    ...     "I0000 00:00:100.80 7 hlo_pass_pipeline.cc:296] Running HLO pass pipeline on m",
    ...     "I0000 00:00:101.00 7 cpu_compiler.cc:2060] Compiling: m",
    ...     "I0000 00:00:101.10 8 ir_compiler.cc:256] Compiled LLVM module: "
    ...     "__compute_module_dot.3_elemental_kernel_module time: 12 ms (12000 us)",
    ...     "I0000 00:00:101.20 7 thunk_emitter.cc:882] Reusing kernel: a.1 for fusion: a.2",
    ...     "I0000 00:00:101.70 7 cpu_compiler.cc:2109] Compilation finished",
    ... ])
    >>> report = phases_from_log(log, started=100.0, overhead=1.9)
    >>> [round(report[phase], 2) for phase in PHASES]
    [0.5, 0.3, 0.2, 0.7, 0.2]
    >>> report["llvm_modules"], report["llvm_dot_modules"], report["reused_kernels"]
    (1, 1, 1)
    """
    entries = []
    for line in log_text.splitlines():
        match = _LOG_LINE.match(line)
        if match and float(match.group(1)) >= started:
            entries.append((float(match.group(1)), match.group(2), match.group(3)))

    def first_time(source, text, after=None):
        return next((stamp for stamp, file, message in entries
                     if file == source and message.startswith(text)
                     and (after is None or stamp >= after)), None)

    compile_start = first_time("xla_compiler.cc", "XlaCompiler::CompileFunction")
    hlo_start = first_time("hlo_pass_pipeline.cc", "Running HLO pass pipeline", compile_start)
    backend_start = first_time("cpu_compiler.cc", "Compiling:", hlo_start)
    backend_end = first_time("cpu_compiler.cc", "Compilation finished", backend_start)
    marks = [started, compile_start, hlo_start, backend_start, backend_end]
    report = {}
    for phase, begin, end in zip(PHASES, marks[:-1], marks[1:]):
        report[phase] = None if begin is None or end is None else end - begin
    # The later calls' best time is the part of the first call that is not overhead.
    report["rest"] = (None if backend_end is None
                      else overhead - (backend_end - started))
    llvm = [(message, _DURATION.search(message)) for _, file, message in entries
            if file == "ir_compiler.cc" and message.startswith("Compiled LLVM module")]
    report["llvm_modules"] = len(llvm)
    report["llvm_dot_modules"] = sum("_dot." in message and "elemental" in message
                                     for message, _ in llvm)
    report["llvm_cpu_s"] = sum(float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
                               for _, found in llvm if found)
    report["reused_kernels"] = sum(file == "thunk_emitter.cc" and message.startswith("Reusing")
                                   for _, file, message in entries)
    report["overhead"] = overhead
    return report


def worker(name, setting):
    """Runs one bucket's first call and two more; prints timing as JSON on stdout (the XLA
    log goes to stderr)."""
    bench = _generate_bench()
    tf = bench._set_tf_threads()
    model = bench.tfmodels_model(name)
    batch, beams = (int(part) for part in setting.split("x"))
    source = bench._source_ids(batch, bench.MODELS[name]["config"]["vocab_size"])
    # XLA's one-time start-up (its service and thread pools), outside the measured call.
    tf.function(lambda x: x * 2.0, jit_compile=True)(tf.ones([2]))

    def run():
        model.generate(source, max_new_tokens=bench.NEW_TOKENS,
                       min_new_tokens=bench.NEW_TOKENS, num_beams=beams).numpy()

    started = time.time()  # epoch time, as the log's timestamps
    first, best = bench._time_calls(run, repeats=2)
    print(json.dumps({"started": started, "first": first, "best": best}))


def measure(name, setting):
    """One fresh process for `name` at `setting` ("BxK"); returns `phases_from_log`'s
    report, or `{"error": ...}`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0",
               TF_CPP_VMODULE=",".join(f"{module}=1" for module in LOGGED_MODULES))
    process = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", "--models", name,
         "--settings", setting], capture_output=True, text=True, env=env)
    lines = process.stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        return {"error": (process.stderr.strip().splitlines() or ["no output"])[-1]}
    timing = json.loads(lines[-1])
    return phases_from_log(process.stderr, timing["started"], timing["first"] - timing["best"])


def _median(reports, key):
    values = [report[key] for report in reports if report.get(key) is not None]
    return statistics.median(values) if values else None


def _cell(value, width=8, digits=2):
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_table(rows):
    """`rows`: `[(label, [report, ...])]`; prints the medians over each row's reports."""
    header = (f"{'bucket':<20}{'overhead':>9}" + "".join(f"{phase:>13}" for phase in PHASES)
              + f"{'llvm mods':>11}{'(dots)':>8}{'llvm cpu-s':>11}{'reused':>8}")
    print(header)
    for label, reports in rows:
        good = [report for report in reports if "error" not in report]
        if not good:
            print(f"{label:<20}error: {reports[0]['error']}")
            continue
        cells = [_cell(_median(good, "overhead"), 9)]
        cells += [_cell(_median(good, phase), 13) for phase in PHASES]
        cells += [_cell(_median(good, "llvm_modules"), 11, 0),
                  _cell(_median(good, "llvm_dot_modules"), 8, 0),
                  _cell(_median(good, "llvm_cpu_s"), 11),
                  _cell(_median(good, "reused_kernels"), 8, 0)]
        print(f"{label + f' (n={len(good)})':<20}" + "".join(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mt5,m2m100")
    parser.add_argument("--settings", default="1x1,8x1,8x4", help="batch x beams, comma-separated")
    parser.add_argument("--runs", type=int, default=1, help="fresh processes per bucket")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments.models, arguments.settings)
        return
    bench = _generate_bench()
    models = bench.check_names(parser, "--models", arguments.models, list(bench.MODELS))
    rows = []
    for name in models:
        for setting in arguments.settings.split(","):
            reports = [measure(name, setting) for _ in range(arguments.runs)]
            rows.append((f"{name} {setting}", reports))
    print("seconds; phases and LLVM counts are medians over the runs (see the docstring)")
    print_table(rows)


if __name__ == "__main__":
    main()
