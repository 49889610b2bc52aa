"""Helpers shared by the model test files: tiny configs, padded batches, the PyTorch
reference (transformers) and comparisons.

Nothing here imports torch or transformers at module level: torch-free runs import this
file too (the golden-fixture tests).
"""

import dataclasses
import json
import os
import shutil

import numpy as np

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FIXTURES_DIR = os.path.join(TESTS_DIR, "fixtures")
GOLDEN_DIR = os.path.join(FIXTURES_DIR, "models")
GOLDEN_MT5_DIR = os.path.join(GOLDEN_DIR, "mt5")
GOLDEN_M2M100_DIR = os.path.join(GOLDEN_DIR, "m2m100")
H5_REFERENCE_DIR = os.path.join(FIXTURES_DIR, "h5_reference")

# The acceptance bounds of issues 2 and 4.
LOGIT_RTOL = 1e-5  # max |ours - reference| / max |reference|
LOSS_ATOL = 1e-4
# Hidden states and attention weights: same relative bound, against each tensor's own max.
HIDDEN_RTOL = 1e-5

# ---------------------------------------------------------------------------- tiny configs
# num_decoder_layers != num_layers and d_kv (12) != d_model / num_heads (32 / 3).
TINY_MT5 = dict(
    vocab_size=96,
    d_model=32,
    d_kv=12,
    d_ff=48,
    num_layers=2,
    num_decoder_layers=3,
    num_heads=3,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    dropout_rate=0.0,
)

# Different layer counts, head counts and ffn sizes in encoder and decoder.
TINY_M2M100 = dict(
    vocab_size=128,
    d_model=32,
    encoder_layers=2,
    decoder_layers=3,
    encoder_attention_heads=4,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=48,
    max_position_embeddings=24,
    dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    encoder_layerdrop=0.0,
    decoder_layerdrop=0.0,
)

# ------------------------------------------------------------------- real config.json files
# google/mt5-small/config.json as published on the Hub.
MT5_SMALL_CONFIG_JSON = {
    "_name_or_path": "/home/patrick/hugging_face/t5/mt5-small",
    "architectures": ["MT5ForConditionalGeneration"],
    "d_ff": 1024,
    "d_kv": 64,
    "d_model": 512,
    "decoder_start_token_id": 0,
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "mt5",
    "num_decoder_layers": 8,
    "num_heads": 6,
    "num_layers": 8,
    "pad_token_id": 0,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "tokenizer_class": "T5Tokenizer",
    "transformers_version": "4.10.0.dev0",
    "use_cache": True,
    "vocab_size": 250112,
}

# facebook/m2m100_418M/config.json as published on the Hub.
M2M100_418M_CONFIG_JSON = {
    "_name_or_path": "hf_models/m2m100_418M",
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["M2M100ForConditionalGeneration"],
    "attention_dropout": 0.1,
    "bos_token_id": 0,
    "d_model": 1024,
    "decoder_attention_heads": 16,
    "decoder_ffn_dim": 4096,
    "decoder_layerdrop": 0.05,
    "decoder_layers": 12,
    "decoder_start_token_id": 2,
    "dropout": 0.1,
    "early_stopping": True,
    "encoder_attention_heads": 16,
    "encoder_ffn_dim": 4096,
    "encoder_layerdrop": 0.05,
    "encoder_layers": 12,
    "eos_token_id": 2,
    "gradient_checkpointing": False,
    "init_std": 0.02,
    "is_encoder_decoder": True,
    "max_length": 200,
    "max_position_embeddings": 1024,
    "model_type": "m2m_100",
    "num_beams": 5,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "scale_embedding": True,
    "transformers_version": "4.4.0.dev0",
    "use_cache": True,
    "vocab_size": 128112,
}

# Special ids of each family (the defaults of both configs).
MT5_IDS = dict(pad=0, eos=1, start=0)
M2M100_IDS = dict(pad=1, eos=2, start=2, bos=0)


