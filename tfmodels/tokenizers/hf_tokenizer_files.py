"""Reading and writing Hugging Face tokenizer files, and added-token bookkeeping.

Pure Python, used at load time only. It reproduces how transformers 4.57's
slow tokenizers turn `tokenizer_config.json`, `special_tokens_map.json` and
`added_tokens.json` into constructor arguments, and how
`PreTrainedTokenizer.__init__` assigns ids and strip flags to added/special
tokens, so that the in-graph tokenizers split text on exactly the same tokens.
"""

import dataclasses
import json
import os

from converters.json_files import read_json_object

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

# Order in which transformers registers special tokens (it matters for the ids
# given to special tokens that are not in the vocabulary yet).
SPECIAL_TOKEN_ATTRIBUTES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)

# transformers' "no limit" value for `model_max_length`.
VERY_LARGE_INTEGER = int(1e30)


@dataclasses.dataclass
class AddedTokenSpec:
    """A token matched in raw text before SentencePiece runs.

    Mirrors the fields of `tokenizers.AddedToken`: `lstrip`/`rstrip` make the
    token swallow the whitespace on its left/right; `special` marks it as a
    special token (dropped by `skip_special_tokens`).
    """

    content: str
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = None
    special: bool = False

    def __post_init__(self):
        if self.normalized is None:
            self.normalized = not self.special

    @classmethod
    def from_value(cls, value, special=False):
        """Builds a spec from a string, a dict (JSON form) or another spec."""
        if isinstance(value, AddedTokenSpec):
            return value
        if isinstance(value, dict):
            fields = {k: v for k, v in value.items() if k != "__type"}
            if special:
                fields["special"] = True
            return cls(**fields)
        if hasattr(value, "content"):  # a `tokenizers.AddedToken`
            return cls(
                content=value.content,
                single_word=value.single_word,
                lstrip=value.lstrip,
                rstrip=value.rstrip,
                normalized=value.normalized,
                special=value.special if not special else True,
            )
        raise TypeError(f"Cannot read an added token from {value!r}.")

    def to_json(self):
        return dataclasses.asdict(self)


