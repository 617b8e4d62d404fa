"""Benchmark (not a test): probe 1,000 vaults against the lab with one blackholed address.

Every vault is probed from the Private Link subnet through the lab's split-horizon DNS and the
Key Vault data plane (real dnspython, sockets, TLS and azure-keyvault-secrets). A few vaults'
Private Endpoints sit on one blackholed address (SYNs dropped): with the per-run reachability
memory, that address costs its connect timeout once, not once per vault behind it.

    .venv/bin/python -m bench.probes [--vaults 1000] [--dark 20] [--concurrency 32] [--timeout 2]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from lab.credential import LabCredential
from lab.estate import LAB_PRIVATE_RANGES, LAB_VAULT_SUFFIX, WALKTHROUGH_SUBSCRIPTION, walkthrough_estate
from lab.services import walkthrough_vantages
from lab.world import LabWorld
from monitor.netaddr import AddressSpace
from probes.options import ProbeOptions
from probes.pool import probe_vaults
from probes.scope import ProbeScope

BLACKHOLE = "127.10.2.99"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vaults", type=int, default=1000)
    parser.add_argument(
        "--dark", type=int, default=20, help="vaults whose endpoint is the blackholed address"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=2.0, help="timeout of each step, seconds")
    args = parser.parse_args()

    estate = walkthrough_estate(fixed=True)
    subnet = estate.subnet_named("privateLink")
    names = [f"kv-bench-{i:04d}" for i in range(args.vaults)]
    for index, name in enumerate(names):
        vault = estate.add_vault(
            subscription_id=WALKTHROUGH_SUBSCRIPTION, resource_group="rg-bench", name=name
        )
        if index < args.dark:
            estate.add_private_endpoint(
                vault["id"], address=BLACKHOLE, subnet_id=subnet.id, name=f"pe-{name}"
            )

    with LabWorld(estate, blackholed=(BLACKHOLE,)) as world:
        vantage = next(v for v in walkthrough_vantages(resolver=world.resolver) if v.name == "pl-subnet")
        options = ProbeOptions.with_timeout(
            args.timeout,
            port=world.port,
            concurrency=args.concurrency,
            scope=ProbeScope.with_emulator(LAB_VAULT_SUFFIX),
            address_space=AddressSpace.with_extra(LAB_PRIVATE_RANGES),
            ca_bundle=world.ca_path,
        )
        # Warm up once (imports, the SDK's challenge cache for one vault) outside the clock.
        probe_vaults([names[-1]], vantage=vantage, options=options, credential=LabCredential())

        started = time.perf_counter()
        results = probe_vaults(names, vantage=vantage, options=options, credential=LabCredential())
        wall = time.perf_counter() - started

    verdicts = Counter(r.verdict.value for r in results)
    live = [r.duration_ms or 0.0 for r in results if r.tls and r.tls.connected]
    per_vault_ms = sum(live) / len(live) if live else 0.0
    dark_cost = sorted((r.duration_ms or 0.0) for r in results[: args.dark])
    expected = len(names) / args.concurrency * per_vault_ms / 1000 + args.timeout

    print(f"vaults probed        {len(results)} ({args.dark} behind blackholed {BLACKHOLE})")
    print(f"concurrency          {args.concurrency}")
    print(f"wall time            {wall:.2f} s")
    print(f"per vault (wall)     {wall / len(results) * 1000:.1f} ms")
    print(f"per live vault       {per_vault_ms:.1f} ms (one vault's own duration, all steps)")
    print(f"expected about       {expected:.2f} s = vaults / concurrency x per-vault time + one timeout")
    if dark_cost:
        print(
            f"blackholed vaults    slowest {dark_cost[-1]:.0f} ms, median {dark_cost[len(dark_cost) // 2]:.0f} ms "
            f"(timeout {args.timeout * 1000:.0f} ms paid once)"
        )
    print(f"verdicts             {dict(verdicts)}")


if __name__ == "__main__":
    main()
