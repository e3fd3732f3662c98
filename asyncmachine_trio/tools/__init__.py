"""Command-line tools (extra ``cli``): am-gen, am-vis, arpc and their library parts.

Each tool is a console script and a module: ``am-gen`` / ``python -m
asyncmachine_trio.tools.gen_cli``, ``am-vis`` (``vis_cli``), ``arpc``
(``arpc``), ``am-relay`` (``relay_cli``). See ``docs/tools.md``.
"""

#: console script -> (module, what it does); ``python -m asyncmachine_trio`` lists them
TOOLS: dict[str, tuple[str, str]] = {
    "am-gen": ("asyncmachine_trio.tools.gen_cli", "generate states files and Grafana dashboards"),
    "am-vis": ("asyncmachine_trio.tools.vis_cli", "diagrams: Mermaid, D2 and SVG"),
    "arpc": ("asyncmachine_trio.tools.arpc", "REPL and one-shot CLI over aRPC"),
    "am-dbg": ("asyncmachine_trio.tools.dbg.cli", "the multi-machine TUI debugger"),
    "am-relay": ("asyncmachine_trio.tools.relay_cli", "record the debugger stream to files"),
}
