"""Risk: the reasons a feature is at risk, launch forecasts, risk signals and their
deadlines (pure), and the monitor that runs them beside a live engine.

Its modules run compiled (mypyc, together with the core's) where a fresh build is in
``engine/native/built/``, else as the Python here: see :mod:`engine.native`.
"""

from engine.native import HOT, load

load(HOT)
