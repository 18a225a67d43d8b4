"""Measurement proxies: complexity, latency, memory, quality and data.

Every figure carries its unit in its name (``latency_ms``, ``peak_memory_mib``, ``macs_g``).
"""
