"""Records reference token ids in `tests/data/tokenizer_golden.json`.

The reference is transformers' slow `T5Tokenizer` and `M2M100Tokenizer`
(transformers 4.57, sentencepiece 0.2), built from the checkpoint files in
this folder (see `make_tokenizer_models.py`). The golden file lets
`tests/test_tokenizers_golden.py` check the in-graph tokenizers without
transformers or torch installed. It also holds the list of edge-case strings
that the tests run everywhere.

    python tests/data/make_golden_ids.py
"""

import json
import os
import warnings

import sentencepiece
import transformers
from transformers import M2M100Tokenizer, T5Tokenizer

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(DATA_DIR, "tokenizer_golden.json")
CORPUS_SAMPLE_STEP = 27  # every 27th corpus line: about 50 lines

# Edge cases: whitespace, control and zero-width characters, emoji with ZWJ,
# combining marks, literal special tokens, sentinel and language tokens,
# unigram ties, and a very long line.
EDGE_CASES = [
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "\r\n",
    "a  b   c",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\nmixed\x0bvertical\x0cform",
    "\u00a0no-break\u00a0spaces\u00a0",
    "\u3000ideographic\u3000space",
    "\u2028line\u2029paragraph separators",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f3f3\ufe0f\u200d\U0001f308 flag, \U0001f44d\U0001f3fd thumbs",
    "e\u0301 a\u0308\u0304 decomposed vs é ä",
    "\u0301 leading combining mark",
    "Z\u0324\u0354\u0367\u0311\u0313a\u0316\u032d\u0308\u0307lgo",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "\ufeffBOM and word\u2060joiner and \u200eLRM",
    "\x01control\x7f chars \ufffd replacement \ue000 private",
    "</s>",
    "Hello </s> world</s>",
    "x</s>y </s> z",
    "<pad><unk><s> literal",
    "<unk>",
    "<extra_id_0>",
    "Fill <extra_id_0> the <extra_id_1>.",
    "<extra_id_0>start",
    "   <extra_id_5>   spaced   <extra_id_6>",
    "<extra_id_99> <extra_id_100> <extra_id_1000>",
    "<extra_id_0><extra_id_1></s><pad>",
    "foo</s>\tbar",
    "foo</s>\u00a8bar",
    "</s>\u00a0x",
    "\u2581",
    "\u2581\u2581x \u2581",
    "\u2581<extra_id_0>",
    "__en__ hello __fr__",
    "x__de__y",
    "___en___",
    "555 0000 11111 999999 1234567890",
    "Full\uff37idth \uff21\uff22\uff23\uff11\uff12\uff13 \ufb01 \u2167",
    "\u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd and \u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627",
    "Don't stop . Isn 't it , really ?",
]


def long_line(corpus):
    """A ~1,500-character multilingual line, for truncation."""
    return " ".join(corpus[:30])[:1500]


def load_corpus():
    with open(os.path.join(DATA_DIR, "corpus.txt"), encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def records(tokenizer, texts, **call_kwargs):
    rows = []
    for text in texts:
        ids = tokenizer(text, **call_kwargs)["input_ids"]
        rows.append(
            {
                "text": text,
                "ids": ids,
                "decoded": tokenizer.decode(ids),
                "decoded_skip": tokenizer.decode(ids, skip_special_tokens=True),
            }
        )
    return rows


def main():
    transformers.logging.set_verbosity_error()
    warnings.simplefilter("ignore")
    corpus = load_corpus()
    texts = corpus[::CORPUS_SAMPLE_STEP] + EDGE_CASES + [long_line(corpus)]
    mt5_dir = os.path.join(DATA_DIR, "mt5_tokenizer")
    m2m_dir = os.path.join(DATA_DIR, "m2m100_tokenizer")

    golden = {
        "reference": {
            "transformers": transformers.__version__,
            "sentencepiece": sentencepiece.__version__,
            "classes": "slow T5Tokenizer, M2M100Tokenizer",
        },
        "edge_cases": EDGE_CASES,
        "corpus_sample_step": CORPUS_SAMPLE_STEP,
    }

    t5_default = T5Tokenizer.from_pretrained(mt5_dir)
    t5_non_legacy = T5Tokenizer.from_pretrained(mt5_dir, legacy=False)
    golden["t5_legacy_default"] = records(t5_default, texts)
    golden["t5_legacy_false"] = records(t5_non_legacy, texts)

    batch = texts[:6] + ["", texts[-1][:300]]
    call_options = [
        dict(padding=True),
        dict(padding="max_length", truncation=True, max_length=24),
        dict(padding="longest", truncation=True, max_length=16, pad_to_multiple_of=8),
        dict(padding=False, max_length=5),
    ]
    golden["t5_calls"] = []
    for options in call_options:
        out = t5_default(batch, text_target=batch[::-1], **options)
        golden["t5_calls"].append(
            {"kwargs": options, "texts": batch, "text_target": batch[::-1], "output": dict(out)}
        )

    m2m = M2M100Tokenizer.from_pretrained(m2m_dir, src_lang="en", tgt_lang="fr")
    golden["m2m100_en"] = records(m2m, texts)

    # A mixed-language batch: the reference handles one language per call,
    # so each example is encoded with its own language and the batch is
    # padded with the reference's `pad`.
    sources = ["Hello world!", "Привет, мир", "", "こんにちは世界", texts[-1][:300]]
    src_langs = ["en", "ru", "de", "ja", "zh"]
    targets = ["Bonjour le monde !", "Hallo Welt", "x", "你好世界", "Γειά σου"]
    tgt_langs = ["fr", "de", "en", "zh", "el"]
    golden["m2m100_calls"] = []
    for options in call_options:
        inputs, labels = [], []
        for source, src, target, tgt in zip(sources, src_langs, targets, tgt_langs):
            m2m.src_lang, m2m.tgt_lang = src, tgt
            encoded = m2m(source, text_target=target, **{**options, "padding": False})
            inputs.append({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
            labels.append({"input_ids": encoded["labels"]})
        pad_options = {k: v for k, v in options.items() if k in ("padding", "max_length", "pad_to_multiple_of")}
        padded_inputs = m2m.pad(inputs, **pad_options)
        padded_labels = m2m.pad(labels, **pad_options)
        golden["m2m100_calls"].append(
            {
                "kwargs": options,
                "texts": sources,
                "src_lang": src_langs,
                "text_target": targets,
                "tgt_lang": tgt_langs,
                "output": {
                    "input_ids": padded_inputs["input_ids"],
                    "attention_mask": padded_inputs["attention_mask"],
                    "labels": padded_labels["input_ids"],
                },
            }
        )
    golden["m2m100_lang_ids"] = {code: m2m.get_lang_id(code) for code in ("af", "en", "fr", "zu")}

    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, {len(texts)} texts")


if __name__ == "__main__":
    main()
