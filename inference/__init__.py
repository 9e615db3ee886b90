"""Serving half of the NCF recommender: load a model directory and answer SageMaker invocations.

Modules, one job each:

- ``settings``: ``ServingSettings`` from the hosting environment (read once).
- ``errors``: ``InferenceError(status, message)``; the app answers ``{"error": message}``.
- ``content_types``: JSON / JSON Lines / CSV decoders and encoders, ``Accept`` negotiation.
- ``instances``: validation of raw instances into typed requests (``MAX_K`` = 1000).
- ``scoring``: ``NcfScorer`` (NumPy GMF / MLP / NeuMF / iALS scoring with load-time
  precomputation) and ``EaseScorer`` (EASE); the fold-in of a request's history.
- ``recommender``: top-k, item scores and similar items over a batch of instances.
- ``flow``: one request, decode -> validate -> batched calls -> encode.
- ``app``: the Flask app (``/ping``, ``/invocations``, ``/execution-parameters``).
- ``workers``: the gunicorn gthread worker the server runs.
- ``server``: the ``serve`` program, gunicorn configured from ``settings``.

``POST /invocations`` request and response formats:

- ``application/json``: one instance or ``{"instances": [...]}`` -> ``{"predictions": [...]}``.
- ``application/jsonlines``: one instance per line -> one prediction per line, in order
  (blank lines are skipped).
- ``text/csv``: rows ``user_id[,k]`` (optional ``user_id,k`` header) -> rows
  ``user_id,item_1,...,item_k``; score requests answer ``user_id,score_1,...`` (empty
  cell for an unknown item) and similar items ``item_id,item_1,...``.
- ``Accept`` may pick any of the three (default: the request's type); a missing
  ``Content-Type`` is read as JSON.

Instances: ``{"user_id", "k"?, "exclude_seen"? (true), "exclude_item_ids"?,
"candidate_item_ids"?}`` -> ``{"user_id", "items": [{"item_id", "score"}, ...]}`` best
first; ``{"user_id", "item_ids"}`` -> ``{"user_id", "scores": [...]}`` (``null`` for an
unknown item); ``{"item_id", "k"?}`` -> ``{"item_id", "items": [...]}`` by cosine on the
learned item vectors. A recommend or score instance may carry ``"history": [item ids]``
(with or without ``user_id``): it is scored from that history (exactly for ease, folded
into a user vector for gmf and ials, a 400 for mlp and neumf) and answered with
``"from": "history"``. ``k`` is 1..1000, default 10. Unknown users get the most popular
items (scores are training interaction counts) and ``"fallback": "popularity"``; unknown
ids in ``exclude_item_ids`` / ``candidate_item_ids`` are ignored; an unknown ``item_id``
for similar items is a 400.
"""
