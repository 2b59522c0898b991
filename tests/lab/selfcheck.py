"""Checks that the lab does what a scenario claims, run from inside a namespace.

    ip netns exec pl-van python -m tests.lab.selfcheck < checks.json > results.json

These are the "few lines of Python from the vantage" that prove the censor works before the
probe is scored, so a broken lab is never mistaken for a broken probe. They share no code
with the probe: plain sockets, ssl and dnspython. Each check is a JSON object with a
``kind`` and an ``expect``; each result is the check plus ``got`` (what happened, as text)
and ``ok``. ``expect`` is a glob matched against ``got`` (``fnmatch``), except for ``rate``
("below KBPS" / "above KBPS" / "between LOW HIGH") and ``loss`` ("some" / "none").

    dns   {name, server, window?}   got: "answer IP[,IP]", "NXDOMAIN", "SERVFAIL", "REFUSED",
                                         "timeout", "answers A then B" (several, differing)
    doh   {name}                    got: "answer IP", "error ..."
    tcp   {ip, port}                got: "connected", "refused", "timeout", "reset", ...
    tls   {ip, sni, port?}          got: "valid", "invalid issuer=...", "reset", "timeout", ...
    http  {ip, host, path?, port?,  got: "status 200 title=... location=... body=... headers=N
           bytes?}                       after=S.Ss[ x-squid-error=E]", "reset", "not http: N
                                         bytes then close",
                                         "unterminated head: 'HTTP/1.1 200 OK', N header lines,
                                         longest L bytes, B bytes then close|more" (reads
                                         bytes, 256 KiB unless told; S: seconds to the end)
    rate  {ip, host|sni, path,      got: "kbps N" (HTTPS when sni is given; counted after the
           bytes, skip?}                 first chunk and after skip body bytes)
    loss  {server, name, count}     got: "lost N/COUNT"
    replay {sni, direction, bytes,  got: "kbps N": the helper's SNI replay listener (plan.
           seconds?}                     CONTROL_HOST:REPLAY_PORT) sending (down) or sinking
                                         (up) bytes under that SNI; an upload's rate is the
                                         helper's count over its own report's span
"""

from __future__ import annotations

import errno
import fnmatch
import json
import re
import socket
import ssl
import sys
import time
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
from cryptography import x509

from tests.lab import plan
from tests.lab.state import Paths

_TIMEOUT = 2.0


