"""`python -m tests.demo` (`make demo`) tells the whole story, shows no secret, leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import demo

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT = 120


def run_demo(keep: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    args = [sys.executable, "-m", "tests.demo", "--keep-data", str(keep)]
    with subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT)
        except subprocess.TimeoutExpired:
            # SIGTERM, not the SIGKILL of subprocess.run: the demo must get to stop its children.
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=60)
            pytest.fail(f"the demo took over {DEMO_TIMEOUT} s:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def accepts_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(f"{entry.name}: {command}")
    return found


@pytest.mark.timeout(DEMO_TIMEOUT + 90)
def test_demo_walks_through_the_first_day_and_leaves_nothing_running(tmp_path: Path) -> None:
    keep = (tmp_path / "demo").resolve()
    result = run_demo(keep)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.stderr == ""

    assert re.search(
        r"^ +webhook URL: http://127\.0\.0\.1:\d+/twilio/[\w-]{20,}/inbound$",
        result.stdout,
        re.MULTILINE,
    ), output
    received = re.search(
        r"^ +sink\| message\.received evt_\w+ signature_ok=True\n"
        r" +sink\| +extensions=\['101'\] status=received from=\+15557654321 to=\+15551230001\n"
        r" +sink\| +body='(?P<body>[^']*)'$",
        result.stdout,
        re.MULTILINE,
    )
    assert received is not None, output
    assert received["body"] == demo.INBOUND_TEXT
    assert re.search(r"From=\+15551230001 +To=\+15557654321", result.stdout), output
    assert re.search(r"^ +← 200 status: delivered, Twilio SID SM\w{32}$", result.stdout, re.M)
    assert re.search(r"sink\| +extensions=\['101'\] status=delivered ", result.stdout), output
    assert re.search(r"^ +now: \+15551230001 ok$", result.stdout, re.M), output
    assert re.search(r"^ +cause: scheme_mismatch$", result.stdout, re.M), output
    assert "Twilio signed" in result.stdout
    assert re.search(r"https://127\.0\.0\.1:\d+/twilio/[\w-]+/inbound;", result.stdout), output
    assert "all stopped" in result.stdout

    for secret in demo.SECRETS:
        assert secret not in output
    assert demo.HIDDEN in result.stdout

    ports = {int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", result.stdout)}
    assert len(ports) == 4, "internal, public, fake Twilio and sink"
    assert [port for port in ports if accepts_connections(port)] == []
    assert processes_mentioning(str(keep)) == [], "the embedded PostgreSQL must be stopped"
    assert '"db.embedded_stopped"' in (keep / "daemon.log").read_text()
