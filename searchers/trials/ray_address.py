"""Joining a Ray cluster by address: Ray's token authentication turned on when a token is at
hand (:func:`cluster_auth_mode`), and an address where no Ray cluster answers reported within
seconds, before ``ray.init`` waits minutes (:func:`check_ray_address`)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from searchers.common.config import ConfigError

logger = logging.getLogger("searchers.trials.tune")


def cluster_auth_mode() -> str:
    """Turn Ray's token authentication on for a driver joining a cluster by address, when a
    token is at hand and ``RAY_AUTH_MODE`` is unset; return the mode used.

    ``ray start --head`` enables token authentication whenever a token exists (Ray >= 2.59
    creates one, ``~/.ray/auth_token``), but ``ray.init(address=HOST:PORT)`` only sends it when
    ``RAY_AUTH_MODE=token`` is in the driver's environment, and fails with ``InvalidAuthToken``
    otherwise. The token is looked up where Ray documents it: ``$RAY_AUTH_TOKEN``,
    ``$RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``. An explicit ``RAY_AUTH_MODE`` (e.g.
    ``disabled`` for a cluster without authentication) is left as it is."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or (
        Path(path).is_file() if path else (Path.home() / ".ray" / "auth_token").is_file())
    if not has_token:
        return "disabled"
    os.environ["RAY_AUTH_MODE"] = "token"
    logger.info("Ray cluster: token authentication on (RAY_AUTH_MODE=token; the token from "
                "$RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
    return "token"


GCS_CONNECT_TIMEOUT_S = 5.0  # per address tried by check_ray_address


def _host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[IPv6]:PORT``) of a Ray address; ConfigError for another form."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address: got {address!r}; give the head's HOST:PORT (e.g. "
                          "10.0.0.5:6379, as `ray status` on the head prints it), "
                          "ray://HOST:10001 for Ray Client, or auto", key="--address")
    return host, int(port)


# HTTP/2's client connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS and
# Ray Client server) answers with its own SETTINGS frame (RFC 9113, 3.4)
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(sock: Any, timeout_s: float) -> bool:
    """True if the server at ``sock`` answers HTTP/2's preface with a SETTINGS frame."""
    sock.settimeout(timeout_s)
    try:
        sock.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 4 and head[5:9] == bytes(4)  # type SETTINGS on stream 0


def check_ray_address(address: str | None, timeout_s: float = GCS_CONNECT_TIMEOUT_S) -> None:
    """Before ``ray.init``: a gRPC server must answer at the cluster's address (the head's GCS
    port, or its Ray Client port for ``ray://``): a TCP connection and HTTP/2's handshake (not
    checked with ``RAY_USE_TLS``), within ``timeout_s`` each per address tried, else a
    :class:`ConfigError` names the address, what was tried and the ``ray start`` command that
    would bring the cluster up. Without this, an address where nothing listens is retried by
    Ray for minutes. The address is tried as given and as Ray connects to it (a loopback host
    becomes this node's IP); ``None``/``local`` (a fresh local instance) is not checked,
    ``auto`` is resolved as Ray resolves it where it can be (``RAY_ADDRESS``, the last ``ray
    start`` on this host; if none, ``ray.init`` says so itself)."""
    import socket

    if address is None or address == "local":
        return
    given = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die

            address = str(canonicalize_bootstrap_address_or_die("auto"))
        except Exception:  # none found (ray.init reports it) or Ray's private API moved
            return
    client = address.startswith("ray://")
    host, port = _host_port(address.removeprefix("ray://"))
    hosts = [host]
    with contextlib.suppress(Exception):  # where Ray really connects (private API)
        from ray._private.services import resolve_ip_for_localhost

        hosts.append(str(resolve_ip_for_localhost(host)))
    tried = []
    for h in dict.fromkeys(hosts):
        try:
            with socket.create_connection((h, port), timeout=timeout_s) as sock:
                if os.environ.get("RAY_USE_TLS", "0") not in ("0", "") or _answers_http2(
                        sock, timeout_s):
                    return
            tried.append(f"{h}:{port}: it accepts the connection but answers no HTTP/2 "
                         "handshake, as Ray's gRPC servers do")
        except OSError as exc:
            tried.append(f"{h}:{port}: {exc.strerror or type(exc).__name__}")
    start = (f"`ray start --head --ray-client-server-port={port}` on {host}" if client else
             f"`ray start --head --port={port}` on {host} (each worker host: `ray start "
             f"--address={host}:{port}`)")
    raise ConfigError(
        f"--address {given}: no Ray cluster answers there; tried a TCP connect to its "
        f"{'Ray Client' if client else 'GCS'} port and HTTP/2's handshake before ray.init "
        f"({'; '.join(tried)}; {timeout_s:g} s each), nothing was written. Bring the cluster "
        f"up with {start}, or pass the address `ray status` prints on the head",
        key="--address")