@dataclasses.dataclass(frozen=True)
class Family:
    """What the tests both families share need to know of each (`FAMILIES[name]`).

    Class names are the same in tfmodels and transformers (`MT5Model`, `M2M100Config`), so
    `class_name(head)` serves both: `ours(head)` is ours, `getattr(transformers, name)`
    theirs.
    """

    name: str  # "mt5" or "m2m100"
    class_prefix: str  # "MT5" or "M2M100"
    tiny_config: dict  # the fast suite's tiny config (transformers' keys)
    real_config: dict  # the real checkpoint's config.json (slow suite)
    real_name: str  # "mt5-small" or "m2m100_418M"
    ids: dict  # special ids: pad, eos, decoder start
    golden_dir: str  # the committed tiny checkpoint written by transformers
    layer_keys: tuple  # config keys of the (encoder, decoder) layer counts
    head_keys: tuple  # config keys of the (encoder, decoder) attention head counts
    bare_heads: tuple  # model heads besides ForConditionalGeneration ("Model", ...)

    def class_name(self, head="ForConditionalGeneration"):
        return self.class_prefix + head

    def ours(self, head="ForConditionalGeneration"):
        import tfmodels

        return getattr(tfmodels, self.class_name(head))

    def our_tiny_config(self, **overrides):
        """Our config of the tiny model, with `overrides` (transformers' keys)."""
        return self.ours("Config")(**{**self.tiny_config, **overrides})

    def batch(self, padding_side="right", vocab_size=None, seed=0,
              source_lengths=(9, 5, 2, 7), target_lengths=(6, 3, 7, 1)):
        """`make_batch` of four mixed-length rows, over the tiny vocabulary by default."""
        return make_batch(vocab_size or self.tiny_config["vocab_size"], self.ids,
                          source_lengths, target_lengths, padding_side, seed)

    def layers(self, config=None):
        """`(encoder layers, decoder layers)` of `config` (default: the tiny one)."""
        config = self.tiny_config if config is None else config
        return tuple(config[key] for key in self.layer_keys)

    def heads(self, config=None):
        """`(encoder heads, decoder heads)` of `config` (default: the tiny one)."""
        config = self.tiny_config if config is None else config
        return tuple(config[key] for key in self.head_keys)


FAMILIES = {
    "mt5": Family(
        name="mt5", class_prefix="MT5", tiny_config=TINY_MT5,
        real_config=MT5_SMALL_CONFIG_JSON, real_name="mt5-small", ids=MT5_IDS,
        golden_dir=GOLDEN_MT5_DIR, layer_keys=("num_layers", "num_decoder_layers"),
        head_keys=("num_heads", "num_heads"), bare_heads=("Model", "EncoderModel")),
    "m2m100": Family(
        name="m2m100", class_prefix="M2M100", tiny_config=TINY_M2M100,
        real_config=M2M100_418M_CONFIG_JSON, real_name="m2m100_418M", ids=M2M100_IDS,
        golden_dir=GOLDEN_M2M100_DIR, layer_keys=("encoder_layers", "decoder_layers"),
        head_keys=("encoder_attention_heads", "decoder_attention_heads"),
        bare_heads=("Model",)),
}

# The families with a committed tiny golden checkpoint (`golden_family`): every one.
GOLDEN_FAMILIES = tuple(FAMILIES)


def golden_family(family):
    """`(model class, golden checkpoint dir, special ids, vocab size)` of the committed
    tiny checkpoint of `family` ("mt5" or "m2m100"; its config is the tiny config)."""
    spec = FAMILIES[family]
    return spec.ours(), spec.golden_dir, spec.ids, spec.tiny_config["vocab_size"]


def load_golden_model(family, **kwargs):
    """The committed tiny checkpoint of `family`, loaded by its model class (`kwargs` go
    to `from_pretrained`, e.g. `dtype`)."""
    model_class, checkpoint, _, _ = golden_family(family)
    return model_class.from_pretrained(checkpoint, **kwargs)


