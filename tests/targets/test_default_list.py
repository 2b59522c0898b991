"""The bundled default list parses, and holds the services and endpoints it promises.

Only parsing happens here: nothing may contact these hosts from a test.
"""

from __future__ import annotations

import pytest

from targets import load_default
from targets.model import CATEGORIES, Endpoint, TargetList

NAMED = (
    "facebook", "instagram", "whatsapp", "messenger", "telegram", "signal", "x", "youtube",
    "tiktok", "vk", "odnoklassniki", "linkedin", "snapchat", "discord", "viber", "wechat",
    "line", "reddit", "threads", "bluesky",
)  # fmt: skip
TELEGRAM_DCS = (
    "149.154.175.50", "149.154.167.51", "149.154.175.100",
    "149.154.167.91", "149.154.171.5", "95.161.76.100",
)  # fmt: skip


@pytest.fixture(scope="module")
def default() -> TargetList:
    return load_default()


def test_loads_with_enough_services(default: TargetList) -> None:
    assert len(default.services) >= 20
    assert default.source == "targets/default.toml"
    assert {s.category for s in default.services} <= CATEGORIES


@pytest.mark.parametrize("name", NAMED)
def test_named_service_present(default: TargetList, name: str) -> None:
    assert default.service(name).inputs()


def test_references(default: TargetList) -> None:
    assert len(default.references) >= 3
    assert all(ref.startswith("https://") for ref in default.references)


def test_whatsapp_endpoints(default: TargetList) -> None:
    whatsapp = default.service("whatsapp")
    expected = {Endpoint(f"e{n}.whatsapp.net", port) for n in range(1, 17) for port in (443, 5222)}
    assert len(whatsapp.endpoints) == 32
    assert set(whatsapp.endpoints) == expected
    assert "https://web.whatsapp.com/" in whatsapp.urls
    assert "https://v.whatsapp.net/v2/register" in whatsapp.urls


def test_telegram_data_centres(default: TargetList) -> None:
    telegram = default.service("telegram")
    expected = {Endpoint(ip, port) for ip in TELEGRAM_DCS for port in (80, 443)}
    assert set(telegram.endpoints) == expected
    assert "https://web.telegram.org/" in telegram.urls


def test_messenger_and_signal_follow_the_ooni_hosts(default: TargetList) -> None:
    messenger = {e.host for e in default.service("messenger").endpoints}
    assert {"b-api.facebook.com", "edge-mqtt.facebook.com", "star.c10r.facebook.com"} <= messenger
    signal = default.service("signal").urls
    assert {"https://chat.signal.org/", "https://cdsi.signal.org/"} <= set(signal)


def test_every_input_is_unique(default: TargetList) -> None:
    inputs = default.inputs()
    assert len(inputs) == len({(i.service, i.value) for i in inputs})