def token_content(value):
    """The string of a special token given as str, dict or spec."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value["content"]
    return value.content


def token_to_json(value):
    """JSON form of a special token: a plain string when it has no flags."""
    if value is None or isinstance(value, str):
        return value
    spec = AddedTokenSpec.from_value(value)
    return spec.to_json()


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def load_init_kwargs(directory, overrides):
    """Merges a checkpoint's tokenizer JSON files the way transformers does.

    Returns the keyword arguments the reference slow tokenizer would be built
    with: `tokenizer_config.json`, overridden by `overrides`, then (only when
    the config has no `added_tokens_decoder`) `special_tokens_map.json` and
    `added_tokens.json`.
    """
    config_path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
    init_kwargs = read_json_object(config_path) if os.path.exists(config_path) else {}
    for key in ("tokenizer_class", "tokenizer_file", "init_inputs", "auto_map",
                "name_or_path", "special_tokens_map_file"):
        init_kwargs.pop(key, None)
    init_kwargs.update(overrides)

    added_tokens_decoder = {}
    if "added_tokens_decoder" in init_kwargs and init_kwargs["added_tokens_decoder"]:
        for index, value in init_kwargs["added_tokens_decoder"].items():
            added_tokens_decoder[int(index)] = AddedTokenSpec.from_value(value)
    else:
        map_path = os.path.join(directory, SPECIAL_TOKENS_MAP_FILE)
        if os.path.exists(map_path):
            for key, value in read_json_object(map_path).items():
                if key in overrides and overrides[key]:
                    continue
                if isinstance(value, dict):
                    value = AddedTokenSpec.from_value(value, special=True)
                elif key == "additional_special_tokens" and isinstance(value, list):
                    merged = list(init_kwargs.pop("additional_special_tokens", None) or [])
                    merged_contents = [token_content(t) for t in merged]
                    for token in value:
                        if isinstance(token, dict):
                            token = AddedTokenSpec.from_value(token, special=True)
                        if token_content(token) not in merged_contents:
                            merged.append(token)
                            merged_contents.append(token_content(token))
                    value = merged
                init_kwargs[key] = value
        added_path = os.path.join(directory, ADDED_TOKENS_FILE)
        if os.path.exists(added_path):
            specials = set()
            for key in SPECIAL_TOKEN_ATTRIBUTES:
                if init_kwargs.get(key) is not None:
                    specials.add(token_content(init_kwargs[key]))
            for token in init_kwargs.get("additional_special_tokens") or []:
                specials.add(token_content(token))
            for content, index in read_json_object(added_path).items():
                special = content in specials
                added_tokens_decoder[int(index)] = AddedTokenSpec(
                    content, normalized=not special, special=special
                )

    # Special tokens take the flags of the matching added token, if any.
    by_content = {spec.content: spec for spec in added_tokens_decoder.values()}
    for key in SPECIAL_TOKEN_ATTRIBUTES:
        value = init_kwargs.get(key)
        if isinstance(value, dict):
            value = AddedTokenSpec.from_value(value, special=True)
            init_kwargs[key] = value
        if by_content and value is not None:
            init_kwargs[key] = by_content.get(token_content(value), value)
    init_kwargs["added_tokens_decoder"] = added_tokens_decoder or None
    return init_kwargs


@dataclasses.dataclass
class ResolvedVocabulary:
    """Added tokens and special-token sets as the reference tokenizer has them."""

    added_tokens: dict  # id -> AddedTokenSpec
    all_special_tokens: list  # strings, reference order
    special_ids: set  # ids of `all_special_tokens`
    legacy_added_tokens: set  # tokens decoded as separate, space-joined chunks

    @property
    def added_token_ids(self):
        return {spec.content: index for index, spec in self.added_tokens.items()}


def resolve_added_tokens(
    base_tokens,
    convert_token_to_id,
    vocab_size,
    special_tokens,
    additional_special_tokens,
    preset_added_tokens=None,
    added_tokens_decoder=None,
):
    """Assigns ids to added and special tokens like `PreTrainedTokenizer`.

    Args:
        base_tokens: list of token strings for ids `0..len-1` of the model's
            own vocabulary (what `convert_ids_to_tokens` gives before added
            tokens are known).
        convert_token_to_id: the model's `_convert_token_to_id` (no added
            tokens).
        vocab_size: the reference's `vocab_size` property.
        special_tokens: dict attribute name -> str/spec/None.
        additional_special_tokens: list of str/spec.
        preset_added_tokens: dict id -> spec set by the model class before the
            base constructor runs (T5's sentinels).
        added_tokens_decoder: dict id -> spec from the checkpoint's config.
    """
    added = dict(preset_added_tokens or {})
    added.update(added_tokens_decoder or {})
    encoder = {spec.content: index for index, spec in added.items()}

    # `all_special_tokens_extended`: the named special tokens, then the
    # additional ones, without duplicates.
    extended = []
    seen = set()
    for key in SPECIAL_TOKEN_ATTRIBUTES:
        value = special_tokens.get(key)
        if value is not None and token_content(value) not in seen:
            extended.append(value)
            seen.add(token_content(value))
    for value in additional_special_tokens or []:
        if token_content(value) not in seen:
            extended.append(value)
            seen.add(token_content(value))
    all_special = [token_content(v) for v in extended]

    # `_add_tokens(special_tokens=True)` for those not registered yet.
    current_vocab = {}
    for index, token in enumerate(base_tokens):
        current_vocab[added[index].content if index in added else token] = index
    current_vocab.update(encoder)
    new_index = len(current_vocab)
    for value in extended:
        if isinstance(value, str):
            if value in encoder or value == "":
                continue
            spec = AddedTokenSpec(value, normalized=False, special=True)
        else:
            spec = dataclasses.replace(AddedTokenSpec.from_value(value), special=True)
            if spec.content == "":
                continue
        if spec.content in current_vocab:
            index = current_vocab[spec.content]
        else:
            index = new_index
            new_index += 1
            current_vocab[spec.content] = index
        added[index] = spec
        encoder[spec.content] = index

    def to_id(token):
        return encoder[token] if token in encoder else convert_token_to_id(token)

    special_ids = {to_id(token) for token in all_special}
    legacy = set(encoder) - set(all_special)
    for value in additional_special_tokens or []:
        if to_id(token_content(value)) >= vocab_size:
            legacy.add(token_content(value))
    for spec in added.values():
        if spec.single_word:
            raise NotImplementedError(
                f"Added token {spec.content!r} has single_word=True, which the "
                "in-graph tokenizer does not support."
            )
    return ResolvedVocabulary(added, all_special, special_ids, legacy)
