"""Quick start: relations, handlers, Auto states and errors in one small machine.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import asyncmachine_trio as am


class FileStates(am.States):
    """A download workflow: Downloading and Downloaded exclude each other."""

    Downloading = am.State(remove=("Downloaded",))
    Downloaded = am.State(remove=("Downloading",))
    Processing = am.State(auto=True, require=("Downloaded",))


class Handlers:
    """Handlers are found by name: <state>_enter, <state>_state, any_state..."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def downloading_enter(self, e: am.Event) -> bool:
        # negotiation: reject a download without a url
        return "url" in e.args

    def downloading_state(self, e: am.Event) -> None:
        self.log.append(f"downloading {e.args['url']}")

    def processing_state(self, e: am.Event) -> None:
        self.log.append("processing (added automatically)")

    def any_state(self, e: am.Event) -> None:
        self.log.append(f"now {e.machine}")


def main() -> list[str]:
    """Run the demo and return its log lines."""
    handlers = Handlers()
    mach = am.Machine(FileStates, id="demo", handlers=handlers)

    print("add Downloading without a url ->", mach.add1(FileStates.Downloading))
    print("add Downloading with a url    ->", mach.add1("Downloading", {"url": "file.txt"}))
    print("add Downloaded                ->", mach.add1(FileStates.Downloaded))
    mach.add_err(ValueError("disk full"))
    print("error state active:", mach.is_err(), "-", mach.err)
    print(mach.string_all())
    for line in handlers.log:
        print("  handler:", line)
    return handlers.log


if __name__ == "__main__":
    main()
