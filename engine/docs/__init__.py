"""Documents generated from the code so they cannot drift: the event catalogue page and
the AsyncAPI document.
"""
