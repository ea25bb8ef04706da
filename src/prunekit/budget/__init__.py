"""Budget-aware structured pruning: hit a params, MACs or measured-latency target.

``pk.Structured(target=pk.MACs(0.25))`` keeps a quarter of the MACs. The targets live in
:mod:`.targets`; cost models in :mod:`.costs` (params, MACs) and :mod:`.latency_cost` (from
the per-layer table of :mod:`.latency_table`); the greedy in :mod:`.allocate`; measuring and
re-cutting in :mod:`.planner`; the figures in :mod:`.report`; the data-aware group
sensitivity in :mod:`.sensitivity`.
"""

from .targets import BudgetTarget, Latency, MACs, Params, target_from_dict

__all__ = ["BudgetTarget", "Latency", "MACs", "Params", "target_from_dict"]
