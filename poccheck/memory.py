"""Peak resident memory of this process while a block of work runs (sampled in a background thread)."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


class PeakRSS:
    """Context manager that samples RSS every ``interval`` seconds; ``peak`` and ``baseline`` in bytes."""

    def __init__(self, interval: float = 0.05) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline = 0
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="poccheck-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
