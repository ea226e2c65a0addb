"""`python -m releasectl`: runs the command line (docs/ARCHITECTURE.md, "Layers")."""

from releasectl.cli import main

main()
