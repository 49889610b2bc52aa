"""Trains the small tokenizer checkpoints used by the tokenizer tests.

Writes two directories laid out like the Hugging Face Hub checkpoints they
imitate, trained on `tests/data/corpus.txt` (see `make_corpus.py`):

* `mt5_tokenizer/` (like `google/mt5-small`): a SentencePiece *unigram*
  `spiece.model` with T5's fixed ids (`<pad>`=0, `</s>`=1, `<unk>`=2, no
  `<s>`), plus `tokenizer_config.json` and `special_tokens_map.json`. The
  config does not set `legacy`, so the reference uses its default
  (`legacy=True`); `extra_ids=100` adds `<extra_id_0..99>` after the
  SentencePiece vocabulary, as T5Tokenizer does.
* `m2m100_tokenizer/` (like `facebook/m2m100_418M`): a SentencePiece *BPE*
  `sentencepiece.bpe.model` and a fairseq-style `vocab.json`: `<s>`=0,
  `<pad>`=1, `</s>`=2, `<unk>`=3, then the pieces that occur when the corpus
  is encoded, most frequent first (ties alphabetical), as fairseq's
  `Dictionary.finalize` orders them. Pieces that never occur are left out of
  `vocab.json` on purpose, so the "piece not in vocab.json -> `<unk>`" path of
  the reference is exercised.

Training is deterministic: one thread, the whole corpus in file order (no
sampling, no shuffling). Run from anywhere:

    python tests/data/make_tokenizer_models.py

`make_golden_ids.py` must be re-run after retraining (it records the
reference ids for these exact files).
"""

import collections
import io
import json
import os

import sentencepiece as spm

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(DATA_DIR, "corpus.txt")

# fairseq's M2M100 language list (same order as transformers' m2m100 codes).
M2M100_CODES = (
    "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga "
    "gd gl gu ha he hi hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt "
    "lv mg mk ml mn mr ms my ne nl no ns oc or pa pl ps pt ro ru sd si sk sl so sq sr ss "
    "su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh zu"
).split()

COMMON_TRAINER_ARGS = dict(
    input=CORPUS,
    num_threads=1,
    input_sentence_size=0,  # use every line, no random subsampling
    shuffle_input_sentence=False,
    character_coverage=0.9995,  # leaves a few rare characters as <unk>
    normalization_rule_name="nmt_nfkc",
    max_sentence_length=8192,
    minloglevel=2,
)


def _train(**kwargs):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(model_writer=model, **COMMON_TRAINER_ARGS, **kwargs)
    return model.getvalue()


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def make_mt5(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    proto = _train(
        model_type="unigram",
        vocab_size=2000,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
    )
    with open(os.path.join(out_dir, "spiece.model"), "wb") as f:
        f.write(proto)
    _write_json(
        os.path.join(out_dir, "special_tokens_map.json"),
        {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    )
    _write_json(
        os.path.join(out_dir, "tokenizer_config.json"),
        {
            "tokenizer_class": "T5Tokenizer",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "extra_ids": 100,
            "additional_special_tokens": None,
            "model_max_length": 1024,
        },
    )


def make_m2m100(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    proto = _train(
        model_type="bpe",
        vocab_size=2000,
        unk_id=3,
        bos_id=0,
        eos_id=2,
        pad_id=1,
    )
    with open(os.path.join(out_dir, "sentencepiece.bpe.model"), "wb") as f:
        f.write(proto)

    # fairseq dictionary: specials first, then pieces by corpus frequency.
    processor = spm.SentencePieceProcessor(model_proto=proto)
    counts = collections.Counter()
    with open(CORPUS, encoding="utf-8") as f:
        for line in f:
            counts.update(processor.encode(line.rstrip("\n"), out_type=str))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        # Characters outside the SentencePiece vocabulary come back as raw
        # text with the <unk> id; fairseq would have stored them under that
        # surface form, but they are not SentencePiece pieces, so skip them.
        if processor.piece_to_id(piece) == processor.unk_id():
            continue
        vocab.setdefault(piece, len(vocab))
    _write_json(os.path.join(out_dir, "vocab.json"), vocab)
    _write_json(
        os.path.join(out_dir, "special_tokens_map.json"),
        {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            # As in facebook/m2m100_418M: the language tokens are listed as
            # special tokens, so "__xx__" in raw text is one token.
            "additional_special_tokens": [f"__{code}__" for code in M2M100_CODES],
        },
    )
    _write_json(
        os.path.join(out_dir, "tokenizer_config.json"),
        {
            "tokenizer_class": "M2M100Tokenizer",
            "src_lang": None,
            "tgt_lang": None,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "language_codes": "m2m100",
            "num_madeup_words": 8,
            "model_max_length": 1024,
        },
    )


def main():
    make_mt5(os.path.join(DATA_DIR, "mt5_tokenizer"))
    make_m2m100(os.path.join(DATA_DIR, "m2m100_tokenizer"))
    for name in ("mt5_tokenizer", "m2m100_tokenizer"):
        directory = os.path.join(DATA_DIR, name)
        for file_name in sorted(os.listdir(directory)):
            size = os.path.getsize(os.path.join(directory, file_name))
            print(f"{name}/{file_name}: {size} bytes")


if __name__ == "__main__":
    main()
