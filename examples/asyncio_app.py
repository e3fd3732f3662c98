"""asyncio app: the file-processing workflow in a plain asyncio program.

The core runs on asyncio as well as trio (it is written against anyio), so an
asyncio program uses a machine with nothing but ``asyncio``:

- ``asyncio.run`` starts the loop; ``am.open_machine`` gives the machine a task
  group on it;
- ``async def`` handlers await ``asyncio.sleep`` (standing in for aiohttp,
  asyncpg, ...) and are cancelled when their state ends;
- ``await mach.when1(...)`` works with ``asyncio.wait_for`` /
  ``asyncio.timeout``;
- jobs come in through an ``asyncio.Queue`` filled by a plain asyncio task.

Download -> Process (Auto) -> Upload (Auto) for each file; a job for a file
that does not exist fails the download, which adds the ``Exception`` state
and is reported. aRPC (``am.rpc``) is the one layer that needs trio.

Run: python examples/asyncio_app.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncmachine_trio as am

DELAY = 0.05  # fake I/O latency, in seconds
FILES = {"a.txt": "alpha", "b.txt": "beta"}

Say = Callable[[str], None]


class FileStates(am.States):
    Downloading = am.State(remove=("Downloaded",))
    Downloaded = am.State(remove=("Downloading",))
    Processing = am.State(auto=True, require=("Downloaded",), remove=("Processed",))
    Processed = am.State(remove=("Processing",))
    Uploading = am.State(auto=True, require=("Processed",), remove=("Uploaded",))
    Uploaded = am.State(remove=("Uploading",))


S = FileStates


class Handlers:
    def __init__(self, say: Say) -> None:
        self.say = say
        self.data = ""

    async def downloading_state(self, e: am.Event) -> None:
        name = e.args["name"]
        await asyncio.sleep(DELAY)
        if name not in FILES:
            raise FileNotFoundError(name)
        self.data = FILES[name]
        e.machine.add1(S.Downloaded)

    async def processing_state(self, e: am.Event) -> None:
        await asyncio.sleep(DELAY)
        self.data = self.data.upper()
        e.machine.add1(S.Processed)

    async def uploading_state(self, e: am.Event) -> None:
        await asyncio.sleep(DELAY)
        self.say(f"uploaded {self.data}")
        e.machine.add1(S.Uploaded)


async def process(name: str, say: Say) -> str:
    """Run the workflow for one file; return the final states or the error."""
    # a failed download is awaited with when_err and reported below, so the machine
    # need not report it as unhandled (report_errors=False)
    async with am.open_machine(
        S, id=f"file-{name}", handlers=Handlers(say), report_errors=False
    ) as mach:
        uploaded, failed = mach.when1(S.Uploaded), mach.when_err()
        mach.add1(S.Downloading, {"name": name})
        done, pending = await asyncio.wait(
            [asyncio.ensure_future(uploaded.wait()), asyncio.ensure_future(failed.wait())],
            timeout=DELAY * 20,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in pending:
            task.cancel()
        if not done:
            raise TimeoutError(f"{name}: no result after {DELAY * 20}s")
        if mach.is_err():
            return f"{name}: failed: {mach.err!r}"
        return f"{name}: {mach}"


async def main(say: Say = print) -> list[str]:
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        say(line)

    jobs: asyncio.Queue[str | None] = asyncio.Queue()

    async def producer() -> None:
        for name in ["a.txt", "missing.txt", "b.txt"]:
            await jobs.put(name)
        await jobs.put(None)

    feeder = asyncio.create_task(producer())
    while (name := await jobs.get()) is not None:
        log(await process(name, log))
    await feeder
    return lines


if __name__ == "__main__":
    asyncio.run(main())
