"""The TOML loader: the model, every validation error (message, file, line, field), merge."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from targets import citizenlab
from targets.load import Locator, load_many, load_targets, merge, parse_toml
from targets.model import (
    Endpoint,
    Input,
    Service,
    TargetError,
    TargetErrors,
    TargetList,
    UrlTarget,
    ascii_host,
    host_problem,
)

DATA = Path(__file__).parent / "data"


def errors_of(text: str, source: str = "t.toml") -> list[TargetError]:
    """The errors a TOML text raises (it must raise)."""
    with pytest.raises(TargetErrors) as info:
        parse_toml(textwrap.dedent(text), source)
    return list(info.value.errors)


def only_error(text: str) -> TargetError:
    """The single error a TOML text raises."""
    errors = errors_of(text)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# ------------------------------------------------------------------ model


@pytest.mark.parametrize(
    ("endpoint", "text"),
    [
        (Endpoint("e1.whatsapp.net", 5222), "e1.whatsapp.net:5222"),
        (Endpoint("149.154.175.50", 80), "149.154.175.50:80"),
        (Endpoint("2001:db8::1", 443), "[2001:db8::1]:443"),
    ],
)
def test_endpoint_str_and_parse_round_trip(endpoint: Endpoint, text: str) -> None:
    assert str(endpoint) == text
    assert Endpoint.parse(text) == endpoint


def test_endpoint_parse_normalises_case_and_ipv6() -> None:
    assert Endpoint.parse("E1.WhatsApp.NET:443") == Endpoint("e1.whatsapp.net", 443)
    assert Endpoint.parse("[2001:0db8:0:0::1]:80") == Endpoint("2001:db8::1", 80)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Example.COM", "example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),  # ASCII is only lowercased
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008 keeps the sharp s (2003: strasse.de)
        ("ΣΑΣ.gr", "xn--mxa9ab.gr"),  # UTS 46 lowercases first
        ("xn--80ao21a", "xn--80ao21a"),
    ],
)
def test_ascii_host_is_the_idna_2008_spelling(host: str, expected: str) -> None:
    assert ascii_host(host) == expected


def test_unicode_hosts_are_parsed_once_to_their_a_label() -> None:
    url = UrlTarget.parse("https://Straße.de:8443/a?b")
    assert (url.url, url.host, url.port, url.path) == (
        "https://Straße.de:8443/a?b", "xn--strae-oqa.de", 8443, "/a?b",
    )  # fmt: skip
    assert url.with_host(url.host) == "https://xn--strae-oqa.de:8443/a?b"
    assert Endpoint.parse("straße.de:443") == Endpoint("xn--strae-oqa.de", 443)
    assert host_problem("a\u200db.example") is not None  # a joiner IDNA 2008 refuses there
    with pytest.raises(ValueError, match="not a valid hostname"):
        ascii_host("a\u200db.example")


def test_inputs_one_per_url_and_endpoint() -> None:
    service = Service("chat", "messaging", ("https://chat.test/",), (Endpoint("chat.test", 5222),))
    other = Service("feed", "social", ("https://feed.test/",), ())
    target_list = TargetList((service, other), (), "t.toml")
    assert target_list.inputs() == (
        Input("chat", "messaging", "url", "https://chat.test/"),
        Input("chat", "messaging", "endpoint", "chat.test:5222"),
        Input("feed", "social", "url", "https://feed.test/"),
    )
    assert target_list.inputs()[1].endpoint == Endpoint("chat.test", 5222)
    assert target_list.inputs()[0].endpoint is None


# ------------------------------------------------------------------ a valid file

VALID = """\
# a comment mentioning [[service]] must not confuse the locator
reference = ["https://reference.test/"]

[[service]]
name = "telegram"
category = "messaging"
urls = ["https://web.telegram.test/"]
endpoints = [
  "149.154.175.50:443",
  "[2001:db8::1]:443",
  "dc.telegram.test:80",
]
throughput_url = "https://cdn.telegram.test/big.bin"

