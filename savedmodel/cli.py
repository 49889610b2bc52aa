"""`tfmodels export CHECKPOINT_DIR OUT_DIR [options]`: the command line of the exporter.

`add_export_arguments(parser)` declares the options (importing no TensorFlow of its
own); `run_export(args)` does the export and prints a summary.

Example:
    tfmodels export checkpoints/m2m100_418M exported/m2m100 --num-beams 4 --max-new-tokens 128
"""

import argparse
import os

# export_settings imports no TensorFlow, so the parser can take the dtypes from it.
from savedmodel.export_settings import WEIGHT_DTYPES


# `quantize_weights` modes (tfmodels.layers.dense.WEIGHT_QUANTIZATION_MODES), written out so
# that declaring the options imports no TensorFlow; `tfmodels translate/demo` use them too.
QUANTIZE_CHOICES = ["int8", "int8_dynamic"]
DTYPE_HELP = ("weights and compute dtype (default float32); 'bfloat16' reads half the bytes "
              "and, without XLA, multiplies bfloat16 natively on CPUs with AVX512-BF16 "
              "(fastest for batches and beams there); outputs may differ slightly")


def _early_stopping(text):
    values = {"true": True, "false": False, "never": "never"}
    if text.lower() not in values:
        # argparse shows this type of error's own message (not "invalid value").
        raise argparse.ArgumentTypeError(f"must be true, false or never, got {text!r}")
    return values[text.lower()]


def add_export_arguments(parser):
    """Adds the export options to an argparse (sub)parser."""
    parser.add_argument("checkpoint", help="folder with config.json, weights and tokenizer files")
    parser.add_argument("out_dir", help="model base path; the SavedModel goes to OUT_DIR/<version>/")
    generation = parser.add_argument_group("generation (fixed at export; default: the checkpoint's)")
    generation.add_argument("--num-beams", type=int, help="beam width (1 = greedy)")
    generation.add_argument("--max-new-tokens", type=int, help="new tokens serving_default generates at most")
    generation.add_argument(
        "--max-new-tokens-limit", type=int,
        help="largest max_new_tokens a generate_with_options request may ask for "
        "(default: --max-new-tokens)",
    )
    generation.add_argument("--min-new-tokens", type=int)
    generation.add_argument("--length-penalty", type=float)
    generation.add_argument("--early-stopping", type=_early_stopping, help="true, false or never")
    generation.add_argument("--no-repeat-ngram-size", type=int)
    generation.add_argument("--repetition-penalty", type=float)
    limits = parser.add_argument_group("inputs")
    limits.add_argument("--max-source-length", type=int, default=512,
                        help="texts are truncated to this many tokens (default 512)")
    limits.add_argument("--max-target-length", type=int, default=512,
                        help="score targets are truncated to this many tokens (default 512)")
    xla = parser.add_argument_group("XLA variants (for servers run with --xla_cpu_compilation_enabled)")
    xla.add_argument("--xla", action="store_true", help="also export *_xla signatures")
    xla.add_argument("--max-batch-size", type=int, default=32,
                     help="largest batch an *_xla signature accepts (default 32)")
    xla.add_argument("--xla-warmup", default="smallest",
                     help="shapes the warm-up compiles per *_xla signature: 'smallest' (default: "
                     "batch 1, shortest bucket), 'all' (every batch x length bucket), or typical "
                     "request shapes 'BATCHxLENGTH,...' such as '4x32,16x64'")
    xla.add_argument("--screen-head", action="store_true",
                     help="greedy search in the *_xla signatures screens the LM head with an "
                     "int8 copy and reads only the float rows that can win: the same tokens, "
                     "faster (model.enable_head_screening)")
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                        help="int8 decoding: the decoder's projections and LM head stored "
                        "and read as int8 (faster decoding on CPU, smaller export); "
                        "'int8_dynamic' quantises their inputs too, and converts the encoder's "
                        "projections as well (faster for batches and beams under XLA)")
    parser.add_argument("--dtype", choices=WEIGHT_DTYPES, default=None, help=DTYPE_HELP)
    output = parser.add_argument_group("output")
    output.add_argument("--no-warmup", action="store_true",
                        help="do not write assets.extra/tf_serving_warmup_requests")
    output.add_argument("--model-name", help="name in models.config (default: OUT_DIR's name)")
    output.add_argument("--version", type=int, help="version folder (default: next free number)")
    output.add_argument("--skip-op-check", action="store_true",
                        help="do not check that a stock TF Serving has every op of the graph")


def settings_from_args(args):
    from savedmodel.export_settings import ExportSettings

    return ExportSettings(
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        max_new_tokens_limit=args.max_new_tokens_limit,
        min_new_tokens=args.min_new_tokens,
        length_penalty=args.length_penalty,
        early_stopping=args.early_stopping,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        repetition_penalty=args.repetition_penalty,
        max_source_length=args.max_source_length,
        max_target_length=args.max_target_length,
        xla=args.xla,
        max_batch_size=args.max_batch_size,
        warmup=not args.no_warmup,
        xla_warmup=args.xla_warmup,
        weight_quantization=args.quantize,
        head_screening=args.screen_head,
        dtype=args.dtype,
        model_name=args.model_name,
        version=args.version,
    )


def folder_size(path):
    return sum(
        os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names
    )


def run_export(args):
    """Exports, checks the ops, prints what was written and how to serve it."""
    from savedmodel import op_check
    from savedmodel.export import export_savedmodel
    from savedmodel.signature_docs import describe_signatures

    try:
        result = export_savedmodel(args.checkpoint, args.out_dir, settings_from_args(args))
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    if not args.skip_op_check:
        op_check.check_servable_ops(result.saved_model_dir)
    must_compile = op_check.must_compile_functions(result.saved_model_dir)
    size_mb = folder_size(result.saved_model_dir) / 1e6
    name = result.settings.model_name
    print(f"exported {args.checkpoint} to {result.saved_model_dir} "
          f"(version {result.version}, {size_mb:.1f} MB, {result.seconds:.1f}s)")
    print(f"XLA-compiled functions: {len(must_compile)} (only behind the *_xla signatures)")
    print("signatures:")
    print(describe_signatures(result.saved_model_dir))
    print("settings:")
    print(result.settings.describe())
    base = os.path.abspath(args.out_dir)
    print("serve it with:")
    print(f'  docker run --rm -p 8500:8500 -p 8501:8501 -v "{base}:/models/{name}" '
          f"-e MODEL_NAME={name} tensorflow/serving:2.20.0")
    return 0
