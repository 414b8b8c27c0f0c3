"""Predictability: can FP statistics alone tell which features will survive?

Stratified k-fold cross-validated ROC AUC of a logistic regression (on standardised log
statistics) predicting survived vs not, over FP-active features; plus each statistic's own
(marginal) AUC, which needs no fitting. Where a class is too small for k folds the result
records why instead of a number. `write_predictability` is the body of the `predictability` rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .config import PredictabilityConfig
from .io import read_table, write_json
from .statistics import PREDICTORS


def _design(table: pd.DataFrame) -> np.ndarray:
    # Activations and frequencies are heavy-tailed: log puts them on a scale a linear model uses.
    x = table[list(PREDICTORS)].to_numpy(dtype=np.float64)
    return np.log10(np.maximum(x, 1e-12))


def predictability(table: pd.DataFrame, folds: int = 5, seed: int = 0) -> dict:
    active = table[table.status != "inactive"]
    y = (active.status == "survived").to_numpy()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out = {"n_features": int(len(active)), "n_survived": n_pos, "n_not_survived": n_neg, "folds": folds,
           "predictors": list(PREDICTORS)}
    marginal = {}
    for name in PREDICTORS:
        marginal[name] = float(roc_auc_score(y, active[name])) if n_pos and n_neg else None
    out["marginal_auc"] = marginal
    if min(n_pos, n_neg) < folds:
        out.update(auc=None, auc_std=None,
                   reason=f"too few features in a class for {folds}-fold CV: {n_pos} survived, {n_neg} not")
        return out
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(model, _design(active), y, cv=cv, scoring="roc_auc")
    out.update(auc=float(scores.mean()), auc_std=float(scores.std()), fold_auc=[float(s) for s in scores], reason=None)
    return out


def write_predictability(survival_path, out_path, settings: PredictabilityConfig) -> None:
    """The `predictability` rule: one variant's survival table -> AUCs (JSON)."""
    table = read_table(survival_path).to_pandas()
    write_json(predictability(table, settings.folds, settings.seed), out_path)