def _failure(exc: BaseException) -> str:
    """A short word for what went wrong on a socket."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ssl.SSLEOFError) or isinstance(exc, EOFError):
        return "eof"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable"
    return f"error {type(exc).__name__}: {exc}"


def _addresses(message: dns.message.Message) -> list[str]:
    return sorted(
        r.address for rrset in message.answer if rrset.rdtype == dns.rdatatype.A for r in rrset
    )


def check_dns(c: dict[str, Any]) -> str:
    query = dns.message.make_query(c["name"], "A")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(c.get("timeout", _TIMEOUT))
    try:
        sock.connect((c.get("server", plan.ISP_RESOLVER), 53))
        sock.send(query.to_wire())
        responses: list[dns.message.Message] = []
        deadline = None
        while len(responses) < 8:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
            try:
                wire = sock.recv(4096)
            except TimeoutError:
                if responses:
                    break
                return "timeout"
            message = dns.message.from_wire(wire)
            if query.is_response(message):
                responses.append(message)
                deadline = deadline or time.monotonic() + float(c.get("window", 0.0))
    except OSError as exc:
        return _failure(exc)
    finally:
        sock.close()
    sets = [",".join(_addresses(m)) for m in responses]
    if len(set(sets)) > 1:
        return "answers " + " then ".join(sets)
    first = responses[0]
    if first.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(first.rcode())
    return f"answer {sets[0]}" if sets[0] else "no answer"


def check_doh(c: dict[str, Any]) -> str:
    # RFC 8484 POST over HTTP/1.1 by hand: dnspython's own DoH needs the optional h2 package
    # (without it, it raises NoDOH whatever the HTTP version asked for).
    query = dns.message.make_query(c["name"], "A").to_wire()
    ctx = ssl.create_default_context(cafile=str(Paths().ca_cert))
    request = (
        f"POST /dns-query HTTP/1.1\r\nHost: {plan.DOH_IP}\r\n"
        "Content-Type: application/dns-message\r\nAccept: application/dns-message\r\n"
        f"Content-Length: {len(query)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii") + query
    try:
        with ctx.wrap_socket(
            _connect(plan.DOH_IP, 443, _TIMEOUT), server_hostname=plan.DOH_IP
        ) as tls:
            tls.sendall(request)
            raw = b""
            while chunk := tls.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            return f"error status {status.decode('latin-1')!r}"
        response = dns.message.from_wire(body)
    except Exception as exc:  # sockets, TLS and a malformed answer: any of them is a failure
        return f"error {type(exc).__name__}: {exc}"
    return f"answer {','.join(_addresses(response))}"


def _connect(ip: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((ip, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def check_tcp(c: dict[str, Any]) -> str:
    try:
        _connect(c["ip"], c["port"], c.get("timeout", _TIMEOUT)).close()
    except OSError as exc:
        return _failure(exc)
    return "connected"


def _handshake(c: dict[str, Any], ctx: ssl.SSLContext) -> bytes:
    raw = _connect(c["ip"], c.get("port", 443), c.get("timeout", _TIMEOUT))
    with ctx.wrap_socket(raw, server_hostname=c["sni"]) as tls:
        return tls.getpeercert(binary_form=True) or b""


def check_tls(c: dict[str, Any]) -> str:
    verifying = ssl.create_default_context(cafile=str(Paths().ca_cert))
    try:
        _handshake(c, verifying)
        return "valid"
    except ssl.SSLCertVerificationError:
        pass
    except (OSError, EOFError) as exc:
        return _failure(exc)
    open_ctx = ssl.create_default_context()
    open_ctx.check_hostname, open_ctx.verify_mode = False, ssl.CERT_NONE
    try:
        der = _handshake(c, open_ctx)
    except (OSError, EOFError) as exc:
        return f"invalid, then {_failure(exc)}"
    issuer = x509.load_der_x509_certificate(der).issuer.rfc4514_string()
    return f"invalid issuer={issuer}"


def _get(c: dict[str, Any], limit: int) -> tuple[bytes, bool]:
    """A raw HTTP/1.1 GET: the response bytes (up to limit), and whether the peer closed."""
    sock = _connect(c["ip"], c.get("port", 80), c.get("timeout", _TIMEOUT))
    try:
        request = f"GET {c.get('path', '/')} HTTP/1.1\r\nHost: {c['host']}\r\n"
        sock.sendall((request + "Connection: close\r\n\r\n").encode())
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False
    finally:
        sock.close()


def check_http(c: dict[str, Any]) -> str:
    started = time.monotonic()
    try:
        data, closed = _get(c, int(c.get("bytes", 256 * 1024)))
    except OSError as exc:
        return _failure(exc)
    after = f"after={time.monotonic() - started:.1f}s"
    end = "then close" if closed else "then more"
    head, blank, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not data:
        return "eof"
    if not lines[0].startswith("HTTP/"):
        return f"not http: {len(data)} bytes {end}"
    longest = max(len(line) for line in lines)
    if not blank:  # the head never ended (within the bytes read)
        return (
            f"unterminated head: {lines[0]!r}, {len(lines) - 1} header lines, "
            f"longest {longest} bytes, {len(data)} bytes {end}"
        )
    status = lines[0].split()[1]
    location = next(
        (ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("location:")), ""
    )
    found = re.search(rb"<title>(.*?)</title>", body, re.S)
    title = found.group(1).decode(errors="replace") if found else ""
    text = body[:300].decode(errors="replace").replace("\n", " ")
    # Which squid error it is, when squid answered (the header squid puts on its own pages).
    squid = next((ln.split(":", 1)[1].strip() for ln in lines[1:]
                  if ln.lower().startswith("x-squid-error:")), None)  # fmt: skip
    return (
        f"status {status} title={title} location={location} body={text} "
        f"headers={len(lines) - 1} {after}" + (f" x-squid-error={squid}" if squid else "")
    )


def check_rate(c: dict[str, Any]) -> str:
    """The rate a resource arrives at, past its first chunk (and past ``skip`` body bytes).

    Asks for exactly ``bytes`` (a Range) so nothing is left queued behind the check. Over
    TLS (when ``sni`` is given) the body arrives in records of up to 16 KiB, the first with
    the headers: the rate is counted from the first chunk's arrival to the last, so neither
    the handshake nor bytes that came before the clock started flatter it.
    """
    limit, skip = int(c["bytes"]), int(c.get("skip", 0))
    timeout = float(c.get("timeout", 30.0))
    tls = "sni" in c
    try:
        sock = _connect(c["ip"], c.get("port", 443 if tls else 80), timeout)
    except OSError as exc:
        return _failure(exc)
    samples: list[tuple[float, int]] = []  # (seconds, body bytes so far) at each chunk
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=c["sni"])
        host = c.get("host", c.get("sni"))
        request = (
            f"GET {c.get('path', '/')} HTTP/1.1\r\nHost: {host}\r\n"
            f"Range: bytes=0-{limit - 1}\r\nConnection: close\r\n\r\n"
        )
        started = time.monotonic()
        sock.sendall(request.encode())
        head, body = b"", -1
        while body < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            if body < 0:
                head += chunk
                if b"\r\n\r\n" not in head:
                    continue
                body = len(head.partition(b"\r\n\r\n")[2])
            else:
                body += len(chunk)
            samples.append((time.monotonic() - started, body))
    except (OSError, EOFError) as exc:
        return _failure(exc)
    finally:
        sock.close()
    if not samples or samples[-1][1] <= 0:
        return "no body"
    origin = next(i for i, (_, b) in enumerate(samples) if b >= max(skip, 1))
    (t0, b0), (t1, b1) = samples[origin], samples[-1]
    if t1 <= t0:  # one chunk: all there is is the whole exchange
        t0, b0 = 0.0, 0
    return f"kbps {(b1 - b0) * 8 / 1000 / max(t1 - t0, 1e-6):.0f}"


def check_replay(c: dict[str, Any]) -> str:
    """A transfer to or from the helper's replay listener, the ClientHello naming ``sni``."""
    limit, seconds = int(c["bytes"]), float(c.get("seconds", 10.0))
    try:
        sock = _connect(plan.CONTROL_HOST, plan.REPLAY_PORT, _TIMEOUT)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with ctx.wrap_socket(sock, server_hostname=c["sni"]) as tls:
            tls.settimeout(seconds + 5.0)
            request = {"v": 1, "token": None, "direction": c["direction"], "bytes": limit,
                       "seconds": seconds, "every": 0.1}  # fmt: skip
            tls.sendall(json.dumps(request).encode() + b"\n")
            reader = tls.makefile("rb")
            answer = json.loads(reader.readline())
            if answer.get("ok") is not True:
                return f"refused {answer.get('error')}"
            if c["direction"] == "up":
                return _replay_up(tls, reader, limit)
            started, got = time.monotonic(), 0
            first: float | None = None
            while got < limit and (chunk := reader.read1(65536)):
                got += len(chunk)
                first = first if first is not None else time.monotonic()
            end = time.monotonic()
    except (OSError, EOFError, ValueError) as exc:
        return _failure(exc) if isinstance(exc, OSError | EOFError) else f"bad answer {exc}"
    span = end - (first if first is not None and end > first else started)
    return f"kbps {got * 8 / 1000 / max(span, 1e-6):.0f}"


