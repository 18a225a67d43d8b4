"""The measurement family: complexity counters, latency, peak memory, the runtimes
they run on (torch eager, ONNX Runtime), the host-wide isolation of measurements and the
NTIRE-style profile rows built from them. Every measuring function takes one
:class:`proxies.measure.settings.MeasureSettings`."""
