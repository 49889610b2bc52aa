"""`generate`: input checks, shape buckets and a cache of compiled search functions.

A call pads its batch and source length up to a bucket (1, 2, 3, 4, 6, 8, 12, 16, 24, ...:
powers of two and their midpoints, so padding wastes at most a third), and the KV cache
to a bucket of `max_length - 1` (the token buffer is one longer: its last token is never
fed back). Each `(bucket, static options)` pair is compiled once, from traces kept in a
per-model cache, so a long-running process compiles a bounded number of programs
whatever lengths it sees. Run-time options (lengths, penalties, temperature, seed,
forced BOS ids) are tensors and never recompile.

Nothing is evicted: TensorFlow keeps every XLA program it compiled until the process ends
(it has no way to drop one), so a search dropped and traced again would only compile and
hold its program a second time. For the same reason clearing the cache, a new model, and
`quantize_weights` / `enable_head_screening` (which clear it) add programs rather than
replace them. A warning names the count when a model's cache grows past
`COMPILED_SEARCHES_WARNING` (static options such as `num_beams`, `top_k`,
`no_repeat_ngram_size`, `suppress_tokens` or EOS ids each add plans).

A search's first source bucket (for one batch bucket, KV-cache bucket and static options)
is traced with its static shapes. A second source bucket gets a trace that leaves the
source length open, and that one trace then serves every further source bucket: XLA
compiles it once per bucket it meets, and tracing, the largest part of a first call after
XLA's own work, is skipped. On 2 threads (32 new tokens), a third source bucket's first
call took 5.0-5.1 instead of 5.4-6.1 s for m2m100_418M at batch 1, 9.7-9.8 instead of
9.9-10.2 s at 8 x 4 beams, and 3.1-3.3 instead of 3.4-3.9 s for mt5-small at batch 1
(`bench/results/compile_first_call_2026-12-07_session30_intel.txt`). The first bucket
keeps its static trace: an open source length adds shape arithmetic (mt5-small: 1,552
instead of 1,273 graph ops), which made the first call of an open trace 0.2-0.3 s longer
for mt5-small at batch 1; the second bucket pays that. Later calls take as long either way.
"""

import dataclasses
import functools
import threading
import warnings
import weakref

import numpy as np
import tensorflow as tf

from tfmodels.generation.graph import INPUT_DTYPES, input_signature, run_search
from tfmodels.generation.options import (
    NOT_GIVEN,
    make_plan,
    resolve_generation_config,
    resolve_lengths,
    runtime_values,
    special_tokens,
)
from tfmodels.models.outputs import ModelOutput

# Compiled searches per model past which `generate` warns (and again at each doubling).
COMPILED_SEARCHES_WARNING = 64
MIN_SOURCE_BUCKET = 8
MIN_BUFFER_BUCKET = 8

_function_caches = weakref.WeakKeyDictionary()  # model -> {key: tf.function}
_cache_lock = threading.Lock()
_trace_count = [0]


class GenerateOutput(ModelOutput):
    """`sequences` `[batch * num_return_sequences, length]` int32 and, for beam search,
    `sequences_scores` (length-penalised log-probabilities) — as the reference returns
    with `return_dict_in_generate=True`."""


def bucket_size(n, minimum=1):
    """Smallest bucket >= max(n, minimum); buckets are 2**k and 3 * 2**(k-1).

    >>> [bucket_size(n) for n in (1, 3, 5, 7, 9, 13, 17, 25, 33)]
    [1, 3, 6, 8, 12, 16, 24, 32, 48]
    """
    n = max(int(n), int(minimum), 1)
    power = 1
    while power < n:
        if power >= 2 and power + power // 2 >= n:
            return power + power // 2
        power *= 2
    return power


def trace_count():
    """How many search graphs have been traced in this process (for tests and logging)."""
    return _trace_count[0]


def compiled_functions(model):
    """The model's cache of compiled searches: a dict keyed by `(SearchPlan, jit_compile)`,
    in the order they were made (nothing is evicted; see the module docstring)."""
    with _cache_lock:
        return _function_caches.setdefault(model, {})


def clear_compiled_functions(model=None):
    with _cache_lock:
        if model is None:
            _function_caches.clear()
        else:
            _function_caches.pop(model, None)


