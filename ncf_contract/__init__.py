"""What training and serving share, owned by neither: the contract between the two halves.

- ``model_dir``: the model directory training writes and serving loads.
- ``families``: model-family names and feedback kinds.
- ``channels``: the training job's data channels.
- ``seen``: each user's seen items, a CSR matrix (``scipy.sparse``).
- ``metric_lines``: the metric log line format and SageMaker's ``MetricDefinitions``.
- ``ranking``: top-k selection and the unit item vectors (cosine similarity).
- ``reference_scoring``: the scoring formula of every family, in plain NumPy.

Nothing here imports TensorFlow, Flask or the SageMaker SDK.
"""
