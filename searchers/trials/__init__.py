"""Multi-objective trials over the sampled space: one trial, the Optuna study
(``python searchers/optuna_search.py``) and the same trials on Ray Tune
(``python searchers/ray_tune.py``)."""
