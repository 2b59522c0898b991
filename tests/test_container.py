"""The container image, built from the Dockerfile and run by a real Docker engine.

The image is built on the base that ``PROBE_TEST_BASE_IMAGE`` names, by default
``blocking-probe-base:bookworm``, which contrib/docker/debian-base.sh makes from Debian's
packages (.ci/run does, and starts the engine: this machine reaches no Docker Hub). The
containers share the host's network (``--network host``) and measure a loopback world only.
Every container and volume is named with the PREFIX below and removed by that name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.prerequisites import missing
from tests.servers.world import World, running_world
from tests.test_daemon_end_to_end import rows
from tests.test_units_under_systemd import DAEMON  # one group, every 3 s, no jitter

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "probe-test-"
IMAGE = "blocking-probe:test"
UID = 10001  # the image's account, probe


def docker(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built now from this checkout on the base image."""
    if shutil.which("docker") is None:
        missing("no docker client")
    if os.geteuid() != 0:
        missing("the tests give the container's account a directory (chown): needs root")
    if docker("info", timeout=30).returncode != 0:
        missing("no container engine answers `docker info` (.ci/run starts dockerd)")
    base = os.environ.get("PROBE_TEST_BASE_IMAGE", "blocking-probe-base:bookworm")
    if docker("image", "inspect", base).returncode != 0:
        missing(f"no base image {base}: contrib/docker/debian-base.sh {base} makes one")
    built = docker(
        "build", "--network", "host", "--build-arg", f"BASE={base}", "-t", IMAGE, str(ROOT),
        timeout=1200,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


@pytest.fixture(scope="module")
def world(ca: trustme.CA, ca_bundle: str) -> Iterator[World]:
    with running_world(ca, ca_bundle, ["ref.test", "ok.test"]) as w:
        yield w


@pytest.fixture
def config_dir(world: World, tmp_path: Path) -> Path:
    """What /config holds: probe.toml (the world, consent, a 3 s daemon group), its CA and
    one loopback target; readable by the container's account."""
    config = tmp_path / "config"
    config.mkdir(mode=0o755)
    config.chmod(0o755)
    shutil.copy(world.ca_bundle, config / "ca.pem")
    written = world.write_config(
        tmp_path / "probe.toml", f"https://ref.test:{world.web.https_port}/"
    )
    text = written.read_text(encoding="utf-8").replace(world.ca_bundle, "/config/ca.pem")
    (config / "probe.toml").write_text(text + DAEMON, encoding="utf-8")
    url = f"https://ok.test:{world.web.https_port}/"
    (config / "targets.toml").write_text(
        f'[[service]]\nname = "chat"\ncategory = "messaging"\nurls = ["{url}"]\n', encoding="utf-8"
    )
    for path in config.iterdir():
        path.chmod(0o644)
    return config


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A directory for a bind mount at /data, owned by root (as a host's often is)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    return data


@contextlib.contextmanager
def named(kind: str) -> Iterator[str]:
    """A name for a container or a volume, removed (by that name) afterwards."""
    name = f"{PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        if kind == "container":
            docker("rm", "-f", name)
        else:
            docker("volume", "rm", "-f", name)


def mounts(config: Path, data: Path | str) -> list[str]:
    return ["--network", "host", "-v", f"{config}:/config:ro", "-v", f"{data}:/data"]


def verdicts(db: Path) -> list[tuple[object, ...]]:
    """(run status, verdict) of every stored measurement; [] before there are any."""
    return rows(db, "SELECT r.status, m.verdict FROM measurements m JOIN runs r USING (run_id)")


def test_the_image_runs_the_daemon_by_default_as_an_unprivileged_account(image: str) -> None:
    inspected = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert inspected["Cmd"] == ["daemon"]
    assert inspected["User"] == "probe"
    assert inspected["Env"].count("PROBE_DB=/data/results.sqlite") == 1
    who = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u")
    assert who.stdout.strip() == str(UID), who.stderr
    version = docker("run", "--rm", "--network", "none", image, "--version")
    assert version.returncode == 0, version.stderr
    assert "0.1.0" in version.stdout


def test_the_daemon_measures_into_the_volume_and_stops_cleanly_on_docker_stop(
    image: str, config_dir: Path, data_dir: Path
) -> None:
    """The config is /config/probe.toml (found by the entrypoint), the database is on the
    mount, and `docker stop` (SIGTERM) ends the daemon with exit 0 after what it measured."""
    os.chown(data_dir, UID, UID)
    db = data_dir / "results.sqlite"
    with named("container") as name:
        started = docker(
            "run", "-d", "--name", name, *mounts(config_dir, data_dir), image,
            "daemon", "--targets", "/config/targets.toml",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 180
        while ("completed", "accessible") not in verdicts(db):
            running = docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            assert running == "true", docker("logs", name).stderr[-3000:]
            assert time.monotonic() < deadline, docker("logs", name).stderr[-3000:]
            time.sleep(0.5)
        stopped = docker("stop", "-t", "60", name, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", docker("logs", name).stderr[-3000:]
    assert set(verdicts(db)) <= {("completed", "accessible"), ("interrupted", "accessible")}
    assert db.stat().st_uid == UID


def test_a_root_owned_bind_mount_stops_before_the_probe_with_what_to_do(
    image: str, config_dir: Path, data_dir: Path
) -> None:
    with named("container") as name:
        done = docker(
            "run", "--name", name, *mounts(config_dir, data_dir), image,
            "run", "--targets", "/config/targets.toml",
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"probe-entrypoint: /data is not writable by uid {UID}" in done.stderr
    assert "docker run --user 0" in done.stderr
    assert list(data_dir.iterdir()) == []  # nothing half-written


def test_started_as_root_it_hands_the_mount_to_the_account_and_measures_as_that(
    image: str, config_dir: Path, data_dir: Path
) -> None:
    with named("container") as name:
        done = docker(
            "run", "--name", name, "--user", "0", *mounts(config_dir, data_dir), image,
            "run", "--targets", "/config/targets.toml",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert verdicts(data_dir / "results.sqlite") == [("completed", "accessible")]
    assert data_dir.stat().st_uid == UID
    assert (data_dir / "results.sqlite").stat().st_uid == UID


def test_a_named_volume_belongs_to_the_account_and_keeps_the_results(
    image: str, config_dir: Path
) -> None:
    with named("volume") as volume:
        for _ in range(2):  # two sweeps into the one volume
            with named("container") as name:
                done = docker(
                    "run", "--name", name, *mounts(config_dir, volume), image,
                    "run", "--targets", "/config/targets.toml",
                )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
        with named("container") as name:
            listed = docker("run", "--name", name, *mounts(config_dir, volume), image,
                            "list", "--json")  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    runs = json.loads(listed.stdout)["runs"]
    assert [(r["status"], r["verdicts"]) for r in runs] == [("completed", {"accessible": 1})] * 2
