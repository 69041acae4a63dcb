"""Risk: the reasons a feature is at risk, launch forecasts, risk signals and their
deadlines (pure), and the monitor that runs them beside a live engine.
"""
