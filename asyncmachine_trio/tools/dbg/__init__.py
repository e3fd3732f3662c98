"""am-dbg: the multi-machine debugger (extra ``dbg``).

The parts, from the bottom up:

* :mod:`.store` - the collector/store (no UI): every machine's schema and
  transitions in compact form, filters, the memory cap; it is a
  :class:`~asyncmachine_trio.telemetry.receiver.ReceiverHandler`, so a
  :class:`~asyncmachine_trio.telemetry.receiver.Receiver` feeds it protocol v2;
* :mod:`.session` - export / import of a session (compressed msgpack);
* :mod:`.address` - ``mach://`` addresses;
* :mod:`.logic` - the debugger's own logic as an asyncmachine (cursor,
  play / tail / pause, filters, groups, views, search, breakpoints, the
  address history), no UI either;
* :mod:`.reader` - the log reader's sections for a transition (no UI);
* :mod:`.app` - the Textual UI (needs ``textual``), with :mod:`.widgets`
  (the toolbar, the rain view, log levels);
* :mod:`.cli` - the ``am-dbg`` console script.

See ``docs/am-dbg.md``.
"""

from __future__ import annotations

from .address import Address as Address
from .address import AddressError as AddressError
from .store import Filters as Filters
from .store import MachineData as MachineData
from .store import Store as Store
from .store import Tx as Tx

__all__ = ["Address", "AddressError", "Filters", "MachineData", "Store", "Tx"]
