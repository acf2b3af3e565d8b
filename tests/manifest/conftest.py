"""The CLI runner fixture for manifest tests that go through `mpc session ...`."""

from tests.cli.conftest import cli

__all__ = ["cli"]
