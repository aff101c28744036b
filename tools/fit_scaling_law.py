"""Fit the LR-annealing scaling law on Lightning CSV logs and predict other runs: see speechkit.scaling.main."""
import sys

from speechkit.scaling import main

sys.exit(main())