def _replay_up(tls: ssl.SSLSocket, reader: Any, limit: int) -> str:
    chunk = bytes(16384)
    sent = 0
    tls.setblocking(True)
    while sent < limit:
        try:
            sent += tls.send(chunk[: min(len(chunk), limit - sent)])
        except OSError:
            break  # the helper's time was up and it reported, or went away
    report = json.loads(reader.readline())
    samples = report.get("samples") or []
    if not samples or not report.get("received"):
        return "no body"
    span_ms = max(samples[-1][0] - (report.get("first_byte_ms") or 0.0), 1e-3)
    return f"kbps {report['received'] * 8 / span_ms:.0f}"


def check_loss(c: dict[str, Any]) -> str:
    count = int(c.get("count", 300))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((c.get("server", plan.ISP_RESOLVER), 53))
        ids: set[int] = set()
        for i in range(count):
            query = dns.message.make_query(c["name"], "A", id=i + 1)
            ids.add(i + 1)
            sock.send(query.to_wire())
            time.sleep(0.002)  # a trickle, not a flood: loss must be the link's
        answered: set[int] = set()
        deadline = time.monotonic() + 2.0
        while answered != ids and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                answered.add(dns.message.from_wire(sock.recv(4096)).id)
            except TimeoutError:
                break
    except OSError as exc:
        return _failure(exc)
    finally:
        sock.close()
    return f"lost {len(ids - answered)}/{count}"


CHECKS = {
    "dns": check_dns,
    "doh": check_doh,
    "tcp": check_tcp,
    "tls": check_tls,
    "http": check_http,
    "rate": check_rate,
    "loss": check_loss,
    "replay": check_replay,
}


def judge(c: dict[str, Any], got: str) -> bool:
    """Whether ``got`` is what the check expects."""
    expect = str(c["expect"])
    if c["kind"] in ("rate", "replay"):
        how, *limits = expect.split()
        kbps = float(got.split()[1]) if got.startswith("kbps ") else None
        if kbps is None:
            return False
        if how == "between":
            return float(limits[0]) <= kbps <= float(limits[1])
        return kbps < float(limits[0]) if how == "below" else kbps > float(limits[0])
    if c["kind"] == "loss":
        found = re.fullmatch(r"lost (\d+)/(\d+)", got)
        if found is None:
            return False
        lost, count = int(found.group(1)), int(found.group(2))
        return lost == 0 if expect == "none" else 0 < lost < count // 2
    return fnmatch.fnmatchcase(got, expect)


def main() -> int:
    """Read checks (JSON list) on stdin, print results (JSON list) on stdout."""
    results = []
    for c in json.load(sys.stdin):
        try:
            got = CHECKS[c["kind"]](c)
        except Exception as exc:  # a crash in one check is that check's result
            got = f"error {type(exc).__name__}: {exc}"
        results.append({**c, "got": got, "ok": judge(c, got)})
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
