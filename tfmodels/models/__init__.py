"""Model families built on the shared encoder-decoder core in `seq2seq.py`."""
