"""Callbacks for fine-tuning: fault-tolerant backups with exact resume, and generation-
based evaluation (chrF / BLEU) on a validation set.
"""

import json

import keras
import numpy as np
import tensorflow as tf

from tfmodels.generation.vocabulary import text_output_suppress_tokens
from tfmodels.training.scoring import corpus_bleu, corpus_chrf

# ------------------------------------------------------------------------------- backups


def _worker_index(model):
    """`(is multi-worker, worker index)` of this process for the model's strategy (the
    chief, when the cluster names one, is worker 0)."""
    from tfmodels.training.distribute import worker_index
    from tfmodels.training.seq2seq_training import in_multi_worker_mode

    strategy = model.distribute_strategy
    if not in_multi_worker_mode(strategy):
        return False, 0
    return True, worker_index(strategy)


def _remove_tree(directory):
    """Removes `directory` (local or remote), unless another worker just did."""
    try:
        tf.io.gfile.rmtree(directory)
    except tf.errors.NotFoundError:
        pass


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that resumes a step-based run exactly and is
    safe with several workers.

    Keras's callback saves weights + optimizer state and the epoch, and restores the
    epoch to start from. On top of that:

    * Exact resume for a data *stream*: train on an endless, deterministic dataset
      (`seq2seq_dataset(..., repeat=True)`) with `steps_per_epoch` = the backup
      interval; on restart `model.fit` skips the `epoch * steps_per_epoch` batches
      already trained on, so the resumed run sees exactly the batches the interrupted
      one would have seen. (With a finite dataset each epoch restarts the data anyway;
      it is exact when the data order does not depend on how many epochs ran in this
      process, e.g. no reshuffling.)
    * Several workers (`MultiWorkerMirroredStrategy`): each worker keeps its own copy
      (worker 0 in `backup_dir`, worker i in `backup_dir/worker_i`), so workers never
      write the same file; the copies are identical because the weights are. At the end
      (`delete_checkpoint=True`) each worker deletes only its own copy.

    Save at epoch ends (the default): Keras's mid-epoch saves (`save_freq=<int>`) restore
    mid-epoch weights but restart the epoch's data, which is not an exact resume.

    Example (a tiny mT5 run stopped in its second epoch; the next run trains only the
    epochs left):
    >>> import tempfile
    >>> import numpy as np, tensorflow as tf
    >>> from tfmodels import MT5Config, MT5ForConditionalGeneration
    >>> def compiled_model():
    ...     model = MT5ForConditionalGeneration(MT5Config(
    ...         vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    ...     model.compile()
    ...     return model
    >>> stream = tf.data.Dataset.from_tensors({
    ...     "input_ids": np.array([[5, 6, 1]], np.int32),
    ...     "attention_mask": np.array([[1, 1, 1]], np.int32),
    ...     "labels": np.array([[8, 1]], np.int32)}).repeat()
    >>> class StopInSecondEpoch(keras.callbacks.Callback):
    ...     def on_epoch_begin(self, epoch, logs=None):
    ...         if epoch == 1:
    ...             raise RuntimeError("machine lost")
    >>> backup_dir = tempfile.mkdtemp()
    >>> try:
    ...     compiled_model().fit(stream, epochs=3, steps_per_epoch=2, verbose=0,
    ...                          callbacks=[BackupAndRestore(backup_dir), StopInSecondEpoch()])
    ... except RuntimeError:
    ...     pass
    >>> history = compiled_model().fit(stream, epochs=3, steps_per_epoch=2, verbose=0,
    ...                                callbacks=[BackupAndRestore(backup_dir)])
    >>> len(history.history["loss"])   # epochs 2 and 3
    2
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=True,
                 delete_checkpoint=True):
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=double_checkpoint,
                         delete_checkpoint=delete_checkpoint)
        self._root_backup_dir = backup_dir
        self._multi_worker = False  # set with the model (`use_worker_directory`)

    def use_worker_directory(self, model):
        """Points the backup paths at this worker's own directory."""
        multi_worker, index = _worker_index(model)
        self._multi_worker = multi_worker
        directory = self._root_backup_dir
        if multi_worker and index > 0:
            directory = f"{directory.rstrip('/')}/worker_{index}"
        self.backup_dir = directory
        self._weights_path = f"{directory.rstrip('/')}/latest.weights.h5"
        self._training_metadata_path = f"{directory.rstrip('/')}/training_metadata.json"
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"

    def set_model(self, model):
        super().set_model(model)
        self.use_worker_directory(model)

    def _save_model(self):
        # Keras checks for the directory and then creates it, which fails when another
        # worker creates it in between (worker i's `backup_dir/worker_i` makes
        # `backup_dir` too). `tf.io.gfile.makedirs` succeeds on an existing directory.
        tf.io.gfile.makedirs(self.backup_dir)
        super()._save_model()
        # `save_weights` leaves out the dropout layers' random-number states; without
        # them a resumed run would draw other dropout masks than an uninterrupted one.
        with tf.io.gfile.GFile(self._training_metadata_path) as handle:
            metadata = json.load(handle)
        metadata["seed_generator_states"] = [
            [int(value) for value in state.numpy()] for state in _seed_generator_states(self.model)
        ]
        with tf.io.gfile.GFile(self._training_metadata_path, "w") as handle:
            handle.write(json.dumps(metadata))

    def _load_model(self):
        super()._load_model()
        if not tf.io.gfile.exists(self._training_metadata_path):
            return
        with tf.io.gfile.GFile(self._training_metadata_path) as handle:
            saved = json.load(handle).get("seed_generator_states")
        if saved is None:  # a backup written by Keras' own callback
            return
        states = _seed_generator_states(self.model)
        if len(saved) != len(states):
            raise ValueError(
                f"The backup in {self.backup_dir} holds {len(saved)} dropout random states, "
                f"the model has {len(states)}: it was written by a different model"
            )
        for state, values in zip(states, saved):
            state.assign(np.asarray(values, keras.backend.standardize_dtype(state.dtype)))

    def on_train_end(self, logs=None):
        if not (self.delete_checkpoint and self._multi_worker):
            super().on_train_end(logs)
            return
        # Several workers: each removes only its own copy. Worker 0's files sit in the root
        # folder, above the others' `worker_i` folders; Keras' rmtree of the root would
        # pull those from under workers still writing or removing them.
        if self.backup_dir == self._root_backup_dir:
            for path in (self._weights_path, self._training_metadata_path,
                         self._prev_weights_path, self._prev_training_metadata_path):
                if tf.io.gfile.exists(path):
                    tf.io.gfile.remove(path)
        else:
            _remove_tree(self.backup_dir)
        # The last worker to finish removes the then empty root.
        try:
            if not tf.io.gfile.listdir(self._root_backup_dir):
                _remove_tree(self._root_backup_dir)
        except tf.errors.NotFoundError:
            pass

    def saved_epoch(self, model):
        """The epoch a restart resumes at (0 when there is no backup)."""
        self.use_worker_directory(model)
        for path in (self._training_metadata_path, self._prev_training_metadata_path):
            # tf.io.gfile: local paths and remote ones (gs://...) alike, as Keras writes them.
            if tf.io.gfile.exists(path):
                try:
                    with tf.io.gfile.GFile(path) as handle:
                        return int(json.load(handle)["epoch"])
                except (tf.errors.OpError, ValueError, KeyError):
                    continue  # a torn write: Keras falls back to the previous copy too
        return 0


