"""``python -m oblv_mpc``: the ``mpc`` command."""

from oblv_mpc.cli import main

main()
