"""Resolve a run's data: the email store and the train / validation scenarios.

With no ``db_path`` / ``scenarios_path`` configured, the embedded deterministic synthetic inbox
is built once (cached) and used. Train scenarios come from the ``train`` split, validation from
``test`` (disjoint inboxes in the synthetic data); a user file without splits is divided by a
seeded shuffle. The validation ids are saved with the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inboxrl.email.types import Scenario
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import DataConfig


@dataclass
class RunData:
    db_path: Path
    train: list[Scenario]
    validation: list[Scenario]
    source: str  # "embedded synthetic" or the configured paths


def _split(scenarios: list[Scenario], cfg: DataConfig, seed: int,
           need_train: bool = True) -> tuple[list[Scenario], list[Scenario]]:
    from inboxrl.email.scenarios import validation_subset

    train = [s for s in scenarios if s.split == "train"]
    test = [s for s in scenarios if s.split != "train"]
    if not need_train and not (train and test):  # an eval-only file: all of it may be validation
        return [], validation_subset(scenarios, cfg.eval_dataset_size, seed)
    if not train or not test:  # no usable split column: hold out a seeded validation subset
        test = validation_subset(scenarios, cfg.eval_dataset_size, seed)
        held = {s.id for s in test}
        train = [s for s in scenarios if s.id not in held]
    else:
        test = validation_subset(test, cfg.eval_dataset_size, seed)
    if cfg.train_dataset_size:
        train = train[: cfg.train_dataset_size]
    if not train:
        raise ConfigError("no training scenarios left after filtering (check scenarios_path / train_dataset_size)")
    return train, test


def resolve_data(cfg: DataConfig, seed: int, need_train: bool = True) -> RunData:
    """Load (or build) the store and scenarios for ``cfg`` (``seed`` shuffles and picks the validation
    subset); raise ConfigError with a clear message. ``need_train=False`` (eval, eval-reference)
    accepts a scenario file with no training part: a file without train/test splits then gives
    the same validation subset as in training."""
    from inboxrl.email.scenarios import ScenarioError, load_scenarios
    from inboxrl.email.store import EmailStore, StoreError

    if bool(cfg.db_path) != bool(cfg.scenarios_path):
        raise ConfigError("db_path and scenarios_path go together: set both or neither")
    if cfg.db_path:
        db, scen_path, source = Path(cfg.db_path), Path(cfg.scenarios_path), f"{cfg.db_path} + {cfg.scenarios_path}"
        if not db.exists():
            raise ConfigError(f"db_path {db} does not exist (build it with `inboxrl build-db`)")
    else:
        from inboxrl.email.synth import ensure_default_dataset

        ds = ensure_default_dataset()
        db, scen_path, source = Path(ds.db_path), Path(ds.scenarios_path), "embedded synthetic inbox"
    try:
        EmailStore(db).close()
        scenarios = load_scenarios(scen_path, max_messages=cfg.max_reference_messages,
                                   shuffle_seed=seed)
    except (StoreError, ScenarioError) as e:
        raise ConfigError(str(e)) from None
    train, validation = _split(scenarios, cfg, seed, need_train)
    return RunData(db_path=db, train=train, validation=validation, source=source)
