from api.sse import END_EVENT, sse_batch, ws_frame
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
