"""The `tfmodels` command line: `demo`, `translate`, `convert`, `export`."""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfmodels import BUNDLED_TRANSLATOR_DIR  # noqa: E402


def _parse_size(text):
    """'500MB' / '2GB' / '2G' / '1000000' -> bytes.

    >>> _parse_size("2GB"), _parse_size("1.5G"), _parse_size("4KiB"), _parse_size("1000")
    (2000000000, 1500000000, 4096, 1000)
    """
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "KB": 10**3, "MB": 10**6, "GB": 10**9,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    upper = text.strip().upper()
    try:
        for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
            if upper.endswith(unit):
                return int(float(upper[: -len(unit)]) * factor)
        return int(upper)
    except ValueError:
        raise ValueError(f"--max-shard-size: cannot read {text!r}; give e.g. 500MB, 2GB or "
                         "a number of bytes") from None


def cmd_convert(args):
    """Reads any supported checkpoint and writes it back as safetensors (and/or .keras)."""
    from tfmodels.auto import load_seq2seq_lm

    if args.keras and args.max_shard_size:
        raise ValueError("--max-shard-size shards safetensors output; a .keras file is "
                         "written whole")
    max_shard = _parse_size(args.max_shard_size) if args.max_shard_size else None  # before the load
    started = time.perf_counter()
    model = load_seq2seq_lm(args.checkpoint, allow_bin=args.allow_bin, dtype=args.dtype)
    loaded = time.perf_counter()
    output = args.output
    if args.keras:
        output = output if output.endswith(".keras") else output + ".keras"
        model.save(output)
    else:
        model.save_pretrained(output, max_shard_size=max_shard)
        _copy_side_files(args.checkpoint, output)
    params = sum(int(v.shape.num_elements()) for v in model.weights)
    print(
        f"converted {type(model).__name__} ({params:,} parameters) from {args.checkpoint} "
        f"to {output} (load {loaded - started:.1f}s, write {time.perf_counter() - loaded:.1f}s)"
    )
    return 0


def _copy_side_files(source, destination):
    """Tokenizer and generation files travel with the weights (nothing to do in place)."""
    import shutil

    if os.path.samefile(source, destination):
        return
    for name in sorted(os.listdir(source)):
        # Weight index files describe the source's shards, not the ones written.
        if name.endswith((".model", ".json")) and name != "config.json" and not name.endswith(".index.json"):
            shutil.copy2(os.path.join(source, name), os.path.join(destination, name))


# ------------------------------------------------------------------- demo and translate
# The bundled translator (BUNDLED_TRANSLATOR_DIR): a small M2M100-architecture model
# trained on CLDR names (English -> German, French, Spanish, Italian, Dutch, Portuguese)
# by examples/finetune_translation.py.
DEMO_EXAMPLES_FILE = "demo_examples.json"
# Inputs `demo --checkpoint` translates when the checkpoint brings no demo_examples.json.
FALLBACK_DEMO_TEXTS = ("Switzerland", "Monday", "Swiss German", "January", "Germany")


