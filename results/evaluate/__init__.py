"""Benchmark evaluation of a trained net, ``python -m results.evaluate``: whole or
tiled inference and per-image metrics on Set5, Set14, B100 and any folder."""
