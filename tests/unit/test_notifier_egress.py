"""Where webhooks may go: inside addresses refused, allow-list honoured, DNS checked on every call."""

import ipaddress

import pytest

from services.notifier.bootstrap import webhook_client
from services.notifier.egress import AllowList, ForbiddenDestination, check_destination
from services.notifier.settings import NotifierSettings

pytestmark = pytest.mark.unit

PUBLIC = "93.184.215.14"


def dns(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8080/h", "loopback"),
        ("http://[::1]/h", "loopback"),
        ("http://10.1.2.3/h", "private"),
        ("http://192.168.0.10/h", "private"),
        ("http://[fd12::1]/h", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.10.1/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://100.64.0.1/", "non-global"),
    ],
)
async def test_inside_addresses_are_refused(url, kind):
    with pytest.raises(ForbiddenDestination, match=f"a {kind} address"):
        await check_destination(url, allow=AllowList(), resolve=dns({}))


# Teredo: 2001:0:<server IPv4>:<flags>:<port ^ ffff>:<client IPv4 ^ ffffffff>.
TEREDO_CLIENT_LOOPBACK = "2001:0:4136:e378:8000:63bf:80ff:fffe"  # client 127.0.0.1
TEREDO_CLIENT_PRIVATE = "2001:0:4136:e378:8000:63bf:f5ff:fffe"  # client 10.0.0.1
TEREDO_SERVER_PRIVATE = "2001:0:a00:1:8000:63bf:f7f7:f7f7"  # server 10.0.0.1, client 8.8.8.8
TEREDO_PUBLIC = "2001:0:808:808:8000:63bf:f7f7:f7f7"  # server and client 8.8.8.8


@pytest.mark.parametrize(
    ("address", "kind", "carried"),
    [
        ("2002:7f00:1::", "loopback", "6to4 127.0.0.1"),
        ("2002:a9fe:a9fe::", "metadata", "6to4 169.254.169.254"),
        ("2002:a00:1::", "private", "6to4 10.0.0.1"),
        ("2002:c0a8:101::", "private", "6to4 192.168.1.1"),
        ("64:ff9b::7f00:1", "loopback", "NAT64 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "metadata", "NAT64 169.254.169.254"),
        ("64:ff9b::c0a8:101", "private", "NAT64 192.168.1.1"),
        ("64:ff9b:1::a00:1", "private", "NAT64 10.0.0.1"),
        ("::ffff:a9fe:a9fe", "metadata", "IPv4-mapped 169.254.169.254"),
        ("::ffff:c0a8:101", "private", "IPv4-mapped 192.168.1.1"),
        ("::7f00:1", "loopback", "IPv4-compatible 127.0.0.1"),
        ("::a00:1", "private", "IPv4-compatible 10.0.0.1"),
        (TEREDO_CLIENT_LOOPBACK, "loopback", "Teredo client 127.0.0.1"),
        (TEREDO_CLIENT_PRIVATE, "private", "Teredo client 10.0.0.1"),
        (TEREDO_SERVER_PRIVATE, "private", "Teredo server 10.0.0.1"),
    ],
)
async def test_ipv6_that_carries_an_inside_ipv4_is_refused_as_a_literal_and_as_a_dns_answer(address, kind, carried):
    resolve = dns({"hooks.example.com": [address]})
    for url in (f"http://[{address}]/h", "https://hooks.example.com/h"):
        with pytest.raises(ForbiddenDestination, match=f"\\({carried}\\), a {kind} address"):
            await check_destination(url, allow=AllowList(), resolve=resolve)


@pytest.mark.parametrize(("address", "kind"), [("2002:808:808::", "6to4"), (TEREDO_PUBLIC, "Teredo")])
async def test_6to4_and_teredo_are_refused_whatever_they_carry(address, kind):
    with pytest.raises(ForbiddenDestination, match=f"a {kind} address"):
        await check_destination(f"http://[{address}]/h", allow=AllowList(), resolve=dns({}))


async def test_ipv6_that_carries_a_public_ipv4_or_none_is_sent_to():
    for address in ("::ffff:93.184.215.14", "2606:4700:4700::1111"):
        checked = await check_destination(f"http://[{address}]:8443/h", allow=AllowList(), resolve=dns({}))
        assert ipaddress.ip_address(checked.address) == ipaddress.ip_address(address)


async def test_an_allowed_ipv4_network_admits_it_mapped_but_not_tunnelled_or_translated():
    allow = AllowList.parse("127.0.0.0/8,::1")
    for address in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"):
        assert (await check_destination(f"http://{address}:9000/h", allow=allow, resolve=dns({}))).address
    for address in ("2002:7f00:1::", "64:ff9b::7f00:1", "::7f00:1", TEREDO_CLIENT_LOOPBACK):
        with pytest.raises(ForbiddenDestination, match="loopback"):
            await check_destination(f"http://[{address}]/h", allow=allow, resolve=dns({}))
    # Listing the IPv6 network admits it, but no listed network opens a metadata service.
    sixtofour = AllowList.parse("2002::/16")
    assert (
        await check_destination("http://[2002:a00:1::]/h", allow=sixtofour, resolve=dns({}))
    ).address == "2002:a00:1::"
    with pytest.raises(ForbiddenDestination, match="metadata"):
        await check_destination("http://[2002:a9fe:a9fe::]/h", allow=sixtofour, resolve=dns({}))


async def test_a_name_resolving_inside_is_refused_and_a_public_one_is_pinned():
    resolve = dns(
        {"intranet.corp": ["10.0.0.5"], "hooks.example.com": [PUBLIC], "mixed.example.com": [PUBLIC, "127.0.0.1"]}
    )
    with pytest.raises(ForbiddenDestination, match="intranet.corp resolves to 10.0.0.5"):
        await check_destination("https://intranet.corp/h", allow=AllowList(), resolve=resolve)
    # One inside answer is enough to refuse: the connection could land on it.
    with pytest.raises(ForbiddenDestination):
        await check_destination("https://mixed.example.com/h", allow=AllowList(), resolve=resolve)
    checked = await check_destination("https://hooks.example.com:8443/in?x=1", allow=AllowList(), resolve=resolve)
    assert checked.pinned_url == f"https://{PUBLIC}:8443/in?x=1"
    assert (checked.host, checked.host_header) == ("hooks.example.com", "hooks.example.com:8443")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:80%40example.com/", "http://h.example:abc/", "http://h.example:99999/", "http://[::1]:x/",
            "http://h.example:0/", "http://h.example/a\x01b", "ftp://h.example/"],
)
async def test_a_url_that_names_no_port_or_host_to_send_to_is_refused(url):
    # Checked again at delivery: a stored URL that never could be sent to is refused, not sent.
    with pytest.raises(ForbiddenDestination, match="port must be a number|not a valid URL|absolute http"):
        await check_destination(url, allow=AllowList.parse("127.0.0.0/8,::1"), resolve=dns({"h.example": [PUBLIC]}))


