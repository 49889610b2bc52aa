"""No "frequent retracing" warnings from what tfmodels builds one tf.function each for.

TensorFlow counts traces per Python code object and warns when most recent calls traced
("N out of the last N calls to ... triggered tf.function retracing"), a message that tells
users they made a mistake. A search per shape bucket and a tokenizer's eager function are
separate tf.functions that each trace once by design; they must not add up to that warning.
The check runs in a fresh process: TensorFlow warns at most twice per function and process.
"""

import subprocess
import sys

from test_training_support import REPO_DIR, subprocess_env

SCRIPT = """
import logging
import tensorflow as tf
from helpers import TESTS_DIR, TINY_MT5
from tfmodels import MT5Config, MT5ForConditionalGeneration
from tfmodels.generation import trace_count
from tfmodels.tokenizers import M2M100Tokenizer

messages = []  # what TensorFlow's logger says
handler = logging.Handler()
handler.emit = lambda record: messages.append(record.getMessage())
tf.get_logger().addHandler(handler)

model = MT5ForConditionalGeneration(MT5Config(**TINY_MT5))
for batch in (1, 2, 3, 4, 6, 8):          # six batch buckets: six searches traced
    model.generate([[5, 6, 7, 1]] * batch, max_new_tokens=3)
print("SEARCH TRACES", trace_count())
print("SEARCH RETRACING", sum("retracing" in message for message in messages))

messages.clear()
for language in ("en", "de", "fr", "es", "it", "nl"):  # a tokenizer per source language
    tokenizer = M2M100Tokenizer.from_pretrained(TESTS_DIR + "/data/m2m100_tokenizer",
                                                src_lang=language)
    assert tokenizer(["Hello world"])["input_ids"].shape[0] == 1
print("TOKENIZER RETRACING", sum("retracing" in message for message in messages))
"""


def test_bucketed_searches_and_tokenizers_draw_no_retracing_warning():
    process = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                             env=subprocess_env(), cwd=REPO_DIR, timeout=600)
    assert process.returncode == 0, process.stderr[-2000:]
    counts = dict(line.rsplit(" ", 1) for line in process.stdout.splitlines()
                  if line.startswith(("SEARCH ", "TOKENIZER ")))
    assert counts == {"SEARCH TRACES": "6", "SEARCH RETRACING": "0", "TOKENIZER RETRACING": "0"}, (
        process.stdout)
