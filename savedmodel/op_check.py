"""Which ops an exported graph uses, and whether a stock TF Serving has them all.

The stock `tensorflow_model_server` links TensorFlow and one pinned tensorflow-text
release (TF Serving 2.20 pins tensorflow-text 2.20.0). An export may therefore use stock
TensorFlow ops and the tensorflow-text ops below, which all exist in tensorflow-text 2.20
(the fast SentencePiece ops since 2.10, the others since 2.x's first releases).
"""

import os
import subprocess
import sys

from tensorflow.core.protobuf import saved_model_pb2

# tensorflow-text ops an export may use (all present in tensorflow-text 2.20.0).
ALLOWED_TF_TEXT_OPS = frozenset(
    {
        # SentencePiece, regular kernels (M2M100's BPE model, subword sampling).
        "SentencepieceOp",
        "SentencepieceTokenizeOp",
        "SentencepieceTokenizeWithOffsetsOp",
        "SentencepieceDetokenizeOp",
        "SentencepieceVocabSizeOp",
        "SentencepieceIdToStringOp",
        "SentencepieceStringToIdOp",
        # SentencePiece, fast (flatbuffer model) kernels (mT5's unigram model).
        "TFText>FastSentencepieceTokenize",
        "TFText>FastSentencepieceDetokenize",
        # Regex split with kept delimiters (splitting text on added/special tokens).
        "RegexSplitWithOffsets",
    }
)

_STOCK_OPS_SCRIPT = """
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session
buffer = pywrap_tf_session.TF_GetAllOpList()
ops = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetBuffer(buffer))
print("\\n".join(sorted(op.name for op in ops.op)))
"""


def read_saved_model(saved_model_dir):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    return proto


def graph_ops(saved_model_dir):
    """`{op type: number of nodes}` over the graph and every function of the library."""
    proto = read_saved_model(saved_model_dir)
    counts = {}
    for meta_graph in proto.meta_graphs:
        library = meta_graph.graph_def.library
        function_names = {function.signature.name for function in library.function}
        nodes = list(meta_graph.graph_def.node)
        for function in library.function:
            nodes.extend(function.node_def)
        for node in nodes:
            if node.op in function_names:  # a direct call of a library function
                continue
            counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def must_compile_functions(saved_model_dir):
    """Names of the library functions marked for XLA (`jit_compile=True`)."""
    proto = read_saved_model(saved_model_dir)
    names = []
    for meta_graph in proto.meta_graphs:
        for function in meta_graph.graph_def.library.function:
            flag = function.attr.get("_XlaMustCompile")
            if flag is not None and flag.b:
                names.append(function.signature.name)
    return sorted(names)


def stock_tensorflow_ops():
    """Op names registered by TensorFlow alone, listed by a fresh Python process that
    imports only tensorflow (this process may have loaded tensorflow-text's ops)."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _STOCK_OPS_SCRIPT],
        check=True, capture_output=True, text=True, env=environment,
    )
    return frozenset(line for line in result.stdout.split() if line)


def unsupported_ops(saved_model_dir, stock_ops=None):
    """Ops of the export that are neither stock TensorFlow nor allowed tensorflow-text ops,
    as `{op type: node count}` (empty when a stock TF Serving can run the model)."""
    stock_ops = stock_tensorflow_ops() if stock_ops is None else stock_ops
    return {
        op: count
        for op, count in sorted(graph_ops(saved_model_dir).items())
        if op not in stock_ops and op not in ALLOWED_TF_TEXT_OPS
    }


def check_servable_ops(saved_model_dir, stock_ops=None):
    """Raises ValueError listing any op a stock TF Serving would not know."""
    unknown = unsupported_ops(saved_model_dir, stock_ops)
    if unknown:
        raise ValueError(
            f"{saved_model_dir} uses ops that a stock TF Serving does not link: "
            + ", ".join(f"{op} (x{count})" for op, count in unknown.items())
        )
