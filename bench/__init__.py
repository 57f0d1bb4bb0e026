"""Benchmarks of darnax: training and evaluation throughput, scaling, kernels, compilation, bridge costs.

Each module is runnable alone (``python -m bench.<name> [--quick]``), prints a table and the JSON
record, and writes ``<out>/<name>.json``. ``python -m bench.run_all`` runs the whole suite and
``python -m bench.report`` turns the JSON records into ``docs/benchmarks.md`` and its plot.
"""
