"""Fit the LR-annealing scaling law on Lightning CSV logs and predict other runs: see speechkit.scaling.main."""
import sys

from speechkit.scaling import main
from speechkit.errors import SpeechkitError

if __name__ == "__main__":
    try:
        sys.exit(main())
    except SpeechkitError as error:  # one line, as the speechkit dispatcher prints it
        sys.exit(f"fit_scaling_law: error: {error}")
