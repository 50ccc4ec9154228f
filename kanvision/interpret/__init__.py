"""Interpreting KAN models: sample their learned functions, score them, fit formulas, prune, plot and report."""

from kanvision.interpret.importance import LayerImportance, function_importance, model_importance
from kanvision.interpret.pruning import PruneReport, prune_layer, prune_sequential
from kanvision.interpret.report import inspect_model
from kanvision.interpret.sampling import (
    FunctionSamples,
    InputRecord,
    collect_inputs,
    evaluate_functions,
    find_function_modules,
    function_shape,
    has_functions,
    input_index,
    num_inputs,
    record_inputs,
    sample_functions,
)
from kanvision.interpret.symbolic import (
    SYMBOLIC_LIBRARY,
    SymbolicFit,
    SymbolicFunction,
    fit_symbolic,
    suggest_layer,
    suggest_symbolic,
)

__all__ = [
    "LayerImportance",
    "function_importance",
    "model_importance",
    "PruneReport",
    "prune_layer",
    "prune_sequential",
    "inspect_model",
    "FunctionSamples",
    "InputRecord",
    "collect_inputs",
    "evaluate_functions",
    "find_function_modules",
    "function_shape",
    "has_functions",
    "input_index",
    "num_inputs",
    "record_inputs",
    "sample_functions",
    "SYMBOLIC_LIBRARY",
    "SymbolicFit",
    "SymbolicFunction",
    "fit_symbolic",
    "suggest_layer",
    "suggest_symbolic",
]
