from tests.store.conftest import make_store, store  # noqa: F401  (the same two backends)