def _compiled_search(model, plan, jit_compile):
    """The cached search function for `plan` (static shapes) and `jit_compile`: the one
    traced for this source bucket, else the one with the source length open, else a new
    one, which leaves the source length open when another source bucket of the same
    search was traced before (see the module docstring)."""
    cache = compiled_functions(model)
    open_plan = dataclasses.replace(plan, source_length=None)
    jit_compile = bool(jit_compile)
    with _cache_lock:
        for key in ((plan, jit_compile), (open_plan, jit_compile)):
            function = cache.get(key)
            if function is not None:
                return function
        if any(jit == jit_compile and dataclasses.replace(traced, source_length=None) == open_plan
               for traced, jit in cache):
            plan = open_plan
    key = (plan, jit_compile)
    # A weak reference: the compiled function must not keep the model alive. A partial
    # rather than a closure: TensorFlow counts traces per code object to warn about
    # "frequent retracing", and every closure here would share one, so a process meeting
    # its fifth bucket would be told its tf.function retraces too often.
    search_fn = functools.partial(_traced_search, weakref.ref(model), plan)
    function = tf.function(
        search_fn,
        input_signature=[input_signature(plan)],
        jit_compile=jit_compile,
        reduce_retracing=False,
        autograph=False,
    )
    with _cache_lock:
        cache[key] = function
        count = len(cache)
    if count >= COMPILED_SEARCHES_WARNING and count & (count - 1) == 0:  # 64, 128, ...
        warnings.warn(
            f"{type(model).__name__} now has {count} compiled searches (one per batch, "
            "source and length bucket and set of static options such as num_beams, top_k, "
            "no_repeat_ngram_size, suppress_tokens, eos_token_id); each keeps its XLA "
            "program in memory until the process ends. Vary fewer static options per "
            "model.", stacklevel=3)
    return function


def _traced_search(model_ref, plan, inputs):
    _trace_count[0] += 1
    return run_search(model_ref(), plan, inputs)


# ----------------------------------------------------------------------------- input checks
def _as_int_matrix(name, value):
    if tf.is_tensor(value) and not hasattr(value, "numpy"):
        raise TypeError(
            f"generate() runs eagerly and got a symbolic {name}; inside a tf.function use "
            "tfmodels.generation.generate_graph"
        )
    array = value.numpy() if tf.is_tensor(value) else np.asarray(value)
    if array.dtype == object or array.dtype.kind not in ("iub" if name.endswith("mask") else "iu"):
        from tfmodels.models.seq2seq import integer_input_description  # circular at import time

        raise TypeError(f"{name} must hold {integer_input_description(name)}, "
                        f"got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must have rank 2 [batch, length], got shape {list(array.shape)}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {list(array.shape)})")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no tokens (shape {list(array.shape)})")
    return array.astype(np.int64)


def _check_token_range(name, array, vocab_size):
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        bad = array[(array < 0) | (array >= vocab_size)][0]
        raise ValueError(f"{name} holds token id {bad}, outside the vocabulary [0, {vocab_size})")


def _forced_bos_ids(value, batch, vocab_size):
    """None, an int, or `[batch]` ints -> None or a `[batch]` int32 array."""
    if value is None:
        return None
    if tf.is_tensor(value):
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "iu":
        raise TypeError(f"forced_bos_token_id must be an int or [batch] ints, got {value!r}")
    if array.ndim == 0:
        array = np.full([batch], int(array))
    if array.shape != (batch,):
        raise ValueError(
            f"forced_bos_token_id must be a scalar or have shape [batch]=[{batch}], "
            f"got shape {list(array.shape)}"
        )
    _check_token_range("forced_bos_token_id", array, vocab_size)
    return array.astype(np.int32)


def _allowed_token_ids(value, vocab_size, special_ids, forced_bos):
    """None, or the sorted unique allowed ids (with the special and forced ones added)."""
    if value is None:
        return None
    if tf.is_tensor(value):
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "iu" or array.ndim != 1 or not array.size:
        raise ValueError(f"output_token_ids must be a non-empty 1-D list of token ids, got {value!r}")
    _check_token_range("output_token_ids", array, vocab_size)
    extra = list(special_ids) + ([] if forced_bos is None else forced_bos.tolist())
    return np.unique(np.concatenate([array.astype(np.int64), np.asarray(extra, np.int64)]))


def _default_seed():
    # Follows tf.random.set_seed, so seeded programs sample reproducibly without `seed=`.
    return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32).numpy()


