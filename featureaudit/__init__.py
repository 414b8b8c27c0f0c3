"""featureaudit: what weight compression does to the SAE features of a language model.

The package is organised as the method, one module per stage, each holding the body of its
workflow rule: tokens, models (the reference), sae_training (the frozen SAE), compression,
capture, codes, statistics, survival, predict, metrics, matching, overlap, summary, plots.
Workflow scripts call into them; every stage can also be used on its own from Python.
"""

__version__ = "0.1.0"
