"""Text generation for the encoder-decoder models: greedy, beam search, sampling.

`generate(model, input_ids, ...)` (also `model.generate(...)`) mirrors the reference's
`generate` options and output layout and runs as one compiled graph per shape bucket;
`generate_graph` is the same computation for exporters;
`use_persistent_compilation_cache(directory)` keeps compiled searches across processes.
"""

from tfmodels.generation.compilation_cache import use_persistent_compilation_cache
from tfmodels.generation.generate import (
    GenerateOutput,
    bucket_size,
    clear_compiled_functions,
    compiled_functions,
    generate,
    trace_count,
)
from tfmodels.generation.generation_config import GENERATION_CONFIG_NAME, GenerationConfig
from tfmodels.generation.graph import generate_graph
from tfmodels.generation.vocabulary import (output_vocabulary, text_output_suppress_tokens,
                                            undecodable_token_ids)

__all__ = [
    "GENERATION_CONFIG_NAME",
    "GenerateOutput",
    "GenerationConfig",
    "bucket_size",
    "clear_compiled_functions",
    "compiled_functions",
    "generate",
    "generate_graph",
    "output_vocabulary",
    "text_output_suppress_tokens",
    "undecodable_token_ids",
    "trace_count",
    "use_persistent_compilation_cache",
]
