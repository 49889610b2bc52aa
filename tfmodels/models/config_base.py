"""Config-driven models: a dataclass config that reads and writes Hugging Face `config.json`."""

import dataclasses
import json
import os
from typing import Any, ClassVar, Dict

from converters.json_files import read_json_object

CONFIG_NAME = "config.json"


class ConfigError(ValueError):
    """A config value is missing, has the wrong type or is out of range."""


def check_checkpoint_directory(directory):
    """Raises FileNotFoundError unless `directory` is a folder, saying what it is instead."""
    if os.path.isdir(directory):
        return
    if os.path.exists(directory):
        raise FileNotFoundError(
            f"{directory!r} is a file; give the checkpoint directory that holds it "
            f"({os.path.dirname(os.path.abspath(directory))!r}?)"
        )
    raise FileNotFoundError(f"Checkpoint directory {directory!r} does not exist")


@dataclasses.dataclass
class PretrainedConfig:
    """Base for model configs. Subclasses declare the reference's fields as dataclass fields.

    Keys of a `config.json` that the model does not use (architectures, versions, task
    parameters) are kept in `extra` and written back unchanged, so a checkpoint returns
    to the ecosystem with the metadata it came with.
    """

    model_type: ClassVar[str] = ""
    # The reference's alias keys -> the fields they stand for (its `attribute_map`).
    attribute_map: ClassVar[Dict[str, str]] = {}
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.validate()

    # -- validation helpers ---------------------------------------------------------------
    def validate(self):
        """Raises ConfigError naming the first invalid field. Subclasses extend it."""

    def _require_positive_int(self, *names):
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"{type(self).__name__}.{name} must be a positive integer, got {value!r}"
                )

    def _require_probability(self, *names):
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(
                    f"{type(self).__name__}.{name} must be a number in [0, 1), got {value!r}"
                )

    def _require_token_id(self, *names, optional=False):
        for name in names:
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value < self.vocab_size
            ):
                raise ConfigError(
                    f"{type(self).__name__}.{name} must be a token id in "
                    f"[0, vocab_size={self.vocab_size}), got {value!r}"
                )

    # -- dict / json ----------------------------------------------------------------------
    @classmethod
    def field_names(cls):
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a `config.json`-style dict, keeping unknown keys in `extra`."""
        values = dict(values)
        model_type = values.get("model_type")
        if model_type and cls.model_type and model_type not in cls.accepted_model_types():
            raise ConfigError(
                f"config.json has model_type={model_type!r}, but {cls.__name__} expects "
                f"one of {sorted(cls.accepted_model_types())}"
            )
        for alias, name in cls.attribute_map.items():
            # The reference reads these alias keys as the fields they stand for.
            if alias in values:
                value = values.pop(alias)
                if name in values and values[name] != value:
                    raise ConfigError(
                        f"config.json sets {name}={values[name]!r} and its alias "
                        f"{alias}={value!r}; keep one"
                    )
                values[name] = value
        known = {name: values.pop(name) for name in cls.field_names() if name in values}
        values.pop("extra", None)
        return cls(**known, extra=values)

    @classmethod
    def accepted_model_types(cls):
        return {cls.model_type}

    def to_dict(self):
        values = dict(self.extra)
        values.update({name: getattr(self, name) for name in self.field_names()})
        # A type the class accepts besides its own (mT5's "t5") stays what it was.
        values.setdefault("model_type", self.model_type)
        return dict(sorted(values.items()))

    @classmethod
    def from_json_file(cls, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No config file at {path}")
        return cls.from_dict(read_json_object(path, ConfigError))

    @classmethod
    def from_pretrained(cls, directory):
        """Reads `directory/config.json`."""
        check_checkpoint_directory(directory)
        return cls.from_json_file(os.path.join(directory, CONFIG_NAME))

    def save_pretrained(self, directory, weights_dtype=None, architecture=None):
        """Writes `directory/config.json`; `weights_dtype` (e.g. `"float32"`) is written
        as `dtype`, replacing the one (or the older `torch_dtype`) read with the config,
        and `architecture` (the saving model's class name) as `architectures`."""
        values = self.to_dict()
        if architecture is not None:
            values["architectures"] = [architecture]
        if weights_dtype is not None:
            values.pop("torch_dtype", None)
            values["dtype"] = weights_dtype
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CONFIG_NAME), "w", encoding="utf-8") as handle:
            json.dump(values, handle, indent=2, sort_keys=True)
            handle.write("\n")
