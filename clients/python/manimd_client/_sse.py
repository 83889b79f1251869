"""A `text/event-stream` decoder: lines in, (event, data) pairs out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RawEvent:
    event: str
    data: str


class Decoder:
    """Feeds lines (without their ends) and returns each event completed by
    a blank line. Comments (`:` lines, the server's keep-alives) and the
    `id` and `retry` fields are skipped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> RawEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            done = RawEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None
