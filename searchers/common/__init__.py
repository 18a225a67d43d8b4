"""What every searcher and training shares: typed configs loaded from YAML with
``key=value`` overrides, checkpoints, the run record and the metric log."""
