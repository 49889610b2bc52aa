"""Generation settings with the reference's names, defaults and `generation_config.json` format."""

import copy
import dataclasses
import json
import math
import os
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from converters.json_files import read_json_object

GENERATION_CONFIG_NAME = "generation_config.json"

# Options of the reference that this package does not implement, with the value that means
# "off". A checkpoint or a caller that sets one of them to anything else gets an error
# instead of silently different output.
UNSUPPORTED_OPTIONS = {
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "penalty_alpha": None,
    "typical_p": 1.0,
    "min_p": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "force_words_ids": None,
    "constraints": None,
    "sequence_bias": None,
    "begin_suppress_tokens": None,
    "exponential_decay_length_penalty": None,
    "guidance_scale": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "stop_strings": None,
    "max_time": None,
    "output_attentions": False,
    "output_hidden_states": False,
    "output_logits": None,
    # Per-step scores (`scores`, `beam_indices`) are not returned; `sequences_scores` is.
    "output_scores": False,
    "token_healing": False,
    "dola_layers": None,
    "watermarking_config": None,
    "prompt_lookup_num_tokens": None,
}

# Keys that only describe a file (or steer the reference's caching) and never change ids.
_METADATA_KEYS = {
    "transformers_version",
    "_from_model_config",
    "_commit_hash",
    "cache_implementation",
    "cache_config",
    "return_legacy_cache",
    "compile_config",
    "disable_compile",
    "low_memory",
    "prefill_chunk_size",
    "num_assistant_tokens",
    "num_assistant_tokens_schedule",
    "assistant_confidence_threshold",
    "assistant_early_exit",
    "assistant_lookbehind",
    "target_lookbehind",
    "max_matching_ngram_size",
    "is_assistant",
}


