"""The yardstick every run is measured against: TF-IDF features + logistic regression.

Trained on the run's own train split and scored on its eval split in seconds on a CPU, so each
run shows whether the transformer earns its cost. It handles any number of classes (multinomial
logistic regression) and is scored with the same metrics as the model.
"""
from __future__ import annotations

import re
import time

import numpy as np


def metric_key(name: str) -> str:
    """A class name as part of a metric name: lower case letters, digits and underscores ("Very good!" ->
    "very_good")."""
    return re.sub(r"\W+", "_", str(name).lower()).strip("_")


def class_keys(label_names: list[str]) -> list[str]:
    """One metric-name part per class: the cleaned name, or ``class<i>`` when names clash or clean to nothing."""
    keys = [metric_key(n) for n in label_names]
    if any(not k for k in keys) or len(set(keys)) != len(keys):
        return [f"class{i}" for i in range(len(label_names))]
    return keys


def classification_metrics(labels, preds, prob_pos=None, *, probs=None, label_names=None) -> dict[str, float]:
    """Two classes: accuracy, f1, precision, recall (positive class = 1) and ROC-AUC when both classes occur
    (``prob_pos``: the probability of class 1).

    More classes (``probs``: one row of class probabilities per review, or ``label_names``): accuracy;
    f1, precision and recall as macro averages over the classes (so ``f1`` is macro-F1 and
    ``metric_for_best_model="f1"`` keeps its meaning); ``roc_auc`` one-vs-rest, macro-averaged, when every
    class occurs among the labels; and per class ``precision_<class>``, ``recall_<class>``, ``f1_<class>``
    (the class name in lower case, see :func:`class_keys`)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score
    labels, preds = np.asarray(labels), np.asarray(preds)
    n = len(label_names) if label_names else (np.asarray(probs).shape[1] if probs is not None else 2)
    if n <= 2:
        if prob_pos is None and probs is not None:
            prob_pos = np.asarray(probs)[:, 1]
        precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, average="binary", pos_label=1,
                                                                   zero_division=0)
        out = {"accuracy": float(accuracy_score(labels, preds)), "f1": float(f1),
               "precision": float(precision), "recall": float(recall)}
        if prob_pos is not None and len(set(labels.tolist())) == 2:
            out["roc_auc"] = float(roc_auc_score(labels, np.asarray(prob_pos)))
        return out
    classes = list(range(n))
    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, labels=classes, average="macro",
                                                               zero_division=0)
    out = {"accuracy": float(accuracy_score(labels, preds)), "f1": float(f1), "precision": float(precision),
           "recall": float(recall)}
    if probs is not None and set(labels.tolist()) == set(classes):
        p = np.asarray(probs, dtype=np.float64)
        p = p / p.sum(axis=1, keepdims=True)
        out["roc_auc"] = float(roc_auc_score(labels, p, multi_class="ovr", average="macro", labels=classes))
    per_p, per_r, per_f, _ = precision_recall_fscore_support(labels, preds, labels=classes, average=None,
                                                             zero_division=0)
    for key, pp, rr, ff in zip(class_keys(label_names or [str(c) for c in classes]), per_p, per_r, per_f):
        out[f"precision_{key}"], out[f"recall_{key}"], out[f"f1_{key}"] = float(pp), float(rr), float(ff)
    return out


def tfidf_baseline(train_texts, train_labels, eval_texts, eval_labels, seed: int = 42,
                   label_names: list[str] | None = None) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    t0 = time.time()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, max_features=200_000, sublinear_tf=True)
    x_train = vectorizer.fit_transform(train_texts)
    clf = LogisticRegression(max_iter=1000, C=4.0, random_state=seed)
    clf.fit(x_train, train_labels)
    n = len(label_names) if label_names else len(set(np.asarray(train_labels).tolist()))
    scores = clf.predict_proba(vectorizer.transform(eval_texts))
    if n <= 2:
        probs = scores[:, 1]
        preds = (probs >= 0.5).astype(int)
        result = classification_metrics(eval_labels, preds, probs)
    else:
        full = np.zeros((len(eval_texts), n))
        full[:, clf.classes_] = scores      # a class missing from the training split keeps probability 0
        preds = full.argmax(axis=1)
        result = classification_metrics(eval_labels, preds, probs=full, label_names=label_names)
    result.update(model="TF-IDF (1-2 grams) + logistic regression", train_size=len(train_texts),
                  eval_size=len(eval_texts), seconds=round(time.time() - t0, 3))
    return result
