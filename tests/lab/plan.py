"""The lab's address plan and zone: every namespace, link, address and name, in one place.

Everything lives in 198.18.0.0/15 (RFC 2544 benchmarking space), which the probe is told to
treat as public (``routable``). Every namespace and interface name starts with ``PREFIX`` so
teardown can delete exactly what the lab made::

    pl-van ──────────── pl-isp ──────────────── pl-net ──────────── pl-ctl
    probe               router, censor,         servers on lo       control helper
    198.18.1.2          ISP resolver            198.19.x.y/32       198.18.3.2
                        198.18.1.1 | 2.1        198.18.2.2 | 3.1

Control traffic goes internet -> control directly, so it never crosses the censor; traffic
from the vantage to the control host crosses the ISP but is let through before the censor's
chain, except the SNI replay to the helper's TLS listener (REPLAY_HOOKS), which a censor
reading names sees like any other HTTPS. No namespace has a link to the root namespace, so
nothing can leave the lab.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "pl-"

VANTAGE = "pl-van"
ISP = "pl-isp"
NET = "pl-net"
CONTROL = "pl-ctl"
NAMESPACES = (VANTAGE, ISP, NET, CONTROL)
# Short names scenarios use for namespaces.
NS_BY_ROLE = {"vantage": VANTAGE, "isp": ISP, "net": NET, "control": CONTROL}


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair: one end (device, address/prefix) in each of two namespaces."""

    ns_a: str
    dev_a: str
    addr_a: str
    ns_b: str
    dev_b: str
    addr_b: str


LINKS = (
    Link(VANTAGE, "pl-van0", "198.18.1.2/24", ISP, "pl-isp-van", "198.18.1.1/24"),
    Link(ISP, "pl-isp-net", "198.18.2.1/24", NET, "pl-net-isp", "198.18.2.2/24"),
    Link(NET, "pl-net-ctl", "198.18.3.1/24", CONTROL, "pl-ctl0", "198.18.3.2/24"),
)
ROUTES = {
    VANTAGE: ("default via 198.18.1.1",),
    ISP: ("default via 198.18.2.2",),
    # The internet has no default route: anything not in the lab is unreachable there.
    NET: ("198.18.1.0/24 via 198.18.2.1",),
    CONTROL: ("default via 198.18.3.1",),
}
FORWARDING = (ISP, NET)
# The internet's lines carry wire-sized packets, as a real line does: a sender in pl-net may
# not hand a veth 64 KiB TSO super-packets, which a shaper's queue would count as one packet
# and release in bursts of seconds, or drop whole when it is larger than the queue
# (tests.lab.topology sets gso_max_segs 1). The control's line too: a server slow for
# everyone (slow-server) is shaped there as well.
# The ISP's upstream too, for what it forwards from the vantage: an upload shaped there
# (throttle-upload-replay) meets wire-sized packets, as a shaper on a real line does.
WIRE_DEVICES = ((NET, "pl-net-isp"), (NET, "pl-net-ctl"), (ISP, "pl-isp-net"))
UPLINK = (ISP, "pl-isp-van")  # the ISP end of the vantage's line: down = vantage offline

VANTAGE_IP = "198.18.1.2"
ISP_RESOLVER = "198.18.1.1"
CONTROL_SUBNET = "198.18.3.0/24"
CONTROL_HOST = "198.18.3.2"
HELPER_PORT = 8080
HELPER_URL = f"http://{CONTROL_HOST}:{HELPER_PORT}"
REPLAY_PORT = 443  # the helper's SNI replay listener: where real policers look
ROUTABLE = "198.18.0.0/15"

