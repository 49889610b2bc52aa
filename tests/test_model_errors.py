"""Bad input, both families (mT5 and M2M100): clear errors that name the problem, for call
arguments and for checkpoints given to `from_pretrained`; then the family-only cases
(MT5EncoderModel's inputs, M2M100's tied lm_head)."""

import os
import re
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from helpers import FAMILIES, rewrite_checkpoint
from tfmodels import ConfigError

# Per family, what the checkpoint tests break in its golden checkpoint (2 encoder layers,
# d_model 32): a tensor to drop, one to add (name, shape), one to re-shape (name, expected
# shape, written shape), the tensors with a row per vocabulary entry, a tensor of a third
# encoder layer, and a config value its config class rejects.
BREAKAGES = {
    "mt5": dict(
        missing="decoder.block.2.layer.1.EncDecAttention.k.weight",
        unexpected=("encoder.block.0.layer.0.SelfAttention.extra_gate.weight", (3, 3)),
        mis_shaped=("decoder.block.0.layer.2.DenseReluDense.wo.weight", (32, 48), (32, 40)),
        vocab_tensors=("shared.weight", "lm_head.weight"),
        third_encoder_layer="encoder.block.2.layer.0.SelfAttention.q.weight",
        invalid_config=("feed_forward_proj", "gated-nope"),
    ),
    "m2m100": dict(
        missing="model.encoder.layers.1.fc2.bias",
        unexpected=("model.encoder.layers.0.adapter.weight", (4,)),
        mis_shaped=("model.decoder.layers.2.encoder_attn.v_proj.weight", (32, 32), (32, 16)),
        vocab_tensors=("model.shared.weight",),  # tied: no lm_head.weight
        third_encoder_layer="model.encoder.layers.2.self_attn.q_proj.weight",
        invalid_config=("activation_function", "nope"),
    ),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


@pytest.fixture(scope="module")
def model(family):
    return family.ours()(family.our_tiny_config())


@pytest.fixture(scope="module")
def batch(family):
    return family.batch("left")


# ------------------------------------------------------------------------ call arguments
@pytest.mark.parametrize("convert", [np.asarray, tf.constant], ids=["numpy", "tensor"])
def test_float_ids_are_rejected(model, batch, convert):
    float_ids = convert(batch["input_ids"].astype(np.float32))
    with pytest.raises(TypeError, match=r"input_ids must hold integer token ids.*float32"):
        model(input_ids=float_ids, decoder_input_ids=batch["decoder_input_ids"])
    for dtype in (np.float16, np.float64):
        with pytest.raises(TypeError, match="decoder_input_ids must hold integer token ids"):
            model(input_ids=batch["input_ids"],
                  decoder_input_ids=convert(batch["decoder_input_ids"].astype(dtype)))
    with pytest.raises(TypeError, match="labels must hold integer token ids"):
        model(input_ids=batch["input_ids"], labels=convert(batch["labels"].astype(np.float32)))
    float_mask = convert(np.ones(batch["input_ids"].shape, np.float32))
    with pytest.raises(TypeError, match=r"attention_mask must hold integers \(1 = token, 0 = "
                                        r"padding\), got .*float32"):
        model(input_ids=batch["input_ids"], attention_mask=float_mask,
              decoder_input_ids=batch["decoder_input_ids"])


def test_string_ids_are_rejected(model, family):
    with pytest.raises(TypeError, match="input_ids must hold integer token ids"):
        model(input_ids=[["hello", "world"]], decoder_input_ids=[[family.ids["start"]]])


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)], ids=["rank1", "rank3"])
def test_ids_of_wrong_rank_are_rejected(model, family, shape):
    ids = np.ones(shape, np.int32)
    source = [[5, 6, family.ids["eos"]]]
    target = [[family.ids["start"], 5]]
    with pytest.raises(ValueError, match=rf"input_ids must have rank 2.*got rank {len(shape)}"):
        model(input_ids=ids, decoder_input_ids=target)
    with pytest.raises(ValueError,
                       match=rf"decoder_input_ids must have rank 2.*got rank {len(shape)}"):
        model(input_ids=source, decoder_input_ids=ids)
    with pytest.raises(ValueError, match=r"attention_mask must have rank 2"):
        model(input_ids=source, attention_mask=ids, decoder_input_ids=target)


