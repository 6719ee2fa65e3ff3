"""The yardstick every run is measured against: TF-IDF features + logistic regression.

Trained on the run's own train split and scored on its eval split in seconds on a CPU, so each
run shows whether the transformer earns its cost.
"""
from __future__ import annotations

import time

import numpy as np


def classification_metrics(labels, preds, prob_pos=None) -> dict[str, float]:
    """accuracy, f1, precision, recall (positive class = 1) and ROC-AUC when both classes occur."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score
    labels, preds = np.asarray(labels), np.asarray(preds)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, average="binary", pos_label=1,
                                                               zero_division=0)
    out = {"accuracy": float(accuracy_score(labels, preds)), "f1": float(f1),
           "precision": float(precision), "recall": float(recall)}
    if prob_pos is not None and len(set(labels.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(labels, np.asarray(prob_pos)))
    return out


def tfidf_baseline(train_texts, train_labels, eval_texts, eval_labels, seed: int = 42) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    t0 = time.time()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, max_features=200_000, sublinear_tf=True)
    x_train = vectorizer.fit_transform(train_texts)
    clf = LogisticRegression(max_iter=1000, C=4.0, random_state=seed)
    clf.fit(x_train, train_labels)
    probs = clf.predict_proba(vectorizer.transform(eval_texts))[:, 1]
    preds = (probs >= 0.5).astype(int)
    result = classification_metrics(eval_labels, preds, probs)
    result.update(model="TF-IDF (1-2 grams) + logistic regression", train_size=len(train_texts),
                  eval_size=len(eval_texts), seconds=round(time.time() - t0, 3))
    return result
