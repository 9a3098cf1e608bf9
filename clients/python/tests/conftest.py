"""A real `naac node` for the tests: started once, on a free port, with a data dir of its
own, and stopped at the end. `NAAC_BIN` names the binary (default: the workspace's debug
build, under `$CARGO_TARGET_DIR` or `target/`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from naac import Client, NaacError

REPO = Path(__file__).resolve().parents[3]


def naac_bin() -> str:
    if os.environ.get("NAAC_BIN"):
        return os.environ["NAAC_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    built = target / "debug" / "naac"
    if built.exists():
        return str(built)
    found = shutil.which("naac")
    if found is None:
        pytest.fail("no naac binary: build it (`cargo build -p naac`) or set NAAC_BIN")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Node:
    addr: str
    home: Path
    client: Client


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    home = tmp_path_factory.mktemp("home")
    addr = f"127.0.0.1:{free_port()}"
    log = open(home / "node.log", "wb")
    env = dict(os.environ, NAAC_HOME=str(home))
    env.pop("RUST_LOG", None)
    proc = subprocess.Popen(
        [naac_bin(), "node", "--api", addr, "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        client = None
        while client is None:
            if proc.poll() is not None:
                pytest.fail(f"naac node exited ({proc.returncode}): {(home / 'node.log').read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"naac node did not answer in 60 s: {(home / 'node.log').read_text()}")
            try:
                c = Client(addr, home=home)
                c.node()
                client = c
            except NaacError:
                time.sleep(0.1)
        yield Node(addr, home, client)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def pi_job(dir: Path, tasks: int = 4, samples: int = 200_000, name: str = "pi") -> Path:
    """The pi example, made small: `tasks` tasks of `samples` samples."""
    dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "examples" / "pi" / "pi.wasm", dir / "pi.wasm")
    (dir / "job.toml").write_text(
        f"""name = "{name}"
module = "pi.wasm"
args = ["{{seed}}", "{{samples}}"]

[sweep]
seed = {{ from = 0, to = {tasks} }}
samples = [{samples}]

[limits]
fuel = 50_000_000_000

[reduce]
args = ["reduce"]
"""
    )
    return dir / "job.toml"
