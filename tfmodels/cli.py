"""The `tfmodels` command line: `convert`, `demo` (more subcommands join as features land)."""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DEMO_CHECKPOINT = os.path.join(ASSETS_DIR, "demo-mt5")


def _parse_size(text):
    """'500MB' / '2GB' / '1000000' -> bytes."""
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    upper = text.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * factor)
    return int(upper)


def cmd_convert(args):
    """Reads any supported checkpoint and writes it back as safetensors (and/or .keras)."""
    from tfmodels.auto import load_seq2seq_lm

    started = time.perf_counter()
    model = load_seq2seq_lm(args.checkpoint, allow_bin=args.allow_bin)
    loaded = time.perf_counter()
    if args.keras:
        model.save(args.output if args.output.endswith(".keras") else args.output + ".keras")
    else:
        max_shard = _parse_size(args.max_shard_size) if args.max_shard_size else None
        model.save_pretrained(args.output, max_shard_size=max_shard)
        _copy_side_files(args.checkpoint, args.output)
    params = sum(int(v.shape.num_elements()) for v in model.weights)
    print(
        f"converted {type(model).__name__} ({params:,} parameters) from {args.checkpoint} "
        f"to {args.output} (load {loaded - started:.1f}s, write {time.perf_counter() - loaded:.1f}s)"
    )
    return 0


def _copy_side_files(source, destination):
    """Tokenizer and generation files travel with the weights."""
    import shutil

    for name in sorted(os.listdir(source)):
        if name.endswith((".model", ".json")) and name not in (
            "config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json",
        ):
            shutil.copy2(os.path.join(source, name), os.path.join(destination, name))


def cmd_demo(args):
    """Loads the bundled checkpoint, runs it, and says what it did."""
    import numpy as np

    from tfmodels.auto import load_seq2seq_lm

    checkpoint = args.checkpoint or DEMO_CHECKPOINT
    started = time.perf_counter()
    model = load_seq2seq_lm(checkpoint)
    print(f"loaded {type(model).__name__} from {checkpoint} in {time.perf_counter() - started:.2f}s")
    params = sum(int(v.shape.num_elements()) for v in model.weights)
    print(f"  {params:,} parameters; config: " + ", ".join(
        f"{key}={getattr(model.config, key)}"
        for key in ("vocab_size", "d_model")
        if hasattr(model.config, key)
    ))
    rng = np.random.default_rng(0)
    eos = model.config.eos_token_id
    input_ids = rng.integers(3, model.config.vocab_size, size=(2, 12)).astype("int32")
    input_ids[:, -1] = eos
    input_ids[1, 8:] = model.config.pad_token_id
    input_ids[1, 7] = eos
    attention_mask = (np.arange(12)[None, :] < np.array([[12], [8]])).astype("int32")
    labels = rng.integers(3, model.config.vocab_size, size=(2, 6)).astype("int32")
    started = time.perf_counter()
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    print(
        f"forward on a padded batch {input_ids.shape}: logits {tuple(out.logits.shape)}, "
        f"loss {float(out.loss):.4f} ({time.perf_counter() - started:.2f}s)"
    )
    if hasattr(model, "generate"):
        started = time.perf_counter()
        generated = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=8)
        print(f"greedy generate, 8 new tokens: {np.asarray(generated).tolist()} "
              f"({time.perf_counter() - started:.2f}s incl. compile)")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tfmodels", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert", help="read a Hugging Face checkpoint (safetensors, tf_model.h5, .bin) and "
        "write safetensors in the reference layout, or a .keras file"
    )
    convert.add_argument("checkpoint", help="folder with config.json and weights")
    convert.add_argument("output", help="output folder (or .keras path with --keras)")
    convert.add_argument("--allow-bin", action="store_true",
                         help="allow reading pytorch_model.bin (unpickles; needs torch)")
    convert.add_argument("--keras", action="store_true", help="write a Keras .keras file")
    convert.add_argument("--max-shard-size", help="shard safetensors output, e.g. 2GB")
    convert.set_defaults(handler=cmd_convert)

    demo = commands.add_parser("demo", help="run the bundled model and show what it does")
    demo.add_argument("--checkpoint", help="use this checkpoint instead of the bundled one")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, ValueError, TypeError, ImportError) as error:
        print(f"tfmodels {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
