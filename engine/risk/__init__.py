"""Risk: the reasons a feature is at risk, launch forecasts, risk signals and their
deadlines (pure), and the monitor that runs them beside a live engine.

Its modules run compiled (mypyc) where a fresh build is in ``engine/native/built/``, else as
the Python here: see :mod:`engine.native`.
"""

from engine.native import RISK, load

load(RISK)
