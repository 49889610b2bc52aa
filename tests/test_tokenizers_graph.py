"""Graph execution, export, errors and API behaviour of the tokenizers.

No transformers needed: where outputs are compared, the expected values are
the recorded reference ids in `tests/data/tokenizer_golden.json` or the same
tokenizer run eagerly (itself checked against the reference elsewhere).
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmodels.tokenizers import M2M100Tokenizer
from tfmodels.tokenizers import T5Tokenizer
from tfmodels.tokenizers import m2m100_tokenizer
from tfmodels.tokenizers import t5_tokenizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "tests", "data")
MT5_DIR = os.path.join(DATA_DIR, "mt5_tokenizer")
M2M100_DIR = os.path.join(DATA_DIR, "m2m100_tokenizer")

with open(os.path.join(DATA_DIR, "tokenizer_golden.json"), encoding="utf-8") as _f:
    GOLDEN = json.load(_f)

SAMPLE = [row["text"] for row in GOLDEN["t5_legacy_default"]][::3]


def _as_list(value):
    return value.to_list() if isinstance(value, tf.RaggedTensor) else value.numpy().tolist()


@pytest.fixture(scope="module")
def t5():
    return T5Tokenizer.from_pretrained(MT5_DIR)


@pytest.fixture(scope="module")
def t5_non_legacy():
    return T5Tokenizer.from_pretrained(MT5_DIR, legacy=False)


@pytest.fixture(scope="module")
def m2m():
    return M2M100Tokenizer.from_pretrained(M2M100_DIR, src_lang="en", tgt_lang="fr")


# --------------------------------------------------------------- graph modes


def test_tf_data_map_scalar_and_mixed_language_batches(t5, m2m):
    expected = [row["ids"] for row in GOLDEN["t5_legacy_default"]][::3]
    scalar_ds = tf.data.Dataset.from_tensor_slices(SAMPLE).map(t5.tokenize)
    assert [ids.tolist() for ids in scalar_ds.as_numpy_iterator()] == expected

    # Batched, with one source and one target language per example.
    texts = SAMPLE[:8]
    src = ["en", "ru", "de", "zu", "ja", "ko", "ar", "he"]
    tgt = src[::-1]
    batched = tf.data.Dataset.from_tensor_slices((texts, src, tgt)).batch(4).map(
        lambda text, s, t: m2m(text, text_target=text, src_lang=s, tgt_lang=t, padding="max_length",
                               max_length=16, truncation=True)
    )
    rows = list(batched.as_numpy_iterator())
    assert len(rows) == 2 and all(b["input_ids"].shape == b["labels"].shape == (4, 16) for b in rows)
    eager = m2m(texts, text_target=texts, src_lang=src, tgt_lang=tgt, padding="max_length", max_length=16,
                truncation=True)
    for key in ("input_ids", "attention_mask", "labels"):
        assert rows[0][key].tolist() + rows[1][key].tolist() == eager[key].numpy().tolist(), key
    assert eager["input_ids"].numpy()[:, 0].tolist() == [m2m.get_lang_id(code) for code in src]
    assert eager["labels"].numpy()[:, 0].tolist() == [m2m.get_lang_id(code) for code in tgt]


def test_one_language_as_a_tensor_and_the_other_as_a_string(m2m):
    """A per-example source language with a fixed target, in `tf.data` and eagerly
    (Keras must not take the two as one mixed argument)."""
    texts, src = ["Hello", "Привет"], ["en", "ru"]
    dataset = tf.data.Dataset.from_tensor_slices((texts, src)).batch(2).map(
        lambda text, lang: m2m(text, text_target=text, src_lang=lang, tgt_lang="de"))
    batch = next(iter(dataset))
    eager = m2m(texts, text_target=texts, src_lang=tf.constant(src), tgt_lang="de")
    for key in ("input_ids", "labels"):
        assert batch[key].numpy().tolist() == eager[key].numpy().tolist()
    assert eager["input_ids"].numpy()[:, 0].tolist() == [m2m.get_lang_id(code) for code in src]
    assert eager["labels"].numpy()[:, 0].tolist() == [m2m.get_lang_id("de")] * 2
    swapped = m2m(texts, text_target=texts, src_lang="ru", tgt_lang=tf.constant(["it", "nl"]))
    assert swapped["labels"].numpy()[:, 0].tolist() == [m2m.get_lang_id(c) for c in ("it", "nl")]


def test_text_after_a_nul_character_is_kept(t5, m2m):
    """tf-text's regex split stops at a NUL; the tokenizers split around added tokens
    without losing what follows it."""
    for tok, special in ((t5, "</s>"), (m2m, "__de__")):
        whole = tok.tokenize(f"a\x00b {special} c").numpy().tolist()
        assert whole[:-1] == (tok.tokenize("a\x00b").numpy().tolist()[:-1]
                              + tok.tokenize(f"{special} c").numpy().tolist()[(1 if tok is m2m else 0):-1])
        assert len(tok.tokenize("\x00 \x00").numpy()) > len(tok.tokenize("").numpy())


def test_survives_random_seed_reset():
    # tf-text's SentencePiece resource is kernel-owned; an eagerly created
    # one vanishes when the eager kernel cache is cleared.
    m2m = M2M100Tokenizer.from_pretrained(M2M100_DIR)
    before = m2m.tokenize(SAMPLE).to_list()
    tf.random.set_seed(1)
    keras.utils.set_random_seed(2)
    assert m2m.tokenize(SAMPLE).to_list() == before


def test_tf_function_and_saved_model_reloaded_with_only_tf_and_tf_text(tmp_path, t5_non_legacy, m2m):
    """`tf.function`s with `tf.string` specs match eager calls, and a
    SavedModel of a `tf.Module` holding the tokenizers gives the same results
    in a fresh process that imports only tensorflow and tensorflow_text."""

    class TokenizerModule(tf.Module):
        def __init__(self):
            super().__init__()
            self.t5 = t5_non_legacy
            self.m2m = m2m

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def t5_encode(self, texts):
            return self.t5(texts, padding="max_length", max_length=32, truncation=True)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
        def t5_decode(self, ids):
            return self.t5.detokenize(ids, skip_special_tokens=True)

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string),
                             tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)]
        )
        def m2m_encode(self, texts, src_lang, targets, tgt_lang):
            return self.m2m(texts, text_target=targets, src_lang=src_lang, tgt_lang=tgt_lang)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
        def m2m_decode(self, ids):
            return self.m2m.detokenize(ids)

    module = TokenizerModule()
    texts = SAMPLE[:6] + ["", "Fill <extra_id_0> in </s>"]
    langs = ["en", "fr", "de", "ru", "ja", "zh", "ar", "el"]
    tgt = ["fr", "en", "en", "de", "ko", "ja", "he", "tr"]
    graph = {
        "t5_encode": {k: v.numpy().tolist() for k, v in module.t5_encode(tf.constant(texts)).items()},
        "m2m_encode": {
            k: v.numpy().tolist()
            for k, v in module.m2m_encode(tf.constant(texts), tf.constant(langs), tf.constant(texts[::-1]),
                                          tf.constant(tgt)).items()
        },
    }
    graph["t5_decode"] = [s.decode() for s in module.t5_decode(tf.constant(graph["t5_encode"]["input_ids"])).numpy()]
    graph["m2m_decode"] = [s.decode() for s in module.m2m_decode(tf.constant(graph["m2m_encode"]["input_ids"])).numpy()]

    eager_t5 = t5_non_legacy(texts, padding="max_length", max_length=32, truncation=True)
    eager_m2m = m2m(texts, text_target=texts[::-1], src_lang=langs, tgt_lang=tgt)
    assert graph["t5_encode"] == {k: v.numpy().tolist() for k, v in eager_t5.items()}
    assert graph["m2m_encode"] == {k: v.numpy().tolist() for k, v in eager_m2m.items()}
    assert graph["t5_decode"] == [
        s.decode() for s in t5_non_legacy.detokenize(eager_t5["input_ids"], skip_special_tokens=True).numpy()]
    assert graph["m2m_decode"] == [s.decode() for s in m2m.detokenize(eager_m2m["input_ids"]).numpy()]

    export_dir = str(tmp_path / "tokenizers")
    tf.saved_model.save(module, export_dir)
    script = textwrap.dedent(
        """
        import json, sys
        import tensorflow as tf
        import tensorflow_text  # registers the tf-text ops
        args = json.loads(sys.argv[1])
        m = tf.saved_model.load(args["path"])
        texts, langs, tgt = tf.constant(args["texts"]), tf.constant(args["langs"]), tf.constant(args["tgt"])
        out = {
            "t5_encode": {k: v.numpy().tolist() for k, v in m.t5_encode(texts).items()},
            "m2m_encode": {k: v.numpy().tolist()
                           for k, v in m.m2m_encode(texts, langs, tf.constant(args["texts"][::-1]), tgt).items()},
        }
        out["t5_decode"] = [s.decode() for s in m.t5_decode(tf.constant(out["t5_encode"]["input_ids"])).numpy()]
        out["m2m_decode"] = [s.decode() for s in m.m2m_decode(tf.constant(out["m2m_encode"]["input_ids"])).numpy()]
        try:
            m.m2m_encode(texts, tf.constant(["en"] * 7 + ["xx"]), texts, tgt)
            out["error"] = None
        except tf.errors.InvalidArgumentError as error:
            out["error"] = error.message
        out["foreign_modules"] = sorted(
            name for name in sys.modules if name.split(".")[0] in ("tfmodels", "transformers", "sentencepiece"))
        print(json.dumps(out))
        """
    )
    args = json.dumps({"path": export_dir, "texts": texts, "langs": langs, "tgt": tgt})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", script, args], capture_output=True, text=True, cwd=str(tmp_path), env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert reloaded["foreign_modules"] == []
    assert "src_lang: xx." in reloaded["error"] and "Valid codes (m2m100): af, am" in reloaded["error"]
    for key, value in graph.items():
        assert reloaded[key] == value, key


# ------------------------------------------------------------------- errors


def test_non_string_input_is_rejected(t5, m2m):
    for bad in (tf.constant([1, 2]), [1, 2], np.array([1.5])):
        with pytest.raises(TypeError, match="expects string"):
            t5(bad)
        with pytest.raises(TypeError, match="expects string"):
            m2m.tokenize(bad)
    with pytest.raises(ValueError, match="scalar or a 1-D"):
        t5.tokenize(tf.constant([["a"]]))
    with pytest.raises(TypeError, match="integers"):
        t5.detokenize(tf.constant([[1.0]]))
    for bad in (None, {"text": "a"}):
        with pytest.raises(TypeError, match="T5Tokenizer expects strings"):
            t5.tokenize(bad)
    with pytest.raises(TypeError, match="Token ids must be integers, got None"):
        t5.detokenize(None)


def test_unknown_language_code_errors_name_the_code(m2m):
    with pytest.raises(ValueError, match="'xx' for src_lang.*Valid codes.*af, am, ar"):
        m2m.tokenize("hello", src_lang="xx")
    with pytest.raises(ValueError, match="'xx' for tgt_lang"):
        m2m(["hello"], text_target=["hallo"], tgt_lang="xx")
    with pytest.raises(ValueError, match="'qq'"):
        M2M100Tokenizer.from_pretrained(M2M100_DIR, src_lang="qq")
    with pytest.raises(ValueError, match="'xx'"):
        m2m.get_lang_id("xx")
    with pytest.raises(tf.errors.InvalidArgumentError, match="src_lang: xx\\..*Valid codes"):
        m2m.tokenize(["a", "b"], src_lang=tf.constant(["en", "xx"]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(langs):
        return m2m(tf.fill(tf.shape(langs), "hello"), text_target=tf.fill(tf.shape(langs), "x"), tgt_lang=langs)

    with pytest.raises(tf.errors.InvalidArgumentError, match="tgt_lang: yy\\..*Valid codes \\(m2m100\\)"):
        encode(tf.constant(["fr", "yy"]))
    with pytest.raises(ValueError, match="tgt_lang"):
        m2m.__class__.from_pretrained(M2M100_DIR)(["x"], text_target=["y"])


def test_t5_rejects_ids_outside_vocabulary(t5):
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of range"):
        t5.detokenize([5, t5.vocabulary_size()])
    with pytest.raises(tf.errors.InvalidArgumentError, match="-100"):
        t5.detokenize([[5, -100]])


def test_wide_ids_do_not_wrap_into_the_vocabulary(t5, m2m):
    """int64 ids beyond int32 are out of range, not taken modulo 2**32."""
    wide = tf.constant([2**32 + 5], tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of range for this vocabulary: 4294967301"):
        t5.detokenize(wide)
    assert m2m.detokenize(tf.constant([2**32 + 5, -(2**32) + 5], tf.int64)).numpy() == b"<unk><unk>"


def test_m2m100_decodes_out_of_range_ids_as_unk(m2m):
    # The reference maps unknown ids to "<unk>" (a special token).
    # "__fr__" is listed as a special token in this checkpoint, so it is its
    # own space-separated chunk.
    assert m2m.detokenize([m2m.get_lang_id("fr"), 99999, -100]).numpy().decode() == "__fr__ <unk><unk>"
    assert m2m.detokenize([99999, -100], skip_special_tokens=True).numpy().decode() == ""


# --------------------------------------------------------- shapes & dtypes


def test_empty_batch(t5, m2m):
    for tok in (t5, m2m):
        out = tok([])
        assert out["input_ids"].shape == (0, 0) and out["input_ids"].dtype == tf.int32
        out = tok(tf.constant([], tf.string), padding="max_length", max_length=7, text_target=[])
        assert out["input_ids"].shape == (0, 7) and out["labels"].shape == (0, 7)
        assert tok.detokenize(tf.zeros([0, 3], tf.int32)).shape == (0,)
    assert t5.tokenize([]).shape[0] == 0
    assert m2m.detokenize(tf.ragged.constant([[]], dtype=tf.int32)).numpy().tolist() == [b""]
    # Empty Python lists have no dtype to check: they are empty ids / language codes.
    assert t5.detokenize([[]]).numpy().tolist() == [b""] and t5.detokenize([]).numpy() == b""
    assert m2m.tokenize([], src_lang=[]).shape[0] == 0


def test_scalar_in_unbatched_out(t5, m2m):
    for tok in (t5, m2m):
        out = tok("Hello world", text_target="Salut", pad_to_multiple_of=8)
        assert out["input_ids"].shape.rank == 1 and out["input_ids"].shape[0] % 8 == 0
        assert out["labels"].shape.rank == 1
        assert out["input_ids"].dtype == out["attention_mask"].dtype == tf.int32
        ragged = tok(["Hello world", "x"], padding=False)
        assert isinstance(ragged["input_ids"], tf.RaggedTensor)
        assert ragged["attention_mask"].to_list() == [[1] * len(r) for r in ragged["input_ids"].to_list()]


def test_truncation_keeps_end_and_language_tokens(t5, m2m):
    long_text = GOLDEN["t5_legacy_default"][-1]["text"]
    ids = t5(long_text, max_length=10, truncation=True)["input_ids"].numpy().tolist()
    assert len(ids) == 10 and ids[-1] == t5.eos_token_id
    out = m2m([long_text, "short"], src_lang=tf.constant(["ja", "ko"]), max_length=10, truncation=True,
              padding="max_length")
    ids = out["input_ids"].numpy()
    assert ids.shape == (2, 10)
    assert ids[0, 0] == m2m.get_lang_id("ja") and ids[0, -1] == m2m.eos_token_id
    assert ids[1, 0] == m2m.get_lang_id("ko") and m2m.eos_token_id in ids[1]


# ------------------------------------------------------ vocabulary details


def test_t5_sentinel_ids_follow_reference_formula(t5):
    sp_size = t5.vocab_size
    sentinels = t5.get_sentinel_token_ids()
    assert len(sentinels) == 100
    assert sentinels[0] == sp_size + 100 - 1 == t5.token_to_id("<extra_id_0>")
    assert sentinels[-1] == sp_size
    assert t5.vocabulary_size() == sp_size + 100
    ids = t5.tokenize("a <extra_id_0> b <extra_id_99>").numpy().tolist()
    assert sentinels[0] in ids and sentinels[-1] in ids


def test_m2m100_language_ids_and_code_sets():
    m2m = M2M100Tokenizer.from_pretrained(M2M100_DIR)
    base = m2m.vocab_size
    codes = m2m100_tokenizer.M2M100_LANGUAGE_CODES
    assert len(codes["m2m100"]) == 100
    for index, code in enumerate(codes["m2m100"]):
        assert m2m.get_lang_id(code) == base + index
        assert m2m.get_lang_token(code) == f"__{code}__"
    wmt = M2M100Tokenizer.from_pretrained(M2M100_DIR, language_codes="wmt21", src_lang="ja")
    assert wmt.lang_codes == ["en", "ha", "is", "ja", "cs", "ru", "zh", "de"]
    assert [wmt.get_lang_id(c) for c in wmt.lang_codes] == list(range(base, base + 8))
    assert wmt.tokenize("x").numpy()[0] == base + 3
    with pytest.raises(ValueError, match="'fr'.*wmt21"):
        wmt.get_lang_id("fr")


def test_m2m100_language_at_construction_call_and_example(m2m):
    texts = ["Hello", "Hallo"]
    by_default = m2m.tokenize(texts).to_list()
    assert [row[0] for row in by_default] == [m2m.get_lang_id("en")] * 2
    per_call = m2m.tokenize(texts, src_lang="de").to_list()
    assert [row[0] for row in per_call] == [m2m.get_lang_id("de")] * 2
    per_example = m2m.tokenize(texts, src_lang=tf.constant(["en", "de"])).to_list()
    assert per_example == [by_default[0], per_call[1]]
    scalar_tensor = m2m.tokenize(texts, src_lang=tf.constant("de")).to_list()
    assert scalar_tensor == per_call
    other = M2M100Tokenizer.from_pretrained(M2M100_DIR, src_lang="de")
    assert other.tokenize(texts).to_list() == per_call
    labels = m2m(texts, text_target=texts, tgt_lang=["ru", "uk"])["labels"].numpy()
    assert labels[:, 0].tolist() == [m2m.get_lang_id("ru"), m2m.get_lang_id("uk")]


# ------------------------------------------------- subword regularisation


def test_subword_sampling_is_off_by_default_and_varies_when_on(t5, m2m):
    text = GOLDEN["t5_legacy_default"][-1]["text"][:400]
    samplers = (
        (t5, T5Tokenizer.from_pretrained(MT5_DIR, nbest_size=-1, alpha=0.1)),
        (m2m, M2M100Tokenizer.from_pretrained(M2M100_DIR, src_lang="en", nbest_size=-1, alpha=0.2)),
    )
    for plain, sampling in samplers:
        assert not plain.sampling_enabled and sampling.sampling_enabled
        assert len({tuple(plain.tokenize(text).numpy().tolist()) for _ in range(2)}) == 1
        samples = {tuple(sampling.tokenize(text).numpy().tolist()) for _ in range(4)}
        assert len(samples) > 1
        # Every sample spells the same text. (M2M100 maps sampled pieces that
        # are missing from vocab.json to <unk>: those spans are wildcards.)
        reference_text = plain.detokenize(plain.tokenize(text)).numpy().decode()
        decoded = plain.detokenize(tf.ragged.constant([list(s) for s in samples], dtype=tf.int32)).numpy()
        for sample_text in decoded:
            parts = sample_text.decode().split("<unk>")
            assert re.fullmatch("(?s)" + ".+?".join(re.escape(part) for part in parts), reference_text)


# ------------------------------------------------------ saving and configs


@pytest.mark.parametrize("kind", ["t5", "m2m100"])
def test_keras_serialization_and_assets_round_trip(tmp_path, kind, t5_non_legacy, m2m):
    tok = t5_non_legacy if kind == "t5" else m2m
    config = keras.saving.serialize_keras_object(tok)
    assert config["registered_name"] == ("tfmodels>T5Tokenizer" if kind == "t5" else "tfmodels>M2M100Tokenizer")
    json.dumps(config)  # the config is plain JSON
    restored = keras.saving.deserialize_keras_object(config)
    with pytest.raises(ValueError, match="no vocabulary"):
        restored.tokenize("x")
    tok.save_assets(str(tmp_path))
    restored.load_assets(str(tmp_path))
    assert restored.tokenize(SAMPLE).to_list() == tok.tokenize(SAMPLE).to_list()
    assert restored.get_config() == tok.get_config()


def test_keras_model_file_round_trip(tmp_path, t5):
    inputs = keras.Input(shape=(), dtype="string")
    outputs = t5(inputs, padding="max_length", max_length=16, truncation=True)
    model = keras.Model(inputs, outputs)
    expected = model(tf.constant(SAMPLE[:4]))
    path = str(tmp_path / "tokenizer.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    got = reloaded(tf.constant(SAMPLE[:4]))
    for key in ("input_ids", "attention_mask"):
        assert got[key].numpy().tolist() == expected[key].numpy().tolist()


@pytest.mark.parametrize("kind", ["t5", "m2m100"])
def test_save_pretrained_round_trip(tmp_path, kind, t5_non_legacy, m2m):
    tok = t5_non_legacy if kind == "t5" else m2m
    tok.save_pretrained(str(tmp_path))
    if kind == "t5":
        assert sorted(os.listdir(tmp_path)) == ["special_tokens_map.json", "spiece.model", "tokenizer_config.json"]
        with open(os.path.join(MT5_DIR, t5_tokenizer.SPIECE_FILE), "rb") as f:
            assert (tmp_path / "spiece.model").read_bytes() == f.read()
        reloaded = T5Tokenizer.from_pretrained(str(tmp_path))
        assert reloaded.legacy is False
    else:
        assert sorted(os.listdir(tmp_path)) == [
            "sentencepiece.bpe.model", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
        with open(os.path.join(M2M100_DIR, "vocab.json"), encoding="utf-8") as f:
            assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == json.load(f)
        reloaded = M2M100Tokenizer.from_pretrained(str(tmp_path))
        assert (reloaded.src_lang, reloaded.tgt_lang) == ("en", "fr")
    texts = [row["text"] for row in GOLDEN["t5_legacy_default"]]
    assert reloaded.tokenize(texts).to_list() == tok.tokenize(texts).to_list()
    ids = tok.tokenize(texts)
    assert reloaded.detokenize(ids).numpy().tolist() == tok.detokenize(ids).numpy().tolist()

