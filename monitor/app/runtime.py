"""Build a scan's adapters from settings: the construction the CLI and the Functions app share.

``run_scan`` wires the stages; this module only makes the objects it wires, from ``Settings``
and the environment (for secrets such as webhook URLs and remote vantage keys).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from typing import Any

from monitor.app.deployment import local_vantage
from monitor.app.scan import ScanRuntime
from monitor.config.baseline import Baseline, load_baseline
from monitor.config.identity import default_credential
from monitor.config.policy import Vantage
from monitor.config.settings import InventoryChoice, Settings
from monitor.judge.rules.catalog import RULES_BY_ID
from monitor.outputs.notify import Notifier, notifier_from_environ
from monitor.sources.arm import ArmConnection, ArmInventory
from monitor.sources.change_history import ResourceGraphChangeHistory
from monitor.sources.inventory import InventorySource, ThresholdInventory
from monitor.sources.logs import LogsReader
from monitor.sources.perimeters import ArmPerimeterReader
from monitor.sources.resource_graph import ResourceGraphInventory
from monitor.sources.storage.arm import StorageArmInventory
from monitor.store import Store, store_from_environment
from probes.options import ProbeOptions
from probes.prober import Prober


def scan_vantages(settings: Settings) -> tuple[Vantage, ...]:
    """Every vantage point a scan probes from: those configured, or only this deployment's."""
    return settings.vantages or (local_vantage(settings),)


def load_policy_source(settings: Settings) -> Baseline:
    if not settings.baseline_path:
        return Baseline.none()
    return load_baseline(settings.baseline_path, known_rules=RULES_BY_ID.keys())


def build_arm_inventory(settings: Settings, *, credential: Any) -> ArmInventory:
    return ArmInventory(
        credential,
        arm_endpoint=settings.arm_endpoint,
        connection_verify=settings.connection_verify,
        timeout_s=settings.arm_timeout_s,
        retry_total=settings.arm_retries,
    )


def build_inventory(settings: Settings, *, credential: Any) -> InventorySource:
    """KVMON_INVENTORY_SOURCE: ``arm``, ``resource-graph``, or ``auto`` (Resource Graph for scans of
    KVMON_RESOURCE_GRAPH_THRESHOLD subscriptions or more, decided per scan)."""
    arm = build_arm_inventory(settings, credential=credential)
    if settings.inventory_source is InventoryChoice.ARM:
        return arm
    graph = ResourceGraphInventory(
        credential,
        arm_endpoint=settings.arm_endpoint,
        connection_verify=settings.connection_verify,
        timeout_s=settings.arm_timeout_s,
        retry_total=settings.arm_retries,
    )
    if settings.inventory_source is InventoryChoice.RESOURCE_GRAPH:
        return graph
    return ThresholdInventory(arm=arm, graph=graph, threshold=settings.resource_graph_threshold)


def build_perimeter_reader(settings: Settings, *, credential: Any) -> ArmPerimeterReader:
    """The perimeter reader, on the ARM inventory's connection (endpoint, trust, timeout, retries)."""
    return ArmPerimeterReader(
        credential,
        connection=build_arm_inventory(settings, credential=credential).connection,
        perimeter_subscriptions=settings.perimeter_subscriptions,
    )


def build_storage_inventory(settings: Settings, *, credential: Any) -> StorageArmInventory:
    """The storage accounts' reader, on the vault inventory's ARM connection (endpoint, trust,
    timeout, retries): one ARM, one credential, for both services."""
    return StorageArmInventory(
        credential, connection=build_arm_inventory(settings, credential=credential).connection
    )


def build_change_history(settings: Settings, *, credential: Any) -> ResourceGraphChangeHistory | None:
    """Resource Graph's change history wherever the inventory may be Resource Graph (``resource-graph``,
    or ``auto``), whose rows carry no systemData to name who changed a vault. ARM's postures do:
    a scan asks the history only about changed vaults whose posture names nobody."""
    if settings.inventory_source is InventoryChoice.ARM:
        return None
    return ResourceGraphChangeHistory(
        credential,
        connection=ArmConnection(
            arm_endpoint=settings.arm_endpoint,
            connection_verify=settings.connection_verify,
            timeout_s=settings.arm_timeout_s,
            retry_total=settings.arm_retries,
        ),
    )


