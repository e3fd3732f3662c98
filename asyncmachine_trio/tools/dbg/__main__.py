"""``python -m asyncmachine_trio.tools.dbg`` = ``am-dbg``."""

from .cli import run

run()
