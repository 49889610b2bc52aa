"""In-graph tokenizers vs. recorded reference ids (no transformers needed).

`tests/data/tokenizer_golden.json` holds ids, decoded strings and padded
batches produced by transformers' slow tokenizers from the checkpoint files
in `tests/data/` (see `tests/data/make_golden_ids.py`).
"""

import json
import os

import pytest
import tensorflow as tf

from tfmodels.tokenizers import M2M100Tokenizer
from tfmodels.tokenizers import T5Tokenizer

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MT5_DIR = os.path.join(DATA_DIR, "mt5_tokenizer")
M2M100_DIR = os.path.join(DATA_DIR, "m2m100_tokenizer")

with open(os.path.join(DATA_DIR, "tokenizer_golden.json"), encoding="utf-8") as _f:
    GOLDEN = json.load(_f)


def _as_list(value):
    return value.to_list() if isinstance(value, tf.RaggedTensor) else value.numpy().tolist()


def _decode_all(strings):
    return [s.decode("utf-8") for s in strings.numpy().tolist()]


@pytest.fixture(scope="module")
def tokenizers():
    return {
        "t5_legacy_default": T5Tokenizer.from_pretrained(MT5_DIR),
        "t5_legacy_false": T5Tokenizer.from_pretrained(MT5_DIR, legacy=False),
        "m2m100_en": M2M100Tokenizer.from_pretrained(M2M100_DIR, src_lang="en", tgt_lang="fr"),
    }


def test_golden_file_matches_corpus():
    with open(os.path.join(DATA_DIR, "corpus.txt"), encoding="utf-8") as f:
        corpus = f.read().split("\n")[:-1]
    texts = [row["text"] for row in GOLDEN["t5_legacy_default"]]
    expected = corpus[:: GOLDEN["corpus_sample_step"]] + GOLDEN["edge_cases"]
    assert texts[: len(expected)] == expected
    assert len(texts) >= 90


@pytest.mark.parametrize("key", ["t5_legacy_default", "t5_legacy_false", "m2m100_en"])
def test_ids_match_reference(tokenizers, key):
    rows = GOLDEN[key]
    got = tokenizers[key].tokenize([row["text"] for row in rows])
    assert got.dtype == tf.int32
    assert got.to_list() == [row["ids"] for row in rows]


@pytest.mark.parametrize("key", ["t5_legacy_default", "t5_legacy_false", "m2m100_en"])
def test_scalar_inputs_match_reference(tokenizers, key):
    for row in GOLDEN[key][::12]:
        ids = tokenizers[key].tokenize(row["text"])
        assert ids.shape.rank == 1
        assert ids.numpy().tolist() == row["ids"]
        text = tokenizers[key].detokenize(ids)
        assert text.shape.rank == 0
        assert text.numpy().decode("utf-8") == row["decoded"]


@pytest.mark.parametrize("key", ["t5_legacy_default", "t5_legacy_false", "m2m100_en"])
def test_decoding_matches_reference(tokenizers, key):
    rows = GOLDEN[key]
    ids = tf.ragged.constant([row["ids"] for row in rows], dtype=tf.int32)
    assert _decode_all(tokenizers[key].detokenize(ids)) == [row["decoded"] for row in rows]
    skipped = tokenizers[key].detokenize(ids, skip_special_tokens=True)
    assert _decode_all(skipped) == [row["decoded_skip"] for row in rows]


@pytest.mark.parametrize("index", range(4))
def test_t5_calls_match_reference(tokenizers, index):
    case = GOLDEN["t5_calls"][index]
    out = tokenizers["t5_legacy_default"](case["texts"], text_target=case["text_target"], **case["kwargs"])
    assert sorted(out) == sorted(case["output"])
    for key, expected in case["output"].items():
        assert out[key].dtype == tf.int32
        assert _as_list(out[key]) == expected, key


@pytest.mark.parametrize("index", range(4))
def test_m2m100_mixed_language_calls_match_reference(tokenizers, index):
    case = GOLDEN["m2m100_calls"][index]
    out = tokenizers["m2m100_en"](
        case["texts"],
        text_target=case["text_target"],
        src_lang=tf.constant(case["src_lang"]),
        tgt_lang=tf.constant(case["tgt_lang"]),
        **case["kwargs"],
    )
    for key, expected in case["output"].items():
        assert _as_list(out[key]) == expected, key


def test_m2m100_language_ids_match_reference(tokenizers):
    for code, expected in GOLDEN["m2m100_lang_ids"].items():
        assert tokenizers["m2m100_en"].get_lang_id(code) == expected
