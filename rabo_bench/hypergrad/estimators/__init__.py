"""The hypergradient estimators, one module each (or a family per module).

Every module here is imported on first use of the estimator registry
(:func:`rabo_bench.hypergrad.make_estimator`, :func:`rabo_bench.hypergrad.available_estimators`);
a module registers its estimator class(es) with
:func:`rabo_bench.hypergrad.base.register_estimator`. Nothing else imports them by hand.
"""
