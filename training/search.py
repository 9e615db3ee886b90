"""Self-tuning: a hyperparameter search on the validation split, inside the training job.

With ``tuning=auto`` (the default) the job runs an Optuna study before its final
fit: each trial fits one configuration on ``train`` and scores it on the
validation split with the objective's selection metric; the best trial's
settings (and, for the NCF families, its best epoch count) are what the job
then fits for good (see ``training.trainer``). The test split is never seen.

- **Sampler**: first each family at its default settings, the closed-form ones
  (EASE, iALS and their blend: seconds) before the NCF ones (minutes); then TPE
  (multivariate, grouped, so each family's own parameters are modelled
  together), seeded with ``seed``.
- **Pruner**: a median pruner stops an epoch-by-epoch trial (an NCF epoch, an
  ALS iteration) that scores below the median of the finished trials *of the
  same family* at the same epoch, after its first epochs. Families learn at
  different paces (ALS is near its best after a few iterations, an NCF model
  after several epochs), so they are not judged against each other mid-fit.
- **Budget**: ``tuning_trials`` trials and ``tuning_budget`` seconds, whichever
  ends first, counted across restarts; checked between trials and between the
  epochs of a trial (a trial past the budget is pruned once another trial has
  finished), so the search overruns by at most one epoch or one closed-form fit.
- **Fixed hyperparameters**: anything the job was given explicitly (by a user
  or by a SageMaker tuning job) is never searched; ``model_type=auto`` lets the
  search choose the family.
- **Resumable**: the study lives in a journal file under the checkpoint
  directory (``/opt/ml/checkpoints``, which SageMaker syncs to S3), so a Spot
  job restarted with the same checkpoint location continues the search:
  finished trials are not redone, and a trial that was cut off is run again
  from its own checkpoint (each trial checkpoints under a key of its settings).
- **Several hosts** (``training.distributed``): the chief alone drives Optuna
  and writes the journal. Each trial of a family that distributes (the NCF
  families) runs under the strategy on every host: the chief broadcasts the
  trial's settings, then after every epoch its prune-or-continue decision, on
  TensorFlow's collectives (``Distribution.broadcast``); the other hosts follow
  (``follow_search``). A trial of any other family runs on the chief alone while
  the others wait, and both logs say so. The search ends with one more message,
  the chosen settings, so that every host runs the refit under the strategy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ncf_contract.families import ITEM_ITEM_FAMILIES, MODEL_FAMILIES, NCF_FAMILIES, Feedback
from ncf_contract.metric_lines import format_metric_line
from training.config import AUTO, POINTWISE, SOFTMAX, TrainingConfig
from training.dataset import Dataset
from training.errors import TrainingDivergedError, UserFacingError
from training.families import FitContext, distributes, family_for
from training.objectives import Objective, objective_for

if TYPE_CHECKING:
    from training.distributed import Distribution

logger = logging.getLogger(__name__)

SEARCH_DIR = "search"
JOURNAL_FILE = "search.journal"
#: Families ``model_type=auto`` chooses among, in the order they are tried first (those a
#: model directory can hold; ``mlp`` alone is left to NeuMF, which contains it).
AUTO_FAMILIES: tuple[str, ...] = tuple(
    family for family in ("ease", "ials", "blend", "gmf", "neumf") if family in MODEL_FAMILIES
)

Suggest = Callable[[optuna.Trial], Any]

#: The messages of a search across hosts: the ``op`` of each ``Distribution.broadcast``.
TRIAL, ALONE, CONTINUE, PRUNE, DONE = "trial", "alone", "continue", "prune", "done"


def _log_float(name: str, low: float, high: float) -> Suggest:
    return lambda trial: trial.suggest_float(name, low, high, log=True)


def _float(name: str, low: float, high: float) -> Suggest:
    return lambda trial: trial.suggest_float(name, low, high)


def _choice(name: str, *choices: Any) -> Suggest:
    return lambda trial: trial.suggest_categorical(name, choices)


# A name means the same distribution in every family (Optuna requires it of a study).
_NCF_COMMON: dict[str, Suggest] = {
    "learning_rate": _log_float("learning_rate", 3e-4, 1e-2),
    "learning_rate_decay": _float("learning_rate_decay", 0.6, 1.0),
    "num_negatives": _choice("num_negatives", 2, 4, 8),
    "gmf_dim": _choice("gmf_dim", 32, 64, 128),
    "gmf_regularization": _log_float("gmf_regularization", 1e-4, 3e-2),
}
_MLP: dict[str, Suggest] = {
    "mlp_regularization": _log_float("mlp_regularization", 1e-4, 3e-2),
}
_IALS: dict[str, Suggest] = {
    "ials_factors": _choice("ials_factors", 32, 64, 128),
    "ials_regularization": _log_float("ials_regularization", 1e-3, 10.0),
    "ials_alpha": _log_float("ials_alpha", 0.5, 50.0),
}
_EASE: dict[str, Suggest] = {"ease_l2": _log_float("ease_l2", 30.0, 5000.0)}
#: What each family searches: the hyperparameters that matter most for it.
SEARCH_SPACES: dict[str, dict[str, Suggest]] = {
    # The loss first: the softmax draws no num_negatives.
    "gmf": {"loss": _choice("loss", POINTWISE, SOFTMAX), **_NCF_COMMON},
    "mlp": {
        name: draw for name, draw in {**_NCF_COMMON, **_MLP}.items() if not name.startswith("gmf_")
    },
    "neumf": {**_NCF_COMMON, **_MLP},
    "ials": _IALS,
    "ease": _EASE,
    "blend": {**_EASE, **_IALS, "blend_ease_weight": _float("blend_ease_weight", 0.1, 0.9)},
    "hybrid": {
        **_NCF_COMMON,
        "text_max_features": _choice("text_max_features", 1000, 5000, 20000),
    },
}


class _TrialsOfFamily:
    """The view of a study that ``FamilyMedianPruner`` gives Optuna's median rule."""

    def __init__(self, study: optuna.Study, family: Any) -> None:
        self._study = study
        self._family = family
        self.direction = study.direction

    def get_trials(
        self, deepcopy: bool = True, states: tuple[TrialState, ...] | None = None
    ) -> list[optuna.trial.FrozenTrial]:
        return [
            trial
            for trial in self._study.get_trials(deepcopy=deepcopy, states=states)
            if trial.params.get("model_type") == self._family
        ]


