"""Hessian top eigenvalue and trace of a trained Lightning checkpoint: see speechkit.drivers.sharpness."""
import sys

from speechkit.drivers.sharpness import main
from speechkit.errors import SpeechkitError

if __name__ == "__main__":
    try:
        sys.exit(main())
    except SpeechkitError as error:  # one line, as the speechkit dispatcher prints it
        sys.exit(f"sharpness: error: {error}")