def _seed_array(seed):
    if seed is None:
        return _default_seed()
    if tf.is_tensor(seed):
        seed = seed.numpy()
    array = np.asarray(seed)
    if array.dtype.kind not in "iu" or array.ndim > 1 or (array.ndim == 1 and array.shape[0] != 2):
        raise ValueError(f"seed must be an int or a pair of ints, got {seed!r}")
    if array.ndim == 0:
        value = int(array)
        array = np.array([value & 0x7FFFFFFF, (value >> 31) & 0x7FFFFFFF])
    return array.astype(np.int64).astype(np.int32)


# --------------------------------------------------------------------------------- generate
def generate(
    model,
    input_ids=None,
    attention_mask=None,
    generation_config=None,
    *,
    decoder_input_ids=None,
    seed=None,
    jit_compile=True,
    output_token_ids=None,
    **options,
):
    """Generates token ids with an encoder-decoder model, as the reference's `generate`.

    Args:
        model: a `Seq2SeqModelBase` with an LM head (mT5, M2M100).
        input_ids: `[batch, length]` ints, right-padded.
        attention_mask: `[batch, length]` 0/1; defaults to `input_ids != pad_token_id`
            when the input holds pad tokens (and pad is not EOS), else all ones.
        generation_config: a `GenerationConfig`; defaults to `model.generation_config`.
            A config passed here is used as it is: only its unset special tokens come
            from the model. (transformers 4.57 also replaces the fields a passed config
            leaves at their global defaults, e.g. `num_beams=1`, with the checkpoint's;
            pass `model.generation_config.copy()` with your changes for that.)
        decoder_input_ids: optional `[batch, prompt_length]` decoder prompt; the decoder
            start token is prepended unless every row already starts with it.
        seed: int or `[2]` ints for sampling (default: drawn from TF's global seed); an
            int `n` below 2**31 is the pair `[n, 0]`.
        jit_compile: True (default) compiles the search with XLA; False runs the same
            graph without it (what TF Serving runs); both give the same ids.
        output_token_ids: opt-in output-vocabulary restriction (a tfmodels extension):
            only these ids (plus EOS, pad and forced BOS ids) can be generated, and the
            LM head is computed for them alone — much faster when the set is a small part
            of the vocabulary (e.g. one target language). Greedy decoding gives the ids
            the reference gives with every other token suppressed; log-probabilities
            (beam scores, sampling) are normalised over the allowed set.
        **options: any `GenerationConfig` field (`max_new_tokens`, `num_beams`,
            `do_sample`, `forced_bos_token_id` (int or `[batch]`; None turns the
            checkpoint's off), `forced_eos_token_id`, `suppress_tokens`, ...).

    Returns:
        `[batch * num_return_sequences, length]` int32 sequences (decoder start token
        first, pad after EOS), or a `GenerateOutput` with `sequences` and
        `sequences_scores` when `return_dict_in_generate=True`.

    Example:
    >>> from tfmodels import MT5Config, MT5ForConditionalGeneration
    >>> model = MT5ForConditionalGeneration(MT5Config(
    ...     vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    >>> out = model.generate([[5, 6, 7, 1]], max_new_tokens=4, num_beams=2)
    >>> out.shape[0], int(out[0, 0])
    (1, 0)
    """
    if not getattr(model, "has_lm_head", False) or getattr(model, "decoder", None) is None:
        raise TypeError(f"{type(model).__name__} has no LM head: generate() needs a "
                        "...ForConditionalGeneration model")
    if input_ids is None:
        raise ValueError("generate() needs input_ids (the encoder input)")
    max_length_was_passed = options.get("max_length") is not None
    # An explicit `forced_bos_token_id=None` turns the checkpoint's forcing off, as in the
    # reference; left out, the checkpoint's (or `generation_config`'s) applies.
    forced_bos_option = options.pop("forced_bos_token_id", NOT_GIVEN)
    config = resolve_generation_config(model, generation_config, options)
    if forced_bos_option is NOT_GIVEN:
        forced_bos_option = config.forced_bos_token_id
    vocab_size = int(model.config.vocab_size)
    start, pad, eos_ids = special_tokens(model, config)

    ids = _as_int_matrix("input_ids", input_ids)
    batch, source_length = ids.shape
    _check_token_range("input_ids", ids, vocab_size)
    if attention_mask is None:
        if pad in ids and pad not in eos_ids:
            mask = (ids != pad).astype(np.int64)
        else:
            mask = np.ones_like(ids)
    else:
        mask = _as_int_matrix("attention_mask", attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask shape {list(mask.shape)} does not match input_ids shape "
                f"{list(ids.shape)}"
            )
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1")
    empty_rows = np.flatnonzero(mask.sum(axis=1) == 0)
    if empty_rows.size:
        raise ValueError(f"input rows {empty_rows.tolist()} have no attended tokens (all-zero mask)")

    if decoder_input_ids is None:
        prompt = np.full([batch, 1], start, np.int64)
    else:
        prompt = _as_int_matrix("decoder_input_ids", decoder_input_ids)
        if prompt.shape[0] != batch:
            raise ValueError(
                f"decoder_input_ids has batch {prompt.shape[0]}, input_ids has {batch}"
            )
        _check_token_range("decoder_input_ids", prompt, vocab_size)
        if (prompt[:, 0] != start).all():
            prompt = np.concatenate([np.full([batch, 1], start, np.int64), prompt], axis=1)
    forced_bos = _forced_bos_ids(forced_bos_option, batch, vocab_size)

    allowed_ids = _allowed_token_ids(output_token_ids, vocab_size, [pad, *eos_ids], forced_bos)
    lengths = resolve_lengths(model, config, prompt.shape[1], max_length_was_passed)
    batch_bucket = bucket_size(batch)
    source_bucket = bucket_size(source_length, MIN_SOURCE_BUCKET)
    # The last token of the buffer is never fed back, so the KV cache (one slot shorter
    # than the buffer) is what gets the bucket: max_length 33 caches 32 slots, not 48.
    buffer_bucket = bucket_size(lengths.max_length - 1, MIN_BUFFER_BUCKET) + 1
    plan = make_plan(
        model, config, lengths, batch_size=batch_bucket, source_length=source_bucket,
        buffer_length=buffer_bucket,
        output_vocabulary_size=None if allowed_ids is None else bucket_size(allowed_ids.size, 64),
    )

    # Pad the batch with copies of row 0 (inactive) and the source with masked pad tokens.
    def pad_batch(array):
        if batch_bucket == batch:
            return array
        filler = np.repeat(array[:1], batch_bucket - batch, axis=0)
        return np.concatenate([array, filler], axis=0)

    def pad_source(array, value):
        return np.pad(array, [(0, 0), (0, source_bucket - source_length)], constant_values=value)

    inputs = {
        "input_ids": pad_batch(pad_source(ids, pad)),
        "attention_mask": pad_batch(pad_source(mask, 0)),
        "is_active": np.arange(batch_bucket) < batch,
        "decoder_prompt": pad_batch(prompt),
        "forced_bos_token_id": pad_batch(
            forced_bos if forced_bos is not None else np.full([batch], -1, np.int32)
        ),
        "seed": _seed_array(seed) if config.do_sample else np.zeros([2], np.int32),
    }
    inputs.update(runtime_values(config, lengths, buffer_bucket))
    if allowed_ids is not None:  # pad to the bucket by repeating an allowed id
        filler = np.full([plan.output_vocabulary_size - allowed_ids.size], allowed_ids[0])
        inputs["output_token_ids"] = np.concatenate([allowed_ids, filler]).astype(np.int32)
    dtypes = dict(INPUT_DTYPES, output_token_ids=tf.int32)
    tensors = {name: tf.constant(value, dtype=dtypes[name]) for name, value in inputs.items()}
    outputs = _compiled_search(model, plan, jit_compile)(tensors)

    # Back to numpy: drop batch padding and, for beam search, the beams not returned.
    per_input = plan.expansion
    returned = config.num_return_sequences
    arrays = {}
    for name, value in outputs.items():
        value = value.numpy()
        value = value.reshape((batch_bucket, per_input) + value.shape[1:])[:batch, :returned]
        arrays[name] = value.reshape((batch * returned,) + value.shape[2:])
    longest = int(arrays["lengths"].max())
    sequences = tf.constant(arrays["sequences"][:, :longest], tf.int32)
    if not config.return_dict_in_generate:
        return sequences
    scores = None
    if plan.num_beams > 1:
        scores = tf.constant(arrays["sequences_scores"], tf.float32)
    return GenerateOutput(sequences=sequences, sequences_scores=scores)