class FamilyMedianPruner(optuna.pruners.BasePruner):
    """Optuna's median rule among the finished trials of the trial's own family."""

    def __init__(self, n_startup_trials: int, n_warmup_steps: int) -> None:
        self._median = optuna.pruners.MedianPruner(
            n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps
        )

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether ``trial`` is below its family's median at its latest step."""
        family_view: Any = _TrialsOfFamily(study, trial.params.get("model_type"))
        return self._median.prune(family_view, trial)


@dataclass
class SearchResult:
    """What a search found.

    Attributes:
        config: The best trial's configuration (every searched value filled in).
        best_trial: The best trial's number.
        best_epoch: The best trial's best epoch (0 for families fitted in one go).
        validation: The best trial's validation metrics.
        trials: One record per trial: ``number``, ``state``, ``value``, ``params``,
            ``best_epoch``, ``seconds``.
        checkpoint_dir: Where the best trial checkpointed (its fit can be reloaded).
        stopped: A SIGTERM stopped the search.
        seconds: Search time so far, across restarts.
        params: The best trial's settings (``model_type`` and the searched values).
    """

    config: TrainingConfig
    params: dict[str, Any] = field(default_factory=dict)
    best_trial: int = -1
    best_epoch: int = 0
    validation: dict[str, float] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_dir: Path | None = None
    stopped: bool = False
    seconds: float = 0.0


class _SearchStoppedError(Exception):
    """SIGTERM during a trial."""


class SearchFailedError(UserFacingError):
    """Every trial of the search failed; the message says why the first one did."""


