"""Tests for the format-level checkpoint I/O in ``converters/``.

The h5 tests use ``tests/fixtures/h5_reference`` (a tiny random mT5 saved by PyTorch
transformers and converted to a real TF ``tf_model.h5``); regenerate it with
``tests/fixtures/make_h5_reference.py`` (see its docstring).
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys

import h5py
import ml_dtypes
import numpy as np
import pytest

from converters import (
    SAFETENSORS_DTYPES,
    BinCheckpointNotAllowedError,
    find_checkpoint_files,
    match_state_dict,
    parse_size,
    read_checkpoint,
    read_json_config,
    read_safetensors,
    read_safetensors_header,
    read_safetensors_metadata,
    read_sharded_safetensors,
    read_sharded_tf_h5,
    read_sharded_torch_bin,
    read_tf_h5,
    read_tf_h5_raw,
    read_torch_bin,
    tf_weight_name_to_pt_name,
    write_checkpoint,
    write_safetensors,
    write_sharded_safetensors,
    write_torch_bin,
)

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "h5_reference")
PT_FIXTURE = os.path.join(FIXTURE_DIR, "pt", "model.safetensors")
TF_FIXTURE = os.path.join(FIXTURE_DIR, "tf", "tf_model.h5")

# Names PyTorch's MT5ForConditionalGeneration.state_dict() has on top of the 66 stored
# ones: both are tied to shared.weight, and neither file format stores them.
TIED_TO_SHARED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def random_tensor(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Random *bit patterns* (NaN payloads, infs, subnormals included) for float types."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def as_bits(array: np.ndarray) -> np.ndarray:
    """Compare floats bit-for-bit (NaN != NaN otherwise)."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    return np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")


def assert_bit_exact(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name].dtype == np.asarray(expected[name]).dtype, name
        assert actual[name].shape == np.shape(expected[name]), name
        np.testing.assert_array_equal(as_bits(actual[name]), as_bits(expected[name]), err_msg=name)


def sample_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tensors = {}
    for tag, dtype in SAFETENSORS_DTYPES.items():
        tensors[f"layers.{tag.lower()}.weight"] = random_tensor(rng, dtype, (3, 5))
        tensors[f"layers.{tag.lower()}.scalar"] = random_tensor(rng, dtype, ())
        tensors[f"layers.{tag.lower()}.empty"] = random_tensor(rng, dtype, (0, 4))
    return tensors


# --------------------------------------------------------------------------- safetensors


@pytest.mark.parametrize("tag", ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL",
                                 "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"])
def test_safetensors_round_trip_is_bit_exact(tmp_path, tag):
    rng = np.random.default_rng(len(tag))
    dtype = SAFETENSORS_DTYPES[tag]
    tensors = {
        "block.0.weight": random_tensor(rng, dtype, (7, 3)),
        "block.0.bias": random_tensor(rng, dtype, (3,)),
        "scalar": random_tensor(rng, dtype, ()),
        "empty": random_tensor(rng, dtype, (0, 2)),
        "cube": random_tensor(rng, dtype, (2, 3, 4)),
    }
    path = tmp_path / "model.safetensors"
    write_safetensors(path, tensors)
    loaded = read_safetensors(path)
    assert_bit_exact(loaded, tensors)
    header = read_safetensors_header(path)
    assert {header[name]["dtype"] for name in tensors} == {tag}
    assert read_safetensors_metadata(path) == {"format": "pt"}


