"""A loopback TCP proxy that can play an unreachable S3: ``down()`` refuses connections
(nothing listens on the port) and drops every open one at its next request, ``up()``
forwards again on the same port.

A request that reached the server always gets its answer back, and one that arrives after
``down()`` never reaches the server: so a record stored twice is the uploader's doing, not
a response the proxy swallowed.
"""

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> "TcpProxy":
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        listener, self._listener = self._listener, None
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            pair = (client, server)
            threading.Thread(target=self._requests, args=(listener, *pair), daemon=True).start()
            threading.Thread(target=self._answers, args=pair, daemon=True).start()

    def _requests(
        self, listener: socket.socket, client: socket.socket, server: socket.socket
    ) -> None:
        # Forwards while the listener it came from is the one up: after down(), the next
        # request closes the pair unsent.
        with client, server, contextlib.suppress(OSError):
            while (data := client.recv(65536)) and self._listener is listener:
                server.sendall(data)

    def _answers(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the other thread closed the pair
            while data := server.recv(65536):
                client.sendall(data)
