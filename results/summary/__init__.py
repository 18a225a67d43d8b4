"""Summarise a search, ``python -m results.summary``: an Optuna study's or a Ray Tune
experiment's trial table, its Pareto front, the front's genotypes, the hypervolumes and the
offline Plotly report."""
