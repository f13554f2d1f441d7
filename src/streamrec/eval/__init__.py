"""Evaluation: metrics as pure functions, and one full-ranking evaluator."""