def _seed_generator_states(model):
    """The random-number state variables of the model's dropout layers (Keras'
    `SeedGenerator`s), in the model's variable order."""
    return [variable for variable in model.variables
            if variable.name == "seed_generator_state"]


def fast_forward_for_resume(model, x, callbacks, steps_per_epoch):
    """Skips the batches a restored run already trained on (see `BackupAndRestore`)."""
    if not callbacks or steps_per_epoch is None or not isinstance(x, tf.data.Dataset):
        return x
    backups = [cb for cb in callbacks if isinstance(cb, BackupAndRestore)]
    if not backups:
        return x
    epoch = backups[0].saved_epoch(model)
    if epoch <= 0:
        return x
    return x.skip(int(epoch) * int(steps_per_epoch))


# ----------------------------------------------------------------- generation evaluation


class GenerationEvalCallback(keras.callbacks.Callback):
    """Generates on a validation set and logs corpus chrF / BLEU as `val_chrf`,
    `val_bleu` (usable by `EarlyStopping`, `ModelCheckpoint` placed after it).

    Args:
        dataset: a `tf.data.Dataset` of dicts with `input_ids`, `attention_mask` and
            either `references` (target strings) or `labels` (decoded as references),
            optionally `forced_bos_token_id` (`[batch]`, M2M100 per-example target
            languages; without it, M2M100 takes each row's first label, its language
            token, unless `forced_bos_token_id` below is given).
        tokenizer: has `detokenize(ids, skip_special_tokens=True)`.
        max_new_tokens: generation length limit.
        forced_bos_token_id: M2M100 target language id for every example (see also the
            per-example key above).
        metrics: any of `"chrf"`, `"bleu"`.
        backend: `"auto"` (sacrebleu when installed, else the built-in scorers, which
            match sacrebleu's defaults), `"sacrebleu"` or `"builtin"`.
        every_n_epochs: evaluate every n epochs (and after the last).
        max_batches: evaluate on at most this many batches.
        prefix: log key prefix.
        generate_kwargs: more `model.generate` options (`num_beams`, ...).
        print_examples: print this many (hypothesis, reference) pairs.

    Example (two steps of a tiny random M2M100 with the bundled translator's tokenizer):
    >>> import tensorflow as tf
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR, M2M100Config, M2M100ForConditionalGeneration
    >>> from tfmodels.tokenizers import M2M100Tokenizer
    >>> from tfmodels.training import seq2seq_dataset, seq2seq_eval_dataset
    >>> tokenizer = M2M100Tokenizer.from_pretrained(BUNDLED_TRANSLATOR_DIR)
    >>> model = M2M100ForConditionalGeneration(M2M100Config(
    ...     vocab_size=1108, d_model=16, encoder_layers=1, decoder_layers=1,
    ...     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
    ...     decoder_ffn_dim=32))
    >>> pairs = tf.data.Dataset.from_tensor_slices(
    ...     (["Switzerland", "January"], ["Schweiz", "Januar"]))
    >>> train = seq2seq_dataset(pairs, tokenizer, src_lang="en", tgt_lang="de", max_tokens=64,
    ...                         repeat=True)
    >>> validation = seq2seq_eval_dataset(pairs, tokenizer, src_lang="en", tgt_lang="de")
    >>> model.compile()
    >>> callback = GenerationEvalCallback(validation, tokenizer, max_new_tokens=8)
    >>> history = model.fit(train, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[
    ...     callback, keras.callbacks.EarlyStopping("val_chrf", mode="max")])
    >>> sorted(history.history)
    ['loss', 'token_accuracy', 'val_bleu', 'val_chrf']
    """

    def __init__(self, dataset, tokenizer, *, max_new_tokens=64, forced_bos_token_id=None,
                 metrics=("chrf", "bleu"), backend="auto", every_n_epochs=1, max_batches=None,
                 prefix="val_", generate_kwargs=None, print_examples=0):
        super().__init__()
        unknown = set(metrics) - {"chrf", "bleu"}
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; use 'chrf' and/or 'bleu'")
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.max_new_tokens = int(max_new_tokens)
        self.forced_bos_token_id = forced_bos_token_id
        self.metric_names = tuple(metrics)
        self.backend = backend
        self.every_n_epochs = max(int(every_n_epochs), 1)
        self.max_batches = max_batches
        self.prefix = prefix
        self.generate_kwargs = dict(generate_kwargs or {})
        self.print_examples = int(print_examples)
        self.last_hypotheses, self.last_references = [], []

    @staticmethod
    def _strings(tensor):
        return [value.decode("utf-8") for value in np.asarray(tensor).reshape(-1)]

    def _references(self, batch):
        if "references" in batch:
            return self._strings(batch["references"])
        labels = tf.cast(batch["labels"], tf.int32)
        pad = tf.constant(self.tokenizer.pad_token_id, tf.int32)
        labels = tf.where(labels < 0, pad, labels)  # -100 -> pad, skipped as special
        return self._strings(self.tokenizer.detokenize(labels, skip_special_tokens=True))

    def generate_and_score(self):
        """Runs generation over the dataset; returns `{metric: score}`."""
        hypotheses, references = [], []
        # A model whose vocabulary is larger than the tokenizer's (mT5's padded head, an
        # untrained head) could produce ids nothing can decode: never generate them, as
        # the text paths do, instead of failing the fit.
        requested = self.generate_kwargs.get("suppress_tokens")
        suppressed = text_output_suppress_tokens(self.model, self.tokenizer, requested)
        for index, batch in enumerate(self.dataset):
            if self.max_batches is not None and index >= self.max_batches:
                break
            options = dict(self.generate_kwargs)
            forced = batch.get("forced_bos_token_id", self.forced_bos_token_id)
            if forced is None and "labels" in batch and hasattr(self.tokenizer, "get_lang_id"):
                # M2M100 labels (`seq2seq_dataset`'s) start with their target-language token.
                forced = tf.cast(batch["labels"][:, 0], tf.int32)
            if forced is not None:
                options["forced_bos_token_id"] = forced
            if suppressed:
                options["suppress_tokens"] = suppressed
            sequences = self.model.generate(
                batch["input_ids"], attention_mask=batch.get("attention_mask"),
                max_new_tokens=self.max_new_tokens, **options,
            )
            sequences = getattr(sequences, "sequences", sequences)
            decoded = self.tokenizer.detokenize(
                tf.convert_to_tensor(sequences, tf.int32), skip_special_tokens=True
            )
            hypotheses.extend(self._strings(decoded))
            references.extend(self._references(batch))
        self.last_hypotheses, self.last_references = hypotheses, references
        scores = {}
        if "chrf" in self.metric_names:
            scores["chrf"] = corpus_chrf(hypotheses, references, backend=self.backend)
        if "bleu" in self.metric_names:
            scores["bleu"] = corpus_bleu(hypotheses, references, backend=self.backend)
        for hypothesis, reference in list(zip(hypotheses, references))[: self.print_examples]:
            print(f"  hyp: {hypothesis}\n  ref: {reference}")
        return scores

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every_n_epochs and (last is None or epoch + 1 != last):
            return
        scores = self.generate_and_score()
        if logs is not None:
            logs.update({self.prefix + name: value for name, value in scores.items()})
