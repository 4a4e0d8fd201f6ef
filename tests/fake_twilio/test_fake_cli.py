"""The `fake-twilio` CLI hook: options, serving until SIGTERM, and a clear failure to listen."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from bridge.fake_twilio import add_arguments, run
from tests.fake_twilio.helpers import basic

REPO = Path(__file__).resolve().parents[2]
SID = "AC" + "34" * 16
TOKEN = "e" * 32
NUMBER = "+15551230001"
SCRIPT = (
    "import argparse, sys\n"
    "from bridge.fake_twilio import add_arguments, run\n"
    "parser = argparse.ArgumentParser()\n"
    "add_arguments(parser)\n"
    "sys.exit(run(parser.parse_args(sys.argv[1:])))\n"
)


def test_arguments_and_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args([])
    custom = parser.parse_args(
        ["--port", "9000", "--callback-delay", "0.1", "--fetch-media", "--number", NUMBER]
    )
    assert (defaults.host, defaults.port, defaults.callback_delay) == ("127.0.0.1", 8089, 0.5)
    assert defaults.account_sid is None and defaults.fetch_media is False
    assert defaults.number == []
    assert (custom.port, custom.callback_delay, custom.fetch_media) == (9000, 0.1, True)
    assert custom.number == [NUMBER]


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_serves_the_registered_account_until_sigterm() -> None:
    process = await start(
        "--port", "0", "--account-sid", SID, "--auth-token", TOKEN, "--number", NUMBER
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, "the fake exited before listening"
                if match := re.search(r"listening base_url=(\S+) account_sid=(\S+)", line):
                    break
        base_url, account_sid = match.groups()
        assert account_sid == SID
        async with aiohttp.ClientSession() as http:
            url = f"{base_url}/2010-04-01/Accounts/{SID}.json"
            async with http.get(url, headers=basic(SID, TOKEN)) as response:
                assert response.status == 200
            async with http.get(url, headers=basic(SID, "nope")) as response:
                assert response.status == 401
            numbers = f"{base_url}/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json"
            async with http.get(numbers, headers=basic(SID, TOKEN)) as response:
                listed = (await response.json())["incoming_phone_numbers"]
        assert [n["phone_number"] for n in listed] == [NUMBER]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0
    assert TOKEN not in output.decode()
    assert "fake_twilio.api GET" in output.decode()
    assert f"fake_twilio.number phone_number={NUMBER} sid=PN" in output.decode()


@pytest.mark.parametrize(
    ("numbers", "shown"),
    [(["555-0100"], "555-0100"), ([NUMBER, NUMBER], "a number given twice")],
)
def test_invalid_numbers_exit_2_before_listening(
    numbers: list[str], shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--port", "0", *(f"--number={n}" for n in numbers)])

    assert run(args) == 2
    assert f"--number takes distinct E.164 numbers ({shown})" in capsys.readouterr().err


async def test_busy_port_exits_1_with_a_clear_message() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await start("--port", str(port))
        _, errors = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in errors.decode()