def test_decoder_ids_missing_without_labels(model, family, batch):
    with pytest.raises(ValueError, match="decoder_input_ids are required when no labels"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    # The bare model has no labels to shift: it always needs decoder ids.
    bare = family.ours("Model")(model.config)
    with pytest.raises(ValueError, match="decoder_input_ids are required"):
        bare(input_ids=batch["input_ids"])


def test_input_ids_missing(model, batch):
    with pytest.raises(ValueError, match="input_ids is required"):
        model(decoder_input_ids=batch["decoder_input_ids"])


def test_empty_batch(model):
    with pytest.raises(ValueError, match="input_ids is an empty batch"):
        model(input_ids=np.zeros((0, 4), np.int32), decoder_input_ids=np.zeros((0, 2), np.int32))
    with pytest.raises(ValueError, match="input_ids is an empty batch"):
        model(input_ids=np.zeros((0, 3), np.int64), labels=np.zeros((0, 2), np.int64))


def test_boolean_ids_are_rejected_but_boolean_masks_are_not(model, batch):
    with pytest.raises(TypeError, match="input_ids must hold integer token ids, got .*bool"):
        model(input_ids=batch["input_ids"] > 6, labels=batch["labels"])
    bool_mask = batch["attention_mask"].astype(bool)
    np.testing.assert_array_equal(
        model(input_ids=batch["input_ids"], attention_mask=bool_mask, labels=batch["labels"]).logits,
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
              labels=batch["labels"]).logits)
    with pytest.raises(TypeError, match="input_ids must hold integer token ids"):
        model.generate(batch["input_ids"] > 6, max_new_tokens=2)


def test_ids_outside_the_vocabulary_are_rejected(model, batch):
    """Negative ids would wrap around, int64 ids past int32 would be cut to int32, and ids
    past the vocabulary fail deep in a gather: each is an error naming the input."""
    vocab = model.config.vocab_size
    with pytest.raises(ValueError, match=r"input_ids must hold token ids in \[0, \d+\); got \[-"):
        model(input_ids=-batch["input_ids"], labels=batch["labels"])
    with pytest.raises(ValueError, match=r"input_ids must hold token ids.*got \[429496"):
        model(input_ids=batch["input_ids"].astype(np.int64) + 2**32, labels=batch["labels"])
    too_big = batch["decoder_input_ids"].copy()
    too_big[0, 0] = vocab
    with pytest.raises(ValueError, match=rf"decoder_input_ids must hold token ids in \[0, {vocab}\); got \[{vocab}\]"):
        model(input_ids=batch["input_ids"], decoder_input_ids=too_big)
    bad_labels = batch["labels"].copy()
    bad_labels[0, 0] = -5
    with pytest.raises(ValueError, match=r"labels must hold token ids in .* or -100; got \[-5\]"):
        model(input_ids=batch["input_ids"], labels=bad_labels)

    @tf.function
    def traced(input_ids):
        return model(input_ids=input_ids, labels=batch["labels"]).loss

    with pytest.raises(tf.errors.InvalidArgumentError, match="input_ids must hold token ids"):
        traced(tf.constant(-batch["input_ids"]))


def test_masks_must_have_the_shape_of_their_ids(model, batch):
    """A [1, length] mask would broadcast over the batch, silently masking the wrong
    tokens; every other mismatch would fail deep in the attention."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    for bad in (mask[:1], mask[:, :-2], np.concatenate([mask, mask[:, :1]], axis=1)):
        with pytest.raises(ValueError, match="attention_mask must have the shape of input_ids"):
            model(input_ids=ids, attention_mask=bad, labels=batch["labels"])
    decoder_mask = np.ones_like(batch["decoder_input_ids"])[:, :-1]
    with pytest.raises(ValueError, match="decoder_attention_mask must have the shape of"):
        model(input_ids=ids, decoder_input_ids=batch["decoder_input_ids"],
              decoder_attention_mask=decoder_mask)
    with pytest.raises(ValueError, match=r"labels hold 1 rows for a batch of \d+ inputs"):
        model(input_ids=ids, attention_mask=mask, labels=batch["labels"][:1])

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    def traced(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask,
                     decoder_input_ids=batch["decoder_input_ids"]).logits

    with pytest.raises(tf.errors.InvalidArgumentError, match="attention_mask must have the shape"):
        traced(tf.constant(ids, tf.int32), tf.constant(mask[:, :-1], tf.int32))


def test_suppress_tokens_may_be_a_numpy_array(model, batch):
    """(Its truth value used to be asked for, which numpy refuses.)"""
    options = dict(attention_mask=batch["attention_mask"], max_new_tokens=3)
    as_list = model.generate(batch["input_ids"], suppress_tokens=[5, 6], **options).numpy()
    as_array = model.generate(batch["input_ids"], suppress_tokens=np.array([5, 6]), **options)
    np.testing.assert_array_equal(as_array.numpy(), as_list)
    assert not {5, 6} & set(as_list[:, 1:].ravel().tolist())


def test_a_source_without_tokens_is_rejected(model, batch):
    with pytest.raises(ValueError, match=r"input_ids has no tokens \(shape \[\d+, 0\]\)"):
        model(input_ids=batch["input_ids"][:, :0], labels=batch["labels"])


# ---------------------------------------------------------------------------- checkpoints
def _load_error(family, directory, **kwargs):
    with pytest.raises(Exception) as info:
        family.ours().from_pretrained(str(directory), **kwargs)
    return info


def _rewritten(family, tmp_path, **edits):
    """A copy of the family's golden checkpoint, after `rewrite_checkpoint` edits."""
    return rewrite_checkpoint(family.golden_dir, tmp_path / "ckpt", **edits)


