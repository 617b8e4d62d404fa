"""Links and redirects in ARM's and Resource Graph's answers, through the real SDK clients.

A ``nextLink`` or a redirect to another host gets nothing, a token least of all: the other host is
a second loopback server (``RecordingServer``) that keeps every request it receives and would
answer with a vault of its own, so a client that followed would show it. A listing that loops (a
page linking to itself, a ring of pages) or never ends stops with a scan error naming the
subscription, which is then not complete. The lab serves each of these on demand
(``ArmEmulator.mislink``, ``ResourceGraphEmulator.mislink``, ``Fault(redirect_to=...)``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.arm import GET_ROUTE, LIST_ROUTE, ArmEmulator
from lab.credential import LabCredential
from lab.estate import Estate
from lab.http import Fault, LinkFault, RecordingServer, Response
from lab.resourcegraph import QUERY_ROUTE, ResourceGraphEmulator
from lab.tls import LabPki
from monitor.azure_origin import origin_of
from monitor.model import ScanError
from monitor.sources.arm import ArmInventory
from monitor.sources.resource_graph import ResourceGraphInventory
from tests.inventory.conftest import SUB_A, SUB_B, add_vaults

PAGE_SIZE = 4
ELSEWHERE_VAULT = {
    "id": f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-elsewhere",
    "name": "kv-elsewhere",
    "type": "Microsoft.KeyVault/vaults",
    "location": "westeurope",
    "properties": {"publicNetworkAccess": "Enabled", "networkAcls": {"defaultAction": "Allow"}},
}


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[ArmEmulator, ResourceGraphEmulator, RecordingServer]]:
    # The other host answers what a hostile one would: a vault list with a vault of its own, and
    # the same vault as a Resource Graph page.
    elsewhere = RecordingServer(answer=Response(200, {"value": [ELSEWHERE_VAULT], "data": [ELSEWHERE_VAULT]}))
    with ArmEmulator(Estate(), page_size=PAGE_SIZE) as arm, elsewhere:
        graph = ResourceGraphEmulator(Estate(), page_size=PAGE_SIZE, quota=1000, server=arm.server)
        yield arm, graph.start(), elsewhere


@pytest.fixture
def servers(
    _servers: tuple[ArmEmulator, ResourceGraphEmulator, RecordingServer], estate: Estate
) -> Iterator[tuple[ArmEmulator, ResourceGraphEmulator, RecordingServer]]:
    """One set of servers per module, a fresh world per test: six vaults in A (two pages), three in B."""
    arm, graph, elsewhere = _servers
    add_vaults(estate, SUB_A, 6)
    add_vaults(estate, SUB_B, 3)
    arm.estate = estate
    graph.reset(estate)
    arm.server.request_counts.clear()
    elsewhere.requests.clear()
    yield arm, graph, elsewhere
    arm.server.clear_faults()
    arm.clear_link_faults()


@pytest.fixture
def arm(servers: tuple[ArmEmulator, ResourceGraphEmulator, RecordingServer]) -> ArmEmulator:
    return servers[0]


@pytest.fixture
def graph(servers: tuple[ArmEmulator, ResourceGraphEmulator, RecordingServer]) -> ResourceGraphEmulator:
    return servers[1]


@pytest.fixture
def elsewhere(servers: tuple[ArmEmulator, ResourceGraphEmulator, RecordingServer]) -> RecordingServer:
    return servers[2]


def arm_inventory(arm: ArmEmulator, pki: LabPki, **overrides: object) -> ArmInventory:
    options: dict[str, object] = {
        "arm_endpoint": arm.url,
        "connection_verify": pki.ca_path,
        "timeout_s": 10,
        "retry_total": 2,
        "retry_backoff_factor": 0.0,
        **overrides,
    }
    return ArmInventory(LabCredential(), **options)  # type: ignore[arg-type]


def graph_inventory(graph: ResourceGraphEmulator, pki: LabPki, **overrides: object) -> ResourceGraphInventory:
    options: dict[str, object] = {
        "arm_endpoint": graph.url,
        "connection_verify": pki.ca_path,
        "timeout_s": 10,
        "retry_total": 2,
        "retry_backoff_factor": 0.0,
        **overrides,
    }
    return ResourceGraphInventory(LabCredential(), **options)  # type: ignore[arg-type]


def assert_nothing_went_elsewhere(elsewhere: RecordingServer) -> None:
    assert elsewhere.requests == []
    assert elsewhere.authorization_headers == []


def only_error(errors: list[ScanError], scope: str) -> ScanError:
    mine = [error for error in errors if error.scope == scope]
    assert len(mine) == 1, errors
    return mine[0]


# -- ARM: vaults.list_by_subscription ----------------------------------------------------------------


def test_a_multi_page_listing_is_whole_with_the_endpoint_policy(arm: ArmEmulator, pki: LabPki) -> None:
    result = arm_inventory(arm, pki).list_vaults([SUB_A, SUB_B])

    assert result.errors == []
    assert len(result.postures) == 9
    assert result.subscriptions_complete == {SUB_A, SUB_B}
    assert arm.server.request_counts[LIST_ROUTE] == 3  # A in two pages, B in one


def test_a_next_link_to_another_host_is_never_requested(
    arm: ArmEmulator, elsewhere: RecordingServer, pki: LabPki
) -> None:
    arm.mislink(SUB_A, LinkFault.FOREIGN, elsewhere=elsewhere.url)

    result = arm_inventory(arm, pki).list_vaults([SUB_A, SUB_B])

    assert_nothing_went_elsewhere(elsewhere)
    error = only_error(result.errors, SUB_A)
    assert (error.source, error.code) == ("arm", "LinkElsewhere")
    assert f"listing of subscription {SUB_A} stopped" in error.message
    assert origin_of(elsewhere.url) in error.message and "nextLink" in error.message
    # A's first page came from ARM and is kept; A is not complete, so nothing of it is judged gone.
    assert result.subscriptions_complete == {SUB_B}
    names = [p.name for p in result.postures]
    assert "kv-elsewhere" not in names
    assert len([n for n in names if n.startswith("kv-a1")]) == PAGE_SIZE
    assert arm.server.request_counts[LIST_ROUTE] == 2  # A's first page, B's only page


def test_a_redirect_of_the_listing_to_another_host_is_never_followed(
    arm: ArmEmulator, elsewhere: RecordingServer, pki: LabPki
) -> None:
    arm.server.inject(f"(?i)^/subscriptions/{SUB_A}/", Fault(status=302, redirect_to=elsewhere.url, times=0))

    result = arm_inventory(arm, pki).list_vaults([SUB_A, SUB_B])

    assert_nothing_went_elsewhere(elsewhere)
    error = only_error(result.errors, SUB_A)
    assert error.code == "RedirectElsewhere"
    assert f"refused to follow a redirect to {origin_of(elsewhere.url)}" in error.message
    assert result.subscriptions_complete == {SUB_B}
    assert {p.subscription_id for p in result.postures} == {SUB_B}
    assert result.requests == 2  # the redirect was not retried


def test_a_vault_read_redirected_to_another_host_is_an_error_not_gone(
    arm: ArmEmulator, elsewhere: RecordingServer, pki: LabPki
) -> None:
    vault_id = f"/subscriptions/{SUB_A}/resourceGroups/rg-app/providers/Microsoft.KeyVault/vaults/kv-a1-000"
    arm.server.inject("(?i)/vaults/kv-a1-000$", Fault(status=307, redirect_to=elsewhere.url))

    read = arm_inventory(arm, pki).get_vault(vault_id)

    assert_nothing_went_elsewhere(elsewhere)
    assert (read.posture, read.gone, read.answered) == (None, False, False)
    assert [(e.scope, e.code) for e in read.errors] == [(vault_id, "RedirectElsewhere")]
    assert arm.server.request_counts[GET_ROUTE] == 1


@pytest.mark.parametrize(
    ("fault", "requests", "repeated"),
    [
        # Page 1 links to itself: page 2 is page 1 again and gives the same link.
        pytest.param(LinkFault.SELF, 2, "page 2 gave the nextLink page 1 gave", id="self-loop"),
        # Page 2 links back to page 1, which gives page 2's link again.
        pytest.param(LinkFault.CYCLE, 3, "page 3 gave the nextLink page 1 gave", id="two-page-cycle"),
    ],
)
def test_a_next_link_that_loops_stops_the_listing(
    fault: LinkFault, requests: int, repeated: str, arm: ArmEmulator, pki: LabPki
) -> None:
    arm.mislink(SUB_A, fault)

    result = arm_inventory(arm, pki).list_vaults([SUB_A, SUB_B])

    error = only_error(result.errors, SUB_A)
    assert (error.source, error.code) == ("arm", "PageLoop")
    assert f"listing of subscription {SUB_A} stopped: nextLink repeated" in error.message
    assert repeated in error.message
    assert result.subscriptions_complete == {SUB_B}
    assert arm.server.request_counts[LIST_ROUTE] == requests + 1  # and B's one page
    # The page served again is not used twice.
    keys = [p.key for p in result.postures]
    assert len(keys) == len(set(keys))


def test_next_links_without_end_stop_at_the_page_bound(arm: ArmEmulator, pki: LabPki) -> None:
    arm.mislink(SUB_A, LinkFault.ENDLESS)

    result = arm_inventory(arm, pki, max_pages=5).list_vaults([SUB_A, SUB_B])

    error = only_error(result.errors, SUB_A)
    assert error.code == "TooManyPages"
    assert f"listing of subscription {SUB_A} stopped: more than 5 pages" in error.message
    assert result.subscriptions_complete == {SUB_B}
    assert arm.server.request_counts[LIST_ROUTE] == 5 + 1
    assert len([p for p in result.postures if p.subscription_id == SUB_A]) == 6  # pages 3-5 were empty


def test_a_listing_of_exactly_the_page_bound_is_complete(arm: ArmEmulator, pki: LabPki) -> None:
    result = arm_inventory(arm, pki, max_pages=2).list_vaults([SUB_A])

    assert result.errors == []
    assert result.subscriptions_complete == {SUB_A}


# -- Resource Graph: resources, paged with $skipToken -------------------------------------------------


def test_a_next_link_in_a_graph_answer_is_ignored(
    graph: ResourceGraphEmulator, elsewhere: RecordingServer, pki: LabPki
) -> None:
    graph.mislink(LinkFault.FOREIGN, elsewhere=elsewhere.url)

    result = graph_inventory(graph, pki).list_vaults([SUB_A, SUB_B])

    assert_nothing_went_elsewhere(elsewhere)
    assert result.errors == []
    assert len(result.postures) == 9 and "kv-elsewhere" not in {p.name for p in result.postures}
    assert result.subscriptions_complete == {SUB_A, SUB_B}
    assert result.pages == 3  # 11 rows (9 vaults, 2 subscriptions) in pages of 4, by $skipToken


def test_a_graph_query_redirected_to_another_host_is_never_sent_there(
    graph: ResourceGraphEmulator, arm: ArmEmulator, elsewhere: RecordingServer, pki: LabPki
) -> None:
    arm.server.inject(
        "(?i)^/providers/Microsoft.ResourceGraph/", Fault(status=307, redirect_to=elsewhere.url)
    )

    result = graph_inventory(graph, pki).list_vaults([SUB_A, SUB_B])

    assert_nothing_went_elsewhere(elsewhere)
    assert [(e.source, e.scope, e.code) for e in result.errors] == [
        ("resource-graph", SUB_A, "RedirectElsewhere"),
        ("resource-graph", SUB_B, "RedirectElsewhere"),
    ]
    assert "refused to follow a redirect" in result.errors[0].message
    assert result.postures == [] and result.subscriptions_complete == set()


@pytest.mark.parametrize(
    ("fault", "requests", "repeated"),
    [
        pytest.param(LinkFault.SELF, 2, "page 2 gave the $skipToken page 1 gave", id="self-loop"),
        pytest.param(LinkFault.CYCLE, 4, "page 4 gave the $skipToken page 1 gave", id="cycle"),
    ],
)
def test_a_skip_token_that_loops_stops_the_query(
    fault: LinkFault,
    requests: int,
    repeated: str,
    graph: ResourceGraphEmulator,
    arm: ArmEmulator,
    pki: LabPki,
) -> None:
    graph.mislink(fault)

    result = graph_inventory(graph, pki).list_vaults([SUB_A, SUB_B])

    assert [(e.scope, e.code) for e in result.errors] == [(SUB_A, "PageLoop"), (SUB_B, "PageLoop")]
    assert "query of 2 subscriptions stopped: $skipToken repeated" in result.errors[0].message
    assert repeated in result.errors[0].message
    assert result.subscriptions_complete == set()
    assert arm.server.request_counts[QUERY_ROUTE] == requests
    keys = [p.key for p in result.postures]
    assert len(keys) == len(set(keys))


def test_skip_tokens_without_end_stop_at_the_page_bound(
    graph: ResourceGraphEmulator, arm: ArmEmulator, pki: LabPki
) -> None:
    graph.mislink(LinkFault.ENDLESS)

    result = graph_inventory(graph, pki, max_pages=6).list_vaults([SUB_A, SUB_B])

    assert [(e.scope, e.code) for e in result.errors] == [(SUB_A, "TooManyPages"), (SUB_B, "TooManyPages")]
    assert "more than 6 pages" in result.errors[0].message
    assert result.subscriptions_complete == set()
    assert arm.server.request_counts[QUERY_ROUTE] == 6
    assert len(result.postures) == 9  # every row was read; the pages after them were empty
