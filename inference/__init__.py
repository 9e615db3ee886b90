"""Serving half of the NCF recommender: load a model directory and answer SageMaker invocations."""