def searched_families(config: TrainingConfig, dataset: Dataset | None = None) -> tuple[str, ...]:
    """The families this job's search may choose (one unless ``model_type=auto``).

    ``hybrid`` joins the others when the job has an ``items`` or ``users`` channel;
    ``ease`` and ``blend`` leave when the catalog has more than ``ease_max_items`` items.
    """
    if config.model_type != AUTO:
        return (config.model_type,)
    if config.pretrain:  # pre-training exists for NeuMF only
        return ("neumf",)
    if Feedback(config.feedback) is Feedback.EXPLICIT:  # rating prediction: the NCF families
        return tuple(family for family in AUTO_FAMILIES if family in NCF_FAMILIES)
    has_attributes = dataset is not None and (
        dataset.item_attributes is not None or dataset.user_attributes is not None
    )
    families = (*AUTO_FAMILIES, "hybrid") if has_attributes else AUTO_FAMILIES
    if dataset is not None and dataset.num_items > config.ease_max_items:
        # No items x items matrix above ease_max_items (training.families.ease): those
        # families are left out rather than failing the job on the first trial (issue 16:
        # an ML-20M-shaped catalog, 26,744 items, with the default hyperparameters).
        families = tuple(family for family in families if family not in ITEM_ITEM_FAMILIES)
    return families


def suggest(
    trial: optuna.Trial, config: TrainingConfig, dataset: Dataset | None = None
) -> dict[str, Any]:
    """A trial's settings: the family (if free) and its unfixed hyperparameters."""
    families = searched_families(config, dataset)
    family = (
        families[0] if len(families) == 1 else trial.suggest_categorical("model_type", families)
    )
    params: dict[str, Any] = {"model_type": family}
    loss = config.loss_for(family)
    for name, draw in _searched(config, family).items():
        if name == "loss":  # drawn first (``SEARCH_SPACES``): it decides num_negatives
            loss = params["loss"] = draw(trial)
        elif _applies(name, loss):
            params[name] = draw(trial)
    return params


def _searched(config: TrainingConfig, family: str) -> dict[str, Suggest]:
    """The hyperparameters a trial of ``family`` may draw: its space less those that are fixed.

    ``loss`` (GMF only) is among them unless given: ``loss=auto`` lets the search choose.
    """
    return {
        name: draw
        for name, draw in SEARCH_SPACES.get(family, {}).items()
        if name not in config.fixed and hasattr(config, name)
    }


def _applies(name: str, loss: str) -> bool:
    """Whether hyperparameter ``name`` means anything under ``loss``.

    The softmax samples no negatives, so it has no ``num_negatives`` to search.
    """
    return not (loss == SOFTMAX and name == "num_negatives")


def trial_key(params: Mapping[str, Any]) -> str:
    """A directory name for a trial's checkpoints: the same settings, the same key."""
    digest = hashlib.sha256(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()
    return f"trial-{params.get('model_type', 'model')}-{digest[:16]}"


def study_name(config: TrainingConfig, dataset: Dataset) -> str:
    """Names the study after everything that makes its trials comparable."""
    settings = {
        k: v
        for k, v in config.to_json().items()
        if k not in ("tuning_budget", "tuning_trials", "collective_timeout")
    }
    settings["data"] = dataset.statistics()
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"ncf-search-{digest.hexdigest()[:16]}"


def _trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "params": dict(trial.params),
        "best_epoch": trial.user_attrs.get("best_epoch", 0),
        "validation": trial.user_attrs.get("validation", {}),
        "seconds": trial.user_attrs.get("seconds"),
    }


