"""Per-step training metrics (the ``train/*`` curves and metrics.jsonl rows).

Conventions (all documented here once):

* Reward statistics use the population standard deviation (ddof = 0), the same as the group
  normalisation of the advantages, and leave out rollouts whose judge failed (their reward is a
  placeholder): ``avg_reward`` etc. are over the judged rollouts (NaN, logged as null, when no
  rollout of the step was judged), and so are a group's mean/std in the logs.
* ``accuracy`` is the share (0..1) of the step's rollouts whose answer was judged correct;
  rollouts whose judge failed (``rubric.judge_error``) are left out of the denominator, since a
  judge failure is never scored as a model failure. ``None`` when no rollout was judged.
* ``num_early_exit`` counts rollouts that ended before ``max_turns`` (``finished_early``).
* ``total_tokens`` counts every token of every rollout; ``trainable_tokens`` counts the model
  tokens of rollouts that reach the loss (``kept``); their ratio is ``trainable_token_ratio``.
* ``groups_kept`` / ``groups_filtered``: a group is kept when at least one of its rollouts is
  kept (a judge-error rollout is dropped on its own; a low-variance group drops all of them).
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from inboxrl.agent.groups import group_views
from inboxrl.agent.trajectory import Trajectory

TRAIN_PREFIX = "train/"
# Fields that are bookkeeping, not train/* curves.
_NOT_LOGGED = ("step", "total_steps")


@dataclass
class RewardStats:
    """Summary of a list of rewards (population std)."""

    count: int
    mean: float
    median: float
    std: float
    min: float
    max: float


def reward_stats(trajectories: Iterable[Trajectory] | Iterable[float]) -> RewardStats:
    """Mean, median, population std, min and max of the rollouts' outcome rewards.

    Accepts trajectories or plain reward values. Raises ``ValueError`` on an empty input.
    """
    rewards = [float(t.reward) if isinstance(t, Trajectory) else float(t) for t in trajectories]
    if not rewards:
        raise ValueError("reward_stats needs at least one reward")
    return RewardStats(count=len(rewards), mean=statistics.fmean(rewards),
                       median=float(statistics.median(rewards)), std=statistics.pstdev(rewards),
                       min=min(rewards), max=max(rewards))


def judged_reward_stats(trajectories: Sequence[Trajectory]) -> RewardStats:
    """:func:`reward_stats` of the rollouts without a judge error (all fields NaN, count 0, when
    there is none)."""
    judged = [t for t in trajectories if t.rubric.judge_error is None]
    if not judged:
        nan = float("nan")
        return RewardStats(count=0, mean=nan, median=nan, std=nan, min=nan, max=nan)
    return reward_stats(judged)


class MovingAverage:
    """Mean of the last ``window`` values pushed (the reward moving average of the logs)."""

    def __init__(self, window: int = 10):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._values: deque[float] = deque(maxlen=window)

    def push(self, value: float) -> float:
        """Add ``value`` (a NaN, a step with no judged rollout, is not added) and return the mean."""
        if math.isfinite(float(value)):
            self._values.append(float(value))
        return self.value

    @property
    def value(self) -> float:
        return statistics.fmean(self._values) if self._values else float("nan")


@dataclass
class TrainingMetrics:
    """Everything one training step reports. ``to_wandb`` gives the ``train/*`` curves."""

    step: int
    total_steps: int = 0
    loss: float = 0.0
    policy_loss: float = 0.0
    kl: float = 0.0
    avg_reward: float = 0.0
    median_reward: float = 0.0
    std_reward: float = 0.0
    min_reward: float = 0.0
    max_reward: float = 0.0
    reward_moving_avg: float = 0.0
    accuracy: float | None = None
    num_rollouts: int = 0
    num_groups: int = 0
    groups_kept: int = 0
    groups_filtered: int = 0
    num_early_exit: int = 0
    judge_errors: int = 0
    total_tokens: int = 0
    trainable_tokens: int = 0
    trainable_token_ratio: float = 0.0
    num_micro_batches: int = 0
    grad_norm: float = 0.0
    learning_rate: float = 0.0
    entropy: float = 0.0
    clip_fraction: float = 0.0
    rollout_time: float = 0.0
    training_time: float = 0.0
    step_time: float = 0.0
    tokens_per_second: float = 0.0
    mismatch_kl: float = 0.0  # mean log pi_sampler - log pi_trainer over trained tokens (grpo/mismatch.py)
    probs_corr: float = 1.0  # correlation of sampler and trainer token probabilities
    max_logprob_gap: float = 0.0  # max |log pi_sampler - log pi_trainer|
    skipped: bool = False  # this step's update was skipped (no kept group or a non-finite loss)
    skipped_steps: int = 0  # skipped updates so far in the run
    skip_reason: str | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_rollouts(cls, step: int, trajectories: Sequence[Trajectory], total_steps: int = 0,
                      moving_average: MovingAverage | None = None, **values: Any) -> "TrainingMetrics":
        """Fill the rollout-side fields (rewards, accuracy, groups, early exits, tokens).

        ``values`` sets any other field (loss, grad_norm, timings, ...). ``moving_average``,
        when given, receives this step's mean reward and supplies ``reward_moving_avg``.
        """
        rs = judged_reward_stats(trajectories)
        judged = [t for t in trajectories if t.rubric.judge_error is None]
        groups = group_views(trajectories)
        kept = sum(1 for g in groups if g.kept)
        total = sum(t.num_tokens for t in trajectories)
        trainable = sum(t.num_model_tokens for t in trajectories if t.kept)
        m = cls(step=step, total_steps=total_steps, avg_reward=rs.mean, median_reward=rs.median,
                std_reward=rs.std, min_reward=rs.min, max_reward=rs.max,
                accuracy=(sum(t.rubric.answer_correct for t in judged) / len(judged)) if judged else None,
                num_rollouts=len(trajectories), num_groups=len(groups), groups_kept=kept,
                groups_filtered=len(groups) - kept,
                num_early_exit=sum(1 for t in trajectories if t.finished_early),
                judge_errors=len(trajectories) - len(judged), total_tokens=total,
                trainable_tokens=trainable, trainable_token_ratio=trainable / total if total else 0.0)
        m.reward_moving_avg = moving_average.push(rs.mean) if moving_average else rs.mean
        reason = next((t.rubric.judge_error for t in trajectories if t.rubric.judge_error is not None), None)
        if reason is not None:  # the first judge error's text (a row key only on such steps)
            m.extra["judge_error_reason"] = reason
        for k, v in values.items():
            if k not in cls.__dataclass_fields__:
                raise TypeError(f"TrainingMetrics has no field {k!r}")
            setattr(m, k, v)
        return m

    def finalize_timing(self) -> None:
        """Set ``tokens_per_second`` = total tokens / step time (0 when the time is 0)."""
        self.tokens_per_second = self.total_tokens / self.step_time if self.step_time > 0 else 0.0

    def to_flat(self) -> dict[str, Any]:
        """All fields as one flat JSON-ready dict (``extra`` merged in; NaN/inf become None)."""
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return {k: _finite_or_none(v) for k, v in d.items()}

    def to_wandb(self) -> dict[str, float]:
        """``train/<name>`` for every numeric field except ``step`` / ``total_steps``; None skipped."""
        return train_row_to_wandb(self.to_flat())


def train_row_to_wandb(row: dict[str, Any]) -> dict[str, float]:
    """The ``train/*`` values of a flat train row (:meth:`TrainingMetrics.to_flat`, or a
    ``metrics.jsonl`` row: its ``kind`` is skipped like every other string)."""
    out = {}
    for k, v in row.items():
        if k in _NOT_LOGGED or v is None or isinstance(v, str):
            continue
        out[TRAIN_PREFIX + k] = float(v) if isinstance(v, bool) else v
    return out


REWARD_WINDOW = 10


def build_training_metrics(step: int, trajectories: Sequence[Trajectory], adv: Any = None,
                           update: Any = None, learning_rate: float = 0.0, rollout_time: float = 0.0,
                           training_time: float = 0.0, step_time: float = 0.0,
                           reward_history: Sequence[float] = (), skipped_steps: int = 0,
                           total_steps: int = 0, window: int = REWARD_WINDOW) -> TrainingMetrics:
    """One step's metrics from the rollouts, the advantages' stats and the update's stats.

    ``adv`` (``AdvantageStats``: ``groups_kept`` / ``groups_filtered``) overrides the group counts
    read from the trajectories' ``kept`` flags; ``update`` (``UpdateStats``) supplies loss,
    policy_loss, kl, grad_norm, clip_fraction, entropy, num_micro_batches, skipped,
    skip_reason and the sampler/trainer mismatch (mismatch_kl, probs_corr, max_logprob_gap). ``reward_moving_avg`` is the mean of the last ``window`` step rewards, this
    step's included (``reward_history`` holds the earlier steps' ``avg_reward``).
    """
    m = TrainingMetrics.from_rollouts(step, trajectories, total_steps=total_steps,
                                      learning_rate=float(learning_rate), rollout_time=rollout_time,
                                      training_time=training_time, step_time=step_time,
                                      skipped_steps=skipped_steps)
    ma = MovingAverage(window)
    for r in list(reward_history)[-(window - 1):] if window > 1 else []:
        ma.push(r)
    m.reward_moving_avg = ma.push(m.avg_reward)
    if adv is not None:
        m.groups_kept, m.groups_filtered = int(adv.groups_kept), int(adv.groups_filtered)
        m.num_groups = m.groups_kept + m.groups_filtered
    if update is not None:
        for name in ("loss", "policy_loss", "kl", "grad_norm", "clip_fraction", "entropy"):
            setattr(m, name, float(getattr(update, name, 0.0)))
        m.num_micro_batches = int(getattr(update, "num_micro_batches", 0))
        mismatch = getattr(update, "mismatch", None)
        if mismatch is not None:
            m.mismatch_kl, m.probs_corr = float(mismatch.mismatch_kl), float(mismatch.probs_corr)
            m.max_logprob_gap = float(mismatch.max_logprob_gap)
        m.skipped = bool(getattr(update, "skipped", False))
        m.skip_reason = getattr(update, "skip_reason", None)
    m.finalize_timing()
    return m


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
