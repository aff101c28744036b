"""Hessian top eigenvalue and trace of a trained Lightning checkpoint: see speechkit.curvature.main."""
import sys

from speechkit.curvature import main

sys.exit(main())
