"""The README's code blocks run as written, and its `eef` command lines name real commands and options.

What runs is decided by rules that are all visible, here or in the README:

- the language of a fenced block: ``bash``, ``sh``, ``shell`` and ``console`` blocks run command by
  command (a ``console`` block's commands are its ``$ `` lines), ``python`` blocks run as a script,
  ``text``, ``bibtex`` and ``mermaid`` blocks are not code; any other language, or none, fails;
- ``<!-- no-test: why -->`` on the line right above a block: it is not run (it needs the internet,
  data, a GPU or a quarter of an hour), only checked statically;
- ``SLOW``: the sections whose blocks run as ``slow`` tests (they train a model);
- ``STDIN``: what interactive commands read;
- commands that serve until stopped (``eef serve``) are started on a free port, asked for
  ``GET /v1/models`` and stopped.

So a new block either runs or says why not. Each block runs in its own empty directory, its
commands one after another, with the suite's ``eef`` first on ``PATH`` (the README's ``eef`` after its
set-up), one CPU thread per process (fast under load, as ``eef run``'s rollout workers) and no hub
access (the README's quick tour downloads nothing).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
METHOD = ROOT / "docs" / "method.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))  # their blocks need GPUs, data or long runs: parsed, not run
BIN = Path(sys.executable).parent  # the environment the suite runs in, where `eef` is installed

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
TEXT_LANGUAGES = {"text", "bibtex", "mermaid"}
NO_TEST = re.compile(r"^<!--\s*no-test:\s*(?P<why>\S.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<language>[\w+-]*)\s*$")

# Sections (their heading) whose blocks train a model: they run as slow tests.
SLOW = {"Agent core: explore, train, evaluate": "trains the tiny model on a few tasks, rolls it out and serves it"}


def _oracle_actions(env_name: str, task_id: str) -> str:
    """The oracle's actions for a task, one a line: what a person playing it by hand would type."""
    from eef.envs import make

    env = make(env_name)
    env.reset(task_id)
    actions, done = [], False
    while not done:
        actions.append(env.oracle_action())
        done = env.step(actions[-1]).done
    return "\n".join(actions) + "\n"


# Interactive commands and what they read (a callable, computed when the command runs).
STDIN = {"eef env play shop shop_0": lambda: _oracle_actions("shop", "shop_0")}
# Commands that serve until stopped: their first words.
SERVERS = (("eef", "serve"),)
# Shell built-ins whose effect would not reach the next command (each command runs in its own shell).
STATEFUL = {"cd", "export", "source", ".", "pushd", "popd", "alias"}


@dataclass(frozen=True)
class Block:
    path: Path
    heading: str
    line: int  # of the opening fence, from 1
    language: str
    text: str
    no_test: str | None  # the reason given by <!-- no-test: ... -->

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{slug}-L{self.line}"

    @property
    def runs(self) -> bool:
        return self.no_test is None and self.language not in TEXT_LANGUAGES


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with its section heading and no-test marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, heading, i = [], "(top)", 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
        elif fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            assert end is not None, f"{path.name}:{i + 1}: a code block is never closed"
            marker = NO_TEST.match(lines[i - 1].strip()) if i else None
            text = "\n".join(lines[i + 1 : end])
            blocks.append(Block(path, heading, i + 1, fence["language"], text, marker["why"] if marker else None))
            i = end
        i += 1
    return blocks


