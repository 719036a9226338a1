"""policy stage: egress policy loading and evaluation (``sentinel.policy.egress``).

Entry points: ``EgressPolicy.load(path)``, ``EgressPolicy.evaluate(flow, geo, now)``,
``evaluate_all(flows, policy, geo, now)``.
"""

from __future__ import annotations

from sentinel.policy.egress import EgressPolicy, evaluate_all

__all__ = ["EgressPolicy", "evaluate_all"]
