"""Running ``eef`` in-process in tests."""

from typer.testing import CliRunner

from eef.cli import app

runner = CliRunner()


def cli_ok(args: list[str]) -> str:
    """``eef ARGS``'s output; the command must succeed."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output
