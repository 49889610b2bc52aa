"""Fine-tuning with Keras: `model.compile()` / `model.fit()` on in-graph tokenized data,
Adafactor/AdamW, label smoothing, gradient accumulation and clipping, exact resume,
chrF/BLEU evaluation, and `tf.distribute` (one machine or several).

`compile`/`fit` themselves live on the models (`Seq2SeqTrainingMixin`); this package
holds the pieces around them. See `tfmodels/training/README.md`.
"""

from tfmodels.training.callbacks import BackupAndRestore, GenerationEvalCallback
from tfmodels.training.data import (
    default_bucket_boundaries,
    padding_fraction,
    seq2seq_dataset,
    seq2seq_eval_dataset,
)
from tfmodels.training.distribute import (
    ClusterSpec,
    cluster_from_environment,
    is_chief,
    make_strategy,
    run_custom_loop,
    train_multi_worker,
    worker_index,
)
from tfmodels.training.losses import (
    IGNORE_INDEX,
    masked_cross_entropy,
    masked_loss_terms,
    token_cross_entropy,
)
from tfmodels.training.metrics import MaskedTokenAccuracy
from tfmodels.training.optimizers import Adafactor, AdamW, get_optimizer
from tfmodels.training.scoring import corpus_bleu, corpus_chrf
from tfmodels.training.seq2seq_training import Seq2SeqTrainingMixin, TrainingOptions

__all__ = [
    "Adafactor",
    "AdamW",
    "BackupAndRestore",
    "ClusterSpec",
    "GenerationEvalCallback",
    "IGNORE_INDEX",
    "MaskedTokenAccuracy",
    "Seq2SeqTrainingMixin",
    "TrainingOptions",
    "cluster_from_environment",
    "corpus_bleu",
    "corpus_chrf",
    "default_bucket_boundaries",
    "get_optimizer",
    "is_chief",
    "make_strategy",
    "masked_cross_entropy",
    "masked_loss_terms",
    "padding_fraction",
    "run_custom_loop",
    "seq2seq_dataset",
    "seq2seq_eval_dataset",
    "token_cross_entropy",
    "train_multi_worker",
    "worker_index",
]