def run_search(config: TrainingConfig, dataset: Dataset, context: FitContext) -> SearchResult:
    """Search on the validation split within the budget; see the module docstring.

    On a host other than the chief of a multi-host job, follow the chief's search
    instead (``follow_search``).
    """
    link = _across_hosts(context)
    if link is not None and not link.is_chief:
        return follow_search(config, dataset, context, link)
    search_dir = context.checkpoint_dir / SEARCH_DIR
    search_dir.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(search_dir / JOURNAL_FILE)))
    maximize = objective_for(config, dataset).is_better(1.0, 0.0)
    name = study_name(config, dataset)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="maximize" if maximize else "minimize",
        pruner=FamilyMedianPruner(n_startup_trials=1, n_warmup_steps=2),
    )
    # Seeded by the trials so far too: a restarted search does not draw its first settings again.
    study.sampler = optuna.samplers.TPESampler(
        seed=config.seed + len(study.get_trials(deepcopy=False)),
        multivariate=True,
        group=True,
        n_startup_trials=6,
    )
    _requeue_interrupted(study, storage, name)
    if not study.get_trials(deepcopy=False):
        _enqueue_defaults(study, config, dataset)
    # Trials that ended with a figure or were pruned count; failed and cut-off ones do not.
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    elapsed_before = float(study.user_attrs.get("elapsed_seconds", 0.0))
    if done:
        context.emit(
            f"resuming the hyperparameter search: {len(done)} trial(s) done in "
            f"{elapsed_before:.0f} s"
        )
    started = time.monotonic()

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    objective = _trial_objective(config, dataset, context, study, elapsed)

    remaining_trials = config.tuning_trials - len(done)
    stopped = False
    if remaining_trials > 0 and elapsed() < config.tuning_budget and not context.stop_flag:
        try:
            study.optimize(
                objective,
                n_trials=remaining_trials,
                timeout=max(1.0, config.tuning_budget - elapsed()),
                catch=(TrainingDivergedError,),
                callbacks=[_stop_on_flag(context)],
            )
        except _SearchStoppedError:
            stopped = True
        study.set_user_attr("elapsed_seconds", elapsed())
    stopped = stopped or bool(context.stop_flag)
    try:
        result = _outcome(study, config, dataset, search_dir, stopped, elapsed())
    except SearchFailedError as failed:
        if link is not None:
            link.broadcast({"op": DONE, "failure": str(failed)}, context.stop_flag, _END)
        raise
    if link is not None:
        _, stopped_now = link.broadcast(
            {
                "op": DONE,
                "stopped": result.stopped,
                "params": result.params,
                "best_trial": result.best_trial,
                "best_epoch": result.best_epoch,
                "validation": result.validation,
            },
            context.stop_flag,
            _END,
        )
        result.stopped = result.stopped or stopped_now
    return result


_END = "the end of the hyperparameter search"


def _across_hosts(context: FitContext) -> Distribution | None:
    """The strategy the search's hosts talk over, or ``None`` for a search on one host."""
    distribution = context.distribution
    if distribution is None or not distribution.cluster.multi_host:
        return None
    return distribution


def _outcome(
    study: optuna.Study,
    config: TrainingConfig,
    dataset: Dataset,
    search_dir: Path,
    stopped: bool,
    seconds: float,
) -> SearchResult:
    """What the study found.

    Raises:
        SearchFailedError: Not stopped, and no trial ended with a figure.
    """
    trials = [
        _trial_record(t)
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING  # queued, never started
    ]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    result = SearchResult(config=config, trials=trials, stopped=stopped, seconds=seconds)
    if not complete and not stopped:
        failures = [t.user_attrs.get("failure") for t in study.get_trials(deepcopy=False)]
        reason = next(
            (f for f in failures if f), "the search ran out of budget before a trial ended"
        )
        raise SearchFailedError(f"no trial of the hyperparameter search produced a model: {reason}")
    if not complete:
        return result
    best = study.best_trial
    result.params = {"model_type": searched_families(config, dataset)[0], **best.params}
    result.config = replace(config, **result.params)
    result.best_trial = best.number
    result.best_epoch = int(best.user_attrs.get("best_epoch", 0))
    result.validation = dict(best.user_attrs.get("validation", {}))
    result.checkpoint_dir = search_dir / trial_key(result.params)
    return result


