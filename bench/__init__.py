"""Benchmarks for BERT Sentiment Lab (``python -m bench.<name>``); results go to BENCHMARKS.md.

Each script prints its results, writes ``bench/out/<name>.json`` and rewrites its own section of
``BENCHMARKS.md``; the last line of its output is one JSON object. Nothing here is a timed test.
"""
