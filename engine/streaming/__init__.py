"""The streaming mode: faust-streaming workers on Kafka, with the same processor and API.

:mod:`engine.streaming.codec` turns records into CloudEvents or dead-letter reasons,
:mod:`engine.streaming.app` builds the Faust app (topics, table, agent) from plain settings,
and :mod:`engine.streaming.worker` is the composition root ``lifecycle worker`` runs.
"""