[[service]]
"name" = "feed"
category = "social"
urls = ["http://feed.test:8080/path?q=1"]
"""


def test_valid_file_loads() -> None:
    target_list = parse_toml(VALID, "t.toml")
    assert target_list.source == "t.toml"
    assert target_list.references == ("https://reference.test/",)
    assert target_list.names() == ("telegram", "feed")
    telegram = target_list.service("telegram")
    assert telegram.category == "messaging"
    assert telegram.endpoints == (
        Endpoint("149.154.175.50", 443),
        Endpoint("2001:db8::1", 443),
        Endpoint("dc.telegram.test", 80),
    )
    assert telegram.throughput_url == "https://cdn.telegram.test/big.bin"
    assert target_list.service("feed").throughput_url is None


# ------------------------------------------------------------------ every validation error

SERVICE = '[[service]]\nname = "chat"\ncategory = "messaging"\n'
TWICE = 'urls = [\n  "https://a.test/",\n  "https://b.test/",\n  "https://a.test/",\n]\n'
PORT_70000 = 'endpoints = [\n  "a.test:443",\n  "a.test:70000",\n]\n'
URL = 'urls = ["https://a.test/"]\n'

# (id, text, line, field, service label, fragment of the message)
CASES = [
    ("unknown top-level key", "colour = 1\n" + SERVICE + URL,
     1, "colour", None, "unknown key 'colour'"),
    ("unknown top-level table", SERVICE + URL + "[extra]\nx = 1\n",
     5, "extra", None, "unknown key 'extra'"),
    ("unknown service key with hint", SERVICE + URL + "endpoint = []\n",
     5, "endpoint", "chat", "did you mean 'endpoints'?"),
    ("missing name", '\n[[service]]\ncategory = "social"\n' + URL,
     2, "name", "#1", "missing"),
    ("name not a string", '[[service]]\nname = 5\ncategory = "social"\n' + URL,
     2, "name", "#1", "must be a string"),
    ("name format", '[[service]]\ncategory = "social"\nname = "Tele Gram"\n' + URL,
     3, "name", "Tele Gram", "must be lowercase letters, digits and '-'"),
    ("name with leading hyphen", '[[service]]\nname = "-x"\ncategory = "social"\n' + URL,
     2, "name", "-x", "must be lowercase"),
    ("missing category", '[[service]]\nname = "chat"\n' + URL,
     1, "category", "chat", "missing (one of messaging or social)"),
    ("bad category", '[[service]]\nname = "chat"\n\ncategory = "chatting"\n' + URL,
     4, "category", "chat", "'chatting' is not messaging or social"),
    ("category other only for imports", '[[service]]\nname = "c"\ncategory = "other"\n' + URL,
     3, "category", "c", "'other' is not"),
    ("urls not a list", SERVICE + 'urls = "https://a.test/"\n',
     4, "urls", "chat", "must be a list of strings"),
    ("url not a string", SERVICE + 'urls = [\n  "https://a.test/",\n  42,\n]\n',
     6, "urls[1]", "chat", "must be a string, not 42"),
    ("url scheme", SERVICE + 'urls = ["ftp://a.test/"]\n',
     4, "urls[0]", "chat", "must start with http:// or https://"),
    ("url without host", SERVICE + 'urls = ["https:///path"]\n',
     4, "urls[0]", "chat", "has no host"),
    ("url with userinfo", SERVICE + 'urls = ["https://a.test/", "https://me:pw@a.test/"]\n',
     4, "urls[1]", "chat", "must not contain userinfo"),
    ("url with a space", SERVICE + 'urls = [\n  "https://a.test/",\n  "https://a.test/a b",\n]\n',
     6, "urls[1]", "chat", "contains whitespace"),
    ("url port out of range", SERVICE + 'urls = ["https://a.test:99999/"]\n',
     4, "urls[0]", "chat", "port 99999 out of range 1-65535"),
    ("url single-label host", SERVICE + 'urls = ["http://intranet/"]\n',
     4, "urls[0]", "chat", "not a fully qualified name"),
    ("url bad hostname", SERVICE + 'urls = ["https://a..test/"]\n',
     4, "urls[0]", "chat", "not a valid hostname"),
    ("url bad bracketed ipv6", SERVICE + 'urls = ["https://[zz::1]/"]\n',
     4, "urls[0]", "chat", "IPv6 address"),
    ("url listed twice", SERVICE + TWICE,
     7, "urls[2]", "chat", "'https://a.test/' is listed twice"),
    ("endpoint port out of range", SERVICE + PORT_70000,
     6, "endpoints[1]", "chat", "port 70000 out of range 1-65535"),
    ("endpoint listed twice", SERVICE + 'endpoints = ["a.test:443", "A.TEST:443"]\n',
     4, "endpoints[1]", "chat", "listed twice (as a.test:443)"),
    ("endpoint port zero", SERVICE + 'endpoints = ["a.test:0"]\n',
     4, "endpoints[0]", "chat", "port 0 out of range 1-65535"),
    ("endpoint port not a number", SERVICE + 'endpoints = ["a.test:https"]\n',
     4, "endpoints[0]", "chat", "port 'https' is not a number"),
    ("endpoint without port", SERVICE + 'endpoints = ["a.test"]\n',
     4, "endpoints[0]", "chat", "has no port"),
    ("endpoint bare ipv6", SERVICE + 'endpoints = ["2001:db8::1:443"]\n',
     4, "endpoints[0]", "chat", "IPv6 address in brackets"),
    ("endpoint bad ipv6", SERVICE + 'endpoints = ["[2001:zz::1]:443"]\n',
     4, "endpoints[0]", "chat", "not an IPv6 address"),
    ("endpoint bad hostname", SERVICE + 'endpoints = ["bad!host.test:443"]\n',
     4, "endpoints[0]", "chat", "not a valid hostname"),
    ("endpoint bad ipv4", SERVICE + 'endpoints = ["10.0.0.256:443"]\n',
     4, "endpoints[0]", "chat", "not a valid IPv4 address or hostname"),
    ("endpoint legacy ipv4", SERVICE + 'endpoints = ["0x7f.1:443"]\n',
     4, "endpoints[0]", "chat", "IPv4 address 127.0.0.1 in a legacy spelling: write 127.0.0.1"),
    ("url legacy ipv4", SERVICE + 'urls = ["http://1.1.1.0x1/"]\n',
     4, "urls[0]", "chat", "'1.1.1.0x1' is the IPv4 address 1.1.1.1 in a legacy spelling"),
    ("url octal ipv4", SERVICE + 'urls = ["http://0x7f.01.0.1/"]\n',
     4, "urls[0]", "chat", "write 127.1.0.1"),
    ("url ambiguous ipv4", SERVICE + 'urls = ["http://0177.0.0.1/"]\n',
     4, "urls[0]", "chat", "'0177.0.0.1' is ambiguous: a leading 0 makes a part octal"),
    ("endpoint not a string", SERVICE + 'endpoints = [443]\n',
     4, "endpoints[0]", "chat", "must be a string, not 443"),
    ("neither urls nor endpoints", '\n' + SERVICE + 'urls = []\n',
     2, None, "chat", "has neither urls nor endpoints"),
    ("bad throughput_url", SERVICE + 'urls = ["https://a.test/"]\nthroughput_url = "file:///x"\n',
     5, "throughput_url", "chat", "must start with http:// or https://"),
    ("throughput_url not a string", SERVICE + 'urls = ["https://a.test/"]\nthroughput_url = 1\n',
     5, "throughput_url", "chat", "must be a string"),
    ("bad reference", 'reference = [\n  "https://r.test/",\n  "gopher://r.test/",\n]\n' + SERVICE
     + 'urls = ["https://a.test/"]\n',
     3, "reference[1]", None, "must start with http:// or https://"),
    ("service not tables", 'service = "chat"\n',
     1, "service", None, "must be an array of tables"),
    ("empty file", "\n# only a comment\n\n",
     1, None, None, "empty file"),
    ("no services", 'reference = ["https://r.test/"]\n',
     1, None, None, "no [[service]] tables"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "field", "label", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_validation_error(
    text: str, line: int, field: str | None, label: str | None, fragment: str
) -> None:
    error = only_error(text)
    assert error.file == "t.toml"
    assert error.line == line
    assert error.field == field
    if label is None:
        assert error.service is None and error.index is None
    elif label.startswith("#"):
        assert (error.service, error.index) == (None, int(label[1:]))
    else:
        assert error.service == label
    assert fragment in error.message
    assert isinstance(error, ValueError)


def test_error_str_format() -> None:
    text = SERVICE + PORT_70000
    error = only_error(text.replace('"chat"', '"telegram"'))
    assert str(error) == (
        't.toml:6: service "telegram": endpoints[1]: port 70000 out of range 1-65535'
    )


def test_error_str_for_unnamed_service() -> None:
    error = only_error('[[service]]\ncategory = "social"\nurls = ["https://a.test/"]\n')
    assert str(error) == "t.toml:1: service #1: name: missing (every service needs a name)"


def test_duplicate_name_points_at_second_definition() -> None:
    text = SERVICE + 'urls = ["https://a.test/"]\n\n' + SERVICE + 'urls = ["https://b.test/"]\n'
    error = only_error(text)
    assert (error.line, error.field, error.service) == (7, "name", "chat")
    assert error.message == "duplicate name (first defined at line 2)"


def test_all_errors_collected_sorted_by_line() -> None:
    text = """\
    colour = "blue"
    [[service]]
    name = "Bad"
    category = "chat"
    urls = ["ftp://a.test/"]
    endpoints = ["a.test:0"]

    [[service]]
    category = "social"
    """
    errors = errors_of(text)
    assert [(e.line, e.field) for e in errors] == [
        (1, "colour"),
        (3, "name"),
        (4, "category"),
        (5, "urls[0]"),
        (6, "endpoints[0]"),
        (8, "name"),
        (8, None),  # neither urls nor endpoints
    ]
    rendered = str(TargetErrors(errors)).splitlines()
    assert len(rendered) == len(errors)
    assert rendered[0] == "t.toml:1: colour: unknown key 'colour'"


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("[[service]\nname = 1\n", 1, 10, "Expected ']]'"),
        ('reference = [\n  "https://a.test/",,\n]\n', 2, 21, "Invalid value"),
        ('[[service]]\nname = "unterminated\n', 2, 21, "Illegal character"),
        ("a = ", 1, None, "at end of file"),
    ],
)
def test_syntax_error_position(text: str, line: int, column: int | None, fragment: str) -> None:
    error = only_error(text)
    assert error.line == line
    assert error.column == column
    assert fragment in error.message
    assert "(at line" not in error.message
    if column is not None:
        assert str(error).startswith(f"t.toml:{line}:{column}: invalid TOML: ")


# ------------------------------------------------------------------ the locator

LOCATED = """\
reference = ["https://r.test/"]  # line 1
[[service]]
name = "a"
urls = [
  "https://a.test/",
  "https://a.test/x",
]
[[ service ]]
  'category' = "social"
  name = "b"
  endpoints = ["b.test:1", "b.test:2"]
  endpoints_note = "not the endpoints key"
