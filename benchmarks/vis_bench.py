"""How long ``am.vis`` takes to write the text of a 200-state machine.

python -m benchmarks.vis_bench          # prints ms per diagram (target: < 1000 ms)
"""

from __future__ import annotations

import time

import asyncmachine_trio as am
from asyncmachine_trio import vis


def machine(n: int = 200) -> am.Machine:
    schema = {
        f"S{i}": am.State(
            require=(f"S{i - 1}",) if i else None,
            remove=(f"S{(i + 7) % n}",),
            add=(f"S{(i + 3) % n}",) if i % 5 == 0 else None,
            auto=i % 11 == 0,
            multi=i % 13 == 0,
        )
        for i in range(n)
    }
    mach = am.Machine(schema, id="big")
    mach.add1("S1")
    return mach


def main() -> None:
    mach = machine()
    for name, fn in (("mermaid", vis.mermaid), ("d2", vis.d2)):
        fn(mach)
        runs = 20
        t0 = time.perf_counter()
        for _ in range(runs):
            fn(mach)
        ms = (time.perf_counter() - t0) / runs * 1000
        print(f"{name:8} 200 states: {ms:7.2f} ms per diagram (target < 1000 ms)")


if __name__ == "__main__":
    main()
