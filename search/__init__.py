"""AutoML-CodeGen search: strategies, evaluators, objectives and the search loop, built on `compiler`."""