class Translator:
    """A checkpoint's model + tokenizer, translating strings in-graph:
    tokenizer -> `model.generate` (one compiled graph) -> detokenizer.

    M2M100 picks the target language with a forced first token (`__de__`); mT5 has no
    language tokens, so `mt5_prefix` (e.g. "to {tgt}: ") is put before each text.
    """

    def __init__(self, checkpoint, quantize=None, dtype=None, screen_head=False):
        import json

        from tfmodels.auto import load_seq2seq_lm

        started = time.perf_counter()
        self.checkpoint = checkpoint
        self.model = load_seq2seq_lm(checkpoint, dtype=dtype)
        if quantize:
            self.model.quantize_weights(quantize)
        if screen_head:
            self.model.enable_head_screening()
        self.is_m2m100 = self.model.config.model_type == "m2m_100"
        if self.is_m2m100:
            from tfmodels.tokenizers import M2M100Tokenizer

            self.tokenizer = M2M100Tokenizer.from_pretrained(checkpoint)
        else:
            from tfmodels.tokenizers import T5Tokenizer

            self.tokenizer = T5Tokenizer.from_pretrained(checkpoint)
        from tfmodels.generation import text_output_suppress_tokens

        # Ids the model has rows for but the tokenizer cannot write out are never generated
        # (and the checkpoint's suppressed tokens stay suppressed).
        self.suppressed_token_ids = text_output_suppress_tokens(self.model, self.tokenizer)
        self.load_seconds = time.perf_counter() - started
        examples_path = os.path.join(checkpoint, DEMO_EXAMPLES_FILE)
        self.demo_info = {}
        if os.path.isfile(examples_path):
            with open(examples_path, encoding="utf-8") as handle:
                self.demo_info = json.load(handle)
        # mT5 models from examples/finetune_translation.py record their task prefix
        # ("to {tgt}: "); other mT5 checkpoints get the text as it is.
        self.mt5_prefix = self.demo_info.get("mt5_prefix") or ""

    @property
    def parameters(self):
        # The model's own weights (int8 copies from --quantize are not extra parameters).
        return sum(int(v.shape.num_elements()) for v in self.model.trainable_weights)

    @property
    def trained_languages(self):
        """Target languages the checkpoint's demo examples cover (empty if unknown)."""
        return sorted({e["tgt_lang"] for e in self.demo_info.get("examples", [])})

    def check_languages(self, src, tgt):
        """Raises `ValueError` naming the valid codes when `src`/`tgt` is not one."""
        if not self.is_m2m100:
            return
        codes = list(self.tokenizer.lang_codes)
        for flag, code in (("--src", src), ("--tgt", tgt)):
            if code not in codes:
                raise ValueError(
                    f"unknown language code {code!r} for {flag}; valid codes: {' '.join(codes)}"
                )

    def translate(self, texts, src="en", tgt="de", num_beams=None, max_new_tokens=32):
        """Translations of `texts` (a list of strings), as a list of strings.

        `num_beams=None` uses the checkpoint's `generation_config.json` (greedy if unset).
        """
        import tensorflow as tf

        options = {"max_new_tokens": int(max_new_tokens)}
        if self.suppressed_token_ids:
            options["suppress_tokens"] = self.suppressed_token_ids
        if num_beams is not None:
            options["num_beams"] = int(num_beams)
        if self.is_m2m100:
            self.check_languages(src, tgt)
            encoded = self.tokenizer(list(texts), src_lang=src)
            options["forced_bos_token_id"] = self.tokenizer.get_lang_id(tgt)
        else:
            prefix = self.mt5_prefix.format(tgt=tgt)
            encoded = self.tokenizer([prefix + text for text in texts])
        output = self.model.generate(encoded["input_ids"],
                                     attention_mask=encoded["attention_mask"], **options)
        sequences = tf.convert_to_tensor(getattr(output, "sequences", output), tf.int32)
        decoded = self.tokenizer.detokenize(sequences, skip_special_tokens=True)
        return [text.decode("utf-8").strip() for text in decoded.numpy().reshape(-1)]


def _describe(translator):
    config = translator.model.config
    size = sum(
        os.path.getsize(os.path.join(translator.checkpoint, name))
        for name in os.listdir(translator.checkpoint)
    )
    fields = ", ".join(
        f"{key}={getattr(config, key)}"
        for key in ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "num_layers")
        if hasattr(config, key)
    )
    print(f"loaded {type(translator.model).__name__} + {type(translator.tokenizer).__name__} "
          f"from {translator.checkpoint} in {translator.load_seconds:.2f}s")
    print(f"  {translator.parameters:,} parameters, {size / 1e6:.1f} MB on disk; {fields}")
    if translator.model.dtype_policy.name != "float32":
        print(f"  weights and compute in {translator.model.dtype_policy.name}")
    if translator.model.weight_quantization:
        print(f"  decoding reads {translator.model.weight_quantization} weights "
              "(decoder projections and LM head)")


def _search_beams(args, translator, command):
    """The beam width the run uses; warns when `--screen-head` cannot apply to it."""
    beams = args.num_beams or translator.model.generation_config.num_beams
    if args.screen_head and beams != 1:
        print(f"tfmodels {command}: warning: --screen-head speeds up greedy search only; "
              f"this run uses {beams} beams (add --num-beams 1)", file=sys.stderr)
    return beams


