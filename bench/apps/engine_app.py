"""The workflows ``deerflow worker`` subprocesses load in the benchmark (``bench/workloads.py``)."""

from bench.workloads import make_chain, make_wordcount

chain = make_chain()
wordcount = make_wordcount()
