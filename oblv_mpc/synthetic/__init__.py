"""Differentially private synthetic data: the plug-in interface, the registry, the built-in synthesizers.

A *synthesizer* turns rows whose every column is categorical, over a public domain, into a
synthetic table with a differential privacy guarantee. The core (this package) does what every
synthesizer needs and none may skip: it keeps at most ``max_rows_per_unit`` rows of each privacy
unit (:mod:`.bounding`), maps each column onto its declared domain (:mod:`.domain`), checks that
what comes back holds exactly the declared columns, values and row count (:mod:`.run`).

- :mod:`.interface`: the :class:`~.interface.Synthesizer` protocol a plug-in implements.
- :mod:`.registry`: plug-ins found through the ``oblv_mpc.synthesizers`` entry-point group.
- :mod:`.opendp_mbi`: MST and AIM, OpenDP's marginal-based synthesizers (``oblv_mpc[synthetic]``).
- :mod:`.fidelity`: how close a synthetic table is to real data (``mpc synthetic report``).

docs/synthetic.md explains the release; docs/synthesizer-plugins.md how to add a synthesizer.
"""

from oblv_mpc.synthetic.interface import Progress, Request, Synthesized, Synthesizer

ENTRY_POINT_GROUP = "oblv_mpc.synthesizers"

__all__ = ["ENTRY_POINT_GROUP", "Progress", "Request", "Synthesized", "Synthesizer"]