PUBLIC_DNS = "198.19.0.53"
DOH_IP = "198.19.0.54"
DOH_URL = f"https://{DOH_IP}/dns-query"
BLOCKPAGE_IP = "198.19.9.9"  # an ISP's blockpage server, reached through the internet
BLOCKPAGE_NAME = "blockpage.isp.lab"  # the only name its certificate carries
NOTICE_NAME = "notice.isp.lab"  # the same server's warning page that no fingerprint knows
CDN_EDGE = "198.19.2.1"  # another address serving every site (a CDN's local edge)
TELEGRAM_DC = "198.19.1.4"  # a bare endpoint, as Telegram's data centres are
INNOCUOUS_NAME = "www.example.com"  # the probe's default innocuous SNI/Host

# The lab's own names (its target lists', the references', the blockpage server's).
_FIXED_ZONE = {
    "www.facebook.com": "198.19.1.1",
    "facebook.com": "198.19.1.1",
    "www.instagram.com": "198.19.1.2",
    "web.telegram.org": "198.19.1.3",
    "twitter.com": "198.19.1.5",
    "t.co": "198.19.1.5",  # Twitter's link shortener (the redirect-hop scenarios' first hop)
    "www.wikipedia.org": "198.19.0.80",
    "www.debian.org": "198.19.0.81",
    "www.gnu.org": "198.19.0.82",
    "warning.rt.ru": BLOCKPAGE_IP,
    BLOCKPAGE_NAME: BLOCKPAGE_IP,
    NOTICE_NAME: BLOCKPAGE_IP,
}
REFERENCES = ("https://www.wikipedia.org/", "https://www.debian.org/", "https://www.gnu.org/")
# Names the web servers hold certificates for (the blockpage server holds only its own).
SITE_NAMES = (*(n for n, ip in _FIXED_ZONE.items() if ip != BLOCKPAGE_IP), INNOCUOUS_NAME)
# Addresses of the web servers: every site's, the CDN edge's, the Telegram DC's.
WEB_IPS = tuple(
    sorted({ip for ip in _FIXED_ZONE.values() if ip != BLOCKPAGE_IP} | {CDN_EDGE, TELEGRAM_DC})
)

# The project's bundled target list (targets/default.toml), served too: every name it holds
# gets an address of its service's own /24 (198.19.16.0/24 for the first service, the next
# for the next; 198.19.15.0/24 for its references), the names of a service taking
# BUNDLED_SPREAD addresses in turn, as a CDN's do. Names the lab already had keep theirs.
# An endpoint given by a public address (Telegram's data centres) is never contacted: its
# address maps to one of its service's /24 (from .100), which a scenario's copy of the list
# uses instead (tests.lab.scenario.bundled_targets).
BUNDLED_LIST = Path(__file__).resolve().parents[2] / "targets" / "default.toml"
BUNDLED_FIRST = 16
BUNDLED_SPREAD = 3
_WEB_PORTS = (80, 443)