def command_lines(block: Block) -> list[str]:
    """A shell block's commands: continuation lines joined, blank and comment lines dropped."""
    commands, pending = [], ""
    for raw in block.text.splitlines():
        line = raw
        if block.language == "console" and not pending:
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def argv_segments(command: str) -> list[list[str]]:
    """The simple commands of a command line (split at |, &&, ||, ; and &), comments dropped, leading
    VAR=value assignments dropped."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token in {"|", "||", "&&", ";", "&"}:
            segments.append([])
        else:
            segments[-1].append(token)
    out = []
    for segment in segments:
        while segment and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", segment[0]):
            segment = segment[1:]
        if segment:
            out.append(segment)
    return out


def _eef_command():
    import typer

    from eef.cli import app

    return typer.main.get_command(app)


def _subcommands(command) -> dict | None:
    """A group's commands by name, None for a command (typer may bring its own copy of click, so
    groups are told by what they have, not by class)."""
    commands = getattr(command, "commands", None)
    return commands if isinstance(commands, dict) else None


def eef_parse_error(args: list[str]) -> str | None:
    """Why `eef ARGS` would not parse (unknown command or option, missing or ill-typed value), or None.

    Parses as the command line would be parsed, without running the command.
    """
    command, path = _eef_command(), ["eef"]
    while (subcommands := _subcommands(command)) is not None:
        if not args or args[0].startswith("-"):  # `eef --version`; a group's own options, then nothing
            error = _parse_error(command, path, args)
            return error if error != "parsed" else f"{' '.join(path)}: names no command"
        if args[0] not in subcommands:
            return f"{' '.join(path)}: no command {args[0]!r} (known: {', '.join(sorted(subcommands))})"
        command, path, args = subcommands[args[0]], [*path, args[0]], args[1:]
    error = _parse_error(command, path, args)
    return None if error == "parsed" else error


def _parse_error(command, path: list[str], args: list[str]) -> str | None:
    """click's usage error for ``args``; None when an eager option (--help, --version) ended the
    parse; "parsed" when they parse."""
    try:
        with command.make_context(" ".join(path), list(args)):
            return "parsed"
    except Exception as e:
        if type(e).__name__ == "Exit":
            return None
        if hasattr(e, "format_message"):  # click's usage errors
            return f"{' '.join(path)}: {e.format_message() or 'names no command'}"
        raise


def _is_eef(argv: list[str]) -> bool:
    return Path(argv[0]).name == "eef"


def static_problems(command: str) -> list[str]:
    """What is wrong with a command line without running it: eef's commands and options parse,
    `make` targets exist, scripts exist and know the options they are given."""
    problems = []
    makefile = (ROOT / "Makefile").read_text()
    for argv in argv_segments(command):
        if _is_eef(argv):
            error = eef_parse_error(argv[1:])
            if error:
                problems.append(error)
        elif argv[0] == "make":
            problems += [
                f"make: no target {t!r}"
                for t in argv[1:]
                if not t.startswith("-") and "=" not in t and not re.search(rf"^{re.escape(t)}:", makefile, re.M)
            ]
        elif Path(argv[0]).name.startswith("python") and len(argv) > 1 and argv[1].endswith(".py"):
            script = ROOT / argv[1]
            if not script.is_file():
                problems.append(f"{argv[1]}: no such script")
                continue
            source = script.read_text()
            for module in re.findall(r"^(?:from|import)\s+(\w+)", source, re.M):  # its own helpers
                if (script.parent / f"{module}.py").is_file():
                    source += (script.parent / f"{module}.py").read_text()
            problems += [
                f"{argv[1]}: knows no option {a.split('=')[0]}"
                for a in argv[2:]
                if a.startswith("--") and f'"{a.split("=")[0]}"' not in source
            ]
    return problems


BLOCKS = read_blocks(README)


def _params(select, slow: bool = True):
    return [
        pytest.param(b, id=b.id, marks=[pytest.mark.slow] if slow and b.heading in SLOW else [])
        for b in BLOCKS
        if select(b)
    ]


# --- the rules themselves -------------------------------------------------------------------


def test_every_block_runs_or_says_why_not():
    for block in BLOCKS:
        assert block.language in SHELL_LANGUAGES | TEXT_LANGUAGES | {"python"}, (
            f"README.md:{block.line}: a block in {block.language or 'no language'!r}: name one of "
            f"{sorted(SHELL_LANGUAGES | TEXT_LANGUAGES | {'python'})} (tests/test_readme_blocks.py)"
        )
    lines = README.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("<!--") and "no-test" in line:
            assert NO_TEST.match(line.strip()), f"README.md:{i + 1}: write it as <!-- no-test: why -->"
            assert i + 1 < len(lines) and FENCE.match(lines[i + 1]), (
                f"README.md:{i + 1}: a no-test marker must stand right above the block it is for"
            )
    assert any(b.runs for b in BLOCKS)


def test_the_rules_name_what_the_readme_has():
    headings = {b.heading for b in BLOCKS if b.runs}
    assert set(SLOW) <= headings, f"SLOW names sections without a block that runs: {set(SLOW) - headings}"
    commands = {c for b in BLOCKS if b.runs and b.language in SHELL_LANGUAGES for c in command_lines(b)}
    stale = [key for key in STDIN if not any(c.startswith(key) for c in commands)]
    assert not stale, f"STDIN names commands the README no longer runs: {stale}"


# --- every eef command line names real commands and options ---------------------------------


@pytest.mark.parametrize(
    "block",
    _params(lambda b: b.language in SHELL_LANGUAGES, slow=False),
)
def test_command_lines_parse(block):
    problems = [f"{c}\n    {p}" for c in command_lines(block) for p in static_problems(c)]
    assert not problems, f"README.md:{block.line}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_command_lines_of_the_docs_parse(path):
    problems = [
        f"{path.name}:{block.line}: {c}\n    {p}"
        for block in read_blocks(path)
        if block.language in SHELL_LANGUAGES
        for c in command_lines(block)
        for p in static_problems(c)
    ]
    assert not problems, "\n".join(problems)


def _inline_eef(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # fenced blocks are checked whole above
    return [" ".join(span.split()) for span in re.findall(r"`(eef [^`]+)`", text)]


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_inline_eef_commands_exist(path):
    """`eef data check`, `eef run --resume` in the prose: the commands and options exist (the
    arguments may be placeholders, so they are not parsed)."""
    problems = []
    spans = _inline_eef(path)
    assert spans
    for span in spans:
        words = shlex.split(span)[1:]
        commands = [_eef_command()]
        while words and not words[0].startswith("-") and (subcommands := _subcommands(commands[0])) is not None:
            names = words[0].split("/")  # `eef explore/train/eval/serve`
            if not all(n in subcommands for n in names):
                problems.append(f"`{span}`: no command {words[0]!r}")
                break
            commands, words = [subcommands[n] for n in names], words[1:]
        for command in commands:
            known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            problems += [
                f"`{span}`: no option {w.split('=')[0]}"
                for w in words
                if w.startswith("-") and w != "..." and w.split("=")[0] not in known
            ]
    assert not problems, "\n".join(problems)


# --- the blocks run ---------------------------------------------------------------------------


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.pop("EEF_API_KEY", None)  # `eef serve` would ask every request for it
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 180.0) -> None:
    """Start a server as written but on a free port, wait until it lists a model, stop it."""
    port = _free_port()
    argv = list(argv)
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    else:
        argv += ["--port", str(port)]
    log = cwd / f"server-{port}.log"
    with log.open("w") as out:
        server = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert server.poll() is None, f"{shlex.join(argv)} ended ({server.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{shlex.join(argv)}: no answer in {timeout} s:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as reply:
                    models = json.load(reply)
                break
            except OSError:
                time.sleep(0.5)
        assert models["data"], models
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _run_shell_block(block: Block, cwd: Path) -> None:
    env = _environment()
    for command in command_lines(block):
        segments = argv_segments(command)
        stateful = [s[0] for s in segments if s[0] in STATEFUL]
        assert not stateful, f"README.md:{block.line}: {command}: {stateful[0]} would not reach the next command"
        if len(segments) == 1 and tuple(segments[0][:2]) in SERVERS:
            segments[0][0] = str(BIN / segments[0][0])
            _serve(segments[0], cwd, env)
            continue
        stdin = next((feed() for key, feed in STDIN.items() if command.startswith(key)), "")
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, (
            f"README.md:{block.line}: `{command}` exited {result.returncode}:\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )


@pytest.mark.parametrize("block", _params(lambda b: b.runs))
def test_block_runs(block, tmp_path):
    if block.language == "python":
        script = tmp_path / "block.py"
        script.write_text(block.text + "\n")
        env = _environment()
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
        )
        assert result.returncode == 0, f"README.md:{block.line}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    else:
        _run_shell_block(block, tmp_path)


def test_a_played_episode_is_won(tmp_path):
    """What STDIN feeds `eef env play` wins the task, so the interactive line is really played."""
    result = subprocess.run(
        ["bash", "-c", "eef env play shop shop_0"],
        cwd=tmp_path,
        env=_environment(),
        input=STDIN["eef env play shop shop_0"](),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "Reward: 1.0 (success)" in result.stdout, result.stdout + result.stderr


# --- the citation, the links, the method page ---------------------------------------------------


def _citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_citation_file_is_cff_1_2_for_this_version():
    cff = _citation()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # the keys CFF 1.2.0 requires
        assert cff.get(key), f"CITATION.cff: {key} is required"
    assert all(a.get("name") or a.get("family-names") for a in cff["authors"])
    assert cff.get("type", "software") == "software"
    assert str(cff["version"]) == project["version"]
    assert cff["license"] == project["license"] == "Apache-2.0"


def _paper() -> dict:
    (paper,) = [r for r in _citation()["references"] if "2504.13145" in json.dumps(r, default=str)]
    return paper


def test_citation_lists_the_paper():
    paper = _paper()
    assert paper["title"] == "Exploring Expert Failures Improves LLM Agent Tuning"
    assert paper["year"] == 2025 and paper["authors"][0]["family-names"] == "Lan"
    assert all(a.get("family-names") and a.get("given-names") for a in paper["authors"])


def test_readme_bibtex_agrees_with_the_citation_file():
    (bibtex,) = [b.text for b in BLOCKS if b.language == "bibtex"]
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", bibtex, re.M))
    paper = _paper()
    assert re.sub(r"[{}]", "", fields["title"]) == paper["title"]
    assert [a.split(",")[0].strip() for a in fields["author"].split(" and ")] == [
        a["family-names"] for a in paper["authors"]
    ]
    assert "2504.13145" in fields["journal"] and fields["year"] == str(paper["year"])


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    headings = re.findall(r"^#+\s+(.*)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{target}: no heading with that anchor in {resolved.name}")
    assert not problems, f"{path.name}: " + "; ".join(problems)


# Phrases that pointed at a method description that is not part of the repository; the method is
# described in docs/method.md.
UNSHIPPED_SPEC = re.compile(
    r"\bthe spec\b|\bspec's\b|\bspec (?:sections?|table|\d)|\(spec[ )]|\(spec: \"|shared/spec|\bEEF\.md"
)


def test_no_reference_to_an_unshipped_spec():
    files = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "src").rglob("*.py"))]
    files += sorted((ROOT / "src").rglob("*.yaml"))
    problems = [
        f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
        for f in files
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if UNSHIPPED_SPEC.search(line)
    ]
    assert not problems, "point these at docs/method.md:\n" + "\n".join(problems)


def test_method_page_covers_the_methods_and_the_glossary():
    text = METHOD.read_text(encoding="utf-8")
    for heading in ("SFT-POS", "RFT", "RFT xK", "EEF", "ETO", "Glossary", "Figure"):
        assert re.search(rf"^#+ .*{re.escape(heading)}", text, re.M), heading
    for term in ("`s0`", "`D_e`", "`M`", "important state", "recovery state", "beneficial", "harmful", "repository"):
        assert term in text, term
    assert "```mermaid" in text
    from eef.methods.settings import MethodsSection

    keys = {k.rstrip(".") for k in re.findall(r"`(methods\.[a-z_.]+)`", text)}
    for key in keys:  # every methods.* key the page names exists
        section, *rest = key.split(".")[1:]
        value = getattr(MethodsSection(), section)
        for name in rest:
            value = getattr(value, name)
