"""Central collection: many probes upload to one collector, which stores into PostgreSQL.

``app`` serves ``POST /v1/uploads`` and ``DELETE /v1/uploads`` (aiohttp), ``tokens`` keeps
the probes' tokens hashed, ``ingest`` writes an upload idempotently, ``wire`` is the upload
format both ends share (a measurement's id is the probe's (run_id, id)), ``limits`` the
per-token rate and the global concurrency cap, and ``outbox`` (a high-water mark per
collector in ``meta``, nothing per row) and ``client`` are the probe's side (``probe
upload``). The collector keeps no state of its own beyond the database: several instances
may share one PostgreSQL.
"""
