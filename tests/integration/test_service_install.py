"""The systemd files and README's "Run it as a service": ``systemd-analyze verify``
passes on the unit, and each of the five steps, as README writes it, runs
against a temporary root (systemd-sysusers/-tmpfiles/systemctl ``--root``,
Postfix's ``postconf -c``), since a test cannot own a machine's /etc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import need_tool

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
UNIT = REPO / "systemd" / "maildesk.service"
INSTALLED_BINARY = "/opt/maildesk/venv/bin/maildesk"
README = (REPO / "README.md").read_text()


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result


def in_readme(line: str) -> None:
    assert line in README, f"README no longer says: {line}"


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", "systemd")
    maildesk = Path(sys.executable).parent / "maildesk"
    assert maildesk.is_file(), "the maildesk command is not installed beside this Python"
    unit = tmp_path / "maildesk.service"
    # verify checks that ExecStart's program exists: point it at this installation.
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(maildesk)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on an unknown key or a bad value, and only warns: any word from it is a failure.
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stderr
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=maildesk", "StateDirectory=maildesk",
                 "ConfigurationDirectory=maildesk", "RuntimeDirectory=maildesk", "CapabilityBoundingSet=\n",
                 "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                 "#AmbientCapabilities=CAP_NET_BIND_SERVICE", f"ExecStart={INSTALLED_BINARY} serve"):
        assert line in text, line


def test_the_readme_steps_run_against_a_temporary_root(tmp_path: Path) -> None:
    sysusers = need_tool("systemd-sysusers", "systemd")
    tmpfiles = need_tool("systemd-tmpfiles", "systemd")
    systemctl = need_tool("systemctl", "systemd")
    postmap = need_tool("postmap", "postfix")
    postconf = need_tool("postconf", "postfix")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)

    # 1. The user.
    in_readme("install -D -m 644 systemd/maildesk.sysusers /usr/lib/sysusers.d/maildesk.conf")
    run("install", "-D", "-m", "644", REPO / "systemd/maildesk.sysusers", root / "usr/lib/sysusers.d/maildesk.conf")
    in_readme("systemd-sysusers maildesk.conf")
    run(sysusers, f"--root={root}", "maildesk.conf")
    passwd = (root / "etc/passwd").read_text().splitlines()
    [user] = [line.split(":") for line in passwd if line.startswith("maildesk:")]
    assert user[5] == "/var/lib/maildesk"
    gid = int(user[3])

    # 2. The directories.
    in_readme("install -D -m 644 systemd/maildesk.tmpfiles /usr/lib/tmpfiles.d/maildesk.conf")
    run("install", "-D", "-m", "644", REPO / "systemd/maildesk.tmpfiles", root / "usr/lib/tmpfiles.d/maildesk.conf")
    in_readme("systemd-tmpfiles --create maildesk.conf")
    run(tmpfiles, f"--root={root}", "--create", "maildesk.conf")
    assert (root / "etc/maildesk").is_dir() and (root / "var/lib/maildesk").is_dir()
    if os.geteuid() == 0:
        assert (root / "etc/maildesk").stat().st_gid == gid
        assert (root / "var/lib/maildesk").stat().st_uid == int(user[2])

    # 3. The config.
    in_readme("install -m 640 -g maildesk maildesk.example.toml /etc/maildesk/maildesk.toml")
    config = root / "etc/maildesk/maildesk.toml"
    group = ["-g", str(gid)] if os.geteuid() == 0 else []  # only root may give a file away
    run("install", "-m", "640", *group, REPO / "maildesk.example.toml", config)
    in_readme("/opt/maildesk/venv/bin/maildesk -c /etc/maildesk/maildesk.toml check-config")
    assert '"addresses"' in run(sys.executable, "-m", "maildesk", "-c", config, "check-config").stdout

    # 4. The unit (enabled; a temporary root has no systemd to start it in).
    in_readme("install -m 644 systemd/maildesk.service /etc/systemd/system/maildesk.service")
    run("install", "-D", "-m", "644", UNIT, root / "etc/systemd/system/maildesk.service")
    in_readme("systemctl enable --now maildesk")
    run(systemctl, f"--root={root}", "enable", "maildesk")
    assert (root / "etc/systemd/system/multi-user.target.wants/maildesk.service").is_symlink()

    # 5. Postfix: the transport line, its map, and main.cf naming it.
    (root / "etc/postfix").mkdir()
    (root / "etc/postfix/main.cf").write_text("")
    line = "support@example.com lmtp:inet:127.0.0.1:2525"
    in_readme(f"echo '{line}' >> /etc/postfix/transport")
    with (root / "etc/postfix/transport").open("a") as transport:
        transport.write(line + "\n")
    in_readme("postmap /etc/postfix/transport")
    run(postmap, root / "etc/postfix/transport")
    in_readme("postconf -e 'transport_maps = hash:/etc/postfix/transport'")
    run(postconf, "-c", root / "etc/postfix", "-e", "transport_maps = hash:/etc/postfix/transport")
    assert "transport_maps = hash:/etc/postfix/transport" in (root / "etc/postfix/main.cf").read_text()
    found = run(postmap, "-q", "support@example.com", f"hash:{root / 'etc/postfix/transport'}").stdout.strip()
    assert found == "lmtp:inet:127.0.0.1:2525"