def follow_search(
    config: TrainingConfig, dataset: Dataset, context: FitContext, link: Distribution
) -> SearchResult:
    """The chief's search, seen from another host: run its distributed trials with it.

    Waits (without a collective timeout: the chief may be fitting a family that does
    not distribute) for the chief's next message; fits each ``trial`` message's
    settings under the strategy, taking the chief's decision after every epoch; ends
    at ``done``, with the chosen settings for the refit.

    Raises:
        SearchFailedError: The chief's search produced no model (the chief says why).
    """
    while True:
        # Decisions follow what every host agreed on in the broadcast (its `stopped`), never
        # this host's flag alone, which a SIGTERM may set just after it.
        message, stopped = link.broadcast(
            None, context.stop_flag, "the hyperparameter search (waiting for the chief)", wait=True
        )
        if message["op"] == DONE:
            if "failure" in message:
                raise SearchFailedError(message["failure"])
            params = dict(message["params"])
            return SearchResult(
                config=replace(config, **params) if params else config,
                params=params,
                best_trial=int(message["best_trial"]),
                best_epoch=int(message["best_epoch"]),
                validation=dict(message["validation"]),
                stopped=bool(message["stopped"]) or stopped,
            )
        if message["op"] == ALONE:
            logger.info(
                "search trial %d: model_type %s does not train across instances; the chief %s "
                "fits it alone while this host waits",
                message["number"],
                message["model_type"],
                link.cluster.chief,
            )
        elif not stopped:  # a stop agreed on this message: the chief skips the trial
            _follow_trial(config, dataset, context, link, message)


def _follow_trial(
    config: TrainingConfig,
    dataset: Dataset,
    context: FitContext,
    link: Distribution,
    message: Mapping[str, Any],
) -> None:
    """Fit one of the chief's trials with it, pruned when the chief prunes it."""
    number, params = int(message["number"]), dict(message["params"])

    def report(epoch: int, validation: Mapping[str, float]) -> None:
        decision, _ = link.broadcast(
            None, context.stop_flag, f"search trial {number} epoch {epoch}"
        )
        if decision["op"] == PRUNE:
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    logger.info("search trial %d runs on every host: %s", number, params)
    trial_config, trial_objective = _trial_setup(config, dataset, params)
    try:
        family_for(trial_config.family).fit(
            trial_config, trial_objective, _trial_context(context, params, report, link)
        )
    except (optuna.TrialPruned, TrainingDivergedError) as ended:
        logger.info("search trial %d ended: %s", number, ended)


def _trial_setup(
    config: TrainingConfig, dataset: Dataset, params: Mapping[str, Any]
) -> tuple[TrainingConfig, Objective]:
    """A trial's configuration (``params``; no search, no refit) and objective."""
    trial_config = replace(config, **params, tuning="off", refit=False)
    trial_config.check()
    return trial_config, objective_for(trial_config, dataset)


def _trial_context(
    context: FitContext,
    params: Mapping[str, Any],
    report: Callable[[int, Mapping[str, float]], None],
    distribution: Distribution | None,
) -> FitContext:
    """A trial's fit context: its own checkpoints (keyed by its settings), no metric lines."""
    return FitContext(
        checkpoint_dir=context.checkpoint_dir / SEARCH_DIR / trial_key(params),
        stop_flag=context.stop_flag,
        emit=logger.debug,  # a trial's epoch lines would read as the job's own
        report=report,
        distribution=distribution,
    )


