"""End to end: train a small translator on CLDR names, evaluate, export, serve.

The corpus is the English -> German / French / Spanish names of territories,
languages, scripts, months and weekdays from the CLDR data that Babel ships
(`examples/cldr_corpus.py`); ~10% of the territory / language / script keys are
held out. The script

1. trains a SentencePiece BPE tokenizer on the training text and writes it in the
   layout of the Hugging Face checkpoints (M2M100: `sentencepiece.bpe.model` +
   fairseq-style `vocab.json`, language tokens `__en__`, `__de__`, ...; mT5:
   `spiece.model`),
2. builds a small M2M100-architecture model (or mT5 with `--family mt5`),
3. scores held-out chrF before training, trains with `model.fit` (Keras progress
   bars), scores held-out chrF during and after training, and plots the loss (PNG),
4. writes the checkpoint (`save_pretrained` + tokenizer files),
5. exports it as a SavedModel with `tfmodels export` and queries the SavedModel.

Run (a few minutes on two CPU cores):

    pip install babel matplotlib        # example-only extras
    PYTHONPATH=. python examples/finetune_translation.py --output runs/cldr-m2m100
    PYTHONPATH=. python examples/finetune_translation.py --family mt5 --output runs/cldr-mt5

`--bundle` also copies the M2M100 result to `tfmodels/assets/default-translator/`,
the model `tfmodels demo` and `tfmodels translate` use.
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cldr_corpus  # noqa: E402  (the sibling module in examples/)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE_DIR = os.path.join(REPO_ROOT, "tfmodels", "assets", "default-translator")
LANGUAGE_NAMES = {"de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
                  "nl": "Dutch", "pt": "Portuguese"}
MAX_LENGTH = 32  # tokens; the longest CLDR names are ~20 pieces


# ------------------------------------------------------------------------------ tokenizer

def mt5_prefix(tgt_lang):
    """mT5 has no language tokens: the target language goes in a short task prefix."""
    return f"to {tgt_lang}: "


def train_tokenizer(family, train_pairs, directory, vocab_size, mt5_model_type="unigram"):
    """Trains a SentencePiece model on the training text and writes tokenizer files.

    M2M100: BPE with fairseq's special ids (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3) and a
    `vocab.json` that lists the specials, then the pieces by training-corpus frequency
    (as fairseq's dictionary does), then pieces that never occur. The language tokens
    are not in it: `M2M100Tokenizer` puts `__xx__` right after `vocab.json`.
    mT5: a unigram `spiece.model` (or `mt5_model_type="bpe"`; `T5Tokenizer` reads either)
    with T5's ids (`<pad>`=0, `</s>`=1, `<unk>`=2) and no sentinel tokens (`extra_ids=0`:
    this model never sees span corruption).
    """
    import io

    import sentencepiece as spm

    os.makedirs(directory, exist_ok=True)
    lines = sorted({p["source"] for p in train_pairs} | {p["target"] for p in train_pairs})
    if family == "mt5":
        lines += sorted({mt5_prefix(p["tgt_lang"]).strip() for p in train_pairs})
    common = dict(
        sentence_iterator=iter(lines), num_threads=1, input_sentence_size=0,
        shuffle_input_sentence=False, character_coverage=1.0,
        normalization_rule_name="nmt_nfkc", hard_vocab_limit=False, minloglevel=2,
        vocab_size=vocab_size,
    )
    proto = io.BytesIO()
    if family == "mt5":
        spm.SentencePieceTrainer.train(model_writer=proto, model_type=mt5_model_type,
                                       pad_id=0, eos_id=1, unk_id=2, bos_id=-1, **common)
        with open(os.path.join(directory, "spiece.model"), "wb") as handle:
            handle.write(proto.getvalue())
        _write_json(os.path.join(directory, "tokenizer_config.json"), {
            "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
            "pad_token": "<pad>", "extra_ids": 0, "additional_special_tokens": [],
            "model_max_length": MAX_LENGTH,
        })
        from tfmodels.tokenizers import T5Tokenizer

        return T5Tokenizer.from_pretrained(directory)

    spm.SentencePieceTrainer.train(model_writer=proto, model_type="bpe",
                                   bos_id=0, pad_id=1, eos_id=2, unk_id=3, **common)
    with open(os.path.join(directory, "sentencepiece.bpe.model"), "wb") as handle:
        handle.write(proto.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    counts = collections.Counter()
    for line in lines:
        counts.update(processor.encode(line, out_type=str))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        vocab.setdefault(piece, len(vocab))
    for index in range(processor.get_piece_size()):
        if not (processor.is_control(index) or processor.is_unknown(index)):
            vocab.setdefault(processor.id_to_piece(index), len(vocab))
    _write_json(os.path.join(directory, "vocab.json"), vocab)
    from tfmodels.tokenizers.m2m100_language_codes import M2M100_LANGUAGE_CODES

    _write_json(os.path.join(directory, "special_tokens_map.json"), {
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>",
        # As in facebook/m2m100_418M: listing the language tokens as special tokens makes
        # `detokenize(..., skip_special_tokens=True)` drop the forced `__de__` token.
        "additional_special_tokens": [f"__{code}__" for code in M2M100_LANGUAGE_CODES["m2m100"]],
    })
    _write_json(os.path.join(directory, "tokenizer_config.json"), {
        "tokenizer_class": "M2M100Tokenizer", "src_lang": "en", "tgt_lang": None,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "language_codes": "m2m100", "num_madeup_words": 8,
        "model_max_length": MAX_LENGTH,
    })
    from tfmodels.tokenizers import M2M100Tokenizer

    return M2M100Tokenizer.from_pretrained(directory)


def tokenizer_class_for(family):
    """The tokenizer class a family's checkpoints use."""
    from tfmodels.tokenizers import M2M100Tokenizer, T5Tokenizer

    return T5Tokenizer if family == "mt5" else M2M100Tokenizer


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