async def test_an_unresolvable_host_is_refused():
    with pytest.raises(ForbiddenDestination, match="does not resolve"):
        await check_destination("https://nowhere.example/h", allow=AllowList(), resolve=dns({}))


async def test_the_allow_list_names_cidrs_addresses_and_hosts():
    allow = AllowList.parse("127.0.0.0/8, ::1, hooks.internal")
    resolve = dns({"localhost": ["127.0.0.1", "::1"], "hooks.internal": ["10.9.9.9"], "other.internal": ["10.9.9.8"]})
    assert (await check_destination("http://localhost:9000/h", allow=allow, resolve=resolve)).address == "127.0.0.1"
    assert (await check_destination("http://[::1]:9000/h", allow=allow, resolve=resolve)).pinned_url == "http://[::1]:9000/h"
    assert (await check_destination("http://hooks.internal/h", allow=allow, resolve=resolve)).address == "10.9.9.9"
    with pytest.raises(ForbiddenDestination):
        await check_destination("http://other.internal/h", allow=allow, resolve=resolve)
    # A broad CIDR never opens the metadata service.
    with pytest.raises(ForbiddenDestination, match="metadata"):
        await check_destination("http://169.254.169.254/", allow=AllowList.parse("169.254.0.0/16"), resolve=resolve)
    with pytest.raises(ValueError, match="NOTIFIER_ALLOWED_HOSTS"):
        AllowList.parse("10.0.0.0/33")


async def test_dns_rebinding_is_caught_at_the_next_check():
    table = {"hooks.example.com": [PUBLIC]}
    resolve = dns(table)
    assert (
        await check_destination("https://hooks.example.com/h", allow=AllowList(), resolve=resolve)
    ).address == PUBLIC
    table["hooks.example.com"] = ["169.254.169.254"]
    with pytest.raises(ForbiddenDestination, match="metadata"):
        await check_destination("https://hooks.example.com/h", allow=AllowList(), resolve=resolve)


async def test_the_webhook_client_times_out_and_never_follows_redirects(tmp_path):
    settings = NotifierSettings(data_dir=tmp_path, allowed_hosts="127.0.0.0/8")
    async with webhook_client(settings) as client:
        assert client.timeout.connect == 5.0 and client.timeout.read == 15.0
        assert client.follow_redirects is False
    assert settings.total_timeout == 15.0  # the whole attempt, enforced around the request
