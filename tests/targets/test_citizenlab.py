"""The Citizen Lab CSV importer: grouping, names, categories, filtering, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from targets.citizenlab import (
    category_for,
    load_csv,
    parse_codes,
    parse_csv,
    registrable,
    service_name,
)
from targets.model import IMPORT_CATEGORIES, TargetErrors, name_problem

DATA = Path(__file__).parent / "data"
GLOBAL = Path("/work/shared/reference/test-lists/global.csv")


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("www.facebook.com", "facebook.com"),
        ("facebook.com", "facebook.com"),
        ("a.b.c.example.test", "example.test"),
        ("news.bbc.co.uk", "bbc.co.uk"),
        ("www.akorda.gov.kz", "akorda.gov.kz"),
        ("mail.com.example", "com.example"),  # a generic label only counts under a 2-letter TLD
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("WWW.Example.TEST.", "example.test"),
    ],
)
def test_registrable(host: str, domain: str) -> None:
    assert registrable(host) == domain


@pytest.mark.parametrize(
    ("domain", "name"),
    [
        ("facebook.com", "facebook-com"),
        ("198.51.100.7", "198-51-100-7"),
        ("2001:db8::1", "2001-db8-1"),
        ("пример.test", "xn--e1afmkfd-test"),
        ("under_score.test", "under-score-test"),
        ("a" * 70 + ".test", "a" * 64),
    ],
)
def test_service_name_is_valid(domain: str, name: str) -> None:
    assert service_name(domain) == name
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("code", "category"),
    [("GRP", "social"), ("grp", "social"), ("COMT", "messaging"), (" comt ", "messaging"),
     ("NEWS", "other"), ("", "other")],
)  # fmt: skip
def test_category_for(code: str, category: str) -> None:
    assert category_for(code) == category
    assert category in IMPORT_CATEGORIES


def test_parse_codes() -> None:
    assert parse_codes("GRP, comt,,") == {"GRP", "COMT"}


def test_load_all_rows_groups_by_domain() -> None:
    target_list = load_csv(DATA / "small.csv")
    assert target_list.source == str(DATA / "small.csv")
    assert target_list.references == ()
    summary = [(s.name, s.category, s.urls) for s in target_list.services]
    assert summary == [
        ("chirp-test", "social", ("https://www.chirp.test/", "https://m.chirp.test/feed")),
        ("talk-test", "messaging", ("https://talk.test/",)),  # the repeated row is dropped
        ("news-test", "other", ("http://news.test/",)),
        ("example-test", "other", ("https://www.gov.example.test/",)),
        ("198-51-100-7", "messaging", ("https://198.51.100.7/",)),
    ]
    assert all(s.endpoints == () for s in target_list.services)


@pytest.mark.parametrize("codes", [{"GRP", "COMT"}, {"grp", "Comt"}])
def test_category_filter_is_case_insensitive(codes: set[str]) -> None:
    target_list = load_csv(DATA / "small.csv", codes)
    assert target_list.names() == ("chirp-test", "talk-test", "198-51-100-7")


def test_filter_matching_nothing_gives_an_empty_list() -> None:
    assert load_csv(DATA / "small.csv", {"XED"}).services == ()


def test_header_is_case_insensitive() -> None:
    target_list = load_csv(DATA / "upper-header.csv")
    assert [(s.name, s.category) for s in target_list.services] == [("solo-test", "social")]


def test_names_are_made_unique() -> None:
    text = "url,category_code\nhttps://a-b.test/,GRP\nhttps://a.b-test/,GRP\n"
    assert parse_csv(text, "x.csv").names() == ("a-b-test", "a-b-test-2")


def test_missing_header_columns() -> None:
    with pytest.raises(TargetErrors) as info:
        load_csv(DATA / "noheader.csv")
    (error,) = info.value
    assert (error.file, error.line) == (str(DATA / "noheader.csv"), 1)
    assert "url and category_code" in error.message


@pytest.mark.parametrize("text", ["", "url,category_code\n", "url,category_code\n\n,\n"])
def test_empty_files(text: str) -> None:
    with pytest.raises(TargetErrors) as info:
        parse_csv(text, "e.csv")
    assert [e.line for e in info.value] == [1]


def test_bad_rows_located_by_line() -> None:
    path = DATA / "bad.csv"
    with pytest.raises(TargetErrors) as info:
        load_csv(path)
    found = [(e.line, e.field, e.message.split(":")[0]) for e in info.value]
    assert found == [
        (3, "url", "URL 'ftp"),
        (6, "url", "URL 'https"),
        (7, "url", "URL 'https"),
        (8, "url", "URL 'https"),
        (9, "category_code", "empty"),
    ]
    assert "must start with http:// or https://" in info.value.errors[0].message
    assert "userinfo" in info.value.errors[1].message
    assert "whitespace" in info.value.errors[2].message
    assert str(info.value.errors[0]).startswith(f"{path}:3: url: ")


def test_filtered_out_rows_are_not_judged() -> None:
    with pytest.raises(TargetErrors) as info:
        load_csv(DATA / "bad.csv", {"GRP", "COMT"})
    assert [e.line for e in info.value] == [3, 6, 7, 9]


def test_short_row() -> None:
    text = "url,category_code,notes\nhttps://a.test/\nhttps://b.test/,GRP,\n"
    with pytest.raises(TargetErrors) as info:
        parse_csv(text, "x.csv")
    assert [(e.line, e.message) for e in info.value] == [(2, "expected 3 columns")]


@pytest.mark.skipif(not GLOBAL.exists(), reason="reference test lists not present")
def test_real_global_list_social_and_messaging() -> None:
    target_list = load_csv(GLOBAL, {"GRP", "COMT"})
    assert len(target_list.services) > 0
    assert {s.category for s in target_list.services} <= {"social", "messaging"}
    assert all(name_problem(name) is None for name in target_list.names())
    assert len(set(target_list.names())) == len(target_list.names())