# ---------------------------------------------------------------------------------- model

def build_model(family, tokenizer, args):
    """A small model of the chosen architecture, randomly initialised."""
    import keras

    if family == "mt5":
        from tfmodels import MT5Config, MT5ForConditionalGeneration

        config = MT5Config(
            vocab_size=int(tokenizer.vocab_size), d_model=args.d_model,
            d_kv=args.d_model // args.heads, d_ff=args.ffn_dim, num_layers=args.layers,
            num_decoder_layers=args.layers, num_heads=args.heads, dropout_rate=args.dropout,
            feed_forward_proj="gated-gelu", tie_word_embeddings=args.tie_embeddings,
        )
        model = MT5ForConditionalGeneration(config)
        if args.tie_embeddings:
            return model  # the tied head scales its input by d_model^-0.5
        # The reference initialises an untied LM head with std 1.0 (right for loading
        # checkpoints, not for training from scratch): initial logits have std ~sqrt(d_model)
        # and the first epoch's loss is ~19. Fan-in scaling (std d_model^-0.5, as T5X's
        # untied head) starts at a normal loss and learns much faster.
        kernel = model.lm_head.kernel
        kernel.assign(keras.random.normal(kernel.shape, stddev=args.d_model ** -0.5,
                                          seed=args.seed, dtype=kernel.dtype))
        return model

    from tfmodels import M2M100Config, M2M100ForConditionalGeneration

    # Embedding rows: vocab.json, then one per language code, then the "madeup words".
    vocab_size = tokenizer.vocab_size + len(tokenizer.lang_codes) + tokenizer.num_madeup_words
    config = M2M100Config(
        vocab_size=int(vocab_size), d_model=args.d_model, max_position_embeddings=MAX_LENGTH * 2,
        encoder_layers=args.layers, decoder_layers=args.layers,
        encoder_attention_heads=args.heads, decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn_dim, decoder_ffn_dim=args.ffn_dim,
        dropout=args.dropout, attention_dropout=0.0, activation_dropout=0.0,
        # Layer drop makes a 3-layer model noticeably worse; keep every layer.
        encoder_layerdrop=0.0, decoder_layerdrop=0.0,
    )
    return M2M100ForConditionalGeneration(config)


def as_model_examples(family, pairs):
    """Pair dicts -> the dict columns `seq2seq_dataset` understands for this family."""
    columns = {"source": [p["source"] for p in pairs], "target": [p["target"] for p in pairs]}
    if family == "mt5":
        columns["prefix"] = [mt5_prefix(p["tgt_lang"]) for p in pairs]
    else:
        columns["src_lang"] = [p["src_lang"] for p in pairs]
        columns["tgt_lang"] = [p["tgt_lang"] for p in pairs]
    return columns


# ----------------------------------------------------------------------------- evaluation

