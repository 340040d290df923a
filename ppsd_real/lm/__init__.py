"""The project's own small language model: a Llama trained on the Python standard library's
source (read from the running interpreter), with early-exit heads trained by
self-distillation, so that acceptance rates are real, measured on real text (issue 6)."""
