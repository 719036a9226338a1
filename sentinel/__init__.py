"""Sentinel: continuous data-residency evidence for AI model registries.

The package is laid out as the pipeline it implements (see DESIGN.md):
``flows`` and ``audit`` produce records, ``geo`` enriches them, ``policy`` decides,
``ledger`` keeps them tamper-evident, ``report`` and ``metrics`` present them,
``runtime`` wires the stages together and ``cli`` is the only place that talks to a person.
"""

__version__ = "0.1.0"
