"""The contract suite's backends: every test taking ``make_store`` runs on SQLite and on Azurite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.store import Store, open_store
from monitor.store.entities import EntityStore

StoreFactory = Callable[[], EntityStore]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "tables"])
def make_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[StoreFactory]:
    """Opens stores on one shared database: each call is another process's view of the same data."""
    if request.param == "sqlite":
        path = tmp_path / "kvmon.db"

        def opener() -> Store:
            return open_store(sqlite_path=path)
    else:
        azurite = request.getfixturevalue("azurite")
        prefix = f"t{uuid.uuid4().hex[:12]}"  # fresh tables per test on the shared Azurite

        def opener() -> Store:
            return open_store(connection_string=azurite.connection_string, table_prefix=prefix)

    opened: list[Store] = []

    def make() -> EntityStore:
        store = opener()
        assert isinstance(store, EntityStore)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> EntityStore:
    return make_store()
