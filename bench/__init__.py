"""deerflow's benchmarks: engine vs baseline ratios, measured side by side (``python -m bench``).

See ``docs/performance.md`` for the scenarios, the latest table and how to reproduce it.
"""