def build_runtime(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    credential: Any = None,
    store: Store | None = None,
    with_store: bool = True,
) -> ScanRuntime:
    """Adapters for ``run_scan``. ``store`` overrides the one the environment names;
    ``with_store=False`` scans without memory (no drift, no lifecycle, no notifications)."""
    credential = credential if credential is not None else default_credential(settings)
    baseline = load_policy_source(settings)
    vantages = scan_vantages(settings)
    function_keys = {v.key_setting: environ.get(v.key_setting, "") for v in vantages if v.key_setting}
    prober = Prober(
        options=ProbeOptions.from_settings(settings),
        credential=credential,
        function_keys=function_keys,
    )
    evidence = None
    if settings.workspaces or settings.perimeter_workspaces:
        evidence = LogsReader(
            credential,
            endpoint=settings.logs_endpoint,
            table=settings.logs_table,
            address_space=settings.address_space,
            connection_verify=settings.connection_verify,
            timeout_s=settings.logs_timeout_s,
        )
    if with_store and store is None:
        store = store_from_environment(environ, credential=credential)
    notifier = notifier_from_environ(store, environ, verify=settings.connection_verify) if store else None
    return ScanRuntime(
        inventory=build_inventory(settings, credential=credential),
        # One vault by id is always one ARM GET, whatever source lists the estate.
        vault_reader=build_arm_inventory(settings, credential=credential),
        storage_inventory=build_storage_inventory(settings, credential=credential),
        perimeters=build_perimeter_reader(settings, credential=credential),
        policy_for=baseline.policy_for,
        vantages=vantages,
        prober=prober,
        evidence=evidence,
        workspaces=settings.workspaces,
        perimeter_workspaces=settings.perimeter_workspaces,
        store=store if with_store else None,
        notifier=notifier,
        change_history=build_change_history(settings, credential=credential),
        address_space=settings.address_space,
        refused_threshold=baseline.logs_refused_threshold,
        scan_interval=settings.scan_interval,
        event_feed=settings.event_feed,
        logs_first_window=settings.logs_first_window,
        deadline=settings.scan_deadline,
    )


# How often the runs of one worker process sweep the outbox for messages other runs left pending
# (each run sends its own at once): a message whose delivery failed is tried again this much later
# at worst, while the process keeps notifying (else by the next run, or the timer's).
OUTBOX_SWEEP_S = 10.0


class SharedRuntime:
    """The Functions app's adapters, built once per worker process and shared by its invocations
    (concurrent ones too) for as long as the environment and the baseline file stay the same.

    Each invocation built its own runtime: the baseline parsed again, new SDK clients, a new
    connection (and TLS handshake) to every service, per event. The adapters hold no state of
    a run (the store's concurrency is its etags, the clients are thread-safe), except the
    notifier's pacing, which stays per run: ``get`` gives each call a notifier of its own over
    the shared connections. A changed app setting or baseline builds a new runtime; the platform
    restarts the worker on a settings change anyway. The runs' notifiers sweep the outbox for
    other runs' leftovers at most every ``OUTBOX_SWEEP_S`` between them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._credential: Any = None
        self._runtime: ScanRuntime | None = None

    def get(self, settings: Settings, *, environ: Mapping[str, str], credential: Any) -> ScanRuntime:
        """The runtime for these settings, environment and credential: the one built before while
        they are the same (the credential the same object: the process's), else a new one."""
        key = (tuple(sorted(environ.items())), _file_state(settings.baseline_path))
        with self._lock:
            if key != self._key or credential is not self._credential or self._runtime is None:
                runtime = build_runtime(settings, environ=environ, credential=credential)
                if isinstance(runtime.notifier, Notifier):
                    runtime.notifier = runtime.notifier.sweeping_every(OUTBOX_SWEEP_S)
                self._runtime = runtime
                self._key, self._credential = key, credential
            runtime = self._runtime
        if isinstance(runtime.notifier, Notifier):
            return dataclasses.replace(runtime, notifier=runtime.notifier.for_another_run())
        return runtime


def _file_state(path: str | None) -> tuple[int, int, int] | None:
    """What tells a changed file (inode, size, modification time), None when there is none."""
    if not path:
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None  # build_runtime names the file it cannot read
    return (found.st_ino, found.st_size, found.st_mtime_ns)
