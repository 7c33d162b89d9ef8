"""``GET /api/sessions``: only the sessions this browser (its client cookie) started."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

COOKIE = "dashboard_client"


@contextmanager
def browser(url: str) -> Iterator[httpx.Client]:
    """A client that, like a browser, got its cookie from the page."""
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/").status_code == 200
        assert client.cookies.get(COOKIE)
        yield client


def create(client: httpx.Client, context: object) -> str:
    reply = client.post("/api/sessions", json={"experiment_context": context})
    assert reply.status_code == 201, reply.text
    session_id: str = reply.json()["session_id"]
    return session_id


def listed(client: httpx.Client) -> list[dict[str, object]]:
    reply = client.get("/api/sessions")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    sessions: list[dict[str, object]] = reply.json()["sessions"]
    return sessions


def test_each_browser_lists_only_its_own_sessions_newest_first(server):
    with browser(server.url) as me, browser(server.url) as other:
        mine = [create(me, f"mine {i}\nsecond line") for i in range(3)]
        theirs = create(other, {"description": "theirs", "target": "x"})

        my_list = listed(me)
        assert [s["session_id"] for s in my_list] == mine[::-1]  # newest first
        first = my_list[-1]
        assert first["state"] == "created"
        assert first["title"] == "mine 0"  # the context's first line
        assert str(first["created"]).endswith("Z")
        links = first["links"]
        assert isinstance(links, dict)
        assert links["ws"] == f"/api/sessions/{mine[0]}/ws"
        assert links["events"] == f"/api/sessions/{mine[0]}/events"
        their_list = listed(other)
        assert [s["session_id"] for s in their_list] == [theirs]
        assert their_list[0]["title"] == "theirs"
        assert "log_token" not in str(my_list) + str(their_list)

        # the state follows the session
        tus = {"Tus-Resumable": "1.0.0", "Upload-Length": "3"}
        tus["Upload-Metadata"] = "relativePath YS5jc3Y="  # a.csv
        me.post(f"/api/sessions/{mine[1]}/files", headers=tus).raise_for_status()
        states = {s["session_id"]: s["state"] for s in listed(me)}
        assert states[mine[1]] == "uploading"

    # no cookie, or a well-formed cookie no session carries: an empty list, not an error
    for cookies in ({}, {COOKIE: uuid.uuid4().hex}, {COOKIE: "../../etc"}):
        with httpx.Client(base_url=server.url, cookies=cookies) as stranger:
            assert listed(stranger) == [], cookies


def test_the_list_survives_a_restart(server):
    with browser(server.url) as me:
        cookie = me.cookies[COOKIE]
        sessions = [create(me, "before the restart") for _ in range(2)]
    server.restart()
    with httpx.Client(base_url=server.url, cookies={COOKIE: cookie}) as again:
        assert [s["session_id"] for s in listed(again)] == sessions[::-1]
