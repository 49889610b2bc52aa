"""Output-vocabulary restriction: the token ids one target language needs.

The LM head is most of the bytes a decoding step reads (mt5-small: 128 M of its 150 M
decoder-side parameters), so limiting the output vocabulary to the tokens a target
language uses makes each step read far less. `output_vocabulary` builds that id set from
a sample of target-language text; pass it as `generate(..., output_token_ids=ids)`.

Example (the bundled translator, English -> German):
>>> from tfmodels import BUNDLED_TRANSLATOR_DIR, M2M100ForConditionalGeneration
>>> from tfmodels.tokenizers import M2M100Tokenizer
>>> model = M2M100ForConditionalGeneration.from_pretrained(BUNDLED_TRANSLATOR_DIR)
>>> tokenizer = M2M100Tokenizer.from_pretrained(BUNDLED_TRANSLATOR_DIR, src_lang="en")
>>> german_ids = output_vocabulary(tokenizer, ["Die Schweiz grenzt an Deutschland.",
...                                            "Jeden Sommer fahren wir nach Zürich."])
>>> len(german_ids) < model.config.vocab_size
True
>>> batch = tokenizer(["Switzerland", "January"])
>>> ids = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
...                      forced_bos_token_id=tokenizer.get_lang_id("de"),
...                      output_token_ids=german_ids)
>>> tokenizer.detokenize(ids, skip_special_tokens=True).numpy().tolist()
[b'Schweiz', b'Januar']
"""

import numpy as np

# SentencePiece's word-boundary marker: part of pieces, never of the text.
WORD_BOUNDARY = "\u2581"


def output_vocabulary(tokenizer, texts, spellable=True, extra_token_ids=()):
    """Sorted int32 ids a target language needs, for `generate(output_token_ids=...)`.

    Args:
        tokenizer: a `T5Tokenizer` or `M2M100Tokenizer` (anything with `tokenize`,
            `get_vocabulary` and `all_special_ids`).
        texts: sample sentences in the target language (a list of strings). Every id
            their tokenization produces is kept.
        spellable: also keep every vocabulary piece written only with characters that
            occur in `texts` (plus the word-boundary marker), so words missing from a
            small sample stay reachable. For a Latin-script language this keeps the
            Latin-script part of a multilingual vocabulary and drops the rest.
        extra_token_ids: more ids to keep (e.g. the forced language token).

    Returns:
        A 1-D int32 numpy array, special tokens included.

    Restricting is exact for greedy decoding whenever the unrestricted output only uses
    kept ids; otherwise the search picks the best kept id instead.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("output_vocabulary needs at least one sample text")
    ids = tokenizer.tokenize(texts)
    kept = set(int(i) for i in ids.flat_values.numpy())
    kept.update(int(i) for i in tokenizer.all_special_ids)
    kept.update(int(i) for i in extra_token_ids)
    if spellable:
        characters = set("".join(texts)) | {WORD_BOUNDARY}
        characters.discard(" ")
        for token_id, piece in enumerate(tokenizer.get_vocabulary()):
            if piece and set(piece) <= characters:
                kept.add(token_id)
    return np.array(sorted(kept), dtype=np.int32)


def undecodable_token_ids(tokenizer, vocab_size):
    """Sorted ids in `[0, vocab_size)` that `tokenizer.detokenize` rejects: the rows a
    model's embedding table has past its tokenizer (mT5: 250,112 rows, 250,100 ids).

    Text-out paths (`tfmodels translate`, SavedModel exports, `GenerationEvalCallback`)
    suppress them (`text_output_suppress_tokens`), so they never fail on an id that has
    no text. A tokenizer without `decodable_token_ids` is taken to decode every id.

    Example (run from the repository root: a test tokenizer of 2,100 pieces under a
    model with 2,103 rows; google/mt5-small's gives 250100, ..., 250111):
    >>> from tfmodels.tokenizers import T5Tokenizer
    >>> tokenizer = T5Tokenizer.from_pretrained("tests/data/mt5_tokenizer")
    >>> undecodable_token_ids(tokenizer, 2103)
    [2100, 2101, 2102]
    """
    decodable_token_ids = getattr(tokenizer, "decodable_token_ids", None)
    decodable = decodable_token_ids() if callable(decodable_token_ids) else None
    if decodable is None:
        return []
    return sorted(set(range(int(vocab_size))) - set(int(token) for token in decodable))


def text_output_suppress_tokens(model, tokenizer, requested=None):
    """`suppress_tokens` for a `generate` call whose ids become text: `undecodable_token_ids`
    added to the tokens asked for — `requested`, or when None the model's generation config's
    (passing the option replaces the config's list, which must not be lost).

    Example (the test tokenizer of 2,100 pieces under a model with 2,103 rows):
    >>> from tfmodels import MT5Config, MT5ForConditionalGeneration
    >>> from tfmodels.tokenizers import T5Tokenizer
    >>> tokenizer = T5Tokenizer.from_pretrained("tests/data/mt5_tokenizer")
    >>> model = MT5ForConditionalGeneration(MT5Config(vocab_size=2103, d_model=8, d_kv=4,
    ...     d_ff=8, num_layers=1, num_heads=2))
    >>> model.generation_config.suppress_tokens = [7]
    >>> text_output_suppress_tokens(model, tokenizer)
    [7, 2100, 2101, 2102]
    """
    if requested is None:
        requested = model.generation_config.suppress_tokens
    undecodable = undecodable_token_ids(tokenizer, model.config.vocab_size)
    return sorted(set(undecodable) | set(int(token) for token in requested or ()))
