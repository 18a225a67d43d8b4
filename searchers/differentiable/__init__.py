"""Hardware-aware DARTS: the supernet, the architecture step, the latency
lookup table, the search's config and the search itself (``python searchers/darts.py``)."""
