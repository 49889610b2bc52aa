"""`output_vocabulary`: the token-id set for an output-vocabulary restriction."""

import os

import numpy as np
import pytest

from tfmodels.generation import output_vocabulary
from tfmodels.tokenizers import M2M100Tokenizer
from tfmodels.tokenizers import T5Tokenizer

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GERMAN = ["Guten Morgen, wie geht es dir?", "Die Schweiz liegt in Europa.", "Montag und Dienstag"]


@pytest.fixture(scope="module", params=["mt5", "m2m100"])
def tokenizer(request):
    if request.param == "mt5":
        return T5Tokenizer.from_pretrained(os.path.join(DATA_DIR, "mt5_tokenizer"))
    return M2M100Tokenizer.from_pretrained(os.path.join(DATA_DIR, "m2m100_tokenizer"),
                                           src_lang="de")


def test_sample_ids_and_specials_are_kept(tokenizer):
    ids = output_vocabulary(tokenizer, GERMAN, spellable=False)
    sample_ids = set(tokenizer.tokenize(GERMAN).flat_values.numpy().tolist())
    expected = sample_ids | set(tokenizer.all_special_ids)
    assert ids.dtype == np.int32
    assert ids.tolist() == sorted(expected)


def test_spellable_pieces_use_only_sample_characters(tokenizer):
    ids = output_vocabulary(tokenizer, GERMAN)
    narrow = output_vocabulary(tokenizer, GERMAN, spellable=False)
    assert set(narrow.tolist()) < set(ids.tolist())  # strictly more reachable words
    vocabulary = tokenizer.get_vocabulary()
    characters = set("".join(GERMAN)) | {"\u2581"}
    special = set(tokenizer.all_special_ids)
    for token_id in set(ids.tolist()) - set(narrow.tolist()) - special:
        assert set(vocabulary[token_id]) <= characters, vocabulary[token_id]
    # Pieces in other scripts (the test vocabularies hold CJK, Cyrillic, Greek...) are out.
    cjk = [i for i, piece in enumerate(vocabulary) if any("\u4e00" <= c <= "\u9fff" for c in piece)]
    assert cjk and not set(cjk) & set(ids.tolist())
    assert len(ids) < len(vocabulary) / 2


def test_extra_ids_and_errors(tokenizer):
    ids = output_vocabulary(tokenizer, "Hallo", spellable=False, extra_token_ids=[7, 9])
    assert {7, 9} <= set(ids.tolist())
    with pytest.raises(ValueError, match="sample text"):
        output_vocabulary(tokenizer, [])


# ------------------------------------------------- ids past the tokenizer (padded vocabulary)
def test_undecodable_token_ids():
    from tfmodels.generation import undecodable_token_ids

    t5 = T5Tokenizer.from_pretrained(os.path.join(DATA_DIR, "mt5_tokenizer"))
    size = len(t5.decodable_token_ids())
    assert undecodable_token_ids(t5, size + 12) == list(range(size, size + 12))
    assert undecodable_token_ids(t5, size) == []
    m2m = M2M100Tokenizer.from_pretrained(os.path.join(DATA_DIR, "m2m100_tokenizer"))
    assert undecodable_token_ids(m2m, 10_000) == []  # detokenize accepts every id


def test_suppress_tokens_errors_name_the_problem():
    from test_training_support import small_model

    model = small_model("mt5")
    with pytest.raises(ValueError, match=r"suppress_tokens holds token id 64, outside the vocabulary \[0, 64\)"):
        model.generate(np.array([[5, 6]]), suppress_tokens=[3, 64])
    with pytest.raises(ValueError, match="`suppress_tokens` must be a list of token ids"):
        model.generate(np.array([[5, 6]]), suppress_tokens="5")


def test_text_paths_never_generate_ids_the_tokenizer_cannot_decode(tmp_path):
    """A model with more rows than its tokenizer has ids (mT5: 250,112 vs 250,100), whose
    head favours one of the extra ids: `tfmodels translate` and the exported SavedModel
    suppress those ids instead of failing the request in detokenize, and keep suppressing
    the checkpoint's own `suppress_tokens`."""
    import tensorflow as tf

    from fixtures.savedmodel.checkpoints import _save
    from savedmodel import ExportSettings, export_savedmodel
    from test_training_support import favour_token, small_model
    from tfmodels.cli import Translator

    tokenizer = T5Tokenizer.from_pretrained(os.path.join(DATA_DIR, "mt5_tokenizer"))
    decodable = tokenizer.decodable_token_ids()
    extra_id = int(decodable[-1]) + 5
    model = small_model("mt5", vocab_size=int(decodable[-1]) + 13)
    favour_token(model, extra_id)  # the extra id wins every step unless suppressed
    undecodable = list(range(int(decodable[-1]) + 1, int(decodable[-1]) + 13))

    texts = ["Hello world.", "Guten Morgen"]
    encoded = tokenizer(texts)
    raw = np.asarray(model.generate(encoded["input_ids"], attention_mask=encoded["attention_mask"],
                                    max_new_tokens=4))
    assert extra_id in raw  # without suppression the request would fail in detokenize
    # The checkpoint's generation_config.json suppresses a token the text paths would
    # write otherwise: it stays suppressed next to the undecodable ids.
    own = int(np.asarray(model.generate(
        encoded["input_ids"], attention_mask=encoded["attention_mask"], max_new_tokens=4,
        suppress_tokens=undecodable))[0, 1])
    assert own not in (0, 1)
    model.generation_config.suppress_tokens = [own]
    checkpoint = str(tmp_path / "checkpoint")
    _save(model, tokenizer, checkpoint)

    translator = Translator(checkpoint)
    outputs = translator.translate(texts, max_new_tokens=4)
    suppressed = np.asarray(model.generate(
        encoded["input_ids"], attention_mask=encoded["attention_mask"], max_new_tokens=4,
        suppress_tokens=undecodable + [own]))
    assert not np.isin(suppressed, [extra_id, own]).any()
    expected = tokenizer.detokenize(tf.convert_to_tensor(suppressed), skip_special_tokens=True)
    assert outputs == [s.decode().strip() for s in expected.numpy()]

    result = export_savedmodel(checkpoint, str(tmp_path / "served"),
                               ExportSettings(num_beams=1, max_new_tokens=4, warmup=False),
                               model=model, tokenizer=tokenizer)
    served = tf.saved_model.load(result.saved_model_dir).signatures["serving_default"]
    texts_out = served(text=tf.constant(texts))["text"].numpy()
    assert [s.decode() for s in texts_out] == [s.decode() for s in expected.numpy()]
