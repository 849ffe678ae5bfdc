"""Suites, runs and the results table (DESIGN.md §3).

``suite`` loads and validates suite files, ``problems`` builds the named problems, ``runner``
expands a suite into runs and executes them (resume = skip what is on disk), ``results`` owns
the row schema and the CSV files.
"""