def test_safetensors_layout_alignment_and_mmap(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "model.safetensors"
    write_safetensors(path, tensors, metadata={"format": "pt", "note": "ü"})
    raw = path.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    assert header_length % 8 == 0 and raw[8:9] == b"{"
    header = json.loads(raw[8 : 8 + header_length])
    assert header["__metadata__"] == {"format": "pt", "note": "ü"}
    for name, entry in header.items():
        if name != "__metadata__":  # every tensor starts aligned to its element size
            assert (8 + header_length + entry["data_offsets"][0]) % SAFETENSORS_DTYPES[entry["dtype"]].itemsize == 0

    loaded = read_safetensors(path)
    weight = loaded["layers.f32.weight"]
    base = weight
    while base is not None and not isinstance(base, (np.memmap, mmap.mmap)):
        base = getattr(base, "base", None)
    assert base is not None, "expected a view of the memory-mapped file"
    assert not weight.flags.writeable  # a view of the read-only mapping, not a copy
    copied = read_safetensors(path, copy=True)["layers.f32.weight"]
    assert copied.flags.writeable and copied.flags.owndata
    assert_bit_exact(read_safetensors(path, copy=True), tensors)


def test_safetensors_writer_normalises_inputs(tmp_path):
    tensors = {
        "big_endian": np.arange(6, dtype=">f4").reshape(2, 3),
        "strided": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2],
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    }
    write_safetensors(tmp_path / "x.safetensors", tensors, metadata={})
    loaded = read_safetensors(tmp_path / "x.safetensors")
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
    assert loaded["big_endian"].dtype == np.dtype("<f4")
    assert read_safetensors_metadata(tmp_path / "x.safetensors") == {}
    with pytest.raises(ValueError, match="complex64"):
        write_safetensors(tmp_path / "bad.safetensors", {"c": np.zeros(2, np.complex64)})
    with pytest.raises(TypeError, match="str to str"):
        write_safetensors(tmp_path / "bad.safetensors", {}, metadata={"step": 3})


def test_safetensors_interop_with_reference_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    # safetensors.numpy (0.8) has no float8 support (it looks for np.float8_*).
    tensors = {name: array for name, array in sample_tensors(seed=1).items() if ".f8_" not in name}
    assert len(tensors) == 3 * 13

    ours = tmp_path / "ours.safetensors"
    write_safetensors(ours, tensors)
    assert_bit_exact(safetensors_numpy.load_file(str(ours)), tensors)

    theirs = tmp_path / "theirs.safetensors"
    safetensors_numpy.save_file(tensors, str(theirs), metadata={"format": "pt"})
    assert_bit_exact(read_safetensors(theirs), tensors)
    assert read_safetensors_metadata(theirs) == {"format": "pt"}
    # Same tensor order, padding and header: the files are byte-identical.
    assert ours.read_bytes() == theirs.read_bytes()


def test_safetensors_rewrite_of_transformers_file_is_byte_identical(tmp_path):
    # pt/model.safetensors was written by transformers' save_pretrained (BF16).
    tensors = read_safetensors(PT_FIXTURE)
    write_safetensors(tmp_path / "model.safetensors", tensors)
    assert (tmp_path / "model.safetensors").read_bytes() == open(PT_FIXTURE, "rb").read()


