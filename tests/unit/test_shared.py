"""featurestore.shared: one open object per key, closed by its last user, never open twice."""

from __future__ import annotations

import threading

from featurestore.shared import Shared


def test_the_first_user_opens_and_the_last_closes() -> None:
    opened: list[str] = []
    closed: list[str] = []
    shared: Shared[str, str] = Shared(close=closed.append)

    def opener(key: str):  # type: ignore[no-untyped-def]
        def open_it() -> str:
            opened.append(key)
            return f"<{key}>"

        return open_it

    assert shared.acquire("a", opener("a")) == "<a>"
    assert shared.acquire("a", opener("a")) == "<a>"
    assert shared.acquire("b", opener("b")) == "<b>"
    assert opened == ["a", "b"] and shared.users("a") == 2
    shared.release("a")
    assert closed == [] and shared.users("a") == 1
    shared.release("a")
    assert closed == ["<a>"] and shared.users("a") == 0
    assert shared.acquire("a", opener("a")) == "<a>" and opened == ["a", "b", "a"]  # opened again


def test_concurrent_users_of_a_key_share_one_object() -> None:
    opened = 0
    lock = threading.Lock()
    shared: Shared[str, object] = Shared(close=lambda _: None)
    seen: list[object] = []

    def opener() -> object:
        nonlocal opened
        with lock:
            opened += 1
        return object()

    def use() -> None:
        seen.append(shared.acquire("k", opener))

    threads = [threading.Thread(target=use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == 1 and len({id(o) for o in seen}) == 1 and shared.users("k") == 16
