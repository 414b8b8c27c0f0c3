"""Output names the Snakefile and the library must agree on. Pure Python: the Snakefile
imports it on every start and in every cluster job."""

FIGURES = ("survival_by_bits", "perplexity_vs_damage", "bits_per_weight", "r_histogram", "predictor_auc", "overlap",
           "causal", "methods")
#: The model-level figure across hooks (results/<model>/figures/); the others are per hook.
DEPTH_FIGURE = "survival_by_depth"
#: The model-level figure across audit corpora (only when `corpora` names any).
CORPUS_FIGURE = "survival_by_corpus"
