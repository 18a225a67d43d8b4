"""Benchmarks of the search (``python -m searchers.tools.benchmark``), the GPU check
(``python -m searchers.tools.gpu_check``) and the optional NNI peer."""