def _endpoint_host(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]").lower(), int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _bundled(path: Path) -> tuple[dict[str, str], dict[str, str], tuple[int, ...]]:
    """The bundled list's names -> lab addresses, its public endpoint addresses -> lab
    addresses, and the endpoint ports besides 80 and 443 (the servers listen there too)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    groups = [data.get("reference", [])] + [
        [*s.get("urls", []), *s.get("endpoints", [])] for s in data.get("service", [])
    ]
    names: dict[str, str] = {}
    moved: dict[str, str] = {}
    ports: set[int] = set()
    for index, inputs in enumerate(groups):
        subnet = f"198.19.{BUNDLED_FIRST - 1 + index}"
        for value in inputs:
            if "://" in value:
                host = (urlsplit(value).hostname or "").lower()
            else:
                host, port = _endpoint_host(value)
                ports.add(port)
            if _is_ip(host) and host not in moved:
                taken = sum(ip.startswith(subnet + ".") for ip in moved.values())
                moved[host] = f"{subnet}.{100 + taken}"
            elif not _is_ip(host) and host not in _FIXED_ZONE and host not in names:
                taken = sum(ip.startswith(subnet + ".") for ip in names.values())
                names[host] = f"{subnet}.{1 + taken % BUNDLED_SPREAD}"
    return names, moved, tuple(sorted(ports - set(_WEB_PORTS)))


BUNDLED_ZONE, BUNDLED_ENDPOINTS, BUNDLED_PORTS = _bundled(BUNDLED_LIST)
# Names the bundled list's server holds certificates for, on its own addresses (the lab's
# first server, its certificate and addresses, stay as they were).
BUNDLED_NAMES = (*BUNDLED_ZONE, INNOCUOUS_NAME)
BUNDLED_IPS = tuple(
    sorted({*BUNDLED_ZONE.values(), *BUNDLED_ENDPOINTS.values()}, key=ipaddress.ip_address)
)

# The truth: what the public resolver and DoH answer, and the ISP resolver unless told else.
ZONE = {**_FIXED_ZONE, **BUNDLED_ZONE}
HOST_IPS = (*WEB_IPS, BLOCKPAGE_IP, PUBLIC_DNS, DOH_IP, *BUNDLED_IPS)

# iptables chains the lab owns, per namespace: (table, chain, hook rule in a built-in chain).
# Scenarios append rules to these only; a reset flushes them, which is exact.
# Traffic to or from the control host never enters the censor's chains.
_NOT_CONTROL = f"! -s {CONTROL_SUBNET} ! -d {CONTROL_SUBNET}"
CHAINS = {
    ISP: (
        ("filter", "PL-CENSOR", f"FORWARD {_NOT_CONTROL}"),
        ("filter", "PL-CENSOR-IN", "INPUT -i pl-isp-van"),
        ("nat", "PL-CENSOR", f"PREROUTING -i pl-isp-van {_NOT_CONTROL}"),
        ("mangle", "PL-CENSOR", f"FORWARD {_NOT_CONTROL}"),
        ("mangle", "PL-CENSOR-POST", f"POSTROUTING {_NOT_CONTROL}"),
        # The vantage's line itself (loss, say): everything that crosses it, control too.
        # At the ISP's end, where a DROP is silent; in the vantage's own OUTPUT chain it
        # would fail the sender's send() with EPERM, which no real line does.
        ("mangle", "PL-LINK-UP", "PREROUTING -i pl-isp-van"),
        ("mangle", "PL-LINK-DOWN", "POSTROUTING -o pl-isp-van"),
    ),
    NET: (("filter", "PL-SERVER", "INPUT"),),
}
# The one kind of control traffic that does cross the censor: the SNI replay to the helper's
# TLS listener, as a real policer matching names on any destination's port 443 would see it.
# Extra hooks into the censor's own chains (the API on HELPER_PORT stays uncensored).
_REPLAY_OUT = f"-d {CONTROL_HOST} -p tcp --dport {REPLAY_PORT}"
_REPLAY_BACK = f"-s {CONTROL_HOST} -p tcp --sport {REPLAY_PORT}"
REPLAY_HOOKS = {
    ISP: tuple(
        (table, chain, f"{builtin} {match}")
        for table, chain, builtin in (
            ("filter", "PL-CENSOR", "FORWARD"),
            ("mangle", "PL-CENSOR", "FORWARD"),
            ("mangle", "PL-CENSOR-POST", "POSTROUTING"),
        )
        for match in (_REPLAY_OUT, _REPLAY_BACK)
    ),
}
# Devices whose qdiscs a scenario may replace (reset deletes their root and ingress qdiscs).
DEVICES = {
    VANTAGE: ("pl-van0",),
    ISP: ("pl-isp-van", "pl-isp-net"),
    NET: ("pl-net-isp", "pl-net-ctl"),
    CONTROL: ("pl-ctl0",),
}
# Ports of the censor's transparent proxies in the ISP (targets of nat REDIRECT rules).
HTTP_PROXY_PORT = 8080
TLS_PROXY_PORT = 8443
SQUID_PORT = 3129  # Debian's squid, when a scenario runs it (tests.lab.squid)
