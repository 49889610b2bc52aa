"""`tf.data` pipelines from raw (source, target) strings to model inputs, in the graph.

`seq2seq_dataset` tokenizes with the in-graph tokenizers (`T5Tokenizer`,
`M2M100Tokenizer`), groups examples of similar length into batches
(`bucket_by_sequence_length`) so little compute goes to padding, and pads labels with
-100 so the loss ignores them. Everything runs as TensorFlow ops inside the input
pipeline: no Python per example, and it distributes like any other `tf.data` pipeline.

Example (mT5, a task prefix, batches of at most ~256 tokens):
>>> import tensorflow as tf
>>> from tfmodels.tokenizers import T5Tokenizer
>>> tokenizer = T5Tokenizer.from_pretrained("tests/data/mt5_tokenizer")
>>> pairs = tf.data.Dataset.from_tensor_slices(
...     (["Hello world", "Good morning to you all"], ["Hallo Welt", "Guten Morgen"]))
>>> dataset = seq2seq_dataset(pairs, tokenizer, task_prefix="translate English to German: ",
...                           max_tokens=256, max_source_length=32, max_target_length=32)
>>> batch = next(iter(dataset))
>>> sorted(batch), batch["input_ids"].dtype
(['attention_mask', 'input_ids', 'labels'], tf.int32)

M2M100 takes the language pair from the call (`src_lang="en", tgt_lang="de"`) or per
example from dict elements `{"source", "target", "src_lang", "tgt_lang"}`.
"""

import numbers
import warnings

import tensorflow as tf

from tfmodels.training.losses import IGNORE_INDEX

SOURCE_KEY, TARGET_KEY = "source", "target"
_OPTIONAL_TEXT_KEYS = ("src_lang", "tgt_lang", "prefix")


def default_bucket_boundaries(max_length, min_length=8):
    """Bucket upper bounds (exclusive): 8, 12, 16, 24, 32, 48, ... up to `max_length + 1`.

    Steps of 1.5x keep padding inside a bucket under a third of the batch while the
    number of distinct shapes (retraces under XLA) stays logarithmic.
    """
    boundaries, value = [], int(min_length)
    while value <= max_length:
        boundaries.append(value)
        value = value + value // 2 if (value & (value - 1)) == 0 else value * 4 // 3
    boundaries.append(int(max_length) + 1)
    return sorted(set(boundaries))


def _as_example_dataset(data):
    """Normalises the input to a dataset of `{"source", "target", ...}` string dicts."""
    if not isinstance(data, tf.data.Dataset):
        if isinstance(data, dict):
            data = tf.data.Dataset.from_tensor_slices(dict(data))
        else:
            pair = list(data)
            # A list of (source, target) tuples is the shape people mean by "pairs".
            pairs_list = isinstance(data, list) and all(isinstance(p, tuple) for p in pair)
            if len(pair) != 2 or pairs_list or any(
                    isinstance(texts, (str, bytes)) for texts in pair) or not all(
                    isinstance(text, (str, bytes)) for texts in pair for text in texts):
                raise ValueError(
                    "give (sources, targets): two sequences of strings (a list of "
                    "(source, target) pairs becomes that with tuple(zip(*pairs)))")
            sources, targets = (list(texts) for texts in pair)
            if not sources or len(sources) != len(targets):
                raise ValueError(f"(sources, targets) need the same, non-zero number of texts; "
                                 f"got {len(sources)} sources and {len(targets)} targets")
            data = tf.data.Dataset.from_tensor_slices((sources, targets))
    spec = data.element_spec
    if isinstance(spec, dict):
        missing = {SOURCE_KEY, TARGET_KEY} - set(spec)
        if missing:
            raise ValueError(f"dataset dicts need keys {sorted(missing)}; got {sorted(spec)}")
        ignored = sorted(key for key, value in spec.items()
                         if key not in (SOURCE_KEY, TARGET_KEY, *_OPTIONAL_TEXT_KEYS)
                         and value.dtype == tf.string)
        if ignored:  # e.g. a misspelt "source_lang": the call's languages would apply
            warnings.warn(f"text columns {ignored} are not read (the columns read are "
                          f"source, target, {', '.join(_OPTIONAL_TEXT_KEYS)})", stacklevel=3)
        return data
    if isinstance(spec, tuple) and len(spec) == 2:
        return data.map(lambda source, target: {SOURCE_KEY: source, TARGET_KEY: target})
    raise ValueError(
        "expected a dataset of (source, target) string pairs or of dicts with "
        f"'source' and 'target'; got element_spec {spec}"
    )


