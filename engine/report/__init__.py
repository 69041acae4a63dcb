"""Status reports for product managers (``GET /report``, ``lifecycle report``)."""
