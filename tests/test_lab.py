"""`make lab`: JupyterLab serves the book's chapters and runs them with the venv's kernel.

The server is started with the very line `make lab` runs (its recipe, as `make -n` prints it,
without the install and data prerequisites), plus a port, a token and no browser."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
START_S = 60  # bound on the server's start and on the kernel's answer


def lab_command() -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    lines = subprocess.run(["make", "-s", "--no-print-directory", "-n", "-o", "install", "-o", "data", "lab"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert len(lines) == 1, f"`make lab` should run one line, not {lines}"
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int, token: str, log: Path):
        self.base, self.token, self.log = f"127.0.0.1:{port}", token, log

    def api(self, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(f"http://{self.base}/api/{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def lab(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    # The user's own Jupyter folders are kept out; the data folder holds a decoy user-level `python3`
    # kernelspec that cannot start, which the venv's kernelspec must win over.
    decoy = tmp_path / "data" / "kernels" / "python3"
    decoy.mkdir(parents=True)
    (decoy / "kernel.json").write_text(json.dumps({"argv": ["false", "{connection_file}"],
                                                   "display_name": "decoy", "language": "python"}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    command = (f"{lab_command()} --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port}"
               f" --ServerApp.port_retries=0 --IdentityProvider.token={token}")
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(port, token, log)
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert process.poll() is None, f"JupyterLab exited ({process.returncode}):\n{server.output()[-3000:]}"
            assert time.monotonic() < deadline, f"JupyterLab not up in {START_S} s:\n{server.output()[-3000:]}"
            try:
                server.api("GET", "status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        yield server
    finally:
        try:
            server.api("POST", "shutdown")  # shuts the kernels down too
            process.wait(timeout=20)
        except Exception:
            pass
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_code(server: Server, kernel_id: str, code: str) -> str:
    """What `code` prints on the kernel, over the kernel's websocket as JupyterLab talks to it."""
    import websocket  # websocket-client, a dependency of jupyter_server

    ws = websocket.create_connection(f"ws://{server.base}/api/kernels/{kernel_id}/channels",
                                     header=[f"Authorization: token {server.token}"], timeout=START_S)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        printed, deadline = [], time.monotonic() + START_S
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                printed.append(content["text"])
            elif kind == "error":
                pytest.fail(f"the kernel raised {content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(printed)
        pytest.fail(f"no answer from the kernel in {START_S} s")
    finally:
        ws.close()


def test_make_lab_serves_every_chapter_and_runs_it_on_the_venvs_kernel(lab):
    chapters = sorted(p.name for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
    assert chapters
    listing = lab.api("GET", "contents?content=1")
    served = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
    assert set(chapters) <= served, f"not served: {sorted(set(chapters) - served)}"

    # Opening a chapter starts its kernel (the notebooks' kernelspec is python3) in book/, as papermill runs it.
    session = lab.api("POST", "sessions", {"path": chapters[0], "type": "notebook", "name": chapters[0],
                                           "kernel": {"name": "python3"}})
    printed = run_code(lab, session["kernel"]["id"], "import os, sys\nprint(sys.prefix)\nprint(os.getcwd())")
    prefix, cwd = printed.split("\n")[:2]
    assert Path(prefix).resolve() == (ROOT / ".venv").resolve(), f"the kernel runs {prefix}, not the venv"
    assert Path(cwd).resolve() == BOOK.resolve()
    assert "without encryption" not in lab.output()
