"""What the operator tools share and the CLI reads without loading a Kafka client: the exit
codes, ``OpsError`` (a failure as one line), inert one-line values and tables, message bodies
decoded for display, and a quiet end when the reader of stdout left.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from typing import Any

import orjson

from engine.tools.inert import LIMIT, visible

EXIT_NOT_FOUND = 1  # what was asked is not there (an unknown case, no such dead letter)
EXIT_USAGE = 2  # argparse's own code for a bad flag: bad settings, files, brokers use it too
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class OpsError(Exception):
    """A failure to report as one line; ``code`` is the process's exit code."""

    def __init__(self, message: str, code: int = EXIT_NOT_FOUND) -> None:
        super().__init__(visible(" ".join(message.split())))
        self.code = code


class BrokerUnreachable(OpsError):
    """No broker answered within the connect timeout (exit code 2, as for a bad file)."""

    def __init__(self, bootstrap: str, timeout: float, cause: str) -> None:
        super().__init__(f"cannot reach the Kafka brokers at {bootstrap} within {timeout:g} s"
                         + (f": {cause}" if cause else ""), code=EXIT_USAGE)


# ---- values on a line ----


def shown(value: Any, limit: int = LIMIT) -> str:
    """One value printed on a line: inert, and cut at ``limit`` characters."""
    return visible(value if isinstance(value, str) else str(value), limit)


def brief(v: Any) -> str:
    """A value (text or JSON) on one line, inert, cut at 80 characters."""
    text = v if isinstance(v, str) else orjson.dumps(v).decode()
    text = " ".join(text.split())
    return visible(text if len(text) <= 80 else text[:77] + "...")


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, the last one unpadded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in rows]


def decode(value: bytes | None) -> Any:
    """The body as JSON; a body that is not JSON shows as ``{"_raw": text or base64}``."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            return {"_raw": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"_raw_base64": base64.b64encode(value).decode()}


def quiet_broken_pipe() -> None:
    """``zhida tail … | head``: the reader left; end quietly instead of a flush error."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
