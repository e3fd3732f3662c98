"""The Basic schema mixin: Start, Ready, health states and the common errors.

Port of the reference's ``pkg/states/ss_basic.go`` (docs/states.md).
"""

from __future__ import annotations

import asyncmachine_trio as am

__all__ = ["BasicStates"]


class BasicStates(am.States):
    """Conventional states most machines share; inherit them (``class S(BasicStates)``).

    State order follows the reference (``Exception`` first). Intent:

    - ``Start``: the machine should be working; removing it force-stops.
    - ``Ready``: the machine meets the criteria to perform work (requires Start).
    - ``Healthcheck``: a periodic request making sure the machine is alive (Multi).
    - ``Heartbeat``: a periodic state ensuring the machine's integrity.
    - ``ErrNetwork``, ``ErrHandlerTimeout``: error states (Multi; add and require
      ``Exception``), added with ``mach.add_err_state(state, err)``.
    """

    Exception: am.State = am.State(multi=True)
    ErrNetwork: am.State = am.State(multi=True, add=(am.EXCEPTION,), require=(am.EXCEPTION,))
    ErrHandlerTimeout: am.State = am.State(multi=True, add=(am.EXCEPTION,), require=(am.EXCEPTION,))

    Start: am.State = am.State()
    Ready: am.State = am.State(require=(am.START,))
    Healthcheck: am.State = am.State(multi=True)
    Heartbeat: am.State = am.State()