# --------------------------------------------------------------------------------- batches
def make_batch(vocab_size, ids, source_lengths, target_lengths, padding_side="right", seed=0):
    """A padded batch of mixed lengths, as int64 numpy arrays (what torch wants).

    Returns `input_ids`, `attention_mask`, `decoder_input_ids` (`[start] + labels[:-1]`),
    `decoder_attention_mask` and `labels` (-100 on padding). Sources and targets end with
    eos; padding goes on `padding_side` ("right" or "left") of encoder AND decoder rows.
    """
    assert padding_side in ("right", "left")
    assert len(source_lengths) == len(target_lengths)
    rng = np.random.RandomState(seed)
    first_plain_id = max(ids.values()) + 1
    batch = len(source_lengths)
    source_width, target_width = max(source_lengths), max(target_lengths)
    input_ids = np.full((batch, source_width), ids["pad"], np.int64)
    attention_mask = np.zeros((batch, source_width), np.int64)
    decoder_input_ids = np.full((batch, target_width), ids["pad"], np.int64)
    decoder_attention_mask = np.zeros((batch, target_width), np.int64)
    labels = np.full((batch, target_width), -100, np.int64)

    def span(length, width):
        return slice(0, length) if padding_side == "right" else slice(width - length, width)

    for row, (source_length, target_length) in enumerate(zip(source_lengths, target_lengths)):
        source = rng.randint(first_plain_id, vocab_size, size=source_length)
        source[-1] = ids["eos"]
        input_ids[row, span(source_length, source_width)] = source
        attention_mask[row, span(source_length, source_width)] = 1
        target = rng.randint(first_plain_id, vocab_size, size=target_length)
        target[-1] = ids["eos"]
        labels[row, span(target_length, target_width)] = target
        decoder_input_ids[row, span(target_length, target_width)] = np.concatenate(
            [[ids["start"]], target[:-1]]
        )
        decoder_attention_mask[row, span(target_length, target_width)] = 1
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=decoder_attention_mask,
        labels=labels,
    )


def mt5_batch(padding_side="right", **kwargs):
    return FAMILIES["mt5"].batch(padding_side, **kwargs)


def m2m100_batch(padding_side="right", **kwargs):
    return FAMILIES["m2m100"].batch(padding_side, **kwargs)


def without(batch, *keys):
    return {key: value for key, value in batch.items() if key not in keys}


def inputs_for_head(head, batch):
    """The part of a full batch that a model of `head` ("ForConditionalGeneration",
    "Model" or "EncoderModel") takes."""
    if head == "EncoderModel":
        return {key: batch[key] for key in ("input_ids", "attention_mask")}
    if head == "Model":
        return without(batch, "labels")
    return batch


# ----------------------------------------------------------------------------- comparisons
def max_rel_diff(actual, expected):
    """max |actual - expected| / max |expected| (float)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != reference {expected.shape}"
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def assert_rel_close(actual, expected, rtol=LOGIT_RTOL, what="tensor"):
    """Asserts `max_rel_diff(actual, expected) <= rtol`; returns the figure."""
    actual = to_numpy(actual)
    expected = to_numpy(expected)
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    relative = max_rel_diff(actual, expected)
    assert relative <= rtol, f"{what}: max |diff| / max |reference| = {relative:.3g} > {rtol:g}"
    return relative


def assert_loss_close(actual, expected, atol=LOSS_ATOL):
    actual, expected = float(to_numpy(actual)), float(to_numpy(expected))
    difference = abs(actual - expected)
    assert np.isfinite(actual) and difference <= atol, (
        f"loss {actual!r} vs reference {expected!r}: |diff| = {difference:.3g} > {atol:g}"
    )
    return difference


def to_numpy(value):
    if hasattr(value, "detach"):  # torch tensor
        return value.detach().cpu().float().numpy()
    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(value)


def assert_tensors_equal(actual, expected, what="tensors"):
    """Same names (after `aliases`), and every tensor bit-identical (values, dtype, shape)."""
    assert sorted(actual) == sorted(expected), (
        f"{what}: names differ: only ours {sorted(set(actual) - set(expected))}, "
        f"only reference {sorted(set(expected) - set(actual))}"
    )
    for name in expected:
        a, e = np.asarray(actual[name]), np.asarray(expected[name])
        assert a.dtype == e.dtype and a.shape == e.shape, (
            f"{what}: {name}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        )
        assert np.array_equal(a, e), f"{what}: {name} differs"


# --------------------------------------------------------------------- PyTorch reference
def reference_model(transformers, class_name, config_values, seed=0, **config_overrides):
    """A new randomly initialised transformers model in eval mode (torch seeded with
    `seed`)."""
    import torch

    torch.manual_seed(seed)
    config_class = transformers.MT5Config if class_name.startswith("MT5") else (
        transformers.M2M100Config
    )
    return getattr(transformers, class_name)(
        config_class(**{**config_values, **config_overrides})).eval()


def reference_state_dict(reference):
    """The reference model's state dict as numpy arrays (PyTorch names and layout)."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in reference.state_dict().items()}


