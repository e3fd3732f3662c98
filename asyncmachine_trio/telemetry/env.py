"""Zero-code opt-in: the ``AM_*`` environment variables attach exporters.

``import asyncmachine_trio`` registers :func:`machine_created` as a machine
hook when one of ``AM_DBG_ADDR``, ``AM_OTEL_TRACE``, ``AM_OTEL_LOG`` or
``AM_PROM_PUSH_URL`` is set (and ``AM_TEST_RUNNER`` is not); then every machine
the process creates is handed to the enabled exporters. Nothing here may break
the app: an exporter that fails to attach logs one warning and is skipped.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine.machine import Machine

__all__ = ["dbg_ids", "is_rpc_plumbing", "machine_created"]

_log = logging.getLogger("asyncmachine_trio.telemetry")
_warned: set[str] = set()


def _warn_once(what: str, err: BaseException) -> None:
    if what not in _warned:
        _warned.add(what)
        _log.warning("telemetry: %s opt-in failed: %s: %s", what, type(err).__name__, err)


def dbg_ids() -> list[str]:
    """``AM_DBG_ID`` as a list: only these machines (and their children) are sent."""
    return [s.strip() for s in os.environ.get("AM_DBG_ID", "").split(",") if s.strip()]


def is_rpc_plumbing(mach: Machine) -> bool:
    """RPC helper machines (client, server, mux, relay) stay hidden unless ``AM_RPC_DBG``.

    Network machines (tag ``rpc-netmach``) are not plumbing: they are shown.
    """
    if os.environ.get("AM_RPC_DBG"):
        return False
    return any((t.startswith("rpc-") and t != "rpc-netmach") or t == "relay" for t in mach._tags)


def machine_created(mach: Machine, parent: Machine | None) -> None:
    """Attach what the environment asks for to a new machine (the machine hook)."""
    env = os.environ
    if env.get("AM_TEST_RUNNER") or is_rpc_plumbing(mach):
        return
    addr = env.get("AM_DBG_ADDR")
    if addr:
        try:
            from .dbg import attach as dbg_attach
            from .dbg import exporter_of

            ids = dbg_ids()
            traced_parent = parent is not None and exporter_of(parent) is not None
            if not ids or mach.id in ids or traced_parent:
                dbg_attach(mach, addr)
        except Exception as err:
            _warn_once("AM_DBG_ADDR", err)
    if env.get("AM_OTEL_TRACE") or env.get("AM_OTEL_LOG"):
        try:
            from .otel import attach_env as otel_env

            otel_env(mach)
        except Exception as err:
            _warn_once("AM_OTEL_TRACE", err)
    if env.get("AM_PROM_PUSH_URL"):
        try:
            from .prometheus import attach_env as prom_env

            prom_env(mach)
        except Exception as err:
            _warn_once("AM_PROM_PUSH_URL", err)
