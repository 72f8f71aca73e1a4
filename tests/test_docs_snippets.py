"""The README and docs work to the letter: their runnable snippets are extracted and run.

A fenced block preceded by ``<!-- runnable: SESSION [ORDER] -->`` is runnable. Blocks of one
session share a working folder, environment variables and (Python) a namespace; they run by
ORDER (default 0), then in document order.

* ```` ```console ````: ``$ command`` lines run in bash; the lines after a command are its
  (abridged) output: each must match a line of the real output, whitespace-insensitive, with
  ``...`` standing for anything. A command must exit 0 unless the next command is
  ``echo $?``, whose expected output is the exit code. ``mock-ci-server`` is started in the
  background; ``<the URL it printed>`` / ``<the token it printed>`` stand for what it printed.
  ``export NAME=value`` sets a variable for the rest of the session.
* ```` ```python ````: executed in the session's namespace (in its folder, with its variables).
* ```` ```python ```` marked ``pytest``: written to a test file and run with pytest (the
  package's fixtures are a pytest plugin).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
MARKER = re.compile(r"<!--\s*runnable:\s*(?P<session>[\w-]+)(?:\s+(?P<order>\d+))?\s*-->")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")


@dataclass
class Block:
    path: Path
    line: int
    session: str
    order: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def runnable_blocks() -> list[Block]:
    blocks: list[Block] = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            marker = MARKER.search(lines[index])
            if marker and index + 1 < len(lines) and FENCE.match(lines[index + 1]):
                fence = FENCE.match(lines[index + 1])
                assert fence is not None
                end = index + 2
                while end < len(lines) and lines[end].strip() != "```":
                    end += 1
                blocks.append(
                    Block(
                        path,
                        index + 2,
                        marker["session"],
                        int(marker["order"] or 0),
                        fence["lang"],
                        "\n".join(lines[index + 2 : end]),
                    )
                )
                index = end
            index += 1
    return blocks


BLOCKS = runnable_blocks()
SESSIONS = sorted({b.session for b in BLOCKS})


@dataclass
class Step:
    command: str
    expected: list[str]
    line: int


def console_steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    pending: list[str] = []
    for offset, raw in enumerate(block.text.splitlines()):
        if pending:  # a command continued with a trailing backslash
            pending.append(raw)
            if not raw.rstrip().endswith("\\"):
                steps[-1].command = "\n".join(pending)
                pending = []
            continue
        if raw.startswith("$ "):
            steps.append(Step(raw[2:], [], block.line + offset))
            if raw.rstrip().endswith("\\"):
                pending = [raw[2:]]
        elif steps and raw.strip():
            steps[-1].expected.append(raw)
    return steps


def pattern(expected: str) -> re.Pattern[str]:
    """An expected output line as a regex: whitespace-insensitive, ``...`` = anything."""
    pieces = []
    for part in expected.strip().split("..."):
        core = r"\s+".join(re.escape(word) for word in part.split())
        if core and part[:1].isspace():
            core = r"\s*" + core
        if core and part[-1:].isspace():
            core += r"\s*"
        pieces.append(core)
    return re.compile(".*".join(pieces))


@dataclass
class Session:
    folder: Path
    env: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    namespace: dict[str, object] = field(default_factory=dict)
    last_rc: int = 0
    last_output: str = ""

    def substitute(self, text: str) -> str:
        for placeholder, value in self.values.items():
            text = text.replace(placeholder, value)
        return text

    def close(self) -> None:
        for server in self.servers:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                server.kill()


def start_simulator(session: Session, command: str) -> str:
    expanded = re.sub(r"\$(\w+)", lambda v: session.env.get(v[1], ""), command.split("#", 1)[0])
    args = shlex.split(expanded)
    env = dict(session.env)
    while re.match(r"^\w+=", args[0]):  # leading VAR=value assignments, as the shell reads them
        name, _, value = args.pop(0).partition("=")
        env[name] = value
    args[0] = str(BIN / args[0])
    server = subprocess.Popen(
        args,
        cwd=session.folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    session.servers.append(server)
    printed: list[str] = []
    deadline = time.monotonic() + 60
    assert server.stdout is not None
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        printed.append(line)
        token = re.search(r"^\s*token\s+(\S+)\s+\(generated", line)
        if token:
            session.values["<the token it printed>"] = token[1]
        url = re.search(r"serving on (http://\S+)", line)
        if url:
            session.values["<the URL it printed>"] = url[1]
            return "".join(printed)
    raise AssertionError(f"mock-ci-server did not start: {''.join(printed)}")


def _bare(command: str) -> str:
    """The command without a trailing ``# comment``."""
    return command.split(" #", 1)[0].strip()


def run_console(session: Session, block: Block) -> None:
    steps = console_steps(block)
    for index, step in enumerate(steps):
        command = session.substitute(step.command)
        where = f"{block.path.name}:{step.line}: $ {step.command}"
        if re.match(r"^(\w+=\S+\s+)*mock-ci-server", command):
            output, rc = start_simulator(session, command), 0
        elif _bare(command) == "echo $?":
            output, rc = f"{session.last_rc}\n", 0
        elif (export := re.match(r"^export (\w+)=(\S*)\s*(#.*)?$", command)) is not None:
            value = re.sub(r"\$(\w+)", lambda v: session.env.get(v[1], ""), export[2])
            session.env[export[1]] = value
            output, rc = "", 0
        else:
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=session.folder,
                env=session.env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            output, rc = done.stdout + done.stderr, done.returncode
        following = _bare(steps[index + 1].command) if index + 1 < len(steps) else ""
        if following != "echo $?":
            assert rc == 0, f"{where}\nexit code {rc}:\n{output}"
        session.last_rc, session.last_output = rc, output
        actual = output.splitlines()
        for expected in step.expected:
            wanted = pattern(session.substitute(expected))
            assert any(wanted.search(line) for line in actual), (
                f"{where}\nexpected a line like: {expected}\ngot:\n{output}"
            )


def run_python(session: Session, block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(session.folder)
    for name, value in session.env.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    code = compile(session.substitute(block.text), block.where, "exec")
    exec(code, session.namespace)  # noqa: S102 - the documented snippet


def run_pytest(session: Session, block: Block) -> None:
    test_file = session.folder / f"test_snippet_{block.line}.py"
    test_file.write_text(block.text + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=session.folder,
        env=session.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{block.where}: the snippet's test failed:\n{done.stdout}"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GROUPON_", "GPN_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CI_CONNECTOR_CONFIG", None)
    env["COLUMNS"] = "400"  # whole table rows, as a wide terminal shows them
    made = Session(tmp_path, env)
    yield made
    made.close()


def test_docs_mark_their_walkthroughs_runnable() -> None:
    assert "walkthrough" in SESSIONS
    walkthrough = [b for b in BLOCKS if b.session == "walkthrough"]
    assert {b.lang for b in walkthrough} >= {"console", "python"}


@pytest.mark.socket
@pytest.mark.parametrize("name", SESSIONS)
def test_snippets_run_as_written(
    name: str, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = sorted(
        (b for b in BLOCKS if b.session == name), key=lambda b: (b.order, BLOCKS.index(b))
    )
    for block in blocks:
        if name.startswith("pytest"):
            run_pytest(session, block)
        elif block.lang == "console":
            run_console(session, block)
        elif block.lang == "python":
            run_python(session, block, monkeypatch)
        else:
            raise AssertionError(f"{block.where}: runnable block of unknown kind {block.lang!r}")
