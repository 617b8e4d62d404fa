"""lab/dns.py: split-horizon answers by source address, over UDP answered in the server's thread."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from lab.dns import LabDns
from lab.estate import INTERNET_CLIENT, PUBLIC_INGRESS, walkthrough_estate


@pytest.fixture
def lab_dns() -> Iterator[LabDns]:
    with LabDns(walkthrough_estate()) as server:
        yield server


def _ask(server: LabDns, name: str, *, source: str) -> dns.message.Message:
    return dns.query.udp(
        dns.message.make_query(name, dns.rdatatype.A), "127.0.0.1", port=server.port, source=source, timeout=5
    )


def _addresses(answer: dns.message.Message) -> list[str]:
    return [item.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for item in rrset]


def test_many_queries_at_once_are_each_answered_for_their_source(lab_dns: LabDns) -> None:
    questions = [
        ("kv-pl-demo.vault.lab.test", INTERNET_CLIENT, PUBLIC_INGRESS),
        ("kv-pl-demo.vault.lab.test", "127.10.2.5", "127.10.2.10"),  # the linked VNet: the Private Endpoint
        ("kv-pl-demo.vault.lab.test", "127.11.1.4", PUBLIC_INGRESS),  # the spoke's zone is not linked
        ("kv-se-demo.vault.lab.test", "127.10.2.5", PUBLIC_INGRESS),
    ] * 25
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda q: _addresses(_ask(lab_dns, q[0], source=q[1])), questions))
    assert answers == [[expected] for _, _, expected in questions]
    assert lab_dns.total_queries == len(questions)


def test_an_unknown_name_is_nxdomain(lab_dns: LabDns) -> None:
    answer = _ask(lab_dns, "kv-nowhere.vault.lab.test", source=INTERNET_CLIENT)
    assert answer.rcode() == dns.rcode.NXDOMAIN and not answer.answer


def test_a_silent_server_drops_queries_until_it_answers_again(lab_dns: LabDns) -> None:
    lab_dns.mode = "silent"
    for _ in range(2):
        with pytest.raises(dns.exception.Timeout):
            dns.query.udp(
                dns.message.make_query("kv-se-demo.vault.lab.test", dns.rdatatype.A),
                "127.0.0.1",
                port=lab_dns.port,
                timeout=0.2,
            )
    lab_dns.mode = "answer"
    assert _addresses(_ask(lab_dns, "kv-se-demo.vault.lab.test", source=INTERNET_CLIENT)) == [PUBLIC_INGRESS]


def test_one_name_can_fail_while_the_others_answer(lab_dns: LabDns) -> None:
    lab_dns.set_name_mode("KV-PL-DEMO.vault.lab.test", "servfail")

    broken = _ask(lab_dns, "kv-pl-demo.vault.lab.test", source=INTERNET_CLIENT)
    assert broken.rcode() == dns.rcode.SERVFAIL and not broken.answer
    assert _addresses(_ask(lab_dns, "kv-se-demo.vault.lab.test", source=INTERNET_CLIENT)) == [PUBLIC_INGRESS]

    lab_dns.clear_faults()
    assert _addresses(_ask(lab_dns, "kv-pl-demo.vault.lab.test", source=INTERNET_CLIENT)) == [PUBLIC_INGRESS]
    with pytest.raises(ValueError, match="'broken' is not one of"):
        lab_dns.set_name_mode("kv-pl-demo.vault.lab.test", "broken")
