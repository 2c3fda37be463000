"""GitHub out of reach: a loopback port where every connection is counted and reset at once, so a
client sees what a dead network shows it, and the test can count its tries."""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType


class Unreachable:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.attempts = 0
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._refuse, name="unreachable", daemon=True)

    def __enter__(self) -> Unreachable:
        self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.listener.close()
        self.thread.join(5)

    def wait_for(self, attempts: int, timeout: float = 10.0) -> bool:
        """True once `attempts` connections were tried (False after `timeout` s)."""
        with self.changed:
            return self.changed.wait_for(lambda: self.attempts >= attempts, timeout)

    def _refuse(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            # linger 0: the close is a reset, as from a firewall or a host that went away
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
            with self.changed:
                self.attempts += 1
                self.changed.notify_all()