def _config_only(family, tmp_path):
    """A checkpoint folder holding the golden config.json and no weights."""
    directory = tmp_path / "ckpt"
    directory.mkdir()
    shutil.copy(os.path.join(family.golden_dir, "config.json"), directory)
    return directory


def test_missing_tensor_is_named(tmp_path, family):
    gone = BREAKAGES[family.name]["missing"]
    directory = _rewritten(family, tmp_path, edit_tensors=lambda tensors: tensors.pop(gone))
    info = _load_error(family, directory)
    assert info.type is ValueError
    message = str(info.value)
    assert "missing" in message and gone in message
    assert directory in message  # says which checkpoint


def test_unexpected_tensor_is_named(tmp_path, family):
    extra, shape = BREAKAGES[family.name]["unexpected"]

    def add_extra(tensors):
        tensors[extra] = np.zeros(shape, np.float32)

    info = _load_error(family, _rewritten(family, tmp_path, edit_tensors=add_extra))
    assert info.type is ValueError
    assert re.search(rf"unexpected.*\n.*{re.escape(extra)}", str(info.value))


def test_mis_shaped_tensor_is_named_with_both_shapes(tmp_path, family):
    bent, expected, found = BREAKAGES[family.name]["mis_shaped"]

    def reshape(tensors):
        tensors[bent] = np.zeros(found, np.float32)

    message = str(_load_error(family, _rewritten(family, tmp_path, edit_tensors=reshape)).value)
    assert f"{bent}: expected {expected}, found {found}" in message, message


def test_missing_extra_and_mis_shaped_tensors_are_all_listed(tmp_path, family):
    breakages = BREAKAGES[family.name]
    gone = breakages["missing"]
    extra, extra_shape = breakages["unexpected"]
    bent, expected, found = breakages["mis_shaped"]

    def edit(tensors):
        tensors.pop(gone)
        tensors[extra] = np.zeros(extra_shape, np.float32)
        tensors[bent] = np.zeros(found, np.float32)

    info = _load_error(family, _rewritten(family, tmp_path, edit_tensors=edit))
    assert info.type is ValueError
    message = str(info.value)
    # One error, listing every problem.
    assert "1 missing, 1 unexpected, 1 shape mismatch" in message
    assert re.search(rf"missing.*\n\s+{re.escape(gone)}", message)
    assert re.search(rf"unexpected.*\n\s+{re.escape(extra)} {re.escape(str(extra_shape))}",
                     message)
    assert f"{bent}: expected {expected}, found {found}" in message


def test_config_and_weights_disagree_on_vocab_size(tmp_path, family):
    """config.json says vocab 100; the weights have the tiny vocabulary's rows."""
    directory = _rewritten(family, tmp_path,
                           edit_config=lambda config: config.update(vocab_size=100))
    info = _load_error(family, directory)
    assert info.type is ValueError
    message = str(info.value)
    assert "does not match its config.json" in message
    rows, width = family.tiny_config["vocab_size"], family.tiny_config["d_model"]
    for name in BREAKAGES[family.name]["vocab_tensors"]:
        assert f"{name}: expected (100, {width}), found ({rows}, {width})" in message, name


def test_config_and_weights_disagree_on_layer_count(tmp_path, family):
    encoder_layers_key = family.layer_keys[0]
    directory = _rewritten(family, tmp_path,
                           edit_config=lambda config: config.update({encoder_layers_key: 3}))
    message = str(_load_error(family, directory).value)
    assert "missing" in message and BREAKAGES[family.name]["third_encoder_layer"] in message


def test_missing_config_json(tmp_path, family):
    directory = _rewritten(family, tmp_path)
    os.remove(os.path.join(directory, "config.json"))
    info = _load_error(family, directory)
    assert info.type is FileNotFoundError and "config" in str(info.value)


def test_missing_weights(tmp_path, family):
    info = _load_error(family, _config_only(family, tmp_path))
    assert isinstance(info.value, FileNotFoundError)
    assert "no model weights found" in str(info.value)
    assert "model.safetensors" in str(info.value)  # lists what it looked for


def test_missing_directory(tmp_path, family):
    info = _load_error(family, tmp_path / "does-not-exist")
    assert isinstance(info.value, FileNotFoundError) and "does-not-exist" in str(info.value)