def cmd_demo(args):
    """Loads the bundled translator (or `--checkpoint`), translates a few held-out and
    training examples per target language, and prints outputs, references and timings."""
    checkpoint = args.checkpoint or BUNDLED_TRANSLATOR_DIR
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        raise FileNotFoundError(f"no checkpoint (config.json) in {checkpoint}")
    translator = Translator(checkpoint, quantize=args.quantize, dtype=args.dtype,
                            screen_head=args.screen_head)
    beams = _search_beams(args, translator, "demo")
    print("tfmodels demo: translating in-graph (tokenizer -> generate -> detokenizer), "
          f"{'greedy' if beams == 1 else f'beam {beams}'}, max {args.max_new_tokens} new tokens")
    _describe(translator)
    examples = translator.demo_info.get("examples")
    if not examples:
        tgt = args.tgt or "de"
        examples = [{"split": "-", "source": text, "src_lang": "en", "tgt_lang": tgt,
                     "reference": None} for text in FALLBACK_DEMO_TEXTS]
    elif args.tgt:
        examples = [e for e in examples if e["tgt_lang"] == args.tgt]
        if not examples:
            raise ValueError(
                f"the demo has no examples for --tgt {args.tgt!r}; it has "
                f"{', '.join(translator.trained_languages)} (`tfmodels translate --tgt "
                f"{args.tgt} TEXT` translates any text)")
    corpus = translator.demo_info.get("corpus")
    if corpus:
        print(f"  trained on: {corpus}; held-out items were never seen in training")
    groups = {}
    for example in examples:
        groups.setdefault((example["src_lang"], example["tgt_lang"]), []).append(example)
    exact = total = 0
    for (src, tgt), group in groups.items():
        started = time.perf_counter()
        outputs = translator.translate([e["source"] for e in group], src=src, tgt=tgt,
                                       num_beams=args.num_beams,
                                       max_new_tokens=args.max_new_tokens)
        seconds = time.perf_counter() - started
        print(f"\n{src} -> {tgt} ({len(group)} texts, {seconds:.2f}s"
              f"{' incl. tracing' if total == 0 else ''}):")
        for example, output in zip(group, outputs):
            reference = example.get("reference")
            mark = ""
            if reference is not None:
                total += 1
                exact += output == reference
                mark = f"   [{example['split']}] reference: {reference}"
                mark += " (exact)" if output == reference else ""
            print(f"  {example['source']} -> {output}{mark}")
    if total:
        print(f"\n{exact}/{total} outputs equal the CLDR reference")
    return 0


def _check_language_codes_early(checkpoint, src, tgt):
    """Rejects unknown M2M100 language codes before the (slow) model load."""
    import json

    config_path = os.path.join(checkpoint, "tokenizer_config.json")
    if not os.path.isfile(os.path.join(checkpoint, "vocab.json")) or not os.path.isfile(config_path):
        return  # not an M2M100 checkpoint: nothing to check
    with open(config_path, encoding="utf-8") as handle:
        code_set = json.load(handle).get("language_codes") or "m2m100"
    from tfmodels.tokenizers.m2m100_language_codes import M2M100_LANGUAGE_CODES

    codes = M2M100_LANGUAGE_CODES.get(code_set, ())
    for flag, code in (("--src", src), ("--tgt", tgt)):
        if codes and code not in codes:
            raise ValueError(
                f"unknown language code {code!r} for {flag}; valid codes: {' '.join(codes)}"
            )