[other]
k = 1
[[service]]
urls = ["https://c.test/", "https://c.test/"]
"""


def test_locator_finds_headers_keys_and_values() -> None:
    locate = Locator(LOCATED)
    assert [locate.service_line(i) for i in (1, 2, 3)] == [2, 8, 15]
    assert locate.key_line(None, "reference") == 1
    assert locate.key_line(None, "other") == 13  # a table header counts for a top-level key
    assert locate.key_line(None, "missing") == 1
    assert locate.key_line(1, "urls") == 4
    assert locate.key_line(2, "category") == 9  # quoted key
    assert locate.key_line(2, "endpoints") == 11
    assert locate.key_line(2, "urls") == 8  # absent: the service's header
    assert locate.value_line(1, "urls", "https://a.test/x") == 6
    assert locate.value_line(1, "urls", "https://a.test/") == 5
    assert locate.value_line(2, "endpoints", "b.test:2") == 11
    assert locate.value_line(3, "urls", "https://c.test/", occurrence=2) == 16
    assert locate.value_line(1, "urls", "absent") == 4  # falls back to the key


def test_locator_inline_services_fall_back_to_the_key() -> None:
    text = 'reference = []\nservice = [\n  {name = "x", category = "chat", urls = []},\n]\n'
    assert Locator(text).service_line(1) == 2
    errors = errors_of(text)
    assert {e.line for e in errors} == {2}


# ------------------------------------------------------------------ files


def test_load_targets_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(SERVICE + 'endpoints = ["a.test:70000"]\n', encoding="utf-8")
    with pytest.raises(TargetErrors) as info:
        load_targets(path)
    assert str(info.value) == (
        f'{path}:4: service "chat": endpoints[0]: port 70000 out of range 1-65535'
    )


def test_load_targets_accepts_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (SERVICE + 'urls = ["https://a.test/"]\n').encode())
    assert load_targets(str(path)).names() == ("chat",)


def test_load_targets_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"reference = []\n# caf\xe9\n")
    with pytest.raises(TargetErrors) as info:
        load_targets(path)
    assert [(e.line, e.message) for e in info.value] == [(2, "not UTF-8 text")]


def test_load_targets_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetErrors) as info:
        load_targets(tmp_path / "absent.toml")
    assert "cannot read" in str(info.value)


def test_load_targets_dispatches_csv() -> None:
    target_list = load_targets(DATA / "small.csv", {"GRP"})
    assert target_list.names() == ("chirp-test",)


# ------------------------------------------------------------------ merge


def _list(source: str, *names: str, refs: tuple[str, ...] = ()) -> TargetList:
    services = tuple(Service(n, "social", (f"https://{n}.test/",), ()) for n in names)
    return TargetList(services, refs, source)


def test_merge_keeps_order_and_unions_references() -> None:
    merged = merge(
        [
            _list("a.toml", "x", "y", refs=("https://r1.test/",)),
            _list("b.toml", "z", refs=("https://r1.test/", "https://r2.test/")),
        ]
    )
    assert merged.names() == ("x", "y", "z")
    assert merged.references == ("https://r1.test/", "https://r2.test/")
    assert merged.source == "a.toml, b.toml"


def test_merge_conflict_names_both_files() -> None:
    with pytest.raises(TargetErrors) as info:
        merge([_list("a.toml", "x", "y"), _list("b.toml", "y"), _list("c.csv", "x")])
    assert [str(e) for e in info.value] == [
        'b.toml: service "y": also defined in a.toml',
        'c.csv: service "x": also defined in a.toml',
    ]


def test_merge_combines_two_citizenlab_imports_of_one_domain() -> None:
    merged = merge(
        [citizenlab.load_csv(DATA / "small.csv"), citizenlab.load_csv(DATA / "country.csv")]
    )
    chirp = merged.service("chirp-test")
    assert chirp.urls == (
        "https://www.chirp.test/",
        "https://m.chirp.test/feed",
        "https://chirp.test/local",
    )
    assert "forum-test" in merged.names()


def test_load_many_reports_errors_of_every_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(SERVICE + 'urls = ["https://a.test/"]\n', encoding="utf-8")
    dup = tmp_path / "dup.toml"
    dup.write_text(SERVICE + 'urls = ["https://b.test/"]\n', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[service]\n", encoding="utf-8")
    with pytest.raises(TargetErrors) as info:
        load_many([good, bad, dup])
    assert [(e.file, e.line) for e in info.value] == [(str(bad), 1), (str(dup), None)]
    assert str(good) in str(info.value.errors[1])
    assert load_many([good, DATA / "country.csv"]).names() == ("chat", "chirp-test", "forum-test")


# ------------------------------------------------------------------ hostile input


@pytest.mark.parametrize(
    "value",
    ["[" * 2000 + "]" * 2000, "{b = " * 2000 + "1" + "}" * 2000],
    ids=["arrays", "inline tables"],
)
def test_deeply_nested_toml_is_bad_input_naming_the_file(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from probe.cli import main

    path = tmp_path / "deep.toml"
    path.write_text(f"a = {value}\n", encoding="utf-8")
    assert main(["targets", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"probe: {path}: invalid TOML: arrays or tables nested too deeply"
    assert main(["config", "show", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"probe: {path}: arrays or tables nested too deeply"


HUGE = "x" * 1_000_000


@pytest.mark.parametrize(
    "text",
    [
        f'[[service]]\nname = "{HUGE}"\ncategory = "social"\nurls = ["https://a.test/"]\n',
        SERVICE + f'urls = ["https://{HUGE}.test/"]\n',
        SERVICE + f'urls = ["https://a.test/ {HUGE}"]\n',
        SERVICE + f'endpoints = ["{HUGE}.test"]\n',
        SERVICE + f'endpoints = ["[{HUGE}]:443"]\n',
        SERVICE + f'endpoints = ["a.test:{HUGE}"]\n',
        SERVICE + f'category_{HUGE} = "social"\nurls = ["https://a.test/"]\n',
        f'[[service]]\nname = "chat"\ncategory = "{HUGE}"\nurls = ["https://a.test/"]\n',
    ],
    ids=["name", "url host", "url space", "endpoint", "endpoint v6", "port", "key", "category"],
)
def test_errors_quote_long_values_cut_short(text: str) -> None:
    errors = errors_of(text)
    rendered = str(TargetErrors(errors))
    assert len(rendered) < 600 and "..." in rendered, rendered[:1000]
