"""The measurement backends by name: which exist, which can measure here, and the one check.

:data:`BACKENDS` are the backends implemented (:mod:`proxies.measure.runtime` holds what differs
between them); :data:`NOT_IMPLEMENTED` are named but not implemented. :func:`backend_reason`
says why a backend cannot measure in this environment (``None`` if it can) and refuses a name
that is no backend at all; :func:`check_backend` is the check
:class:`proxies.measure.settings.MeasureSettings` runs once on its ``backend``.
"""

from __future__ import annotations

import importlib.util

__all__ = ["BACKENDS", "NOT_IMPLEMENTED", "backend_reason", "check_backend"]

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
"""The measurement backends implemented (:mod:`proxies.measure.runtime`)."""
NOT_IMPLEMENTED: dict[str, str] = {"tensorrt": "tensorrt"}
"""Backends the issue names that are not implemented: name -> Python package."""

_ALLOWED = ", ".join(BACKENDS)


def _package_installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _reason(name: str) -> str | None:
    if name == "torch":
        return None
    if name == "onnxruntime":
        return None if _package_installed("onnxruntime") else (
            "the onnxruntime package is not installed (pip install onnxruntime, or "
            "onnxruntime-gpu for CUDA)")
    if name == "openvino":  # an optional dependency of srnas (pyproject.toml's extra)
        return None if _package_installed("openvino") else (
            'the openvino package is not installed (pip install -e ".[openvino]")')
    package = NOT_IMPLEMENTED[name]
    return (f"the {name} backend is not implemented in srnas yet (the {package} package is "
            "installed)" if _package_installed(package) else
            f"the {package} package is not installed (pip install {package}), and the {name} "
            "backend is not implemented in srnas yet")


def backend_reason(backend: object, where: str = "backend") -> str | None:
    """``None`` if ``backend`` can measure here, else why not (not installed, not implemented).

    Raises:
        ValueError: ``backend`` names no backend at all (the message names ``where``, the
            value and the allowed names).
    """
    if not isinstance(backend, str) or backend not in (*BACKENDS, *NOT_IMPLEMENTED):
        raise ValueError(f"{where}: got {backend!r}; allowed: {_ALLOWED} (torch is PyTorch "
                         "eager, onnxruntime the ONNX export run by ONNX Runtime, openvino the "
                         "ONNX export compiled by OpenVINO for the CPU)")
    return _reason(backend)


def check_backend(backend: object, where: str = "backend") -> str:
    """``backend`` if it names a backend that can measure here; else a ValueError naming
    ``where``, the value, why and what is allowed."""
    reason = backend_reason(backend, where)
    if reason is not None:
        raise ValueError(f"{where}: got {backend!r}; {reason}; allowed: {_ALLOWED}")
    assert isinstance(backend, str)
    return backend
