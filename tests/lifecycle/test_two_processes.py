"""Two kvmon processes scanning into one SQLite file at once: one record and one announcement per problem."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from tests.store.conftest import REPO_ROOT

SCAN = textwrap.dedent(
    """
    import datetime as dt, json, pathlib, sys, time
    from monitor.store.reconcile import apply_reconciliation
    from monitor.store import open_store
    from tests.store.helpers import T0, finding

    db, go, index = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
    problems = [finding(f"kv-{i % 5}", "KV004", subject=f"198.51.100.{i}/32") for i in range(60)]
    vaults = {p.vault_id.lower() for p in problems}
    store = open_store(sqlite_path=db)
    while not go.exists():
        time.sleep(0.005)
    changes = apply_reconciliation(
        store, current=problems, assessed_vaults=vaults, complete_vaults=vaults, now=T0 + dt.timedelta(seconds=index)
    )
    print(json.dumps([[c.kind.value, c.finding.id] for c in changes]))
    """
)


def test_two_processes_share_one_sqlite_store(tmp_path) -> None:
    db, go = tmp_path / "kvmon.db", tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCAN, str(db), str(go), str(index)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    time.sleep(0.5)  # let both import and open the store; correctness does not depend on it
    go.touch()
    outputs = [process.communicate(timeout=60) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err for _, err in outputs]

    announced = [tuple(change) for out, _ in outputs for change in json.loads(out)]
    assert len(announced) == 60 and {kind for kind, _ in announced} == {"opened"}
    assert len({finding_id for _, finding_id in announced}) == 60  # none announced twice

    from monitor.store import open_store

    store = open_store(sqlite_path=db)
    try:
        assert len(store.load_findings()) == 60
    finally:
        store.close()