def test_a_weights_file_given_as_the_directory_names_its_folder(family):
    weights = os.path.join(family.golden_dir, "model.safetensors")
    info = _load_error(family, weights)
    assert isinstance(info.value, FileNotFoundError)
    assert "is a file; give the checkpoint directory" in str(info.value)
    assert repr(family.golden_dir) in str(info.value)


def test_a_non_float_dtype_is_refused_by_name(family):
    with pytest.raises(ValueError, match=r"dtype='int32' gives int32 variables; use a float"):
        family.ours().from_pretrained(family.golden_dir, dtype="int32")


def test_wrong_model_type_in_folder(tmp_path, family):
    other_type = next(other.real_config["model_type"] for other in FAMILIES.values()
                      if other is not family)
    directory = _rewritten(family, tmp_path,
                           edit_config=lambda config: config.update(model_type=other_type))
    info = _load_error(family, directory)
    assert info.type is ConfigError and "model_type" in str(info.value)


def test_invalid_config_value_in_folder(tmp_path, family):
    key, value = BREAKAGES[family.name]["invalid_config"]
    directory = _rewritten(family, tmp_path, edit_config=lambda config: config.update({key: value}))
    info = _load_error(family, directory)
    assert info.type is ConfigError and key in str(info.value)


def test_pytorch_bin_alone_needs_allow_bin_and_is_never_unpickled(tmp_path, family):
    directory = _config_only(family, tmp_path)
    # Not a valid pickle: if anything tried to unpickle it, the error would be different.
    (directory / "pytorch_model.bin").write_bytes(b"this is not a pickle")
    info = _load_error(family, directory)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "pytorch_model.bin" in message and "allow_bin=True" in message


def test_pytorch_bin_with_allow_bin_but_without_torch_says_so(tmp_path, family, monkeypatch):
    directory = _config_only(family, tmp_path)
    (directory / "pytorch_model.bin").write_bytes(b"this is not a pickle")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    info = _load_error(family, directory, allow_bin=True)
    assert isinstance(info.value, ImportError)
    assert "needs torch" in str(info.value) and "safetensors" in str(info.value)


def test_load_seq2seq_lm_picks_the_class_of_the_folders_model_type(family):
    from tfmodels.auto import load_seq2seq_lm

    assert type(load_seq2seq_lm(family.golden_dir)) is family.ours()


def test_load_seq2seq_lm_names_what_is_wrong_with_the_folder(tmp_path):
    from tfmodels.auto import load_seq2seq_lm

    with pytest.raises(FileNotFoundError, match="No config.json"):
        load_seq2seq_lm(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Checkpoint directory .* does not exist"):
        load_seq2seq_lm(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: invalid JSON"):
        load_seq2seq_lm(str(tmp_path))
    (tmp_path / "config.json").write_text('["mt5"]')
    with pytest.raises(ConfigError, match="expected a JSON object, got list"):
        load_seq2seq_lm(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "bart"}')
    with pytest.raises(ValueError, match=r"model_type='bart'; tfmodels supports \['m2m_100', 'mt5', 't5'\]"):
        load_seq2seq_lm(str(tmp_path))


# ------------------------------------------------------------------------ one family only
def test_mt5_encoder_model_checks_its_inputs_too():
    mt5 = FAMILIES["mt5"]
    encoder = mt5.ours("EncoderModel")(mt5.our_tiny_config())
    with pytest.raises(ValueError, match="input_ids must have rank 2"):
        encoder(input_ids=[5, 6, 1])
    with pytest.raises(TypeError, match="input_ids must hold integer token ids"):
        encoder(input_ids=[[5.0, 6.0]])


def _m2m100_with_lm_head(tmp_path, head_from_shared):
    """The M2M100 golden checkpoint (tied) plus an lm_head.weight made from its shared
    embedding."""
    def add_head(tensors):
        tensors["lm_head.weight"] = head_from_shared(tensors["model.shared.weight"])

    return _rewritten(FAMILIES["m2m100"], tmp_path, edit_tensors=add_head)


def test_m2m100_lm_head_that_differs_from_tied_embedding_is_a_conflict(tmp_path):
    """A tied config with an lm_head.weight holding other values: loading would silently
    drop it, so it is reported."""
    directory = _m2m100_with_lm_head(tmp_path, lambda shared: shared + 1.0)
    message = str(_load_error(FAMILIES["m2m100"], directory).value)
    assert "conflicting" in message and "lm_head.weight" in message


def test_m2m100_tied_head_duplicate_with_equal_values_loads(tmp_path):
    directory = _m2m100_with_lm_head(tmp_path, lambda shared: shared.copy())
    model = FAMILIES["m2m100"].ours().from_pretrained(directory)
    assert model.lm_head is None
