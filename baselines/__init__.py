"""Baselines, one small file each, installed as ``rabo_bench.baselines``.

Every module here is imported by the algorithm registry on first use; a module registers its
recipe(s) with :func:`rabo_bench.algorithms.register`.
"""
