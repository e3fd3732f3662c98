"""File processing: download -> process -> upload, each step a task scoped to its state.

Based on Temporal's file processing sample. ``ProcessingFile`` and
``UploadingFile`` are Auto states that require the previous step's result, so
adding ``DownloadingFile`` runs the whole pipeline. It shows the three ways to
run async work for a state, each cancelled when that state ends:

- ``async def downloading_file_state``: an async final handler,
- ``e.fork(fn, *args)`` from a plain final handler (``processing_file_state``),
- ``mach.fork(state, fn, *args)`` from anywhere (``uploading_file_state``).

``..._end`` handlers clean up when a step's state ends. A step checks its
state's context after each await: on a slow loop an await can end just
before the state does, and the cancellation then only comes at the next one.

Run: python examples/file_processing.py
"""

from __future__ import annotations

import anyio
import trio

import asyncmachine_trio as am

DELAY = 0.01  # fake I/O latency, in seconds


class FileStates(am.States):
    DownloadingFile = am.State(remove=("FileDownloaded",))
    FileDownloaded = am.State(remove=("DownloadingFile",))
    ProcessingFile = am.State(auto=True, require=("FileDownloaded",), remove=("FileProcessed",))
    FileProcessed = am.State(remove=("ProcessingFile",))
    UploadingFile = am.State(auto=True, require=("FileProcessed",), remove=("FileUploaded",))
    FileUploaded = am.State(remove=("UploadingFile",))


S = FileStates


class FileHandlers:
    def __init__(self) -> None:
        self.tmp: dict[str, bytes] = {}  # a fake temp dir
        self.uploaded: dict[str, bytes] = {}  # a fake blob store
        self.downloaded = ""  # tmp file of the download
        self.processed = ""  # tmp file of the processing result

    async def downloading_file_state(self, e: am.Event) -> None:
        ctx = e.machine.new_state_ctx(S.DownloadingFile)
        name = e.args["filename"]
        await anyio.sleep(DELAY)
        if ctx.expired:
            return  # DownloadingFile ended while we waited
        self.downloaded = f"/tmp/{name}"
        self.tmp[self.downloaded] = f"dummy content for {name}".encode()
        e.machine.log("downloaded %s", self.downloaded)
        e.machine.add1(S.FileDownloaded)

    def processing_file_state(self, e: am.Event) -> None:
        e.fork(self.process, e.machine, e.machine.new_state_ctx(S.ProcessingFile))

    async def process(self, mach: am.Machine, ctx: am.StateCtx) -> None:
        await anyio.sleep(DELAY)
        if ctx.expired:
            return
        self.processed = self.downloaded + ".processed"
        self.tmp[self.processed] = self.tmp[self.downloaded].upper()
        mach.log("processed into %s", self.processed)
        mach.add1(S.FileProcessed)

    def processing_file_end(self, e: am.Event) -> None:
        self.remove_tmp(e.machine, self.downloaded)

    def uploading_file_state(self, e: am.Event) -> None:
        mach = e.machine
        ctx = mach.new_state_ctx(S.UploadingFile)
        mach.fork(S.UploadingFile, self.upload, mach, self.processed, ctx)

    async def upload(self, mach: am.Machine, path: str, ctx: am.StateCtx) -> None:
        await anyio.sleep(DELAY)
        if ctx.expired:
            return
        self.uploaded[path.rsplit("/", 1)[-1]] = self.tmp[path]
        mach.log("uploaded %s", path)
        mach.add1(S.FileUploaded)

    def uploading_file_end(self, e: am.Event) -> None:
        self.remove_tmp(e.machine, self.processed)

    def remove_tmp(self, mach: am.Machine, path: str) -> None:
        self.tmp.pop(path, None)
        mach.log("cleanup %s", path)


async def main() -> list[str]:
    """Process one file; return the log lines."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    handlers = FileHandlers()
    async with am.open_machine(
        S,
        id="files",
        handlers=handlers,
        log_level=am.LogLevel.CHANGES,
        logger=lambda _level, line: say(line),
        dont_log_id=True,
    ) as mach:
        mach.add1(S.DownloadingFile, {"filename": "foo.txt"})
        with anyio.fail_after(1):
            await mach.when1(S.FileUploaded)
        say(f"done: {mach}")
    for name, data in handlers.uploaded.items():
        say(f"uploaded {name}: {data.decode()}")
    return lines


if __name__ == "__main__":
    trio.run(main)
