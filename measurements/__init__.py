"""Network primitives (dns, tcp, tls, http, throughput): explicit inputs, frozen observations.

DNS-over-HTTPS goes through httpx like every other HTTP exchange (measurements.dns). dnspython
imports its own DoH stack (httpx2, httpcore2) whenever that is installed, even for UDP and TCP
queries, so it is told here, before any of its query modules loads, that the stack is absent:
one HTTP stack is what a Raspberry Pi pays for in memory and start-up.
"""

# Imported under another name: a bare ``import dns`` here would bind ``measurements.dns`` to
# dnspython, shadowing our own measurements.dns for ``from measurements import dns``.
import dns._features as _dnspython_features

# dnspython's documented switch for its optional features (dns._features.force).
_dnspython_features.force("doh", False)

# httpcore imports trio whenever it is installed, to offer it as a backend (0.1-0.2 s of
# start-up, and its memory). The probe runs on asyncio alone: trio, unless something imported
# it already, is marked absent, as httpcore's own fallback for a missing trio expects.
import sys as _sys  # noqa: E402 - after dnspython's switch, which must come first

_sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
