"""``mach://`` addresses: a machine, a transition, a resolution step, a state.

    mach://MACH_ID[/TX_ID[/STEP]][?state=NAME&t=MACHINE_TIME&ht=RFC3339]

``TX_ID`` is the transition's id (as in its log lines) or ``#N`` for the N-th
transition of the machine (1-based, dropped ones included). ``t=`` selects the
first transition whose machine time (sum of ticks) reaches the value, ``ht=``
the last transition at or before a human time. The debugger accepts an
address as its positional argument and in its address bar.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs, quote, unquote, urlsplit

import attrs

from ...telemetry.errors import TelemetryError

__all__ = ["SCHEME", "Address", "AddressError"]

SCHEME = "mach"


class AddressError(TelemetryError, ValueError):
    """A malformed ``mach://`` address."""


@attrs.frozen
class Address:
    """A parsed ``mach://`` address; empty fields are not set."""

    machine_id: str
    tx: str = ""
    step: int = 0
    state: str = ""
    machine_time: int | None = None
    human_time_ns: int | None = None

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``text``; :class:`AddressError` says what is wrong."""
        raw = text.strip()
        parts = urlsplit(raw)
        if parts.scheme != SCHEME:
            raise AddressError(f"not a mach:// address: {text!r}")
        mid = unquote(parts.netloc)
        if not mid:
            raise AddressError(f"no machine id in {text!r}")
        segs = [unquote(s) for s in parts.path.split("/") if s]
        if len(segs) > 2:
            raise AddressError(f"too many path parts in {text!r} (machine/tx/step)")
        tx = segs[0] if segs else ""
        step = 0
        if len(segs) == 2:
            try:
                step = int(segs[1])
            except ValueError:
                raise AddressError(f"step {segs[1]!r} of {text!r} is not a number") from None
            if step < 0:
                raise AddressError(f"negative step in {text!r}")
        q = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(q) - {"state", "t", "ht"}
        if unknown:
            raise AddressError(
                f"unknown parameter {sorted(unknown)[0]!r} in {text!r}; known: state, t, ht"
            )
        mt: int | None = None
        if "t" in q:
            try:
                mt = int(q["t"][0])
            except ValueError:
                raise AddressError(f"t={q['t'][0]!r} is not a number") from None
        ht: int | None = None
        if "ht" in q:
            try:
                dt = datetime.fromisoformat(q["ht"][0].replace("Z", "+00:00"))
            except ValueError:
                raise AddressError(f"ht={q['ht'][0]!r} is not an RFC 3339 time") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            ht = int(dt.timestamp() * 1_000_000) * 1000
        return cls(mid, tx, step, q.get("state", [""])[0], mt, ht)

    def __str__(self) -> str:
        out = f"{SCHEME}://{quote(self.machine_id, safe='')}"
        if self.tx or self.step:
            out += "/" + quote(self.tx or "#0", safe="")
        if self.step:
            out += f"/{self.step}"
        q = []
        if self.state:
            q.append(f"state={quote(self.state)}")
        if self.machine_time is not None:
            q.append(f"t={self.machine_time}")
        if self.human_time_ns is not None:
            dt = datetime.fromtimestamp(self.human_time_ns / 1e9, tz=timezone.utc)
            q.append("ht=" + quote(dt.isoformat().replace("+00:00", "Z")))
        if q:
            out += "?" + "&".join(q)
        return out

    def tx_number(self) -> int | None:
        """``N`` for a ``#N`` transition part, else None."""
        if self.tx.startswith("#"):
            try:
                return int(self.tx[1:])
            except ValueError:
                raise AddressError(f"transition {self.tx!r} is not #<number>") from None
        return None
