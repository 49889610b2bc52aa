"""What an export fixes at export time: generation options, length limits, XLA buckets.

Everything here becomes a constant of the exported graphs. The only generation options a
request can change are the cheap ones of the `generate_with_options` signature
(`max_new_tokens` up to `max_new_tokens_limit`, `min_new_tokens`, `length_penalty`):
they are run-time tensors of the same search graph and never change its shape.
"""

import dataclasses
from typing import Optional, Tuple, Union

# Weight dtypes an export can store (`from_pretrained(..., dtype=...)`); None = float32.
WEIGHT_DTYPES = ("float32", "bfloat16")

# Source / target lengths the XLA variants pad to start at this many tokens.
MIN_XLA_LENGTH_BUCKET = 16


def power_of_two_buckets(minimum, maximum):
    """`minimum, 2 * minimum, 4 * minimum, ...` capped by (and always ending at) `maximum`.

    >>> power_of_two_buckets(16, 100)
    (16, 32, 64, 100)
    >>> power_of_two_buckets(1, 8)
    (1, 2, 4, 8)
    """
    minimum, maximum = int(minimum), int(maximum)
    buckets = []
    size = max(1, minimum)
    while size < maximum:
        buckets.append(size)
        size *= 2
    buckets.append(maximum)
    return tuple(buckets)


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """Options of one SavedModel export.

    Generation options left as None take the checkpoint's `generation_config.json`
    (or the model config's defaults), exactly as `model.generate()` would.

    Args:
        num_beams: beam width (1 = greedy).
        max_new_tokens: new tokens `serving_default` generates at most.
        max_new_tokens_limit: the largest `max_new_tokens` a request may ask for in
            `generate_with_options` (default: `max_new_tokens`). It sets the static size
            of the token buffer and KV cache of that signature.
        min_new_tokens, length_penalty, early_stopping, no_repeat_ngram_size,
            repetition_penalty: as in `GenerationConfig`.
        max_source_length: source texts are truncated to this many tokens (special
            tokens included) in every signature.
        max_target_length: target texts of `score` are truncated to this many tokens.
        xla: also export `*_xla` twins of the model-running signatures, compiled with
            XLA for servers started with `--xla_cpu_compilation_enabled`.
        max_batch_size: the largest batch an `*_xla` signature accepts (its batch is
            padded to a power-of-two bucket up to this size).
        warmup: write `assets.extra/tf_serving_warmup_requests`.
        xla_warmup: which shape buckets the warm-up file compiles for each `*_xla`
            signature: `"smallest"` (batch 1 x the smallest length bucket), `"all"` (every
            batch x length bucket: everything compiled before serving, slow to load), or
            a list of typical request shapes `"BATCHxLENGTH,..."` (e.g. `"4x32,16x64"`;
            each is rounded up to its buckets).
        weight_quantization: `"int8"` exports weight-only int8 decoding
            (`model.quantize_weights`): the decoder's projections and the LM head are
            stored and read as int8, and their float copies are left out of the
            SavedModel; `"int8_dynamic"` also quantises those projections' inputs at run
            time, and converts the encoder's projections the same way. None (default)
            keeps the model's own weights.
        head_screening: the `*_xla` signatures' greedy search bounds the LM head's
            logits from an int8 copy of it and reads the float rows of the few tokens
            that can win (`model.enable_head_screening()`): the float model's tokens,
            faster (needs `xla`, float32, no `weight_quantization`; the int8 copy is
            stored beside the float head). Beam search and the default signatures read
            the float head as before.
        dtype: `"bfloat16"` loads and stores the weights (and runs the model) in
            bfloat16: half the bytes, and the default (non-XLA) signatures multiply
            bfloat16 natively on CPUs with AVX512-BF16. `"float32"` or None (default):
            float32, or, with a `model` passed in, that model's own dtype.
        model_name: name used in `models.config` and the README commands.
        version: numeric version folder; None = one above the highest existing one.

    Example (options left None come from the checkpoint, here the bundled translator's
    generation_config.json):
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR, M2M100ForConditionalGeneration
    >>> model = M2M100ForConditionalGeneration.from_pretrained(BUNDLED_TRANSLATOR_DIR)
    >>> settings = ExportSettings(max_new_tokens=64, max_source_length=256)
    >>> resolved = settings.with_checkpoint_defaults(model)
    >>> resolved.num_beams, resolved.max_new_tokens, resolved.length_penalty
    (4, 64, 1.0)
    """

    num_beams: Optional[int] = None
    max_new_tokens: Optional[int] = None
    max_new_tokens_limit: Optional[int] = None
    min_new_tokens: Optional[int] = None
    length_penalty: Optional[float] = None
    early_stopping: Optional[Union[bool, str]] = None
    no_repeat_ngram_size: Optional[int] = None
    repetition_penalty: Optional[float] = None
    max_source_length: int = 512
    max_target_length: int = 512
    xla: bool = False
    max_batch_size: int = 32
    warmup: bool = True
    xla_warmup: str = "smallest"
    weight_quantization: Optional[str] = None
    head_screening: bool = False
    dtype: Optional[str] = None
    model_name: Optional[str] = None
    version: Optional[int] = None

    def __post_init__(self):
        self.validate()

    def validate(self):
        def at_least(name, minimum, allow_none=True):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

        at_least("num_beams", 1)
        at_least("max_new_tokens", 1)
        at_least("max_new_tokens_limit", 1)
        at_least("min_new_tokens", 0)
        at_least("no_repeat_ngram_size", 0)
        at_least("max_source_length", 2, allow_none=False)
        at_least("max_target_length", 2, allow_none=False)
        at_least("max_batch_size", 1, allow_none=False)
        at_least("version", 1)
        if self.early_stopping not in (None, True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if self.repetition_penalty is not None and not float(self.repetition_penalty) > 0.0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        self.xla_warmup_buckets()  # raises on a malformed value
        if self.xla_warmup != "smallest" and not self.xla:
            raise ValueError(f"xla_warmup={self.xla_warmup!r} picks the buckets the *_xla "
                             "signatures compile; export with xla=True (--xla with --xla-warmup)")
        if self.weight_quantization is not None:
            from tfmodels.layers.dense import check_weight_quantization_mode

            check_weight_quantization_mode(self.weight_quantization)
        if self.head_screening:
            if not self.xla:
                raise ValueError("head_screening speeds up the *_xla signatures; export with xla=True "
                                 "(--xla with --screen-head)")
            if self.weight_quantization is not None:
                raise ValueError("head_screening screens a float LM head; it cannot be combined "
                                 f"with weight_quantization={self.weight_quantization!r}")
            if self.dtype not in (None, "float32"):
                raise ValueError(f"head_screening gives float32 tokens; dtype is {self.dtype!r}")
        if self.dtype is not None and self.dtype not in WEIGHT_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {self.dtype!r}")
        if (
            self.max_new_tokens is not None
            and self.max_new_tokens_limit is not None
            and self.max_new_tokens_limit < self.max_new_tokens
        ):
            raise ValueError(
                f"max_new_tokens_limit ({self.max_new_tokens_limit}) must be >= "
                f"max_new_tokens ({self.max_new_tokens})"
            )

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def with_checkpoint_defaults(self, model):
        """A copy with every generation option resolved against `model`'s defaults."""
        from tfmodels.generation.options import resolve_generation_config, resolve_lengths

        config = resolve_generation_config(model)
        if config.do_sample:
            raise ValueError(
                "The checkpoint's generation_config.json sets do_sample=True; sampling is not "
                "exported (serving answers must be reproducible). Export greedy or beam search."
            )
        default_new_tokens = resolve_lengths(model, config, 1, False).max_length - 1
        max_new_tokens = self.max_new_tokens or default_new_tokens
        resolved = self.replace(
            num_beams=self.num_beams or int(config.num_beams),
            max_new_tokens=max_new_tokens,
            max_new_tokens_limit=self.max_new_tokens_limit or max_new_tokens,
            min_new_tokens=(
                self.min_new_tokens if self.min_new_tokens is not None
                else int(config.min_new_tokens or max(0, (config.min_length or 0) - 1))
            ),
            length_penalty=float(
                self.length_penalty if self.length_penalty is not None else config.length_penalty
            ),
            early_stopping=(
                self.early_stopping if self.early_stopping is not None else config.early_stopping
            ),
            no_repeat_ngram_size=int(
                self.no_repeat_ngram_size if self.no_repeat_ngram_size is not None
                else (config.no_repeat_ngram_size or 0)
            ),
            repetition_penalty=float(
                self.repetition_penalty if self.repetition_penalty is not None
                else config.repetition_penalty
            ),
        )
        return resolved

    def generation_options(self, max_new_tokens=None):
        """Keyword options for `generate` / `resolve_generation_config` (resolved settings)."""
        return {
            "num_beams": self.num_beams,
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "length_penalty": self.length_penalty,
            "early_stopping": self.early_stopping,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "repetition_penalty": self.repetition_penalty,
            "num_return_sequences": 1,
            "do_sample": False,
        }

    # -- XLA shape buckets ----------------------------------------------------------------
    @property
    def batch_buckets(self) -> Tuple[int, ...]:
        return power_of_two_buckets(1, self.max_batch_size)

    @property
    def source_buckets(self) -> Tuple[int, ...]:
        return power_of_two_buckets(min(MIN_XLA_LENGTH_BUCKET, self.max_source_length), self.max_source_length)

    @property
    def target_buckets(self) -> Tuple[int, ...]:
        return power_of_two_buckets(min(MIN_XLA_LENGTH_BUCKET, self.max_target_length), self.max_target_length)

    def xla_warmup_buckets(self):
        """`[(batch bucket, length bucket)]` the warm-up file compiles per `*_xla` signature."""
        if self.xla_warmup == "smallest":
            return [(self.batch_buckets[0], self.source_buckets[0])]
        if self.xla_warmup == "all":
            return [(batch, length) for length in self.source_buckets for batch in self.batch_buckets]
        shapes = []
        for item in str(self.xla_warmup).split(","):
            parts = item.strip().lower().split("x")
            if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
                raise ValueError(
                    f"xla_warmup must be 'smallest', 'all' or shapes like '4x32,16x64'; got {self.xla_warmup!r}"
                )
            batch, length = (int(part) for part in parts)
            if not (1 <= batch <= self.max_batch_size and 1 <= length <= self.max_source_length):
                raise ValueError(
                    f"xla_warmup shape {item.strip()!r} is outside max_batch_size={self.max_batch_size} "
                    f"x max_source_length={self.max_source_length}"
                )
            bucket = (
                next(size for size in self.batch_buckets if size >= batch),
                next(size for size in self.source_buckets if size >= length),
            )
            if bucket not in shapes:
                shapes.append(bucket)
        return shapes

    def describe(self):
        """One line per setting, for logs and the export summary."""
        return "\n".join(
            f"  {field.name} = {getattr(self, field.name)!r}" for field in dataclasses.fields(self)
        )
