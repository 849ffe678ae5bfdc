"""Rate measurement against the theory (SPEC §4).

``rates`` (the suite runner) writes ``rates.csv``; ``fit`` fits power laws to it and tabulates
the exponents against SPEC Corollary 1; ``plots`` draws the figures; ``report`` writes tables and
figures of a results folder (``rabo-bench fit-rate``); ``pareto`` compares the hypergradient
estimators' cost and accuracy.
"""
