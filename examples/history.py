"""History in SQLite: track an order workflow, "restart", restore, query.

1. An order machine runs until shipping has started and the "process" stops:
   the history is closed and the machine disposed (the shipping task dies).
2. A new machine with the same id is built after the "restart". It reopens the
   same SQLite file, restores its clock from the stored machine record
   (``MachineRestored`` is added, the machine tick goes to 1) and resumes the
   interrupted shipping.
3. The history, which spans both runs, is queried.

Run: python examples/history.py  (the database lives in a temporary directory)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

import asyncmachine_trio as am
from asyncmachine_trio import history as amhist

DELAY = 0.01  # fake work, in seconds


class OrderStates(am.States):
    Start = am.State()
    Ordered = am.State(require=("Start",))
    Paying = am.State(auto=True, require=("Ordered",), remove=("Paid",))
    Paid = am.State(require=("Ordered",), remove=("Paying",))
    Shipping = am.State(auto=True, require=("Paid",), remove=("Shipped",))
    Shipped = am.State(require=("Paid",), remove=("Shipping",))
    Exception = am.State(multi=True)
    MachineRestored = am.State()


S = OrderStates
TRACKED = [S.Ordered, S.Paying, S.Paid, S.Shipping, S.Shipped, S.MachineRestored]


class OrderHandlers:
    async def paying_state(self, e: am.Event) -> None:
        await anyio.sleep(DELAY)  # the payment provider
        e.machine.add1(S.Paid)

    async def shipping_state(self, e: am.Event) -> None:
        await ship(e.machine)

    def machine_restored_state(self, e: am.Event) -> None:
        # a restore brings the clock back, not the tasks: resume shipping
        if e.machine.is1(S.Shipping):
            e.machine.fork(S.Shipping, ship, e.machine)


async def ship(mach: am.Machine) -> None:
    await anyio.sleep(DELAY * 5)  # the courier
    mach.add1(S.Shipped)


def config() -> amhist.SqliteConfig:
    return amhist.SqliteConfig(tracked_states=TRACKED, store_transitions=True, store_schema=True)


def describe(rec: amhist.MemoryRecord, tracked: tuple[str, ...]) -> str:
    active = [s for s, tick in zip(tracked, rec.time.m_time_tracked, strict=True) if tick % 2]
    called = " ".join(rec.transition.called) if rec.transition else "?"
    auto = " (auto)" if rec.transition and rec.transition.is_auto else ""
    return (
        f"#{rec.time.id} t{rec.time.mach_tick} [{rec.time.mut_type}] {called}{auto}"
        f" -> {' '.join(active)}"
    )


async def first_run(path: Path, out: list[str]) -> None:
    async with am.open_machine(OrderStates, id="order-42", handlers=OrderHandlers()) as mach:
        hist = amhist.SqliteHistory(path, mach, config())
        mach.add([S.Start, S.Ordered], {"id": 42})
        await mach.when1(S.Shipping)
        out.append(f"run 1: {mach} -- stopping")
        await hist.close_async()
    # leaving open_machine disposes the machine and cancels the shipping task


async def second_run(path: Path, out: list[str]) -> None:
    stored = amhist.load_machine_record(path, "order-42")
    assert stored is not None
    active = [s for s, t in zip(stored.state_names, stored.m_time, strict=True) if t % 2]
    out.append(f"stored: {' '.join(active)} (next record #{stored.next_id})")

    async with am.open_machine(OrderStates, id="order-42", handlers=OrderHandlers()) as mach:
        hist = amhist.SqliteHistory(path, mach, config())
        hist.restore()
        out.append(f"run 2: restored {mach} (machine tick {mach.machine_tick()})")
        await mach.when1(S.Shipped)
        await hist.sync_async()
        out.append(f"run 2: {mach}")

        tracked = hist.tracked_states
        for rec in reversed(await hist.find_latest_async(with_tx=True)):
            out.append(describe(rec, tracked))
        first = hist.machine_record().first_tracking
        now = amhist.utc_now()
        out.append(f"Paid activated: {hist.activated_between(S.Paid, first, now)}")
        out.append(f"Paying deactivated: {hist.deactivated_between(S.Paying, first, now)}")
        shipping = hist.find_latest(amhist.Query(activated=[S.Shipping]))
        out.append(f"Shipping activated by: {[r.time.id for r in shipping]}")
        since = amhist.Query(start=amhist.ConditionTime(mach_tick=1))
        out.append(f"records since the restart: {[r.time.id for r in hist.find_latest(since)]}")
        await hist.close_async()


async def main(path: Path | None = None) -> list[str]:
    """Run both "processes" against one database file; returns the printed lines."""
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = path if path is not None else Path(tmp) / "orders.sqlite"
        await first_run(db, out)
        await second_run(db, out)
    for line in out:
        print(line)
    return out


if __name__ == "__main__":
    anyio.run(main)
