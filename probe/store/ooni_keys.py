"""The ``test_keys`` of an OONI-format measurement, built from our stored observations.

Each stored observation (evidence ``observations``: measurements/observations.py as JSON,
``kind`` naming its class) maps to the test-template keys of the OONI data formats
(github.com/ooni/spec, data-formats/): what a program written for OONI's data reads.

    DNSObservation        -> queries (dnst): one query, its first response's answers;
                             later responses to the same query (an injector's and the
                             genuine one) -> x_dns_duplicate_responses, in the same shape
    TCPObservation        -> tcp_connect (tcpconnect), and a "connect" network event
    TLSObservation        -> tcp_connect and a "connect" event for its connect, then
                             tls_handshakes (tlshandshake) once it connected
    HTTPObservation       -> requests (httpt), one transaction per hop, the last hop first
                             as OONI's web_connectivity orders them; a hop the address rule
                             refused was never sent: x_not_contacted (its URL and why)
    ThroughputObservation -> x_throughput (ours), and its samples as
                             "bytes_received_cumulative" network events (netevents)

What is not mapped, and why: ``t0``/``t`` (we keep each operation's duration, from its own
monotonic clock, not its offset from the measurement's start: ``x_duration_ms`` instead);
request headers and bodies (not stored: ``headers`` {} and ``body`` ""); a response body
beyond its first 8 KiB (``body_is_truncated`` says so); cipher suites (not kept); the DER
of a certificate, except the chain a tls.mitm verdict keeps (``chain_pem``): other
handshakes list each certificate's fingerprints under ``x_certificates`` and
``peer_certificates`` stays []; ``resolver_*``/``probe_*`` addresses (never stored).
Failure strings are our closed vocabulary (measurements/failures.py), whose names are
OONI's; FAILURES maps each one, and a test checks that the map covers every member.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from measurements.failures import Failure

# Ours -> OONI's (data-formats/df-007-errors.md). Ours were named after theirs, so each maps
# to itself; the table exists so a rename on either side is one line and is tested.
FAILURES: dict[str, str] = {
    Failure.CONNECTION_REFUSED: "connection_refused",
    Failure.CONNECTION_RESET: "connection_reset",
    Failure.GENERIC_TIMEOUT: "generic_timeout_error",
    Failure.EOF: "eof_error",
    Failure.HOST_UNREACHABLE: "host_unreachable",
    Failure.NETWORK_UNREACHABLE: "network_unreachable",
    Failure.DNS_NXDOMAIN: "dns_nxdomain_error",
    Failure.DNS_SERVFAIL: "dns_servfail_error",
    Failure.DNS_REFUSED: "dns_refused_error",
    Failure.DNS_NO_ANSWER: "dns_no_answer",
    Failure.DNS_BOGON: "dns_bogon_error",
    Failure.SSL_INVALID_HOSTNAME: "ssl_invalid_hostname",
    Failure.SSL_UNKNOWN_AUTHORITY: "ssl_unknown_authority",
    Failure.SSL_INVALID_CERTIFICATE: "ssl_invalid_certificate",
    Failure.SSL_FAILED_HANDSHAKE: "ssl_failed_handshake",
    Failure.UNKNOWN: "unknown_failure",
}

# Our DNS transports -> OONI's resolver engine names (df-002-dnst.md).
_ENGINES = {"udp": "udp", "tcp": "tcp", "system": "getaddrinfo", "doh": "doh"}
_RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
_NO_TOR = {"exit_ip": None, "exit_name": None, "is_tor": False}
_THROUGHPUT_KEYS = (
    "url", "ip", "sni", "verified", "status", "bytes", "goodput_kbps", "direction", "stopped",
    "connect_ms", "tls_ms", "first_byte_ms", "duration_ms", "operation",
)  # fmt: skip
LIST_KEYS = ("queries", "tcp_connect", "tls_handshakes", "requests", "network_events")


def ooni_failure(failure: Any) -> str | None:
    """OONI's failure string for one of ours; None stays None (no failure)."""
    if failure is None:
        return None
    return FAILURES.get(str(failure), "unknown_failure")


def endpoint(ip: str, port: int) -> str:
    """ "ip:port", an IPv6 address in brackets (as OONI writes addresses)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def empty_test_keys() -> dict[str, Any]:
    """Test keys with every list present and empty."""
    keys: dict[str, Any] = {name: [] for name in LIST_KEYS}
    keys.update(agent="redirect", socksproxy=None, x_dns_duplicate_responses=[], x_throughput=[],
                x_not_contacted=[])  # fmt: skip
    return keys


def build_test_keys(
    observations: Iterable[Mapping[str, Any]],
    chain_pem: Sequence[str] = (),
    controls: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every OONI list built from stored observations (JSON dicts with a ``kind``).

    ``controls``: verdict_evidence's controls, name -> observation(s). What the probe's own
    controls measured from the vantage (DoH, an innocuous SNI, ...) is network activity like
    the rest: it joins the lists, tagged ``control:<name>``.
    """
    keys = empty_test_keys()
    ders = _ders(chain_pem)
    for obs in observations:
        _add(keys, obs, [], ders)
    for name, found in (controls or {}).items():
        for obs in found if isinstance(found, list) else [found]:
            if isinstance(obs, Mapping):
                _add(keys, obs, [f"control:{name}"], ders)
    for number, request in enumerate(reversed(keys["requests"]), start=1):
        request["transaction_id"] = number
    return keys


