"""`python -m segapp` (and `torchrun -m segapp`): the segapp command."""

from .cli import main

raise SystemExit(main())