def cmd_translate(args):
    """Translates the text arguments (or stdin lines), one output line per input; a blank
    input line gives a blank output line, so outputs stay aligned with a file's lines."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin]
    if not any(text.strip() for text in texts):
        raise ValueError("nothing to translate: give texts as arguments or on stdin")
    texts = _replace_invalid_utf8(texts)
    checkpoint = args.checkpoint or BUNDLED_TRANSLATOR_DIR
    if not os.path.isfile(os.path.join(checkpoint, "config.json")):
        raise FileNotFoundError(f"no checkpoint (config.json) in {checkpoint}")
    _check_language_codes_early(checkpoint, args.src, args.tgt)
    translator = Translator(checkpoint, quantize=args.quantize, dtype=args.dtype,
                            screen_head=args.screen_head)
    trained = translator.trained_languages
    if translator.is_m2m100 and trained and args.tgt not in trained:
        print(f"tfmodels translate: warning: this checkpoint was trained for "
              f"{', '.join(trained)}, not {args.tgt!r}", file=sys.stderr)
    _search_beams(args, translator, "translate")
    nonblank = [text for text in texts if text.strip()]
    translated = []
    # Batches of --batch-size texts: memory stays bounded for long inputs.
    for start in range(0, len(nonblank), args.batch_size):
        translated += translator.translate(nonblank[start:start + args.batch_size],
                                           src=args.src, tgt=args.tgt,
                                           num_beams=args.num_beams,
                                           max_new_tokens=args.max_new_tokens)
    outputs = iter(translated)
    for text in texts:
        print(next(outputs) if text.strip() else "")
    return 0


def _replace_invalid_utf8(texts):
    """Texts whose bytes are not UTF-8 (Python hands them over as lone surrogates) get
    U+FFFD for each invalid byte, with a warning naming the inputs."""
    cleaned, invalid = [], []
    for number, text in enumerate(texts, start=1):
        fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if fixed != text:
            invalid.append(number)
        cleaned.append(fixed)
    if invalid:
        print(f"tfmodels translate: warning: input {'lines' if len(invalid) > 1 else 'line'} "
              f"{', '.join(map(str, invalid))} not valid UTF-8; invalid bytes read as U+FFFD",
              file=sys.stderr)
    return cleaned


def _add_generation_arguments(parser):
    parser.add_argument("--checkpoint",
                        help="checkpoint folder (M2M100 or mT5) instead of the bundled "
                        "default-translator")
    parser.add_argument("--num-beams", type=int, default=None,
                        help="beam width (default: the checkpoint's generation_config.json; "
                        "the bundled translator uses 4)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="most tokens to generate per text (default 32)")
    from savedmodel.cli import DTYPE_HELP, QUANTIZE_CHOICES
    from savedmodel.export_settings import WEIGHT_DTYPES

    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                        help="int8 decoding (model.quantize_weights): 'int8' int8 weights, "
                        "float activations (nearer the float model's outputs), "
                        "'int8_dynamic' int8 weights and activations (the faster one in "
                        "bench/generate.py, one text or many); outputs may differ "
                        "slightly from the float model")
    parser.add_argument("--dtype", choices=WEIGHT_DTYPES, default=None, help=DTYPE_HELP)
    parser.add_argument("--screen-head", action="store_true",
                        help="greedy search bounds the LM head's logits with an int8 copy and "
                        "reads only the float rows that can win: the float model's output, "
                        "faster (model.enable_head_screening)")
    parser.add_argument("--xla-cache", metavar="DIR", default=None,
                        help="keep compiled generation programs in DIR and reuse them in "
                        "later runs (a persistent XLA compilation cache)")


def cmd_export(args):
    """SavedModel for TF Serving (strings in, strings out); see savedmodel/README.md."""
    from savedmodel.cli import run_export

    return run_export(args)


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
    from savedmodel.export_settings import WEIGHT_DTYPES

    convert.add_argument("--dtype", choices=WEIGHT_DTYPES, default=None,
                         help="dtype of the weights written (default float32, as the "
                         "reference's from_pretrained + save_pretrained; bfloat16 keeps a "
                         "bfloat16 checkpoint's size)")
    convert.set_defaults(handler=cmd_convert)

    demo = commands.add_parser(
        "demo", help="translate held-out and training examples with the bundled translator "
        "(or --checkpoint) and show what it does"
    )
    _add_generation_arguments(demo)
    demo.add_argument("--tgt", help="only examples with this target language")
    demo.set_defaults(handler=cmd_demo)

    translate = commands.add_parser(
        "translate", help="translate texts (arguments, or stdin lines) with the bundled "
        "translator (or --checkpoint)"
    )
    translate.add_argument("texts", nargs="*", help="texts; without any, stdin lines")
    translate.add_argument("--src", default="en", help="source language code (default en)")
    translate.add_argument("--tgt", default="de",
                           help="target language code (default de; the bundled model was "
                           "trained for de, es, fr, it, nl, pt); ignored by mT5 checkpoints "
                           "without a prefix")
    _add_generation_arguments(translate)
    translate.add_argument("--batch-size", type=int, default=32,
                           help="texts translated together (default 32); bounds memory for "
                           "long inputs")
    translate.set_defaults(handler=cmd_translate)

    from savedmodel.cli import add_export_arguments

    export = commands.add_parser(
        "export", help="write a TF Serving SavedModel (text in, text out) to OUT_DIR/<version>/"
    )
    add_export_arguments(export)
    export.set_defaults(handler=cmd_export)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "xla_cache", None):
            # Before any TensorFlow op: TensorFlow reads its XLA flags once, at its first op.
            from tfmodels.generation import use_persistent_compilation_cache

            use_persistent_compilation_cache(args.xla_cache)
        return args.handler(args)
    except (OSError, ValueError, TypeError, ImportError) as error:
        print(f"tfmodels {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
