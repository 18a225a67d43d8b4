"""The pipeline (``python searchers/pipeline.py``): every search method, selection,
retraining over seeds, evaluation and report, each stage called as a function."""
