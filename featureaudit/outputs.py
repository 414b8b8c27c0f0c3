"""Output names the Snakefile and the library must agree on. Pure Python: the Snakefile
imports it on every start and in every cluster job."""

FIGURES = ("survival_by_bits", "perplexity_vs_damage", "r_histogram", "predictor_auc", "overlap")
