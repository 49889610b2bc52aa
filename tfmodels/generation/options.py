"""From a `GenerationConfig` plus call options to the static plan of one compiled search.

Everything that changes the traced graph (search kind, beams, which processors run,
buffer sizes, special tokens) goes into the hashable `SearchPlan`, the cache key of a
compiled function. Everything else (length limits, penalties, temperature, seed, forced
BOS ids) is fed at run time, so changing it never recompiles.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from tfmodels.generation.generation_config import GenerationConfig
from tfmodels.generation.logits_processors import ProcessorSpec

_REFERENCE_DEFAULT_MAX_LENGTH = GenerationConfig().max_length
NOT_GIVEN = object()  # an option left out, as opposed to passed as None
# What `generate` takes besides the GenerationConfig fields (named in errors).
GENERATE_ARGUMENTS = ("decoder_input_ids", "seed", "jit_compile", "output_token_ids")


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """The static shape of one generation graph (hashable: the compiled-function key).

    `batch_size` / `source_length` are the padded (bucketed) input shapes, or None for a
    dimension the graph leaves open (exporters leave both open; `generate` leaves the
    source length open from a search's second source bucket on, and XLA compiles per
    bucket). `buffer_length` is the static size of the token buffer and of the
    self-attention cache (>= `max_length`). `num_samples` is the number
    of independent rows per input when sampling without beams (`num_return_sequences`),
    else 1. Beam search returns all `num_beams` finished hypotheses per input, best
    first; callers keep the first `num_return_sequences`. `output_vocabulary_size` is the
    (bucketed) size of an opt-in output-vocabulary restriction, or None.
    """

    batch_size: Optional[int]
    source_length: Optional[int]
    buffer_length: int
    prompt_length: int
    num_beams: int
    num_samples: int
    do_sample: bool
    eos_token_ids: Tuple[int, ...]
    pad_token_id: int
    fill_token_id: int
    processors: ProcessorSpec
    output_vocabulary_size: Optional[int] = None

    @property
    def expansion(self):
        """Decoder rows per input row: beams, or independent samples."""
        return self.num_beams if self.num_beams > 1 else self.num_samples


def resolve_generation_config(model, generation_config=None, options=None, caller="generate",
                              caller_arguments=GENERATE_ARGUMENTS):
    """The effective config: `generation_config` (default `model.generation_config`) updated
    with `options`; unknown or unsupported options raise (naming `caller` and the
    `caller_arguments` it takes besides the config fields)."""
    base = generation_config if generation_config is not None else model_generation_config(model)
    if not isinstance(base, GenerationConfig):
        raise TypeError(
            f"generation_config must be a GenerationConfig, got {type(base).__name__}"
        )
    config = base.copy()
    if generation_config is not None:
        # A caller-made config may leave the special tokens unset: take the model's.
        defaults = model_generation_config(model)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            if getattr(config, name) is None:
                setattr(config, name, getattr(defaults, name))
    unused = config.update(**dict(options or {}))
    if unused:
        raise TypeError(
            f"{caller}() got unexpected options: {', '.join(sorted(unused))}. Valid options are "
            f"the GenerationConfig fields ({', '.join(GenerationConfig.field_names())}) and "
            f"{', '.join(caller_arguments)}"
        )
    unsupported = config.unsupported_options()
    if unsupported:
        raise ValueError(
            "These generation options are not supported by tfmodels (output would differ from "
            f"the reference): {unsupported}"
        )
    return config


def model_generation_config(model):
    config = getattr(model, "generation_config", None)
    if config is None:
        config = GenerationConfig.from_model_config(model.config)
    return config


@dataclasses.dataclass(frozen=True)
class Lengths:
    """Resolved length limits, all counting the decoder prompt (start token included)."""

    prompt_length: int
    max_length: int
    min_length: int


def resolve_lengths(model, config, prompt_length, max_length_was_passed):
    """The reference's length rules for encoder-decoder models.

    `max_new_tokens` wins over `max_length`; an unchanged global default `max_length` (20)
    means 20 new tokens (capped by `max_position_embeddings` where the model has one);
    `min_new_tokens` wins over `min_length`.
    """
    if config.max_new_tokens is not None:
        max_length = config.max_new_tokens + prompt_length
    else:
        max_length = config.max_length
        if not max_length_was_passed and max_length == _REFERENCE_DEFAULT_MAX_LENGTH:
            max_length = max_length + prompt_length
            limit = getattr(model.config, "max_position_embeddings", None)
            if limit is not None:
                max_length = min(max_length, limit)
    if prompt_length >= max_length:
        raise ValueError(
            f"The decoder prompt has {prompt_length} tokens but max_length is {max_length}: "
            "nothing would be generated. Increase max_length or set max_new_tokens."
        )
    if config.min_new_tokens is not None:
        min_length = config.min_new_tokens + prompt_length
    else:
        min_length = config.min_length or 0
    return Lengths(prompt_length=prompt_length, max_length=max_length, min_length=min_length)


def special_tokens(model, config):
    """`(decoder_start, pad, eos_ids)` with the reference's fallbacks; every special id
    (forced EOS too) must be in the vocabulary."""
    start = config.decoder_start_token_id
    if start is None:
        start = config.bos_token_id
    if start is None:
        start = getattr(model.config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError("decoder_start_token_id (or bos_token_id) must be set for generation")
    eos_ids = config.eos_token_ids
    pad = config.pad_token_id
    if pad is None:
        pad = eos_ids[0] if eos_ids else getattr(model.config, "pad_token_id", 0)
    vocab_size = model.config.vocab_size
    forced_eos = [] if config.forced_eos_token_id is None else [
        ("forced_eos_token_id", config.forced_eos_token_id)]
    for name, token in [("decoder_start_token_id", start), ("pad_token_id", pad)] + [
        ("eos_token_id", token) for token in eos_ids
    ] + forced_eos:
        if not 0 <= int(token) < vocab_size:
            raise ValueError(f"{name}={token} is outside the vocabulary [0, {vocab_size})")
    return int(start), int(pad), tuple(eos_ids)


def make_plan(model, config, lengths, batch_size, source_length, buffer_length,
              output_vocabulary_size=None):
    """Builds the static `SearchPlan` of one call."""
    _, pad, eos_ids = special_tokens(model, config)
    if config.num_beams > 1:
        # The reference pads finished beams with `pad_token_id or eos_token_id[0]` (a pad id
        # of 0 falls through to EOS), or -1 when there is no EOS.
        fill = (pad or eos_ids[0]) if eos_ids else -1
    else:
        fill = pad
    do_sample = bool(config.do_sample)
    min_tokens_to_keep = (len(eos_ids) + 1 if eos_ids else 2) if config.num_beams > 1 else 1
    vocab_size = int(model.config.vocab_size)
    suppress_tokens = () if config.suppress_tokens is None else config.suppress_tokens  # numpy too
    suppressed = tuple(sorted({int(token) for token in suppress_tokens}))
    if suppressed and not 0 <= suppressed[0] <= suppressed[-1] < vocab_size:
        bad = next(t for t in suppressed if not 0 <= t < vocab_size)
        raise ValueError(
            f"suppress_tokens holds token id {bad}, outside the vocabulary [0, {vocab_size})"
        )
    processors = ProcessorSpec(
        vocab_size=vocab_size,
        eos_token_ids=eos_ids,
        use_repetition_penalty=float(config.repetition_penalty) != 1.0,
        no_repeat_ngram_size=int(config.no_repeat_ngram_size or 0),
        allow_forced_bos=lengths.prompt_length == 1,
        do_sample=do_sample,
        use_temperature=do_sample and float(config.temperature) != 1.0,
        top_k=int(config.top_k or 0) if do_sample else 0,
        use_top_p=do_sample and config.top_p is not None and float(config.top_p) < 1.0,
        min_tokens_to_keep=min_tokens_to_keep,
        suppress_token_ids=suppressed,
    )
    return SearchPlan(
        batch_size=batch_size,
        source_length=source_length,
        buffer_length=int(buffer_length),
        prompt_length=int(lengths.prompt_length),
        num_beams=int(config.num_beams),
        num_samples=int(config.num_return_sequences) if config.num_beams == 1 else 1,
        do_sample=do_sample,
        eos_token_ids=eos_ids,
        pad_token_id=pad,
        fill_token_id=int(fill),
        processors=processors,
        output_vocabulary_size=output_vocabulary_size,
    )


def length_penalty_table(length_penalty, buffer_length):
    """`[buffer_length + 1]` float32 with `n ** length_penalty` computed in float64, as the
    reference does in Python, then rounded once (entry 0 is unused and set to 1)."""
    n = np.arange(buffer_length + 1, dtype=np.float64)
    n[0] = 1.0
    return (n ** float(length_penalty)).astype(np.float32)


def runtime_values(config, lengths, buffer_length):
    """The run-time scalars of a call, as numpy values keyed like the graph's inputs."""
    return {
        "max_length": np.int32(lengths.max_length),
        "min_length": np.int32(lengths.min_length),
        "repetition_penalty": np.float32(config.repetition_penalty),
        "temperature": np.float32(config.temperature),
        "top_p": np.float32(1.0 if config.top_p is None else config.top_p),
        "length_penalty_table": length_penalty_table(config.length_penalty, buffer_length),
        "early_stop_when_full": np.bool_(config.early_stopping is True),
        "heuristic_uses_max_length": np.bool_(
            config.early_stopping == "never" and float(config.length_penalty) > 0.0
        ),
        "forced_eos_token_id": np.int32(
            -1 if config.forced_eos_token_id is None else config.forced_eos_token_id
        ),
    }
