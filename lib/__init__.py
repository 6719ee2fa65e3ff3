"""BERT Sentiment Lab: the pure-Python engine behind the app.

Nothing in this package imports streamlit: the training job, the run registry, the log readers and
the inference code all run on their own (``python -m lib.train``, ``python -m lib.runs``,
``python -m lib.predict``) and the pages only call them.
"""