def _add(
    keys: dict[str, Any], obs: Mapping[str, Any], tags: list[str], ders: Mapping[str, str]
) -> None:
    """One observation's entries, each tagged ``tags``; an unknown kind adds nothing."""
    kind = obs.get("kind")
    if kind == "DNSObservation":
        first, *later = _queries(obs, tags)
        keys["queries"].append(first)
        keys["x_dns_duplicate_responses"].extend(later)
    elif kind == "TCPObservation":
        keys["tcp_connect"].append(_tcp(obs, obs.get("failure"), tags))
        keys["network_events"].append(_connect_event(obs, obs.get("failure"), tags))
    elif kind == "TLSObservation":
        _tls(obs, ders, keys, tags)
    elif kind == "HTTPObservation":
        hops = list(obs.get("hops") or [])
        # A hop the address rule refused was never sent: it is no transaction.
        sent = [_transaction(h, tags) for h in hops if not h.get("refused")]
        keys["requests"].extend(reversed(sent))
        keys["x_not_contacted"].extend(
            {"url": h.get("url"), "refused": h.get("refused"), "tags": tags}
            for h in hops
            if h.get("refused")
        )
    elif kind == "ThroughputObservation":
        keys["x_throughput"].append({**_throughput(obs), "tags": tags})
        keys["network_events"].extend(_samples(obs, tags))


def _answers(addresses: Iterable[str], cnames: Iterable[str], ttl: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"answer_type": "CNAME", "hostname": name, "ttl": ttl} for name in cnames
    ]
    for address in addresses:
        if ":" in address:
            out.append({"answer_type": "AAAA", "ipv6": address, "ttl": ttl})
        else:
            out.append({"answer_type": "A", "ipv4": address, "ttl": ttl})
    return out


def _queries(obs: Mapping[str, Any], tags: list[str]) -> list[dict[str, Any]]:
    """The query as its first response answered it, then one per later response."""
    transport = str(obs.get("transport"))
    base = {
        "engine": _ENGINES.get(transport, "unknown"),
        "hostname": obs.get("hostname"),
        "query_type": obs.get("qtype"),
        "resolver_address": "" if transport == "system" else obs.get("resolver"),
        "resolver_hostname": None,
        "resolver_port": None,
        "tags": tags,
    }
    responses = list(obs.get("responses") or [])
    first_ttl = responses[0].get("ttl") if responses else None
    rcode = obs.get("rcode")
    first = {
        **base,
        "answers": _answers(obs.get("addresses") or [], _first_cnames(responses), first_ttl),
        "failure": ooni_failure(obs.get("failure")),
        "rcode": _RCODES.get(str(rcode)) if rcode is not None else None,
        "x_duration_ms": obs.get("duration_ms"),
    }
    later = [
        {
            **base,
            "answers": _answers(r.get("addresses", []), r.get("cnames", []), r.get("ttl")),
            "failure": None,
            "rcode": _RCODES.get(str(r.get("rcode"))),
            "x_received_ms": r.get("received_ms"),
        }
        for r in responses[1:]
    ]
    return [first, *later]


