"""``python -m edgemoe …``: the ``edgemoe`` command (also what ``torchrun -m edgemoe`` runs)."""

from edgemoe.host.app.cli import main

raise SystemExit(main())
