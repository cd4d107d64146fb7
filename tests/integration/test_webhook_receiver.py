"""The test receiver the fault tests trust: a request whose sender died mid-body is not a delivery."""

from __future__ import annotations

import socket

import httpx

from tests.support.receiver import Receiver


def test_a_request_cut_short_by_its_sender_is_neither_recorded_nor_acknowledged():
    with Receiver() as receiver:
        host, port = receiver.url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port))) as sender:
            # Headers and the start of a body, then the sender is gone: a notifier killed mid-request.
            sender.sendall(b'POST /hooks HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{"data"')
            sender.shutdown(socket.SHUT_WR)
            assert sender.recv(1024) == b"", "nothing is answered to a request that never arrived whole"
        whole = httpx.post(receiver.url, content=b'{"data": {}}')

        assert whole.status_code == 200
        assert [r.body for r in receiver.received()] == [b'{"data": {}}']
        assert [r.body for r in receiver.acknowledged()] == [b'{"data": {}}']
        assert receiver.cut_short == 1
