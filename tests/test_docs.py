"""The documentation runs, so it cannot drift from the code.

* Every ```python block of README.md and docs/**/*.md runs, in order, one namespace per file
  (a later block may use what an earlier one defined), in a fresh working directory. A block
  preceded by ``<!-- not-run: REASON -->`` (it needs a broker or a network) is only compiled.
* Every ``deerflow ...`` command in a shell block (docs, README, compose/README.md) parses
  with the real command line: the command exists and so does every option.
* Every guide links to its example in examples/, and some test runs that example.
* Relative links point at files that exist.
* The README's webhook example answers the README's own ``curl`` with a completed run.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deerflow.cli._loader import load_module_workflows
from deerflow.serve import serve
from tests.cli_lines import deerflow_invocations, parse_deerflow

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_DOCS = [*DOCS, ROOT / "compose" / "README.md"]
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
FENCE = re.compile(
    r"(?:<!--\s*not-run:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?"
    r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```",
    re.S | re.M,
)
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")
CLEAN_ENV = (
    "DEERFLOW_STORE",
    "DEERFLOW_PREFIX",
    "DEERFLOW_API_KEYS",
    "DEERFLOW_WEBHOOK_SECRETS",
    "DEERFLOW_CONFIG",
    "DEERFLOW_HANDLERS",
    "DEERFLOW_LOG_FORMAT",
    "DEERFLOW_MAX_RUNNING_RUNS",
    "DEERFLOW_BLOBS",
    "DEERFLOW_PAYLOAD_THRESHOLD",
)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int
    not_run: str | None


def blocks(path: Path, *langs: str) -> list[Block]:
    text = path.read_text()
    return [
        Block(m["lang"], m["code"], text.count("\n", 0, m.start("code")) + 1, m["reason"])
        for m in FENCE.finditer(text)
        if m["lang"] in langs
    ]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh working directory and no deerflow settings leaking in from outside."""
    monkeypatch.chdir(tmp_path)
    for var in CLEAN_ENV:
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.mark.parametrize("doc", [d for d in DOCS if blocks(d, "python")], ids=name)
def test_python_blocks_run_in_order(doc: Path, clean_env: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"doc_{doc.stem.replace('-', '_')}"}
    for block in blocks(doc, "python"):
        code = compile(block.code, f"{name(doc)}:{block.line}", "exec")
        if block.not_run is None:
            exec(code, namespace)


def test_blocks_that_do_not_run_say_why_and_are_rare() -> None:
    skipped = [
        (name(d), b.line, b.not_run)
        for d in DOCS
        for b in blocks(d, "python")
        if b.not_run is not None
    ]
    ran = sum(1 for d in DOCS for b in blocks(d, "python") if b.not_run is None)
    assert all(reason for _, _, reason in skipped), skipped
    assert len(skipped) * 5 <= ran, skipped


def test_a_not_run_marker_applies_to_the_next_block_only(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- not-run: needs Kafka -->\n```python\nconnect()\n```\n\n"
        "```python\nx = 1\n```\n\n```bash\ndeerflow runs list\n```\n"
    )
    found = blocks(page, "python")
    assert [(b.code, b.not_run) for b in found] == [
        ("connect()\n", "needs Kafka"),
        ("x = 1\n", None),
    ]
    assert [b.line for b in found] == [5, 9]


@pytest.mark.parametrize(
    "doc", [d for d in SHELL_DOCS if blocks(d, "bash", "sh", "shell")], ids=name
)
def test_every_deerflow_command_shown_exists(doc: Path) -> None:
    commands = [
        (b.line, args)
        for b in blocks(doc, "bash", "sh", "shell")
        for args in deerflow_invocations(b.code)
    ]
    for line, args in commands:
        try:
            parse_deerflow(args)
        except Exception as exc:  # the CLI's usage errors
            pytest.fail(f"{name(doc)}:{line}: deerflow {shlex.join(args)}: {exc}")


def test_every_guide_points_to_an_example_that_a_test_runs() -> None:
    assert len(GUIDES) >= 11
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    for guide in GUIDES:
        examples = re.findall(r"\(\.\./\.\./examples/([\w]+\.py)\)", guide.read_text())
        assert examples, f"{name(guide)} links to no example"
        for example in examples:
            assert (ROOT / "examples" / example).is_file(), (name(guide), example)
            assert re.search(rf"\b{re.escape(example)}\b|\"{example[:-3]}\"", tests), (
                f"no test runs examples/{example}"
            )


def test_every_guide_has_a_block_that_runs() -> None:
    for guide in GUIDES:
        assert any(b.not_run is None for b in blocks(guide, "python")), name(guide)


@pytest.mark.parametrize("doc", SHELL_DOCS, ids=name)
def test_relative_links_resolve(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{name(doc)}: broken link {target}"


# -- the README's webhook example, served and called as the README shows ----------------------


def readme_curl() -> tuple[str, dict[str, str], bytes]:
    """Path, headers and body of the first ``curl`` in the README."""
    for block in blocks(ROOT / "README.md", "bash"):
        joined = block.code.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line)
            if words[:1] == ["curl"]:
                url = next(w for w in words if "localhost:" in w)
                headers = dict(
                    h.split(": ", 1) for i, h in enumerate(words) if i and words[i - 1] == "-H"
                )
                body = words[words.index("-d") + 1].encode()
                return "/" + url.split("/", 1)[1], headers, body
    raise AssertionError("the README shows no curl")


async def test_the_readme_webhook_example_answers_its_own_curl(clean_env: Path) -> None:
    (app,) = [b.code for b in blocks(ROOT / "README.md", "python") if "add_trigger" in b.code]
    (clean_env / "app.py").write_text(app)
    workflows, _ = load_module_workflows(str(clean_env / "app.py"))
    path, headers, body = readme_curl()
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(
            workflows, store="memory://readme-webhook", port=0, stop=stop, on_ready=ready.set_result
        )
    )
    try:
        url = await asyncio.wait_for(ready, 30)
        async with aiohttp.ClientSession() as http:
            answers = []
            for _ in range(2):  # the same Idempotency-Key twice: one run
                async with http.post(url + path, data=body, headers=headers) as reply:
                    assert reply.status == 202
                    answers.append(await reply.json())
            assert answers[0]["run_id"] == answers[1]["run_id"]
            status = await poll(http, answers[0]["status_url"])
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)
    assert status["status"] == "completed"
    assert status["output"]["total"] == 2 * 9.5 + 4.0


async def poll(http: aiohttp.ClientSession, status_url: str, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        async with http.get(status_url) as reply:
            status = await reply.json()
        if status["status"] != "running" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)
