import asyncio
import json

import pytest

from dashboard.hub import Event, EventHub, Reset

pytestmark = pytest.mark.anyio


def seqs(batch):
    return [i.seq for i in batch if isinstance(i, Event)]


async def test_one_seq_for_the_whole_hub_and_encoded_once() -> None:
    hub = EventHub(history=10)
    a = hub.publish("a" * 32, "log", {"level": "info", "message": "x"})
    b = hub.publish("b" * 32, "log", {"level": "info", "message": "y"})
    assert (a.seq, b.seq) == (1, 2)
    env = json.loads(a.encoded)
    assert set(env) == {"seq", "session_id", "type", "ts", "data"} and env["ts"].endswith("Z")


async def test_replay_after_since_then_live_and_coalesced() -> None:
    hub = EventHub(history=100)
    sid = "a" * 32
    for i in range(5):
        hub.publish(sid, "log", {"message": str(i)})
    sub = hub.subscribe_session(sid, since=2)
    assert seqs(await sub.next_batch()) == [3, 4, 5]
    for i in range(3):
        hub.publish(sid, "log", {"message": str(i)})
    assert seqs(await sub.next_batch()) == [6, 7, 8]  # pending events come together
    sub.close()
    assert hub.subscriber_count == 0


async def test_reset_when_position_fell_out_of_history() -> None:
    hub = EventHub(history=3)
    sid = "a" * 32
    for i in range(10):
        hub.publish(sid, "log", {"message": str(i)})
    batch = await hub.subscribe_session(sid, since=2).next_batch()
    assert isinstance(batch[0], Reset) and batch[0].first_seq == 8
    assert seqs(batch) == [8, 9, 10]
    ok = await hub.subscribe_session(sid, since=7).next_batch()
    assert not isinstance(ok[0], Reset)


async def test_sessions_are_isolated_and_clients_see_their_own() -> None:
    hub = EventHub(history=10)
    a, b = "a" * 32, "b" * 32
    hub.register_session(a, "client1")
    hub.register_session(b, "client2")
    sub_a = hub.subscribe_session(a)
    mine = hub.subscribe_client("client1")
    hub.publish(a, "log", {"message": "a"})
    hub.publish(b, "log", {"message": "b"})
    c = "c" * 32
    hub.register_session(c, "client1")  # a later session of the same browser
    hub.publish(c, "log", {"message": "c"})
    assert [i.session_id for i in await sub_a.next_batch()] == [a]
    assert [i.session_id for i in await mine.next_batch()] == [a, c]


async def test_slow_subscriber_overflows_without_blocking_publisher() -> None:
    hub = EventHub(history=10, max_backlog=50)
    sid = "a" * 32
    slow = hub.subscribe_session(sid)
    fast = hub.subscribe_session(sid)
    for i in range(200):
        hub.publish(sid, "log", {"message": str(i)})
        if i % 10 == 0:
            await fast.next_batch()
    assert slow.overflowed
    assert await slow.next_batch() == []
    assert not fast.overflowed


async def test_next_batch_waits_and_interrupt_wakes() -> None:
    hub = EventHub(history=10)
    sub = hub.subscribe_session("a" * 32)
    assert await sub.next_batch(timeout=0.01) == []
    task = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0)
    sub.interrupt()
    assert await asyncio.wait_for(task, 1) == []


async def test_seq_keeps_increasing_across_a_restart() -> None:
    stored: list[int] = []
    hub = EventHub(history=10, reserve=stored.append)
    for _ in range(3):
        hub.publish("a" * 32, "log", {})
    restarted = EventHub(history=10, seq_start=stored[-1], reserve=stored.append)
    assert restarted.publish("a" * 32, "log", {}).seq > 3


async def test_ended_sessions_move_to_the_archive_and_replay_the_same(tmp_path) -> None:
    from dashboard.event_archive import EventArchive

    archive = EventArchive(tmp_path)
    hub = EventHub(history=100, archive=archive)
    sid, live = "a" * 32, "b" * 32
    for i in range(5):
        hub.publish(sid, "log", {"level": "info", "message": str(i)})
    hub.publish(sid, "status", {"state": "succeeded"})
    hub.publish(live, "status", {"state": "running"})
    follower = hub.subscribe_session(sid)
    before = [e.encoded for e in await follower.next_batch()]
    assert hub.archive_finished(idle_s=0) == 0  # someone is still following it
    follower.close()
    assert hub.archive_finished(idle_s=0) == 1  # the running session stays in memory
    assert not hub._feeds[sid].history
    after = await hub.subscribe_session(sid, since=2).next_batch()
    assert [e.encoded for e in after] == before[2:]
    restarted = EventHub(history=100, seq_start=100, archive=archive)
    restarted.register_session(sid)
    assert restarted.adopt_archive(sid) and restarted.is_terminal(sid)
    assert [e.encoded for e in await restarted.subscribe_session(sid).next_batch()] == before
    # the running session's history was written as it happened (flush_history): it too
    # is replayed after a restart, and it has not ended
    assert restarted.adopt_archive(live) and not restarted.is_terminal(live)
    (running,) = await restarted.subscribe_session(live).next_batch()
    assert json.loads(running.encoded)["data"] == {"state": "running"}


async def test_history_is_appended_as_it_happens_and_a_torn_line_is_skipped(tmp_path) -> None:
    from dashboard.event_archive import EventArchive

    archive = EventArchive(tmp_path)
    hub = EventHub(history=3, archive=archive)
    sid = "c" * 32
    hub.publish(sid, "status", {"state": "running"})
    assert not archive.has(sid), "nothing is written until the flush"
    assert hub.flush_history() == 1
    assert hub.flush_history() == 0, "each event is written once"
    for i in range(4):
        hub.publish(sid, "log", {"level": "info", "message": str(i)})
    assert hub.flush_history() == 4
    path = tmp_path / f"{sid}.jsonl"
    with open(path, "a") as fh:
        fh.write('{"seq": 99, "sess')  # a crash in the middle of an append
    restarted = EventHub(history=3, seq_start=1000, archive=EventArchive(tmp_path))
    restarted.register_session(sid)
    assert restarted.adopt_archive(sid)
    replay = await restarted.subscribe_session(sid).next_batch()
    assert [json.loads(e.encoded)["data"].get("message") for e in replay] == [
        None,
        "0",
        "1",
        "2",
        "3",
    ]
    restarted.publish(sid, "log", {"level": "info", "message": "after"})
    restarted.flush_history()
    # in memory, the restored history is bounded by HISTORY again; a stale position resets
    assert [e.seq for e in restarted._feeds[sid].history][-1] > 1000
    assert len(restarted._feeds[sid].history) == 3
    items = await restarted.subscribe_session(sid, since=1).next_batch()
    assert isinstance(items[0], Reset)
    again = EventHub(history=10, seq_start=2000, archive=EventArchive(tmp_path))
    again.register_session(sid)
    assert again.adopt_archive(sid)
    messages = [
        json.loads(e.encoded)["data"].get("message")
        for e in await again.subscribe_session(sid).next_batch()
    ]
    assert messages == [None, "0", "1", "2", "3", "after"]