def make_evaluator(family, model, tokenizer, pairs, num_beams=1):
    """A `GenerationEvalCallback` over `pairs` (chrF only), attached to `model`."""
    from tfmodels.training import GenerationEvalCallback, seq2seq_eval_dataset

    dataset = seq2seq_eval_dataset(as_model_examples(family, pairs), tokenizer,
                                   batch_size=128, max_source_length=MAX_LENGTH)
    callback = GenerationEvalCallback(
        dataset, tokenizer, max_new_tokens=MAX_LENGTH, metrics=("chrf",), backend="builtin",
        # Explicit, so a checkpoint's generation_config (beam 4) does not change the score.
        generate_kwargs={"num_beams": num_beams},
    )
    callback.set_model(model)
    return callback


def evaluate(callback, label):
    """Held-out chrF and exact-match rate with the callback's current model; prints them
    and returns `(chrf, exact_percent)`."""
    started = time.perf_counter()
    chrf = callback.generate_and_score()["chrf"]
    exact = exact_match_percent(callback.last_hypotheses, callback.last_references)
    print(f"[eval] {label}: held-out chrF {chrf:.1f}, exact {exact:.1f}% "
          f"({len(callback.last_hypotheses)} examples, {time.perf_counter() - started:.1f}s)")
    return chrf, exact


def exact_match_percent(hypotheses, references):
    """Share of outputs that equal the reference name exactly (after stripping spaces)."""
    same = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references))
    return 100.0 * same / max(len(references), 1)


def evaluate_checkpoint(family, model, tokenizer, held_out):
    """`--evaluate-only`: held-out chrF and exact match, greedy and beam 4, and the copy
    baseline; prints them and returns 0."""
    print(f"[eval] baseline 'copy the English source': held-out chrF "
          f"{copy_baseline_chrf(held_out):.1f}, exact {copy_baseline_exact(held_out):.1f}%")
    for num_beams in (1, 4):
        evaluate(make_evaluator(family, model, tokenizer, held_out, num_beams=num_beams),
                 "greedy" if num_beams == 1 else f"beam {num_beams}")
    return 0


def copy_baseline_chrf(pairs):
    """chrF of copying the source unchanged: how far cognates alone get."""
    from tfmodels.training import corpus_chrf

    return corpus_chrf([p["source"] for p in pairs], [p["target"] for p in pairs],
                       backend="builtin")


def copy_baseline_exact(pairs):
    """Exact-match rate of copying the source unchanged (names spelled as in English)."""
    return exact_match_percent([p["source"] for p in pairs], [p["target"] for p in pairs])


