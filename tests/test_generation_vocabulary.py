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
