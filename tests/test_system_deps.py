"""``tools/system_deps.sh``: the system packages ``make test`` and ``make grade`` install or ask for.

Each test runs the script on a PATH that holds only stand-ins written to a temporary folder: ``id``
(root or not), ``apt-get`` and ``sudo`` record their arguments, and ``apt-get install`` drops a fake
``bwrap``/``chromium`` there, so the real system is never looked at or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SCRIPT = ROOT / "tools" / "system_deps.sh"
BASH = shutil.which("bash") or "/bin/bash"
INSTALL = "install -y -qq --no-install-recommends"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a bash script for Linux and macOS")


class Machine:
    """A folder of stand-in commands, used as the script's whole PATH."""

    def __init__(self, tmp_path: Path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "calls.log"
        self.log.touch()

    def stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!{BASH}\necho \"{name} $*\" >> '{self.log}'\n{body}\n")
        path.chmod(0o755)

    def user(self, uid: int) -> None:
        self.stub("id", f"echo {uid}")

    def apt(self, fails: bool = False) -> None:
        """``apt-get``: ``install`` puts a working ``bwrap``/``chromium`` on the PATH (or fails)."""
        fake = {"bubblewrap": "bwrap", "chromium": "chromium"}
        installs = "".join(
            f"    {package}) printf '#!{BASH}\\necho \"{command} $*\" >> {self.log}\\n' > '{self.bin}/{command}';"
            f" {shutil.which('chmod')} +x '{self.bin}/{command}' ;;\n"
            for package, command in fake.items()
        )
        body = "exit 100" if fails else f'[ "$1" = install ] || exit 0\nfor p; do case "$p" in\n{installs}esac; done'
        self.stub("apt-get", body)

    def sudo(self, works: bool) -> None:
        if works:
            self.stub("sudo", '[ "$1" = -n ] && shift\n"$@"')
        else:
            self.stub("sudo", 'echo "sudo: a password is required" >&2\nexit 1')

    def run(self, *needs: str, chromium_env: str | None = None) -> subprocess.CompletedProcess:
        env = {"PATH": str(self.bin), "HOME": str(self.bin.parent)}
        if chromium_env is not None:
            env["QLORA_COURSE_CHROMIUM"] = chromium_env
        return subprocess.run(
            [BASH, str(SCRIPT), *needs], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def machine(tmp_path) -> Machine:
    return Machine(tmp_path)


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == ""
    return lines[0]


def test_everything_present_is_silent_and_never_calls_apt(machine):
    machine.stub("bwrap", "exit 0")
    machine.stub("chromium", "exit 0")
    machine.apt()
    machine.sudo(works=True)
    r = machine.run("bwrap", "chromium")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert machine.calls() == ["bwrap --unshare-all --ro-bind / / true"]


def test_root_installs_with_apt(machine):
    machine.user(0)
    machine.apt()
    machine.sudo(works=False)
    r = machine.run("bwrap", "chromium")
    assert r.returncode == 0, r.stderr
    assert machine.calls() == [
        "id -u",
        "apt-get update -qq",
        f"apt-get {INSTALL} bubblewrap chromium",
        "bwrap --unshare-all --ro-bind / / true",
    ]
    assert "installing bubblewrap chromium with apt-get (as root)" in one_line(r)


def test_password_less_sudo_installs_through_sudo(machine):
    machine.user(1000)
    machine.apt()
    machine.sudo(works=True)
    r = machine.run("bwrap", "chromium")
    assert r.returncode == 0, r.stderr
    assert machine.calls() == [
        "id -u",
        "sudo -n true",
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        f"sudo -n apt-get {INSTALL} bubblewrap chromium",
        f"apt-get {INSTALL} bubblewrap chromium",
        "bwrap --unshare-all --ro-bind / / true",
    ]
    assert "(with sudo -n)" in one_line(r)


@pytest.mark.parametrize("sudo", ["asks for a password", "absent"])
def test_neither_root_nor_sudo_stops_with_the_one_command(machine, sudo):
    machine.user(1000)
    machine.apt()
    if sudo != "absent":
        machine.sudo(works=False)
    r = machine.run("bwrap", "chromium")
    assert r.returncode == 1
    assert one_line(r).endswith("; run: sudo apt-get install -y bubblewrap chromium")
    assert not any(c.startswith("apt-get") for c in machine.calls())


def test_without_apt_it_names_what_is_needed_and_the_fast_lane(machine):
    machine.user(0)
    r = machine.run("bwrap", "chromium")
    assert r.returncode == 1
    line = one_line(r)
    assert "bubblewrap" in line and "chromium" in line and "make test-fast" in line
    assert machine.calls() == []


def test_only_what_is_asked_for_is_installed(machine):
    """``make grade`` asks for bubblewrap alone; a missing browser does not matter there."""
    machine.user(0)
    machine.apt()
    r = machine.run("bwrap")
    assert r.returncode == 0, r.stderr
    assert f"apt-get {INSTALL} bubblewrap" in machine.calls()
    assert not (machine.bin / "chromium").exists()


def test_qlora_course_chromium_stands_for_debians_chromium(machine, tmp_path):
    browser = tmp_path / "chrome"
    browser.write_text(f"#!{BASH}\n")
    browser.chmod(0o755)
    machine.user(0)
    machine.apt()
    r = machine.run("bwrap", "chromium", chromium_env=str(browser))
    assert r.returncode == 0, r.stderr
    assert f"apt-get {INSTALL} bubblewrap" in machine.calls()

    machine.log.write_text("")
    r = machine.run("chromium", chromium_env=str(tmp_path / "no-such-browser"))
    assert r.returncode == 1
    assert "QLORA_COURSE_CHROMIUM" in one_line(r) and "no-such-browser" in r.stderr
    assert machine.calls() == []


def test_a_bwrap_that_cannot_start_a_sandbox_is_reported_with_the_fix(machine):
    machine.stub("bwrap", 'echo "bwrap: No permissions to create new namespace" >&2\nexit 1')
    r = machine.run("bwrap")
    assert r.returncode == 1
    line = one_line(r)
    assert "cannot start a sandbox" in line and "No permissions to create new namespace" in line
    assert "kernel.unprivileged_userns_clone=1" in line


def test_a_failed_apt_install_stops(machine):
    machine.user(0)
    machine.apt(fails=True)
    r = machine.run("chromium")
    assert r.returncode == 1
    assert "apt-get update failed" in r.stderr.splitlines()[-1]


def test_make_wiring_and_ci(tmp_path):
    """``make test`` and ``make grade`` run the check; the lanes that need no system package do not;
    CI installs nothing itself, so it proves the README's path."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")

    def dry(*args: str) -> str:
        env = {**os.environ, "VENV": str(tmp_path / "venv")}  # -n: nothing runs, the stamp is just missing
        r = subprocess.run([make, "-n", "-C", str(ROOT), *args], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "tools/system_deps.sh bwrap chromium" in dry("test")
    assert "tools/system_deps.sh bwrap" in dry("grade", "SUBMISSIONS=x")
    assert "system_deps" not in dry("grade", "SUBMISSIONS=x", "UNSAFE=1")
    for target in ("course", "test-fast", "lint"):
        assert "system_deps" not in dry(target), target
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in ci and "make lint" in ci and "make test" in ci
