"""The trial table of every searcher (Optuna studies, Ray Tune experiments), its Pareto fronts
and hypervolumes (``python -m results.summary`` summarises a search from them)."""
