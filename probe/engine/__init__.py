"""The engine: a sweep of inputs, each measured step by step, controls chosen by a pure planner."""
