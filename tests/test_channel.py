"""The supervisor-child channel over a real socket pair: framing, bursts, partial reads, EOF."""

import pickle

import pytest

from jobqueue.worker.channel import Channel, ChannelClosed


def test_a_burst_of_messages_is_read_in_one_call():
    parent, child = Channel.pair()
    for i in range(50):
        child.send((i, "succeeded", "{}", None, 0.001))
    received = parent.receive_ready()
    assert [m[0] for m in received] == list(range(50))


def test_a_message_split_across_reads_is_kept_until_complete():
    parent, child = Channel.pair()
    big = {"result": "x" * 100_000}  # larger than one recv of 64 KiB
    data = pickle.dumps(big, pickle.HIGHEST_PROTOCOL)
    child.send(big)
    received = []
    reads = 0
    while not received:
        received = parent.receive_ready()
        reads += 1
    assert received == [big]
    assert reads > 1, f"a {len(data)}-byte message should have needed several reads"


def test_blocking_receive_returns_one_message_at_a_time():
    parent, child = Channel.pair()
    parent.send([(1, "demo.echo", [], {}, 1, None)])
    parent.send(None)
    assert child.receive() == [(1, "demo.echo", [], {}, 1, None)]
    assert child.receive() is None


def test_closed_peer_reads_as_channel_closed():
    parent, child = Channel.pair()
    child.send("last words")
    child.close()
    assert parent.receive_ready() == ["last words"]
    with pytest.raises(ChannelClosed):
        parent.receive_ready()


def test_blocking_receive_from_a_closed_peer_raises():
    parent, child = Channel.pair()
    parent.close()
    with pytest.raises(ChannelClosed):
        child.receive()


def test_a_nonblocking_end_never_waits_for_a_peer_that_does_not_read():
    """The supervisor's end queues what the socket cannot take: a child busy with a job
    (or stopped) must not stall the supervisor's loop, whose heartbeat holds the leases."""
    import threading

    parent, child = Channel.pair()
    parent.set_nonblocking()
    big = "\U0001f600" * 1_000_000  # 4 MB as UTF-8, far over any socket buffer
    sending = threading.Thread(target=lambda: (parent.send([big]), parent.send(None)), daemon=True)
    sending.start()
    sending.join(timeout=5)
    assert not sending.is_alive(), "send waited for a peer that does not read"
    assert parent.unsent > 0
    received = []
    while parent.unsent:  # the peer reads; what was queued goes out as it does
        parent.flush()
        child.sock.settimeout(1.0)
        received.append(child.sock.recv(1 << 20))
    child._pending += b"".join(received)
    assert child.receive() == [big]
    assert child.receive() is None
