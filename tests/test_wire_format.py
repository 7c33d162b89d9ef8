from api.sse import END_EVENT, FrameCache, sse_batch, ws_frame
from dashboard.hub import Event, Reset


def test_sse_named_and_plain_byte_for_byte() -> None:
    ev = Event(7, "a" * 32, "log", '{"seq":7}', False)
    assert sse_batch([ev], named=True) == b'id: 7\nevent: log\ndata: {"seq":7}\n\n'
    assert sse_batch([ev], named=False) == b'id: 7\ndata: {"seq":7}\n\n'
    assert sse_batch([Reset(5)], named=True) == b'event: reset\ndata: {"first_seq": 5}\n\n'
    assert sse_batch([Reset(5)], named=False) == b'data: {"type": "reset", "first_seq": 5}\n\n'
    assert END_EVENT == b"event: end\ndata: {}\n\n"


def test_ws_frame_is_a_json_array() -> None:
    a = Event(1, "a" * 32, "log", '{"seq":1}', False)
    b = Event(2, "a" * 32, "log", '{"seq":2}', False)
    assert ws_frame([a, b]) == '[{"seq":1},{"seq":2}]'
    assert ws_frame([Reset(3), a]) == '[{"type": "reset", "first_seq": 3},{"seq":1}]'


def test_frame_cache_builds_a_batch_once_and_only_the_same_batch() -> None:
    sid = "a" * 32
    events = [Event(i, sid, "log", f'{{"seq":{i}}}', False) for i in range(1, 5)]
    cache = FrameCache(size=2)
    first = cache.ws(events[:3], sid)
    assert first == ws_frame(events[:3])
    assert cache.ws(list(events[:3]), sid) is first, "a second viewer gets the built frame"
    assert cache.ws(events[:2], sid) == ws_frame(events[:2]), "another batch, another frame"
    assert cache.sse(events[:3], sid, named=True) == sse_batch(events[:3], named=True)
    assert cache.sse(events[:3], sid, named=False) == sse_batch(events[:3], named=False)
    assert cache.ws(events[:3], "b" * 32) == first and len(cache._frames) <= 2, "bounded"
    replay = [Reset(1), *events]
    assert cache.ws(replay, sid) == ws_frame(replay), "a batch with a reset is never cached"
    assert cache.ws(events, None) == ws_frame(events), "no session (a client's feeds): built"
    assert all(key[1] == sid or key[1] == "b" * 32 for key in cache._frames)
