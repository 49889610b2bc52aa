"""Strings <-> ids inside the exported graphs, the same way for mT5 and M2M100.

`TextCodec` wraps the checkpoint's in-graph tokenizer (`T5Tokenizer` or
`M2M100Tokenizer`) with the export's truncation limits and hides the one difference
between the families: M2M100 frames every sequence with a language token, so its
encoding functions take language codes (`[batch]` strings) and mT5's ignore them.
"""

import tensorflow as tf

from tfmodels.tokenizers import M2M100Tokenizer


class TextCodec:
    """Tokenization for the signatures.

    Args:
        tokenizer: a `T5Tokenizer` or `M2M100Tokenizer` with its vocabulary loaded.
        max_source_length: sources are truncated to this many ids (special tokens kept).
        max_target_length: targets are truncated to this many ids.

    Example (eagerly here; the signatures call it inside their `tf.function`):
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> from tfmodels.tokenizers import M2M100Tokenizer
    >>> tokenizer = M2M100Tokenizer.from_pretrained(BUNDLED_TRANSLATOR_DIR)
    >>> codec = TextCodec(tokenizer, max_source_length=128, max_target_length=128)
    >>> ids, mask = codec.encode_sources(tf.constant(["Switzerland"]), tf.constant(["en"]))
    >>> int(ids[0, 0]) == tokenizer.get_lang_id("en"), codec.decode(ids).numpy().tolist()
    (True, [b'Switzerland'])
    >>> codec.target_language_ids(tf.constant(["de", "fr"]), 2).numpy().tolist() == [
    ...     tokenizer.get_lang_id("de"), tokenizer.get_lang_id("fr")]
    True
    """

    def __init__(self, tokenizer, max_source_length, max_target_length):
        self.tokenizer = tokenizer
        self.max_source_length = int(max_source_length)
        self.max_target_length = int(max_target_length)
        self.uses_languages = isinstance(tokenizer, M2M100Tokenizer)
        self.pad_token_id = int(tokenizer.pad_token_id)

    def _language_kwargs(self, argument, codes):
        if not self.uses_languages:
            return {}
        return {argument: codes}

    def encode_sources(self, texts, src_lang=None):
        """`[batch]` strings -> `(input_ids, attention_mask)`, int32 `[batch, length]`,
        right-padded with the pad id and truncated to `max_source_length`."""
        encoded = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_source_length,
            **self._language_kwargs("src_lang", src_lang),
        )
        return encoded["input_ids"], encoded["attention_mask"]

    def encode_targets(self, texts, tgt_lang=None):
        """Target strings -> `(labels, labels_mask)`, truncated to `max_target_length`."""
        encoded = self.tokenizer(
            text_target=texts,
            padding="longest",
            truncation=True,
            max_length=self.max_target_length,
            **self._language_kwargs("tgt_lang", tgt_lang),
        )
        return encoded["input_ids"], encoded["attention_mask"]

    def target_language_ids(self, tgt_lang, batch_size):
        """M2M100: `[batch]` int32 ids of the `__xx__` tokens generation must start with.

        The tokenizer's public call frames an (empty) target with the language token, and
        validates the codes with its own error message ("Unknown language code(s) for
        tgt_lang: ..."); the first id of each row is the language token.
        """
        empty_targets = tf.fill([batch_size], "")
        encoded = self.tokenizer(text_target=empty_targets, padding="longest", tgt_lang=tgt_lang)
        return tf.reshape(encoded["input_ids"][:, :1], [batch_size])

    def decode(self, ids):
        """int `[batch, length]` ids -> `[batch]` strings, special tokens dropped."""
        return self.tokenizer.detokenize(ids, skip_special_tokens=True)


def tokenizer_resources(tokenizer):
    """The lookup tables (and other TF resources) a tokenizer's graph ops read.

    A Keras layer does not expose them to SavedModel tracking, so the exported module
    holds them explicitly; otherwise saving fails with "untracked resource".
    """
    found = []

    def visit(value):
        if isinstance(value, tf.saved_model.experimental.TrackableResource):
            if all(value is not seen for seen in found):
                found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for attribute in vars(tokenizer).values():
        visit(attribute)
    return found
