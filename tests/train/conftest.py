import sys
from pathlib import Path

# The training tests (and the DDP script they launch) import the helper module
# ``train_helpers`` by name, whatever pytest's import mode or package layout.
sys.path.insert(0, str(Path(__file__).resolve().parent))
