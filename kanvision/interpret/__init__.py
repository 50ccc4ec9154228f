"""Interpreting KAN models: sample their learned functions, score them, fit formulas, prune, plot and report."""

from kanvision.interpret import importance, pruning, report, sampling, symbolic
from kanvision.interpret.importance import *  # noqa: F403
from kanvision.interpret.pruning import *  # noqa: F403
from kanvision.interpret.report import *  # noqa: F403
from kanvision.interpret.sampling import *  # noqa: F403
from kanvision.interpret.symbolic import *  # noqa: F403

# each submodule lists its exports once; the package exports them all but the sampler's tuple of module types
__all__ = [
    name
    for module in (importance, pruning, report, sampling, symbolic)
    for name in module.__all__
    if name != "FUNCTION_MODULES"
]
