"""The suite files, installed with the package as ``rabo_bench.suites`` (package data), so that
``rabo-bench run NAME`` finds them wherever rabo-bench is installed; see README.md."""
