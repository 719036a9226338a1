"""audit stage: registry logs and notifications → normalized ``AuditEvent`` records.

``parsers`` (one module per format, closed registry ``PARSERS``), ``dedup`` (bounded
redelivery filter), ``records`` (ledger record shape), ``tailer`` (rotation-safe file tailing
with a persisted cursor), ``webhook`` (notification receiver).
"""
