"""``lifecycle demo``: a simulated portfolio played into the embedded engine."""
