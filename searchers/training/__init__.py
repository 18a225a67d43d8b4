"""The one training loop (retraining, the trial proxy and DARTS step here),
retraining with its schedule, teacher and deployment check, and DistributedDataParallel."""