def _first_cnames(responses: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(responses[0].get("cnames", [])) if responses else []


def _tcp(obs: Mapping[str, Any], failure: Any, tags: list[str]) -> dict[str, Any]:
    mapped = ooni_failure(failure)
    return {
        "ip": obs.get("ip"),
        "port": obs.get("port"),
        "status": {"success": mapped is None, "failure": mapped},
        "tags": tags,
        "x_connect_ms": obs.get("connect_ms"),
    }


def _connect_event(obs: Mapping[str, Any], failure: Any, tags: list[str]) -> dict[str, Any]:
    return {
        "operation": "connect",
        "proto": "tcp",
        "address": endpoint(str(obs.get("ip")), int(obs.get("port") or 0)),
        "failure": ooni_failure(failure),
        "tags": tags,
        "x_duration_ms": obs.get("connect_ms"),
    }


def _tls(
    obs: Mapping[str, Any], ders: Mapping[str, str], keys: dict[str, Any], tags: list[str]
) -> None:
    """A connect, then (once connected) the handshake, with what OONI's verifier would say."""
    failure = obs.get("failure")
    connect_failure = failure if obs.get("operation") == "connect" else None
    keys["tcp_connect"].append(_tcp(obs, connect_failure, tags))
    keys["network_events"].append(_connect_event(obs, connect_failure, tags))
    if connect_failure is not None:
        return
    chain = list(obs.get("chain") or [])
    # OONI verifies during the handshake; we complete it and check the chain after, so a
    # certificate problem is this handshake's failure as OONI would have recorded it.
    cert_failure = obs.get("cert_failure") if obs.get("cert_valid") is False else None
    keys["tls_handshakes"].append({
        "network": "tcp",
        "address": endpoint(str(obs.get("ip")), int(obs.get("port") or 0)),
        "server_name": obs.get("sni") or "",
        "failure": ooni_failure(failure or cert_failure),
        "tls_version": obs.get("version") or "",
        "negotiated_protocol": obs.get("alpn") or "",
        "cipher_suite": "",
        "no_tls_verify": obs.get("cert_valid") is None,
        "peer_certificates": _peer_certificates(chain, ders),
        "tags": tags,
        "x_certificates": chain,
        "x_duration_ms": obs.get("handshake_ms"),
    })  # fmt: skip


def _ders(chain_pem: Sequence[str]) -> dict[str, str]:
    """sha256 hex of each DER -> its base64, from the PEM chain a tls.mitm verdict keeps."""
    out = {}
    for pem in chain_pem:
        body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        try:
            der = base64.b64decode(body, validate=True)
        except ValueError:
            continue
        out[hashlib.sha256(der).hexdigest()] = base64.b64encode(der).decode("ascii")
    return out


def _peer_certificates(
    chain: Sequence[Mapping[str, Any]], ders: Mapping[str, str]
) -> list[dict[str, str]]:
    """The chain as BinaryData DER, when every certificate's DER was kept; else []."""
    found = [ders.get(str(c.get("sha256"))) for c in chain]
    if not chain or None in found:
        return []
    return [{"format": "base64", "data": data} for data in found if data is not None]


def maybe_binary(raw: bytes) -> str | dict[str, str]:
    """UTF-8 text as a string, anything else as OONI's BinaryData."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"format": "base64", "data": base64.b64encode(raw).decode("ascii")}


def _headers(pairs: Iterable[Sequence[str]]) -> tuple[dict[str, str], list[list[str]]]:
    """OONI's legacy map (the first value of each key) and its list of every pair."""
    listed = [[str(k), str(v)] for k, v in pairs]
    first: dict[str, str] = {}
    for k, v in listed:
        first.setdefault(k, v)
    return first, listed


def _transaction(hop: Mapping[str, Any], tags: list[str]) -> dict[str, Any]:
    """One hop as an HTTP transaction; a failed hop has response code 0, as OONI's do."""
    head = base64.b64decode(hop.get("body_head") or "")
    headers, headers_list = _headers(hop.get("headers") or [])
    url = str(hop.get("url"))
    ip = hop.get("ip")
    port = _port(url)
    length = hop.get("body_length")
    return {
        "network": "tcp",
        "address": endpoint(str(ip), port) if ip else "",
        "failure": ooni_failure(hop.get("failure")),
        "request": {
            "url": url, "method": "GET", "headers": {}, "headers_list": [], "body": "",
            "body_is_truncated": False, "tor": dict(_NO_TOR), "x_transport": "tcp",
        },
        "response": {
            "code": hop.get("status") or 0,
            "headers": headers,
            "headers_list": headers_list,
            "body": maybe_binary(head),
            "body_is_truncated": bool(hop.get("truncated")) or (length or 0) > len(head),
            "x_body_length": length,
            "x_body_sha256": hop.get("body_sha256"),
            "x_title": hop.get("title"),
        },
        "tags": tags,
        "x_operation": hop.get("operation"),
        "x_malformed": bool(hop.get("malformed")),
    }  # fmt: skip


def _throughput(obs: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: obs.get(k) for k in _THROUGHPUT_KEYS}
    out["failure"] = ooni_failure(obs.get("failure"))
    return out


def _samples(obs: Mapping[str, Any], tags: list[str]) -> list[dict[str, Any]]:
    """A download's samples as cumulative-bytes events; ``t`` from the request's start."""
    address = endpoint(str(obs.get("ip")), _port(str(obs.get("url"))))
    return [
        {
            "operation": "bytes_received_cumulative",
            "address": address,
            "proto": "tcp",
            "num_bytes": int(received),
            "failure": None,
            "t": float(ms) / 1000.0,
            # t counts from this download's request, not the measurement's start (not kept).
            "tags": [*tags, "throughput", "t_from_request_start"],
        }
        for ms, received in obs.get("samples") or []
    ]


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)