def test_sharded_write_and_read(tmp_path):
    rng = np.random.default_rng(3)
    tensors = {f"layer.{i}.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in range(5)}
    tensors["layer.0.bias"] = rng.standard_normal(16).astype(ml_dtypes.bfloat16)
    written = write_sharded_safetensors(tmp_path, tensors, max_shard_size=2 * 16 * 16 * 4)
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json"]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in tensors.values())
    assert set(index["weight_map"]) == set(tensors)
    for shard in set(index["weight_map"].values()):
        assert os.path.getsize(tmp_path / shard) < 2 * 16 * 16 * 4 + 1024  # limit + header
    assert_bit_exact(read_sharded_safetensors(tmp_path / "model.safetensors.index.json"), tensors)
    loaded, format_name = read_checkpoint(tmp_path)
    assert format_name == "safetensors_sharded"
    assert_bit_exact(loaded, tensors)

    # Rewriting unsharded removes the stale shards and index; the tensors written here
    # are memory-mapped views of the very files being replaced.
    assert [os.path.basename(p) for p in write_checkpoint(tmp_path, loaded)] == ["model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    assert_bit_exact(read_checkpoint(tmp_path)[0], tensors)
    # A tensor bigger than the limit gets a shard of its own.
    written = write_checkpoint(tmp_path, tensors, max_shard_size="1KB")
    assert len(written) == len(tensors) + 1 and "model.safetensors" not in os.listdir(tmp_path)
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2MiB") == 2 * 2**20 and parse_size(7) == 7
    with pytest.raises(ValueError, match="cannot parse size"):
        parse_size("lots")


def test_sharded_safetensors_index_errors(tmp_path):
    tensors = {"a": np.zeros(64, np.float32), "b": np.ones(64, np.float32)}
    write_sharded_safetensors(tmp_path, tensors, max_shard_size=300)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())

    index["weight_map"]["ghost"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="ghost"):
        read_sharded_safetensors(index_path)

    del index["weight_map"]["ghost"]
    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    index_path.write_text(json.dumps(index))
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        read_checkpoint(tmp_path)


# The three sharded readers share one index check (converters.shard_index).
BAD_INDEXES = {
    "not-json": ("{nope", ValueError, "invalid JSON"),
    "no-weight-map": (json.dumps({"metadata": {}}), ValueError, "'weight_map'"),
    # A shard "name" that is a path could reach files outside the checkpoint folder.
    "path-as-shard": (json.dumps({"weight_map": {"w": "../elsewhere.bin"}}), ValueError,
                      "'../elsewhere.bin' is not a plain file name"),
    "missing-shard": (json.dumps({"weight_map": {"w": "shard-00002.bin"}}), FileNotFoundError,
                      "missing: \\['shard-00002.bin'\\]"),
}


@pytest.mark.parametrize("case", sorted(BAD_INDEXES))
@pytest.mark.parametrize("reader, index_name", [
    (read_sharded_safetensors, "model.safetensors.index.json"),
    (read_sharded_tf_h5, "tf_model.h5.index.json"),
    (read_sharded_torch_bin, "pytorch_model.bin.index.json"),
], ids=["safetensors", "tf_h5", "torch_bin"])
def test_sharded_readers_refuse_the_same_bad_indexes(tmp_path, reader, index_name, case):
    if reader is read_sharded_torch_bin:
        pytest.importorskip("torch")
    text, error, match = BAD_INDEXES[case]
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (tmp_path / "elsewhere.bin").write_bytes(b"outside the checkpoint folder")
    (folder / index_name).write_text(text)
    with pytest.raises(error, match=match) as info:
        reader(folder / index_name)
    assert index_name in str(info.value)  # names the index it refused


@pytest.mark.torch
def test_transformers_loads_written_sharded_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tensors = {name: np.asarray(array, dtype=np.float32) for name, array in read_safetensors(PT_FIXTURE).items()}
    write_checkpoint(tmp_path, tensors, max_shard_size="100KB")
    (tmp_path / "config.json").write_text(json.dumps(read_json_config(os.path.join(FIXTURE_DIR, "pt"))))
    assert (tmp_path / "model.safetensors.index.json").exists()
    model = transformers.MT5ForConditionalGeneration.from_pretrained(tmp_path, torch_dtype=torch.float32)
    state = model.state_dict()
    for name, array in tensors.items():
        np.testing.assert_array_equal(state[name].numpy(), array, err_msg=name)
    for name in TIED_TO_SHARED:  # transformers re-ties them to shared.weight
        np.testing.assert_array_equal(state[name].numpy(), tensors["shared.weight"])


def test_import_needs_neither_torch_nor_tensorflow():
    code = ("import sys, converters; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'safetensors') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- corrupt files


def write_raw(path, header: dict, data: bytes, declared_length: int | None = None) -> None:
    header_bytes = json.dumps(header).encode()
    length = len(header_bytes) if declared_length is None else declared_length
    path.write_bytes(length.to_bytes(8, "little") + header_bytes + data)


@pytest.mark.parametrize(
    "case, match",
    [
        ("truncated", "truncated"),
        ("tiny", "too short"),
        ("huge_header_length", "header length"),
        ("header_past_end", "truncated"),
        ("not_json", "invalid JSON"),
        ("hole", "hole"),
        ("overlap", "overlaps"),
        ("trailing_bytes", "trailing"),
        ("wrong_size", "needs 16 bytes"),
        ("bad_dtype", "C128"),
        ("duplicate_key", "duplicate"),
    ],
)
def test_corrupt_safetensors_gives_clear_error(tmp_path, case, match):
    path = tmp_path / "model.safetensors"
    entry = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    if case == "truncated":
        write_safetensors(path, {"w": np.zeros((64, 64), np.float32)})
        path.write_bytes(path.read_bytes()[:-100])
    elif case == "tiny":
        path.write_bytes(b"\x01\x00")
    elif case == "huge_header_length":
        path.write_bytes((2**60).to_bytes(8, "little") + b"{}")
    elif case == "header_past_end":
        write_raw(path, {"w": entry}, b"\0" * 16, declared_length=10_000)
    elif case == "not_json":
        path.write_bytes((5).to_bytes(8, "little") + b"{nope" + b"\0" * 16)
    elif case == "hole":
        write_raw(path, {"w": {**entry, "data_offsets": [4, 20]}}, b"\0" * 20)
    elif case == "overlap":
        write_raw(path, {"a": entry, "b": {**entry, "data_offsets": [8, 24]}}, b"\0" * 24)
    elif case == "trailing_bytes":
        write_raw(path, {"w": entry}, b"\0" * 24)
    elif case == "wrong_size":
        write_raw(path, {"w": {**entry, "data_offsets": [0, 12]}}, b"\0" * 12)
    elif case == "bad_dtype":
        write_raw(path, {"w": {**entry, "dtype": "C128"}}, b"\0" * 16)
    elif case == "duplicate_key":
        header = b'{"w":' + json.dumps(entry).encode() + b',"w":' + json.dumps(entry).encode() + b"}"
        path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    with pytest.raises(ValueError, match=match) as error:
        read_safetensors(path)
    assert str(path) in str(error.value)  # the message names the file
    with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
        read_checkpoint(tmp_path)


# --------------------------------------------------------------------------- TF h5


def test_tf_h5_matches_pytorch_reference_fixture():
    pt = read_safetensors(PT_FIXTURE)
    tf = read_tf_h5(TF_FIXTURE)
    # Neither format stores the tied encoder/decoder.embed_tokens copies; the TF file
    # stores shared/shared/embeddings:0 three times (shared, encoder, decoder layers).
    assert sorted(tf) == sorted(pt)
    assert len(tf) == 66 and not set(TIED_TO_SHARED) & set(tf)
    for name in pt:
        assert tf[name].shape == pt[name].shape, name
        assert tf[name].dtype == np.float32 and pt[name].dtype == ml_dtypes.bfloat16
        # The PyTorch copy is bf16, the TF copy float32 holding the same (bf16-exact) values.
        np.testing.assert_array_equal(tf[name], pt[name].astype(np.float32), err_msg=name)

    assert tf["lm_head.weight"].shape == (96, 32)  # TF Dense kernel [32, 96], transposed
    assert tf["encoder.block.0.layer.0.SelfAttention.q.weight"].shape == (36, 32)
    assert tf["encoder.block.0.layer.0.SelfAttention.o.weight"].shape == (32, 36)
    assert tf["decoder.block.2.layer.2.DenseReluDense.wi_1.weight"].shape == (48, 32)
    assert tf["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape == (8, 3)
    assert tf["decoder.final_layer_norm.weight"].shape == (32,)
    assert tf["shared.weight"].shape == (96, 32)
    assert tf["lm_head.weight"].flags.c_contiguous

    raw = read_tf_h5_raw(TF_FIXTURE)
    np.testing.assert_array_equal(raw["tfmt5_for_conditional_generation/lm_head/kernel:0"].T, tf["lm_head.weight"])
    np.testing.assert_array_equal(raw["shared/shared/embeddings:0"], tf["shared.weight"])

    loaded, format_name = read_checkpoint(os.path.dirname(TF_FIXTURE))
    assert format_name == "tf_h5" and sorted(loaded) == sorted(pt)


def test_h5_fixture_fits_size_budget():
    total = sum(os.path.getsize(os.path.join(root, name))
                for root, _, names in os.walk(FIXTURE_DIR) for name in names)
    assert total < 300_000


@pytest.mark.parametrize(
    "tf_name, shape, expected",
    [
        ("tfmt5_for_conditional_generation/encoder/block_._0/layer_._0/SelfAttention/q/kernel:0", (32, 36),
         ("encoder.block.0.layer.0.SelfAttention.q.weight", "transpose")),
        ("tfmt5_for_conditional_generation/decoder/block_._1/layer_._0/SelfAttention/relative_attention_bias/"
         "embeddings:0", (8, 3), ("decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight", "none")),
        ("tfmt5_for_conditional_generation/encoder/final_layer_norm/weight:0", (32,),
         ("encoder.final_layer_norm.weight", "none")),
        ("shared/shared/embeddings:0", (96, 32), ("shared.weight", "none")),
        ("tf_bert_model/bert/encoder/layer_._3/output/LayerNorm/gamma:0", (8,),
         ("bert.encoder.layer.3.output.LayerNorm.weight", "none")),
        ("tf_bert_model/bert/encoder/layer_._3/output/LayerNorm/beta:0", (8,),
         ("bert.encoder.layer.3.output.LayerNorm.bias", "none")),
        ("tf_bert_model/bert/pooler/dense/bias:0", (8,), ("bert.pooler.dense.bias", "none")),
        ("tf_model/wrapper___encoder/conv/kernel:0", (3, 4, 5), ("encoder.conv.weight", "conv1d")),
        ("tf_model/vision/patch_embed/kernel:0", (2, 2, 3, 8), ("vision.patch_embed.weight", "conv2d")),
        ("tf_model/sep/pointwise_kernel:0", (1, 4, 8), ("sep.pointwise.weight", "transpose")),
        ("tf_model/adaptive/emb_projs_._0:0", (4, 8), ("adaptive.emb_projs.0", "transpose")),
        ("final_logits_bias:0", (1, 96), ("final_logits_bias", "none")),
    ],
)
def test_tf_weight_name_rules(tf_name, shape, expected):
    assert tf_weight_name_to_pt_name(tf_name, shape) == expected


def test_tf_weight_name_prefix_removal():
    name = "tf_bert_model/bert/embeddings/word_embeddings/weight:0"
    assert tf_weight_name_to_pt_name(name, (10, 4), prefix_to_remove="bert.") == (
        "embeddings.word_embeddings.weight", "none")


def test_sharded_tf_h5_layout(tmp_path):
    # Mirrors transformers' sharded TF writer (checked against a real sharded save of
    # the fixture model): root layer_names lists datasets named without the model scope.
    raw = read_tf_h5_raw(TF_FIXTURE)
    names = sorted(raw)
    weight_map = {}
    for shard, chunk in enumerate((names[:30], names[30:]), start=1):
        shard_name = f"tf_model-0000{shard}-of-00002.h5"
        with h5py.File(tmp_path / shard_name, "w") as handle:
            stored = []
            for name in chunk:
                stored_name = name.split("/", 1)[1]
                handle.create_dataset(stored_name, data=raw[name])
                stored.append(stored_name.encode())
            handle.attrs["layer_names"] = stored
        weight_map.update(dict.fromkeys(chunk, shard_name))
    (tmp_path / "tf_model.h5.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    expected = read_tf_h5(TF_FIXTURE)
    loaded = read_sharded_tf_h5(tmp_path / "tf_model.h5.index.json")
    assert_bit_exact(loaded, expected)
    assert read_checkpoint(tmp_path)[1] == "tf_h5_sharded"


def test_tf_h5_chunked_attributes_and_conflicting_duplicates(tmp_path):
    path = tmp_path / "tf_model.h5"
    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    with h5py.File(path, "w") as handle:
        # Keras splits long attribute lists into layer_names0, layer_names1, ...
        handle.attrs["layer_names0"] = [b"dense"]
        handle.attrs["layer_names1"] = [b"other"]
        for layer, value in (("dense", kernel), ("other", kernel + 1)):
            group = handle.create_group(layer)
            group.attrs["weight_names"] = [b"model/dense/kernel:0"]
            group.create_dataset("model/dense/kernel:0", data=value)
    with pytest.raises(ValueError, match="different values"):
        read_tf_h5(path)
    with h5py.File(path, "a") as handle:
        handle["other/model/dense/kernel:0"][...] = kernel
    assert list(read_tf_h5(path)) == ["dense.weight"]
    np.testing.assert_array_equal(read_tf_h5(path)["dense.weight"], kernel.T)


def test_tf_h5_rejects_non_keras_files(tmp_path):
    path = tmp_path / "tf_model.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("w", data=np.zeros(3))
    with pytest.raises(ValueError, match="layer_names"):
        read_tf_h5(path)
    (tmp_path / "tf_model.h5").write_bytes(b"definitely not hdf5")
    with pytest.raises(ValueError, match="cannot open as HDF5"):
        read_tf_h5(path)


# --------------------------------------------------------------------------- torch .bin


def test_torch_bin_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    tensors = {name: array for name, array in sample_tensors(seed=2).items()
               if not name.startswith(("layers.u16", "layers.u32", "layers.u64"))}  # no torch dtype in all versions
    write_torch_bin(tmp_path / "pytorch_model.bin", tensors)
    assert_bit_exact(read_torch_bin(tmp_path / "pytorch_model.bin"), tensors)

    # A state dict saved by torch itself, with bf16 and a tied (shared-storage) tensor.
    shared = torch.randn(4, 3).to(torch.bfloat16)
    state = {"shared.weight": shared, "encoder.embed_tokens.weight": shared, "lm_head.weight": torch.randn(4, 3)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = read_torch_bin(tmp_path / "pytorch_model.bin")
    assert loaded["shared.weight"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(as_bits(loaded["encoder.embed_tokens.weight"]),
                                  shared.view(torch.int16).numpy().view(np.uint16))
    np.testing.assert_array_equal(loaded["lm_head.weight"], state["lm_head.weight"].numpy())


def test_torch_bin_sharded_and_checkpoint_selection(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    tensors = {"a.weight": np.ones((2, 2), np.float32), "b.weight": np.zeros(3, np.int64)}
    write_torch_bin(tmp_path / "pytorch_model-00001-of-00002.bin", {"a.weight": tensors["a.weight"]})
    write_torch_bin(tmp_path / "pytorch_model-00002-of-00002.bin", {"b.weight": tensors["b.weight"]})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {
        "a.weight": "pytorch_model-00001-of-00002.bin", "b.weight": "pytorch_model-00002-of-00002.bin"}}))

    loaded, format_name = read_checkpoint(tmp_path, allow_bin=True)
    assert format_name == "pytorch_bin_sharded"
    assert_bit_exact(loaded, tensors)

    # Safetensors wins over .bin even with allow_bin; .bin is never unpickled then.
    write_checkpoint(tmp_path, {"c.weight": np.ones(2, np.float32)})
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be called"))
    assert read_checkpoint(tmp_path, allow_bin=True)[1] == "safetensors"
    assert [f.format for f in find_checkpoint_files(tmp_path, allow_bin=True)] == [
        "safetensors", "pytorch_bin_sharded"]


def test_only_bin_requires_opt_in(tmp_path, monkeypatch):
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle bytes that must never be loaded")
    (tmp_path / "config.json").write_text("{}")
    import converters.torch_bin_io as torch_bin_io

    monkeypatch.setattr(torch_bin_io, "_import_torch", lambda what: pytest.fail("must not touch torch"))
    with pytest.raises(BinCheckpointNotAllowedError, match="allow_bin=True") as error:
        read_checkpoint(tmp_path)
    assert "pytorch_model.bin" in str(error.value) and "safetensors" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    with pytest.raises(BinCheckpointNotAllowedError):
        find_checkpoint_files(tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="allow_bin=True"):
        read_checkpoint(tmp_path, prefer="pytorch_bin")


def test_bin_without_torch_gives_clear_import_error(tmp_path, monkeypatch):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    for call in (lambda: read_torch_bin(tmp_path / "pytorch_model.bin"),
                 lambda: read_checkpoint(tmp_path, allow_bin=True),
                 lambda: write_torch_bin(tmp_path / "out.bin", {"w": np.zeros(2)})):
        with pytest.raises(ImportError, match="needs torch") as error:
            call()
        assert "safetensors" in str(error.value)


# --------------------------------------------------------------------------- folders


def test_missing_folder_and_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as error:
        read_checkpoint(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)

    with pytest.raises(FileNotFoundError, match="folder is empty"):
        read_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "flax_model.msgpack").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as error:
        read_checkpoint(tmp_path)
    message = str(error.value)
    for looked_for in ("model.safetensors", "model.safetensors.index.json", "tf_model.h5", "pytorch_model.bin"):
        assert looked_for in message
    assert "config.json, flax_model.msgpack" in message


def test_read_json_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json") as error:
        read_json_config(tmp_path)
    assert str(tmp_path / "config.json") in str(error.value)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="invalid JSON"):
        read_json_config(tmp_path)
    assert read_json_config(os.path.join(FIXTURE_DIR, "tf"))["d_kv"] == 12


def test_format_preference(tmp_path):
    tensors = read_tf_h5(TF_FIXTURE)
    write_checkpoint(tmp_path, tensors)
    os.symlink(os.path.abspath(TF_FIXTURE), tmp_path / "tf_model.h5")
    assert read_checkpoint(tmp_path)[1] == "safetensors"
    loaded, format_name = read_checkpoint(tmp_path, prefer="tf_h5")
    assert format_name == "tf_h5"
    assert_bit_exact(loaded, tensors)
    assert read_checkpoint(tmp_path / "tf_model.h5")[1] == "tf_h5"  # a file path works too
    with pytest.raises(ValueError, match="not a checkpoint format"):
        read_checkpoint(tmp_path, prefer="onnx")


# --------------------------------------------------------------------------- match_state_dict


def test_match_state_dict_lists_every_problem():
    expected = {"a.weight": (4, 2), "b.weight": (3,), "c.weight": (5, 5), "d.weight": (1,)}
    tensors = {"a.weight": np.zeros((2, 4)), "b.weight": np.zeros(3), "x.extra": np.zeros(7),
               "y.extra": np.zeros(1), "d.weight": np.zeros((1, 1))}
    with pytest.raises(ValueError) as error:
        match_state_dict(expected, tensors, source="ckpt/")
    message = str(error.value)
    assert message.splitlines()[0] == (
        "checkpoint ckpt/ does not match the model: 1 missing, 2 unexpected, 2 shape mismatch(es)")
    assert "  c.weight" in message
    assert "  x.extra (7,)" in message and "  y.extra (1,)" in message
    assert "  a.weight: expected (4, 2), found (2, 4)" in message
    assert "  d.weight: expected (1,), found (1, 1)" in message


def test_match_state_dict_aliases_for_tied_weights():
    tensors = read_tf_h5(TF_FIXTURE)
    expected = {name: array.shape for name, array in tensors.items()}
    expected.update(dict.fromkeys(TIED_TO_SHARED, (96, 32)))
    with pytest.raises(ValueError, match="2 missing") as error:
        match_state_dict(expected, tensors)
    assert "encoder.embed_tokens.weight" in str(error.value) and "decoder.embed_tokens.weight" in str(error.value)

    aliases = {name: ["shared.weight"] for name in TIED_TO_SHARED}
    matched = match_state_dict(expected, tensors, aliases=aliases)
    assert len(matched) == 68
    assert matched["encoder.embed_tokens.weight"] is tensors["shared.weight"]

    # The other direction: a checkpoint that kept only one tied name.
    only_encoder = {"encoder.embed_tokens.weight": tensors["shared.weight"]}
    aliases = {"shared.weight": ["decoder.embed_tokens.weight", "encoder.embed_tokens.weight"]}
    matched = match_state_dict({"shared.weight": (96, 32)}, only_encoder, aliases=aliases)
    assert matched["shared.weight"] is tensors["shared.weight"]


def test_match_state_dict_redundant_and_conflicting_alias_copies():
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    expected = {"shared.weight": (3, 2)}
    aliases = {"shared.weight": ["encoder.embed_tokens.weight"]}
    # A .bin checkpoint keeps the tied duplicate: equal values are fine.
    matched = match_state_dict(expected, {"shared.weight": weight, "encoder.embed_tokens.weight": weight.copy()},
                               aliases=aliases)
    assert list(matched) == ["shared.weight"]
    with pytest.raises(ValueError, match="conflicting alias") as error:
        match_state_dict(expected, {"shared.weight": weight, "encoder.embed_tokens.weight": weight + 1},
                         aliases=aliases)
    assert "encoder.embed_tokens.weight != shared.weight" in str(error.value)
    # Shapes with None accept any size on that axis; aliases must name expected entries.
    assert "w" in match_state_dict({"w": (None, 2)}, {"w": weight})
    with pytest.raises(ValueError, match="does not expect"):
        match_state_dict(expected, {"shared.weight": weight}, aliases={"typo.weight": ["x"]})