def plot_history(history, path):
    """Training loss per epoch (and held-out chrF where measured) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, loss_axis = plt.subplots(figsize=(7, 4))
    epochs = range(1, len(history["loss"]) + 1)
    loss_axis.plot(epochs, history["loss"], color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss (label-smoothed cross-entropy)", color="tab:blue")
    chrf_points = [(e, v) for e, v in history.get("chrf_at", [])]
    if chrf_points:
        chrf_axis = loss_axis.twinx()
        chrf_axis.plot(*zip(*chrf_points), "o-", color="tab:orange", label="held-out chrF")
        chrf_axis.set_ylabel("held-out chrF", color="tab:orange")
        chrf_axis.set_ylim(0, 100)
    loss_axis.set_title("CLDR names, English -> " + ", ".join(history["targets"]))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --------------------------------------------------------------------------------- export

_EXPORT_FALLBACK = (
    "import argparse, sys\n"
    "from savedmodel.cli import add_export_arguments, run_export\n"
    "parser = argparse.ArgumentParser(prog='tfmodels export')\n"
    "add_export_arguments(parser)\n"
    "sys.exit(run_export(parser.parse_args()))\n"
)


def export_and_query(checkpoint, export_dir, family, queries):
    """Runs `tfmodels export`, loads the SavedModel and translates `queries` with it.

    Returns the SavedModel's outputs, or None when export is not available here.
    """
    options = [checkpoint, export_dir, "--num-beams", "1", "--max-new-tokens", str(MAX_LENGTH),
               "--version", "1", "--max-source-length", str(MAX_LENGTH), "--no-warmup"]
    command = [sys.executable, "-m", "tfmodels", "export", *options]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    probe = subprocess.run([sys.executable, "-m", "tfmodels", "export", "--help"], env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        # `tfmodels export` is not wired into the CLI yet: call the exporter's own
        # command-line entry points (savedmodel/cli.py) directly.
        command = [sys.executable, "-c", _EXPORT_FALLBACK, *options]
    print("[export] tfmodels export " + " ".join(options))
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"[export] not available / failed (exit {result.returncode}):\n"
              + (result.stderr or result.stdout).strip()[-1500:])
        return None
    print(result.stdout.strip()[-1500:])

    import tensorflow as tf

    loaded = tf.saved_model.load(os.path.join(export_dir, "1"))
    signature = loaded.signatures["serving_default"]
    print(f"[export] serving_default inputs: "
          f"{sorted(signature.structured_input_signature[1])}")
    spec = signature.structured_input_signature[1]
    inputs = {}
    for name in spec:
        if name in ("src_lang", "tgt_lang"):
            inputs[name] = tf.constant([q[name] for q in queries])
        elif family == "mt5":
            inputs[name] = tf.constant([mt5_prefix(q["tgt_lang"]) + q["source"] for q in queries])
        else:
            inputs[name] = tf.constant([q["source"] for q in queries])
    outputs = signature(**inputs)
    texts = next((v for k, v in outputs.items() if v.dtype == tf.string), None)
    for query, text in zip(queries, texts.numpy() if texts is not None else []):
        print(f"[savedmodel] {query['source']} -> [{query['tgt_lang']}] "
              f"{text.decode('utf-8')}   (ref: {query['target']})")
    return outputs


# ----------------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("m2m100", "mt5"), default="m2m100")
    parser.add_argument("--output", default="runs/cldr-translator",
                        help="run folder: checkpoint/, loss.png, metrics.json, export/")
    parser.add_argument("--targets", default=",".join(cldr_corpus.DEFAULT_TARGETS),
                        help="comma-separated target languages (CLDR locales = M2M100 codes)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=10, help="epochs between chrF evals")
    parser.add_argument("--vocab-size", type=int, default=1500)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--ffn-dim", type=int, default=384)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subword-dropout", type=float, default=0.0,
                        help="subword regularisation while training (BPE-dropout probability "
                             "for M2M100, unigram sampling alpha for mT5); 0 = off")
    parser.add_argument("--tie-embeddings", action="store_true",
                        help="mT5: tie the LM head to the embeddings (T5 v1.0 style; easier "
                             "to copy source pieces, as M2M100's tied head)")
    parser.add_argument("--init-checkpoint", default=None,
                        help="continue from this run's checkpoint/ (its tokenizer and weights) "
                             "instead of a new tokenizer and a random model")
    parser.add_argument("--reverse", action="store_true",
                        help="also train target -> English on the training keys")
    parser.add_argument("--identity", action="store_true",
                        help="also train English -> English copies of the training names")
    parser.add_argument("--mt5-tokenizer", choices=("unigram", "bpe"), default="unigram",
                        help="SentencePiece model type of the mT5 variant's spiece.model")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="score --init-checkpoint on the held-out pairs (greedy and beam 4, "
                             "chrF and exact match) and stop")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel step")
    parser.add_argument("--bundle", action="store_true",
                        help="copy the result to tfmodels/assets/default-translator (M2M100)")
    args = parser.parse_args(argv)
    # Checked here: they would otherwise fail after the tokenizer training, deep in a step.
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    from tfmodels.tokenizers.m2m100_language_codes import M2M100_LANGUAGE_CODES

    targets = [code.strip() for code in args.targets.split(",") if code.strip()]
    for code in targets:
        if args.family == "m2m100" and code not in M2M100_LANGUAGE_CODES["m2m100"]:
            parser.error(f"--targets: {code!r} is not an M2M100 language code")
    for code in targets:
        if not cldr_corpus.has_locale(code):
            parser.error(f"--targets: CLDR (Babel) has no locale {code!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.evaluate_only and not args.init_checkpoint:
        raise SystemExit("--evaluate-only needs --init-checkpoint DIR (the checkpoint to score)")
    import keras

    from tfmodels.training import seq2seq_dataset

    keras.utils.set_random_seed(args.seed)
    targets = tuple(code.strip() for code in args.targets.split(",") if code.strip())
    family = args.family
    checkpoint = os.path.join(args.output, "checkpoint")
    if not args.evaluate_only:
        os.makedirs(args.output, exist_ok=True)

    train_pairs, held_out = cldr_corpus.split(cldr_corpus.load_pairs(targets))
    print(f"[data] CLDR (Babel) English -> {', '.join(targets)}: {len(train_pairs)} training "
          f"pairs, {len(held_out)} held-out pairs ({len(held_out) // len(targets)} keys)")
    forward_pairs = train_pairs
    train_pairs = cldr_corpus.augment(train_pairs, reverse=args.reverse, identity=args.identity)
    if len(train_pairs) > len(forward_pairs):
        print(f"[data] with {'reverse ' if args.reverse else ''}"
              f"{'identity ' if args.identity else ''}pairs: {len(train_pairs)} training pairs")

    if args.init_checkpoint:
        # Continue from an earlier run: its tokenizer files and weights.
        from tfmodels.auto import load_seq2seq_lm

        if args.evaluate_only:
            checkpoint = args.init_checkpoint
        else:
            shutil.copytree(args.init_checkpoint, checkpoint, dirs_exist_ok=True)
        tokenizer = tokenizer_class_for(family).from_pretrained(checkpoint)
        model = load_seq2seq_lm(args.init_checkpoint)
        print(f"[init] {'scoring' if args.evaluate_only else 'continuing from'} "
              f"{args.init_checkpoint}")
    else:
        tokenizer = train_tokenizer(family, train_pairs, checkpoint, args.vocab_size,
                                    mt5_model_type=args.mt5_tokenizer)
        print(f"[tokenizer] SentencePiece {'BPE' if family == 'm2m100' else args.mt5_tokenizer}, "
              f"{tokenizer.vocab_size} entries, written to {checkpoint}")
        model = build_model(family, tokenizer, args)
    if args.evaluate_only:
        return evaluate_checkpoint(family, model, tokenizer, held_out)
    params = sum(int(v.shape.num_elements()) for v in model.weights)
    print(f"[model] {type(model).__name__}: {params:,} parameters "
          f"({params * 4 / 1e6:.1f} MB float32)")

    evaluator = make_evaluator(family, model, tokenizer, held_out)
    metrics = {"family": family, "targets": list(targets), "parameters": params,
               "train_pairs": len(train_pairs), "held_out_pairs": len(held_out),
               "copy_source_baseline_chrf": copy_baseline_chrf(held_out),
               "copy_source_baseline_exact": copy_baseline_exact(held_out)}
    print(f"[eval] baseline 'copy the English source': held-out chrF "
          f"{metrics['copy_source_baseline_chrf']:.1f}, exact "
          f"{metrics['copy_source_baseline_exact']:.1f}%")
    metrics["chrf_before"], _ = evaluate(
        evaluator, "before training" + ("" if args.init_checkpoint else " (random init)"))

    training_tokenizer = tokenizer
    if args.subword_dropout > 0:
        # A fresh segmentation of every name in every epoch: the model sees each word in
        # many pieces, which teaches it to spell (and copy) names it has never seen.
        training_tokenizer = tokenizer_class_for(family).from_pretrained(
            checkpoint, nbest_size=-1, alpha=args.subword_dropout)
    train = seq2seq_dataset(
        as_model_examples(family, train_pairs), training_tokenizer, batch_size=args.batch_size,
        max_source_length=MAX_LENGTH, max_target_length=MAX_LENGTH,
        shuffle_buffer=len(train_pairs), seed=args.seed,
    )
    steps_per_epoch = sum(1 for _ in train)
    total_steps = steps_per_epoch * args.epochs
    # Linear warm-up, then cosine decay to 5% of the peak: a from-scratch model needs a
    # high learning rate early and a small one at the end to settle on exact spellings.
    warmup = min(max(total_steps // 20, 50), total_steps // 2)
    learning_rate = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup, 1), warmup_target=args.learning_rate,
        warmup_steps=warmup, alpha=0.05,
    )
    model.compile(optimizer="adamw", learning_rate=learning_rate, label_smoothing=0.1,
                  global_clipnorm=1.0)

    history = {"loss": [], "chrf_at": [], "targets": list(targets)}

    class PeriodicChrF(keras.callbacks.Callback):
        """Held-out chrF every `eval_every` epochs (for the plot and the log)."""

        def on_epoch_end(self, epoch, logs=None):
            history["loss"].append(float(logs["loss"]))
            if (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
                chrf, _ = evaluate(evaluator, f"epoch {epoch + 1}")
                history["chrf_at"].append((epoch + 1, chrf))

    print(f"[train] {args.epochs} epochs x {steps_per_epoch} steps, batch {args.batch_size}, "
          f"AdamW peak lr {args.learning_rate}")
    started = time.perf_counter()
    # Progress bars on a terminal, one line per epoch in a log file.
    model.fit(train, epochs=args.epochs, callbacks=[PeriodicChrF()],
              verbose=1 if sys.stdout.isatty() else 2)
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    metrics["final_loss"] = history["loss"][-1]
    metrics["chrf_after"], metrics["exact_after"] = evaluate(
        evaluator, "after training (greedy)")
    history["chrf_at"].append((args.epochs, metrics["chrf_after"]))
    metrics["chrf_after_beam4"], metrics["exact_after_beam4"] = evaluate(
        make_evaluator(family, model, tokenizer, held_out, num_beams=4),
        "after training (beam 4)")
    samples = [
        {"source": p["source"], "tgt_lang": p["tgt_lang"], "reference": p["target"],
         "output": h}
        for p, h in zip(held_out, evaluator.last_hypotheses)
    ]
    metrics["held_out_samples"] = samples[:: max(len(samples) // 24, 1)]
    for sample in metrics["held_out_samples"]:
        print(f"  {sample['source']} -> [{sample['tgt_lang']}] {sample['output']}   "
              f"(ref: {sample['reference']})")

    plot_path = os.path.join(args.output, "loss.png")
    try:
        plot_history(history, plot_path)
        print(f"[plot] {plot_path}")
    except ImportError:
        print("[plot] matplotlib not installed; skipped (pip install matplotlib)")

    # generation_config.json: beam 4 (it scores higher than greedy on held-out names) and a
    # bounded length; `tfmodels demo` / `translate` use it unless told otherwise.
    model.generation_config.max_length = MAX_LENGTH + 2
    model.generation_config.num_beams = 4
    # Shards under 5 MB each, so the bundled copy stays within the repository's file limit.
    model.save_pretrained(checkpoint, max_shard_size="4MB")
    write_demo_examples(family, checkpoint, forward_pairs, held_out)
    metrics["checkpoint_bytes"] = sum(
        os.path.getsize(os.path.join(checkpoint, name)) for name in os.listdir(checkpoint))
    print(f"[save] {checkpoint} ({metrics['checkpoint_bytes'] / 1e6:.2f} MB)")

    if not args.no_export:
        queries = held_out[:: max(len(held_out) // 6, 1)][:6]
        outputs = export_and_query(checkpoint, os.path.join(args.output, "export"), family,
                                   queries)
        metrics["exported"] = outputs is not None

    with open(os.path.join(args.output, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, ensure_ascii=False)
    print(f"[done] held-out chrF {metrics['chrf_before']:.1f} -> {metrics['chrf_after']:.1f} "
          f"(beam 4: {metrics['chrf_after_beam4']:.1f}); training {metrics['train_seconds']}s")

    if args.bundle:
        if family != "m2m100":
            print("[bundle] only the M2M100 model is bundled; skipped")
        else:
            shutil.rmtree(BUNDLE_DIR, ignore_errors=True)
            shutil.copytree(checkpoint, BUNDLE_DIR)
            print(f"[bundle] copied to {BUNDLE_DIR}")
    return 0


# Training items `tfmodels demo` shows: everyday names ("Switzerland", "Monday", ...).
DEMO_TRAINING_KEYS = (("territories", "CH"), ("days", "0"), ("languages", "gsw"),
                      ("months", "1"), ("territories", "DE"))


def write_demo_examples(family, directory, train_pairs, held_out, held_out_per_language=4):
    """`demo_examples.json`: a few held-out and training pairs per target language with
    their CLDR references, so `tfmodels demo` can show them without Babel."""
    chosen = []
    for tgt in sorted({p["tgt_lang"] for p in train_pairs}):
        candidates = [p for p in held_out if p["tgt_lang"] == tgt
                      and p["category"] in ("territories", "languages")]
        step = max(len(candidates) // held_out_per_language, 1)
        picked = [("held-out", p) for p in candidates[::step][:held_out_per_language]]
        by_key = {(p["category"], p["key"]): p for p in train_pairs if p["tgt_lang"] == tgt}
        picked += [("training", by_key[k]) for k in DEMO_TRAINING_KEYS if k in by_key]
        for split_name, pair in picked:
            chosen.append({"split": split_name, "source": pair["source"],
                           "src_lang": pair["src_lang"], "tgt_lang": tgt,
                           "reference": pair["target"], "category": pair["category"]})
    prefix = mt5_prefix("{tgt}") if family == "mt5" else None
    _write_json(os.path.join(directory, "demo_examples.json"),
                {"family": family, "corpus": "CLDR names via Babel", "mt5_prefix": prefix,
                 "examples": chosen})


if __name__ == "__main__":
    sys.exit(main())