def _trial_objective(
    config: TrainingConfig,
    dataset: Dataset,
    context: FitContext,
    study: optuna.Study,
    elapsed: Callable[[], float],
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: fit one configuration, return its metric."""
    link = _across_hosts(context)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, config, dataset)
        trial_config, trial_objective = _trial_setup(config, dataset, params)
        selection_metric = trial_objective.selection_metric
        distributed = distributes(trial_config.family)
        trial_started = time.monotonic()
        repeated = _same_settings(study, trial)
        if repeated is not None:  # its checkpoint is the chief's alone: reuse, never refit
            return _repeat(trial, repeated, context)
        if link is not None and _announce(link, trial.number, params, distributed, context):
            study.enqueue_trial(dict(trial.params), user_attrs={"rerun_of": trial.number})
            raise _SearchStoppedError

        def report(epoch: int, validation: Mapping[str, float]) -> None:
            trial.report(validation[selection_metric], epoch)
            finished = any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
            prune = trial.should_prune() or (finished and elapsed() > config.tuning_budget)
            if link is not None and distributed:  # the other hosts fit this trial too
                link.broadcast(
                    {"op": PRUNE if prune else CONTINUE},
                    context.stop_flag,
                    f"search trial {trial.number} epoch {epoch}",
                )
            if prune:
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        try:
            fit = family_for(trial_config.family).fit(
                trial_config,
                trial_objective,
                _trial_context(
                    context, params, report, context.distribution if distributed else None
                ),
            )
        except TrainingDivergedError as error:
            trial.set_user_attr("failure", str(error))
            context.emit(f"trial={trial.number} failed: {error}")
            raise
        except optuna.TrialPruned as pruned:
            context.emit(f"trial={trial.number} {pruned} model_type={params['model_type']}")
            raise
        if fit.stopped:  # run these settings again, from their checkpoint, after a restart
            study.enqueue_trial(dict(trial.params), user_attrs={"rerun_of": trial.number})
            raise _SearchStoppedError
        if not trial_objective.meets_constraints(fit.validation):
            context.emit(
                f"trial={trial.number} misses validation_constraint "
                f"{trial_objective.constraints_text()} model_type={params['model_type']}"
            )
            raise optuna.TrialPruned("misses validation_constraint")
        value = fit.validation[selection_metric]
        seconds = time.monotonic() - trial_started
        trial.set_user_attr("best_epoch", fit.best_epoch)
        trial.set_user_attr("validation", fit.validation)
        trial.set_user_attr("seconds", seconds)
        study.set_user_attr("elapsed_seconds", elapsed())
        context.emit(
            format_metric_line(
                f"trial={trial.number}",
                {
                    **trial_objective.log_keys(fit.validation, "val"),
                    "best_epoch": fit.best_epoch,
                    "trial_seconds": seconds,
                },
            )
            + f" model_type={params['model_type']}"
        )
        logger.info("trial %d: %s -> %s %.6f", trial.number, params, selection_metric, value)
        return value

    return objective


def _same_settings(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """An earlier complete trial with exactly ``trial``'s settings, if any."""
    return next(
        (
            done
            for done in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if done.params == trial.params
        ),
        None,
    )


def _repeat(trial: optuna.Trial, earlier: optuna.trial.FrozenTrial, context: FitContext) -> float:
    """Give ``trial`` the figures of ``earlier``, which had the same settings."""
    for name in ("best_epoch", "validation", "seconds"):
        if name in earlier.user_attrs:
            trial.set_user_attr(name, earlier.user_attrs[name])
    context.emit(f"trial={trial.number} repeats the settings of trial {earlier.number}")
    assert earlier.value is not None
    return earlier.value


def _announce(
    link: Distribution,
    number: int,
    params: Mapping[str, Any],
    distributed: bool,
    context: FitContext,
) -> bool:
    """Tell the other hosts about trial ``number``; returns whether any host was stopped."""
    if distributed:
        message: dict[str, Any] = {"op": TRIAL, "number": number, "params": dict(params)}
    else:
        message = {"op": ALONE, "number": number, "model_type": params["model_type"]}
        logger.info(
            "search trial %d: model_type %s does not train across instances; this host (the "
            "chief) fits it alone while the other hosts wait",
            number,
            params["model_type"],
        )
    _, stopped = link.broadcast(message, context.stop_flag, f"the start of search trial {number}")
    return stopped


def _enqueue_defaults(study: optuna.Study, config: TrainingConfig, dataset: Dataset) -> None:
    """Start with each family at its default settings, the quickest families first.

    The closed-form families take seconds and the NCF families minutes, so a search
    whose budget ends early has still judged every family once, at settings that
    work, before the sampler explores.
    """
    families = searched_families(config, dataset)
    for family in families:
        params: dict[str, Any] = {} if len(families) == 1 else {"model_type": family}
        # ``loss=auto`` fits the pointwise loss when nothing chooses.
        loss = config.loss_for(family)
        for name in _searched(config, family):
            if _applies(name, loss):
                params[name] = loss if name == "loss" else getattr(config, name)
        study.enqueue_trial(params, user_attrs={"start": "defaults"})


def _stop_on_flag(context: FitContext) -> Callable[[optuna.Study, Any], None]:
    def callback(study: optuna.Study, trial: Any) -> None:
        if context.stop_flag:
            study.stop()

    return callback


def _requeue_interrupted(study: optuna.Study, storage: JournalStorage, name: str) -> None:
    """Fail trials a stopped job left running, and queue their settings again (same key)."""
    study_id = storage.get_study_id_from_name(name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"rerun_of": trial.number})
        logger.info("search: trial %d was cut off; running its settings again", trial.number)
