"""The container's entrypoint (contrib/docker/entrypoint.sh), run outside a container: no
Docker daemon is needed. A bind mount owned by root is a directory owned by root here; the
image's account is `nobody`, reached with setpriv as the image's own handover does."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prerequisites import missing

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "contrib" / "docker" / "entrypoint.sh"
# Stands for `probe` on the image's PATH: says who ran it, with what, and exits.
STUB = '#!/bin/sh\necho "uid=$(id -u) home=$HOME config=${PROBE_CONFIG:-none} args=$*"\n'


@pytest.fixture
def box() -> Iterator[Path]:
    """A directory every account may enter (pytest's own temp dirs are root's only), with a
    copy of the script, a `probe` on bin/ and an empty data/ owned by root, mode 755."""
    path = Path(tempfile.mkdtemp(prefix="probe-entrypoint-"))
    try:
        path.chmod(0o755)
        shutil.copy(SCRIPT, path / "entrypoint.sh")
        (path / "bin").mkdir()
        (path / "bin" / "probe").write_text(STUB, encoding="utf-8")
        (path / "bin" / "probe").chmod(0o755)
        (path / "data").mkdir(mode=0o755)
        yield path
    finally:
        shutil.rmtree(path)


def _nobody() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        missing("switching to another account (setpriv) needs root")
    if shutil.which("setpriv") is None:
        missing("setpriv is not installed (util-linux)")
    return pwd.getpwnam("nobody")


def _run(
    box: Path, *args: str, as_nobody: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": f"{box / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "PROBE_DB": str(box / "data" / "results.sqlite"),
        "PROBE_DEFAULT_CONFIG": str(box / "config" / "probe.toml"),
        **(env or {}),
    }
    command = ["sh", str(box / "entrypoint.sh"), *args]
    if as_nobody:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_root_owned_bind_mount_stops_with_what_to_do(box: Path) -> None:
    uid = _nobody().pw_uid
    done = _run(box, "daemon", as_nobody=True)
    assert done.returncode == 2
    assert done.stdout == ""  # the probe never started
    data = box / "data"
    assert done.stderr.startswith(f"probe-entrypoint: {data} is not writable by uid {uid}")
    for fix in (f"sudo chown {uid} ", "docker run --user 0", "-v probe-data:"):
        assert fix in done.stderr
    assert list(data.iterdir()) == []  # nothing half-written


def test_root_owned_database_file_is_named(box: Path) -> None:
    nobody = _nobody()
    os.chown(box / "data", nobody.pw_uid, nobody.pw_gid)
    (box / "data" / "results.sqlite").write_bytes(b"")  # root's, mode 644
    done = _run(box, "run", as_nobody=True)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(
        f"probe-entrypoint: {box / 'data' / 'results.sqlite'} is not writable by uid "
        f"{nobody.pw_uid} (owned by uid 0)."
    )


def test_started_as_root_it_hands_the_directory_over(box: Path) -> None:
    """`docker run --user 0`: the directory and the database's files change owner, and the
    probe runs as the image's account, never as root."""
    nobody = _nobody()
    data = box / "data"
    for name in ("results.sqlite", "results.sqlite-wal", "unrelated.txt"):
        (data / name).write_bytes(b"")
    done = _run(box, "daemon", "--config", "/x.toml", env={"PROBE_RUN_AS": "nobody"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"uid={nobody.pw_uid} home={nobody.pw_dir} config=none args=daemon --config /x.toml\n"
    )
    owners = {p.name: p.stat().st_uid for p in [data, *data.iterdir()]}
    assert owners == {
        "data": nobody.pw_uid,
        "results.sqlite": nobody.pw_uid,
        "results.sqlite-wal": nobody.pw_uid,
        "unrelated.txt": 0,  # only the database's own files
    }


def test_a_writable_volume_runs_the_probe_as_is(box: Path) -> None:
    nobody = _nobody()
    os.chown(box / "data", nobody.pw_uid, nobody.pw_gid)
    done = _run(box, "run", "--json", as_nobody=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"uid={nobody.pw_uid} ")
    assert done.stdout.endswith(" config=none args=run --json\n")
    assert [p.name for p in (box / "data").iterdir()] == []  # the write check left nothing


def test_a_missing_data_directory_it_cannot_create(box: Path) -> None:
    _nobody()
    db = box / "data" / "deeper" / "results.sqlite"
    done = _run(box, "daemon", as_nobody=True, env={"PROBE_DB": str(db)})
    assert (done.returncode, done.stdout) == (2, "")
    assert "does not exist and uid" in done.stderr and "-v probe-data:" in done.stderr


def _probe_wrapper(box: Path) -> None:
    """bin/probe becomes this tree's real probe (the installed copy may be older)."""
    wrapper = box / "bin" / "probe"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m probe "$@"\n', encoding="utf-8"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("explicit", [False, True])
def test_the_config_file_is_found(box: Path, explicit: bool) -> None:
    """/config/probe.toml is used when present, unless PROBE_CONFIG names another file; the
    real probe then reads it (run as the current account, which owns data/ or is root)."""
    _probe_wrapper(box)
    (box / "config").mkdir()
    default = box / "config" / "probe.toml"
    default.write_text('[vantage]\nname = "from-config-dir"\n', encoding="utf-8")
    other = box / "other.toml"
    other.write_text('[vantage]\nname = "from-probe-config"\n', encoding="utf-8")
    env = {"PROBE_RUN_AS": "root", **({"PROBE_CONFIG": str(other)} if explicit else {})}
    if os.geteuid() != 0:
        (box / "data").chmod(0o777)  # stands for a volume the account owns
    done = _run(box, "config", "show", env=env)
    assert done.returncode == 0, done.stderr
    rows = {f[0]: f[1:] for f in map(str.split, done.stdout.splitlines()) if len(f) == 3}
    used = other if explicit else default
    assert rows["vantage.name"] == [used.read_text().split('"')[1], f"file:{used}"]
    assert rows["storage.db"] == [str(box / "data" / "results.sqlite"), "env:PROBE_DB"]
    assert f"config file: {used}\n" in done.stdout


def test_without_a_config_file_none_is_named(box: Path) -> None:
    if os.geteuid() != 0:
        (box / "data").chmod(0o777)
    done = _run(box, "daemon", env={"PROBE_RUN_AS": "root"})
    assert done.returncode == 0, done.stderr
    assert " config=none args=daemon\n" in done.stdout


def test_the_dockerfile_runs_the_daemon_through_the_entrypoint() -> None:
    """No image is built here (no Docker daemon): the Dockerfile's own lines, read."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("#", " "))
    ]
    assert "COPY contrib/docker/entrypoint.sh /usr/local/bin/probe-entrypoint" in lines
    assert lines[-2:] == ['ENTRYPOINT ["probe-entrypoint"]', 'CMD ["daemon"]']
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users == ["probe"]  # never root at run time
    assert "ENV PROBE_DB=/data/results.sqlite" in lines and 'VOLUME ["/data"]' in lines