def tokenize_examples(tokenizer, examples, *, max_source_length=None, max_target_length=None,
                      task_prefix=None, src_lang=None, tgt_lang=None):
    """Tokenizes a batch of example dicts (rank-1 string tensors) into ragged ids.

    Returns `{"input_ids": ragged int32, "labels": ragged int32}` with special tokens
    (EOS, M2M100 language tokens) and truncation applied.
    """
    sources = examples[SOURCE_KEY]
    prefix = examples.get("prefix", task_prefix)
    if prefix is not None:
        sources = tf.strings.join([prefix, sources])
    language_args = {}
    for name, default in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        value = examples.get(name, default)
        if value is not None:
            language_args[name] = value
    # A None length truncates at the tokenizer's `model_max_length`, as the reference's.
    source_ids = tokenizer(
        sources, padding=False, truncation=True, max_length=max_source_length, **language_args,
    )["input_ids"]
    target_ids = tokenizer(
        text_target=examples[TARGET_KEY], padding=False, truncation=True,
        max_length=max_target_length, **language_args,
    )["input_ids"]
    return {"input_ids": tf.cast(source_ids, tf.int32), "labels": tf.cast(target_ids, tf.int32)}


def seq2seq_dataset(
    data,
    tokenizer,
    *,
    batch_size=None,
    max_tokens=None,
    max_source_length=128,
    max_target_length=128,
    task_prefix=None,
    src_lang=None,
    tgt_lang=None,
    bucket_boundaries=None,
    pad_to_bucket_boundary=False,
    batch_multiple=1,
    shuffle_buffer=None,
    seed=None,
    repeat=False,
    drop_remainder=False,
    tokenize_batch_size=256,
):
    """Raw (source, target) strings -> batches of `input_ids`, `attention_mask`, `labels`.

    Args:
        data: a `tf.data.Dataset` of `(source, target)` string pairs or of dicts with
            `source`, `target` and optionally per-example `src_lang`, `tgt_lang` (M2M100
            language codes) and `prefix` (mT5 task prefix); or a `(sources, targets)`
            pair of lists.
        tokenizer: an in-graph tokenizer (`T5Tokenizer`, `M2M100Tokenizer`).
        batch_size: sequences per batch (every bucket), or
        max_tokens: a token budget per batch: a bucket with bound `L` gets
            `max_tokens // L` sequences, rounded down to a multiple of `batch_multiple`
            but at least `batch_multiple` (a bucket too long for that exceeds the
            budget). Needs both maximum lengths (they bound the last bucket).
        max_source_length, max_target_length: truncation lengths (special tokens kept);
            None truncates at the tokenizer's `model_max_length`, as the reference.
        task_prefix: mT5 task prefix prepended to every source (unless an example has
            its own `prefix`).
        src_lang, tgt_lang: M2M100 language pair for every example (unless given per
            example).
        bucket_boundaries: exclusive upper bounds of the length buckets
            (default `default_bucket_boundaries(max(max_source_length, max_target_length))`).
            An example's length is the longer of its source and target.
        pad_to_bucket_boundary: pad to the bucket bound (fixed shapes: XLA compiles once
            per bucket) instead of the longest example in the batch. Needs both maximum
            lengths, below the last boundary.
        batch_multiple: round bucket batch sizes down to a multiple of this (e.g.
            replicas x gradient accumulation steps).
        shuffle_buffer, seed: shuffle raw examples before tokenizing. Give a seed when
            several processes must see one order (several workers, resume).
        repeat: an endless stream (`repeat` then `shuffle` without reshuffling), so the
            order is the same in every process: required for exact resume (train with
            `steps_per_epoch`; see `tfmodels.training.BackupAndRestore`). With
            `shuffle_buffer` it needs a `seed`.
        drop_remainder: drop each bucket's last partial batch (static batch size).
        tokenize_batch_size: strings tokenized per call (vectorised tokenization).

    Returns:
        A `tf.data.Dataset` of dicts of int32 `[batch, length]` tensors: `input_ids`
        (pad id after the end), `attention_mask` (1/0) and `labels` (-100 after the end).
    """
    if (batch_size is None) == (max_tokens is None):
        raise ValueError("give exactly one of batch_size or max_tokens")
    for name, value, allow_none in (
            ("batch_size", batch_size, True), ("max_tokens", max_tokens, True),
            ("max_source_length", max_source_length, True),
            ("max_target_length", max_target_length, True),
            ("batch_multiple", batch_multiple, False),
            ("tokenize_batch_size", tokenize_batch_size, False)):
        _check_positive_int(name, value, allow_none)
    if max_tokens is not None and not (max_source_length and max_target_length):
        raise ValueError("max_tokens needs max_source_length and max_target_length (they "
                         "bound the longest bucket's batches)")
    if repeat and shuffle_buffer and seed is None:
        raise ValueError("repeat=True with shuffle_buffer needs a seed: the stream must be "
                         "the same in every process (resume, several workers)")
    pad_id = int(tokenizer.pad_token_id)
    longest = int(max(max_source_length or 0, max_target_length or 0))
    if bucket_boundaries is None:
        if not longest:
            raise ValueError("bucket_boundaries are needed without maximum lengths")
        bucket_boundaries = default_bucket_boundaries(longest)
    bucket_boundaries = [int(b) for b in bucket_boundaries]
    if not bucket_boundaries or bucket_boundaries[0] < 1 or any(
            a >= b for a, b in zip(bucket_boundaries, bucket_boundaries[1:])):
        raise ValueError(f"bucket_boundaries must be increasing positive lengths, got "
                         f"{bucket_boundaries}")
    if pad_to_bucket_boundary and not (
            max_source_length and max_target_length and longest < bucket_boundaries[-1]):
        # tf.data would fail on the first longer example, mid-epoch, with its own message.
        raise ValueError(
            "pad_to_bucket_boundary=True needs every example shorter than the largest bucket "
            f"boundary ({bucket_boundaries[-1]}): set max_source_length and max_target_length "
            f"below it (got {max_source_length} and {max_target_length})")
    # bucket_by_sequence_length wants len(boundaries) + 1 batch sizes (last: overflow,
    # whose examples are as long as the longest maximum length).
    bounds = bucket_boundaries + [max(longest, bucket_boundaries[-1])]
    if max_tokens is not None:
        sizes = [max(int(max_tokens) // bound, 1) for bound in bounds]
    else:
        sizes = [int(batch_size)] * len(bounds)
    multiple = max(int(batch_multiple), 1)
    sizes = [max(size // multiple, 1) * multiple for size in sizes]

    examples = _as_example_dataset(data)
    if repeat:
        examples = examples.repeat()
        if shuffle_buffer:
            # One shuffle over the endless stream: identical in every process.
            examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    elif shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def tokenize(batch):
        return tokenize_examples(
            tokenizer, batch, max_source_length=max_source_length,
            max_target_length=max_target_length, task_prefix=task_prefix,
            src_lang=src_lang, tgt_lang=tgt_lang,
        )

    tokenized = (
        examples.batch(tokenize_batch_size)
        .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
        .map(lambda example: {
            "input_ids": example["input_ids"],
            "attention_mask": tf.ones_like(example["input_ids"]),
            "labels": example["labels"],
        })
    )

    def example_length(example):
        return tf.maximum(tf.shape(example["input_ids"])[0], tf.shape(example["labels"])[0])

    batched = tokenized.bucket_by_sequence_length(
        element_length_func=example_length,
        bucket_boundaries=bucket_boundaries,
        bucket_batch_sizes=sizes,
        padded_shapes={"input_ids": [None], "attention_mask": [None], "labels": [None]},
        padding_values={
            "input_ids": tf.constant(pad_id, tf.int32),
            "attention_mask": tf.constant(0, tf.int32),
            "labels": tf.constant(IGNORE_INDEX, tf.int32),
        },
        pad_to_bucket_boundary=pad_to_bucket_boundary,
        drop_remainder=drop_remainder,
    )
    return batched.prefetch(tf.data.AUTOTUNE)


def _check_positive_int(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def seq2seq_eval_dataset(data, tokenizer, *, batch_size=16, max_source_length=128,
                         task_prefix=None, src_lang=None, tgt_lang=None):
    """Batches for `GenerationEvalCallback`: `input_ids`, `attention_mask`, the raw target
    strings as `references` and, for M2M100, each example's target-language id as
    `forced_bos_token_id` (mixed target languages in one batch work). The target language
    is the example's `tgt_lang`, else `tgt_lang`, else the tokenizer's.

    Example (M2M100: the bundled translator's tokenizer):
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> from tfmodels.tokenizers import M2M100Tokenizer
    >>> tokenizer = M2M100Tokenizer.from_pretrained(BUNDLED_TRANSLATOR_DIR)
    >>> pairs = tf.data.Dataset.from_tensor_slices(
    ...     (["Switzerland", "January"], ["Schweiz", "Januar"]))
    >>> evaluation = seq2seq_eval_dataset(pairs, tokenizer, batch_size=32,
    ...                                   src_lang="en", tgt_lang="de")
    >>> batch = next(iter(evaluation))
    >>> sorted(batch)
    ['attention_mask', 'forced_bos_token_id', 'input_ids', 'references']
    >>> batch["references"].numpy().tolist()
    [b'Schweiz', b'Januar']
    >>> batch["forced_bos_token_id"].numpy().tolist() == [tokenizer.get_lang_id("de")] * 2
    True
    """
    _check_positive_int("batch_size", batch_size, allow_none=False)
    _check_positive_int("max_source_length", max_source_length)
    examples = _as_example_dataset(data)
    is_m2m100 = hasattr(tokenizer, "get_lang_id")

    def encode(batch):
        sources = batch[SOURCE_KEY]
        prefix = batch.get("prefix", task_prefix)
        if prefix is not None:
            sources = tf.strings.join([prefix, sources])
        source_args = {}
        if is_m2m100:
            source_args["src_lang"] = batch.get("src_lang", src_lang)
        encoded = tokenizer(sources, padding="longest", truncation=True,
                            max_length=max_source_length, **source_args)
        out = {"input_ids": tf.cast(encoded["input_ids"], tf.int32),
               "attention_mask": tf.cast(encoded["attention_mask"], tf.int32),
               "references": batch[TARGET_KEY]}
        # Per example, else the call's, else the tokenizer's own (what `seq2seq_dataset`
        # frames the training labels with).
        target_lang = batch.get("tgt_lang", tgt_lang)
        if target_lang is None and is_m2m100:
            target_lang = tokenizer.tgt_lang
        if is_m2m100 and target_lang is not None:
            # The target-language token is the first id of a tokenized (empty) target.
            empty = tf.fill(tf.shape(batch[TARGET_KEY]), "")
            out["forced_bos_token_id"] = tf.cast(
                tokenizer(text_target=empty, tgt_lang=target_lang)["input_ids"][:, 0], tf.int32
            )
        return out

    return examples.batch(batch_size).map(encode).prefetch(tf.data.AUTOTUNE)


def padding_fraction(dataset, num_batches=None):
    """Share of padded positions in `input_ids` + `labels` over a dataset (diagnostics).

    Example: compare `seq2seq_dataset(...)` with and without bucketing.
    """
    padded = total = 0
    for index, batch in enumerate(dataset):
        if num_batches is not None and index >= num_batches:
            break
        source_real = int(tf.reduce_sum(batch["attention_mask"]))
        target_real = int(tf.reduce_sum(tf.cast(batch["labels"] != IGNORE_INDEX, tf.int32)))
        size = int(tf.size(batch["input_ids"])) + int(tf.size(batch["labels"]))
        padded += size - source_real - target_real
        total += size
    return padded / max(total, 1)
