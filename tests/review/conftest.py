"""The CLI tests' `run` fixture (`orgbill ARGS` in-process, one-line failure checks)."""

from tests.operations.test_cli import run  # noqa: F401
