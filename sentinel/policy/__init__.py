"""policy stage: egress policy loading and evaluation (``sentinel.policy.egress``) and the
aggregation of repeated violations (``sentinel.policy.aggregate``).

Entry points: ``EgressPolicy.load(path)``, ``EgressPolicy.evaluate(flow, geo, now,
secondary=None)``, ``EgressPolicy.evaluate_many(flows, geo, now=None, secondary=None)`` (a
batch, decided once per remote address; ``now=None``: each flow at its own last-seen time),
``evaluate_all(flows, policy, geo, now, secondary=None)``, ``Aggregator.add(verdict)`` /
``Aggregator.drain(now)``.
"""

from __future__ import annotations

from sentinel.policy.aggregate import Aggregator, Emission
from sentinel.policy.egress import EgressPolicy, evaluate_all

__all__ = ["Aggregator", "EgressPolicy", "Emission", "evaluate_all"]
