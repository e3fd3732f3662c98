"""A node worker that counts words: ``WorkRequested{input: text}`` → ``{"words": n, "pid": pid}``.

The supervisor starts it as ``python examples/node/worker.py -a <bootstrap address>``;
you never run it by hand.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from asyncmachine_trio import node


def count_words(text: Any) -> dict[str, int]:
    """The work: count the words of ``text`` (a str)."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    if "CRASH" in text:  # a fault to demonstrate recovery
        os._exit(3)
    return {"words": len(text.split()), "pid": os.getpid()}


if __name__ == "__main__":
    node.run_worker(node.Worker("wordcount", work=count_words), sys.argv[1:])