@dataclasses.dataclass
class GenerationConfig:
    """How `generate` decodes: lengths, search, sampling, penalties and special tokens.

    Field names and defaults are the reference's (`transformers.GenerationConfig`), so a
    `generation_config.json` written by either library reads the same here. Keys this
    package does not use are kept in `extra` and written back unchanged.

    Example:
    >>> config = GenerationConfig(num_beams=4, max_new_tokens=32)
    >>> config.update(length_penalty=0.6, early_stopping=True)
    {}
    >>> config.num_beams, config.length_penalty, config.top_k
    (4, 0.6, 50)
    """

    # Length.
    max_length: int = 20
    max_new_tokens: Optional[int] = None
    min_length: int = 0
    min_new_tokens: Optional[int] = None
    # Search.
    num_beams: int = 1
    early_stopping: Union[bool, str] = False
    length_penalty: float = 1.0
    num_return_sequences: int = 1
    # Sampling.
    do_sample: bool = False
    temperature: float = 1.0
    top_k: Optional[int] = 50
    top_p: Optional[float] = 1.0
    # Logit processing.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    forced_bos_token_id: Any = None
    forced_eos_token_id: Optional[int] = None
    suppress_tokens: Optional[Sequence[int]] = None
    # Output.
    return_dict_in_generate: bool = False
    use_cache: bool = True
    # Special tokens.
    pad_token_id: Optional[int] = None
    bos_token_id: Optional[int] = None
    eos_token_id: Union[int, Sequence[int], None] = None
    decoder_start_token_id: Optional[int] = None
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def field_names(cls):
        return [field.name for field in dataclasses.fields(cls) if field.name != "extra"]

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a `generation_config.json`-style dict."""
        values = dict(values)
        known = {name: values.pop(name) for name in cls.field_names() if name in values}
        values.pop("extra", None)
        config = cls(**known, extra=values)
        config.validate()
        return config

    @classmethod
    def from_model_config(cls, model_config):
        """The defaults a model without `generation_config.json` generates with.

        As in the reference, every generation option the model's `config.json` carries
        (special tokens, and legacy keys such as M2M100's `max_length`, `num_beams` or
        `early_stopping`) overrides the global default; `None` values never do.
        """
        values = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
        names = set(cls.field_names()) | set(UNSUPPORTED_OPTIONS)
        picked = {key: value for key, value in values.items() if key in names and value is not None}
        config = cls.from_dict(picked)
        config.extra["_from_model_config"] = True
        return config

    @classmethod
    def from_pretrained(cls, directory, config_file_name=GENERATION_CONFIG_NAME):
        """Reads `directory/generation_config.json`.

        Example (the bundled translator's, written by transformers):
        >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
        >>> config = GenerationConfig.from_pretrained(BUNDLED_TRANSLATOR_DIR)
        >>> config.num_beams, config.max_length, config.decoder_start_token_id
        (4, 34, 2)
        """
        path = os.path.join(directory, config_file_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No {config_file_name} in {directory!r}")
        return cls.from_dict(read_json_object(path))

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self):
        values = dict(self.extra)
        values.update({name: getattr(self, name) for name in self.field_names()})
        return dict(sorted(values.items()))

    def to_diff_dict(self):
        """Only the values that differ from the global defaults (what the reference saves)."""
        defaults = GenerationConfig()
        values = dict(self.extra)
        for name in self.field_names():
            if getattr(self, name) != getattr(defaults, name):
                values[name] = getattr(self, name)
        return dict(sorted(values.items()))

    def save_pretrained(self, directory, config_file_name=GENERATION_CONFIG_NAME):
        os.makedirs(directory, exist_ok=True)
        values = self.to_diff_dict()
        values.pop("_from_model_config", None)
        if self.extra.get("_from_model_config"):
            values["_from_model_config"] = True
        with open(os.path.join(directory, config_file_name), "w", encoding="utf-8") as handle:
            json.dump(_jsonable(values), handle, indent=2, sort_keys=True)
            handle.write("\n")

    def copy(self):
        return copy.deepcopy(self)

    # -- updates and checks ---------------------------------------------------------------
    def update(self, **kwargs):
        """Sets the known options among `kwargs`, validates, and returns the unknown ones."""
        unused = {}
        for key, value in kwargs.items():
            if key in self.field_names():
                setattr(self, key, value)
            elif key in UNSUPPORTED_OPTIONS or key in _METADATA_KEYS:
                self.extra[key] = value
            else:
                unused[key] = value
        self.validate()
        return unused

    def unsupported_options(self):
        """`{name: value}` of reference options set here that this package cannot honour."""
        found = {}
        for name, off_value in UNSUPPORTED_OPTIONS.items():
            value = self.extra.get(name, off_value)
            if value != off_value and not (off_value in (0, 0.0, 1, 1.0) and value is None):
                found[name] = value
        return found

    def validate(self):
        """Raises a ValueError naming the first option that is out of range by itself.

        Checks that need the inputs (lengths against the prompt, token ids against the
        vocabulary) happen in `generate`.
        """

        def positive_int(name, value, allow_none=False, minimum=1):
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(
                    f"`{name}` must be an integer >= {minimum}"
                    + (" or None" if allow_none else "")
                    + f", got {value!r}"
                )

        positive_int("max_length", self.max_length)
        positive_int("max_new_tokens", self.max_new_tokens, allow_none=True)
        positive_int("min_length", self.min_length, minimum=0)
        positive_int("min_new_tokens", self.min_new_tokens, allow_none=True, minimum=0)
        positive_int("num_beams", self.num_beams)
        positive_int("num_return_sequences", self.num_return_sequences)
        positive_int("no_repeat_ngram_size", self.no_repeat_ngram_size or 0, minimum=0)
        positive_int("top_k", self.top_k if self.top_k is not None else 0, minimum=0)
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(
                f"`early_stopping` must be True, False or 'never', got {self.early_stopping!r}"
            )
        for name in ("length_penalty", "temperature", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"`{name}` must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number, got {value!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(
                f"`repetition_penalty` must be a strictly positive number, got {self.repetition_penalty}"
            )
        if self.do_sample and not self.temperature > 0:
            raise ValueError(
                f"`temperature` must be > 0 when sampling, got {self.temperature} "
                "(for greedy decoding set do_sample=False)"
            )
        if self.top_p is not None and (
                isinstance(self.top_p, (bool, str, bytes)) or not 0.0 <= float(self.top_p) <= 1.0):
            raise ValueError(f"`top_p` must be in [0, 1], got {self.top_p}")
        if self.num_return_sequences > 1:
            if self.num_beams == 1 and not self.do_sample:
                raise ValueError(
                    "Greedy decoding returns one sequence per input: num_return_sequences="
                    f"{self.num_return_sequences} needs num_beams >= {self.num_return_sequences} "
                    "or do_sample=True"
                )
            if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
                raise ValueError(
                    f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                    f"({self.num_beams})"
                )
        if not self.use_cache:
            raise ValueError("use_cache=False is not supported: generation always uses the KV cache")
        for name in ("pad_token_id", "bos_token_id", "decoder_start_token_id",
                     "forced_eos_token_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, np.integer))):
                raise ValueError(f"`{name}` must be an integer token id or None, got {value!r}")
        if self.eos_token_id is not None:
            eos = self.eos_token_id if isinstance(self.eos_token_id, (list, tuple)) else [
                self.eos_token_id
            ]
            if not eos or any(isinstance(t, bool) or not isinstance(t, (int, np.integer))
                              for t in eos):
                raise ValueError(
                    f"`eos_token_id` must be a token id or a list of them, got {self.eos_token_id!r}"
                )

        if self.suppress_tokens is not None and (
            isinstance(self.suppress_tokens, (str, bytes))
            or not hasattr(self.suppress_tokens, "__iter__")
            or any(isinstance(t, bool) or not isinstance(t, (int, np.integer))
                   for t in self.suppress_tokens)
        ):
            raise ValueError(
                f"`suppress_tokens` must be a list of token ids, got {self.suppress_tokens!r}"
            )

    @property
    def eos_token_ids(self):
        """The EOS ids as a tuple (empty when generation only stops at the length limit)."""
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, (list, tuple)):
            return tuple(int(token) for token in self.eos_token_id)
        return (int(self.eos_token_id),)


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
