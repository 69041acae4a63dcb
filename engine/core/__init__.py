"""The pure core: the processor, feature state, effects and outcomes, saturating time math.

No I/O here: import-linter (``make lint``) forbids aiohttp, Faust, Kafka, SQLite and
prometheus_client in this package. Its modules run compiled (mypyc, together with the risk
package) where a fresh build is in ``engine/native/built/``, else as the Python here: see
:mod:`engine.native`.
"""

from engine.native import HOT, load

load(HOT)
