"""One report per set of retrained runs, ``python -m results.report``: evaluation,
profile, Pareto front, tables, seeds and crops in one offline page."""
