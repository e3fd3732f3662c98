"""Child processes whose banner the tests read line by line."""

from __future__ import annotations

import subprocess
import threading
from typing import IO


def communicate(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """Wait for ``proc`` and return the rest of its stdout and its stderr.

    ``Popen.communicate`` reads the pipes' file descriptors directly, so the lines
    a test's ``proc.stdout.readline()`` already pulled into the text buffer, but
    did not return, are lost. This reads through the text objects instead, on
    threads, so neither pipe can fill up and block the child.
    """
    got: dict[str, str] = {}

    def drain(name: str, stream: IO[str] | None) -> None:
        if stream is None:
            return
        with stream:
            got[name] = stream.read()

    threads = [
        threading.Thread(target=drain, args=(name, stream), daemon=True)
        for name, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise
    finally:
        for t in threads:
            t.join(timeout=10)
    return got.get("out", ""), got.get("err", "")
