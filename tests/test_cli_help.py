"""What `eef ... --help` says holds: it names only options of its own command, and every default
that differs from eef run's default config says so."""

import re

import pytest
import typer

from eef.cli import app
from eef.config import DEFAULT_RUN_CONFIG, load_config

NOTE = re.compile(r"eef run's default config: ([^);,\s]+)")
# A command's options and the run config sections that hold the same settings, looked up by name.
RUN_SECTIONS = {
    "train": ("train",),
    "explore": ("rollout", "model"),
    "eval": ("eval", "rollout", "model"),
    "model init": ("model.tiny",),
}


def _commands(command=None, path=()):
    """(path, command) of every command under the ``eef`` app."""
    command = command or typer.main.get_command(app)
    if not hasattr(command, "commands"):  # a group has sub-commands; a command has options
        yield " ".join(path), command
        return
    for name, sub in command.commands.items():
        yield from _commands(sub, (*path, name))


def _help_texts(command):
    return [command.help or "", *(getattr(param, "help", None) or "" for param in command.params)]


@pytest.mark.parametrize(("path", "command"), list(_commands()))
def test_help_names_only_options_of_its_command(path, command):
    options = {name for param in command.params for name in (*param.opts, *getattr(param, "secondary_opts", ()))}
    named = {name for text in _help_texts(command) for name in re.findall(r"--[a-z][a-z-]*", text)}
    assert named <= options, f"eef {path} --help names {sorted(named - options)}"


def _run_default(run, sections, name):
    """The run's value of the setting option ``name`` is (request_timeout: request_timeout_s), or None."""
    for section in sections:
        settings = run
        for part in section.split("."):
            settings = getattr(settings, part)
        for field in (name, f"{name}_s"):
            if hasattr(settings, field):
                return (getattr(settings, field),)
    return None


def _noted(param, value) -> bool:
    """Whether ``param``'s help says eef run's default config sets ``value``."""
    note = NOTE.search(param.help or "")
    if note is None:
        return False
    if isinstance(value, bool):  # the flag that sets it: --packing, --no-packing
        return note.group(1) == (param.opts[0] if value else param.secondary_opts[0])
    return type(value)(note.group(1)) == value


def test_a_default_that_differs_from_eef_runs_says_so():
    run = load_config(DEFAULT_RUN_CONFIG)
    commands = dict(_commands())
    compared = 0
    for path, sections in RUN_SECTIONS.items():
        for param in commands[path].params:
            found = _run_default(run, sections, param.name)
            if found is None:
                continue
            compared += 1
            (value,) = found
            if param.default == value:
                assert NOTE.search(param.help or "") is None, f"eef {path} {param.opts[0]}: a stale note"
            else:
                assert _noted(param, value), f"eef {path} {param.opts[0]}: {param.default!r}, eef run's {value!r}"
    assert compared > 30  # the names found the settings