def ours_from_reference(our_class, reference, dtype=None):
    """A new model of ours built from the reference's config dict, loaded with its weights."""
    config = our_class.config_class.from_dict(json.loads(reference.config.to_json_string()))
    model = our_class(config, dtype=dtype)
    model.load_hf_state_dict(reference_state_dict(reference))
    return model


# Read-only variants, memoised: many parity tests run the same tiny random checkpoint and
# building models dominates their time. Callers must not modify (train, re-load) them.
_SHARED_MODELS = {}
_SHARED_MAX_PARAMETERS = 5_000_000


def _freeze(values):
    return tuple(sorted((key, json.dumps(value, sort_keys=True)) for key, value in values.items()))


def shared_reference_model(transformers, class_name, config_values, seed=0, **config_overrides):
    """`reference_model(...)`, shared between callers asking for the same tiny model."""
    key = ("reference", class_name, _freeze({**config_values, **config_overrides}), seed)
    if key not in _SHARED_MODELS:
        model = reference_model(transformers, class_name, config_values, seed, **config_overrides)
        if sum(parameter.numel() for parameter in model.parameters()) > _SHARED_MAX_PARAMETERS:
            return model
        _SHARED_MODELS[key] = model
    return _SHARED_MODELS[key]


def shared_ours_from_reference(our_class, reference, dtype=None):
    """`ours_from_reference(...)`, shared between callers asking for the same tiny model."""
    key = ("ours", our_class, id(reference), dtype)
    if key not in _SHARED_MODELS or _SHARED_MODELS[key][0] is not reference:
        model = ours_from_reference(our_class, reference, dtype)
        if model.count_params() > _SHARED_MAX_PARAMETERS:
            return model
        _SHARED_MODELS[key] = (reference, model)
    return _SHARED_MODELS[key][1]


def run_reference(reference, batch, **kwargs):
    """Runs the reference on numpy inputs under no_grad; returns its output object."""
    import torch

    with torch.no_grad():
        return reference(**{key: torch.from_numpy(np.asarray(value)) for key, value in
                            batch.items()}, **kwargs)


# ------------------------------------------------------------------------- checkpoint dirs
def copy_checkpoint(source, target):
    """Copies a checkpoint folder (fixture folders are read-only to tests)."""
    shutil.copytree(source, target)
    for root, _, names in os.walk(target):
        for name in names:
            os.chmod(os.path.join(root, name), 0o644)
    return target


def folder_bytes(path):
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def rewrite_checkpoint(source, target, edit_tensors=None, edit_config=None):
    """Copies checkpoint folder `source` to `target` as config.json + model.safetensors,
    after `edit_tensors(dict)` / `edit_config(dict)` (in place) when given."""
    from converters import read_checkpoint, write_checkpoint

    tensors, _ = read_checkpoint(source)
    tensors = {name: np.array(array) for name, array in tensors.items()}
    with open(os.path.join(source, "config.json")) as handle:
        config = json.load(handle)
    if edit_tensors is not None:
        edit_tensors(tensors)
    if edit_config is not None:
        edit_config(config)
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "config.json"), "w") as handle:
        json.dump(config, handle)
    write_checkpoint(target, tensors)
    return str(target)


# ------------------------------------------------------------------ incremental decoding
_COMPILED_STEPS = {}


