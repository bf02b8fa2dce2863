"""``python -m equigraph`` runs the command line (:mod:`equigraph.cli`)."""
import sys

from equigraph.cli import main

sys.exit(main())
