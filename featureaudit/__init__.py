"""featureaudit: what weight compression does to the SAE features of a language model.

The package is organised as the method: compression, tokens, capture, sae, codes, survival,
statistics, predict, metrics, overlap, plots, report. Workflow scripts call into it; every
stage can also be used on its own from Python.
"""

__version__ = "0.1.0"