def _decode_step_function(model, jit_compile):
    """`(ids, cache, index, encoder_mask) -> (logits, cache)`; the XLA version is made once
    per model, so tests that share a model (and shapes) share its compilations."""
    import tensorflow as tf

    def step(ids, cache, index, encoder_mask):
        return model.decode_step(ids, cache, index, encoder_attention_mask=encoder_mask)

    if not jit_compile:
        return step
    key = id(model)
    if key not in _COMPILED_STEPS or _COMPILED_STEPS[key][0] is not model:
        _COMPILED_STEPS[key] = (model, tf.function(step, jit_compile=True))
    return _COMPILED_STEPS[key][1]


def incremental_decoder_logits(model, batch, chunks=None, jit_compile=False, extra_slots=3):
    """Decoder logits computed through `init_decoding_cache` + `decode_step`, feeding
    `batch["decoder_input_ids"]` in `chunks` (token counts; default one at a time) into a
    static cache `extra_slots` longer than needed. Returns `[batch, length, vocab]` numpy."""
    import tensorflow as tf

    decoder_ids = np.asarray(batch["decoder_input_ids"], np.int32)
    length = decoder_ids.shape[1]
    chunks = list(chunks or [1] * length)
    assert sum(chunks) == length
    encoder_mask = tf.constant(batch["attention_mask"], tf.int32)
    encoder_states = model.encode(batch["input_ids"], encoder_mask)["last_hidden_state"]
    cache = model.init_decoding_cache(encoder_states, length + extra_slots)
    step = _decode_step_function(model, jit_compile)
    pieces, start = [], 0
    for size in chunks:
        logits, cache = step(tf.constant(decoder_ids[:, start:start + size]), cache,
                             tf.constant(start, tf.int32), encoder_mask)
        assert logits.shape[1] == size
        pieces.append(logits.numpy())
        start += size
    return np.concatenate(pieces, axis=1)


# ---------------------------------------------------------------------- mixed precision
def bf16_vs_fp32(fp32_outputs, bf16_outputs, labels):
    """Figures comparing mixed_bfloat16 outputs to float32 ones on the positions that
    carry a label: relative logit error, argmax agreement, loss difference."""
    counted = np.asarray(labels) != -100
    fp32_logits = to_numpy(fp32_outputs.logits)[counted]
    bf16_logits = to_numpy(bf16_outputs.logits)[counted]
    return dict(
        logits_rel=max_rel_diff(bf16_logits, fp32_logits),
        argmax_agreement=float(np.mean(bf16_logits.argmax(-1) == fp32_logits.argmax(-1))),
        loss_diff=abs(float(to_numpy(bf16_outputs.loss)) - float(to_numpy(fp32_outputs.loss))),
        tokens=int(counted.sum()),
    )


def assert_few_row_generation_matches_reference(reference, model, vocab_size, new_tokens=6):
    """Greedy at 8 rows and beam 4 at 1 row (4 rows), XLA: the decoding products of a
    real-size model take panels there (`tfmodels.layers.products`); the ids must be the
    reference's. Every row runs exactly `new_tokens` steps."""
    import torch

    input_ids = np.random.RandomState(7).randint(4, vocab_size, size=(8, 12)).astype(np.int32)
    options = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   length_penalty=1.0, early_stopping=True, no_repeat_ngram_size=0,
                   repetition_penalty=1.0)
    for rows, num_beams in ((8, 1), (1, 4)):
        ours = model.generate(input_ids[:rows], num_beams=num_beams, **options).numpy()
        with torch.inference_mode():
            theirs = reference.generate(torch.from_numpy(input_ids[:rows]).long(),
                                        num_beams=num_beams, **options).numpy()
        np.testing.assert_array_equal(ours, theirs, f"{rows} rows x beam {num_beams}")


def optimized_hlo(function, *inputs):
    """XLA's optimized HLO text of `function` compiled for `inputs`."""
    import tensorflow as tf

    return tf.function(function, jit_compile=True).experimental_get_compiler_ir(*inputs)(
        stage="optimized_hlo"
    )
