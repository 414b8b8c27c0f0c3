"""featureaudit: what weight compression does to the SAE features of a language model.

The package is laid out as the pipeline, one folder a stage, in the order data flows; a module
imports only from its own stage, an earlier one, or the shared modules at this level (config,
variants, hooks, paths, io, integrity, errors, progress, device, figure_names):

  model/     the reference LM: loading it, where its blocks are, reading and editing its residual
  inputs/    the text and its tokens (audit, SAE-training, held-out, calibration)
  sae/       the frozen SAE: where it comes from, its encoder, sparse codes
  compress/  variants: built-in RTN, pruning and formats, checkpoints, llama.cpp and llm-compressor
  variant/   one variant's job: build it, capture and encode at the hook, perplexity, KL, top-1
  measure/   survival, FP statistics, predictability, matched pruning, overlap, causal checks
  report/    summary and verdict, figures, the feature browser, the deployment gate
  pipeline/  start-up checks, rerun triggers, locks, cluster requests, the step runner, CLIs

Each rule's body is a `write_*` function of its stage; workflow scripts only call it.
"""

__version__ = "0.1.0"
