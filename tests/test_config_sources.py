"""Config precedence (CLI > env > YAML > defaults), coercion and readable errors."""
import argparse

import pytest

from inboxrl.config import ConfigError, TrainConfig, add_config_arguments, build_config, config_from_args
from inboxrl.grpo.sampler import ScenarioSampler
from inboxrl.email.types import Scenario


def test_defaults_and_output_dir_follows_mode():
    cfg = build_config({}, env={})
    assert cfg.mode == "masked" and cfg.output_dir == "outputs/grpo_masked"
    assert build_config({"mode": "rollout"}, env={}).output_dir == "outputs/grpo_rollout"


def test_precedence_cli_over_env_over_yaml(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("learning_rate: 0.001\nmax_steps: 7\nnum_generations: 3\n")
    env = {"LEARNING_RATE": "0.002", "MAX_STEPS": "9"}
    cfg = build_config({"learning_rate": "0.003"}, env=env, yaml_path=str(y))
    assert cfg.learning_rate == 0.003  # CLI wins
    assert cfg.max_steps == 9  # env over YAML
    assert cfg.num_generations == 3  # YAML over default


def test_env_names_of_existing_dotenv_files():
    env = {"MODEL_NAME": "/m", "PER_DEVICE_TRAIN_BATCH_SIZE": "3", "NUM_GENERATIONS": "5", "VERBOSE": "true",
           "RUN_BASELINE_EVAL": "false", "OUTPUT_DIR": "/tmp/x", "WANDB_MODE": "offline", "BETA": "0.04",
           "MIN_GROUP_STD": "0.1", "PATIENCE": "2", "TARGET_ACCURACY": "0.9", "MAX_TOKENS": "64"}
    cfg = build_config({}, env=env)
    assert (cfg.model_name, cfg.per_device_train_batch_size, cfg.num_generations) == ("/m", 3, 5)
    assert cfg.verbose is True and cfg.run_baseline_eval is False and cfg.output_dir == "/tmp/x"
    assert (cfg.wandb_mode, cfg.beta, cfg.min_group_std, cfg.patience, cfg.max_tokens) == ("offline", 0.04, 0.1, 2, 64)


@pytest.mark.parametrize("env,needle", [
    ({"MAX_STEPS": "ten"}, "max_steps must be an integer"),
    ({"LEARNING_RATE": "-1"}, "learning_rate must be > 0"),
    ({"NUM_GENERATIONS": "1"}, "num_generations must be >= 2"),
    ({"VERBOSE": "maybe"}, "verbose must be a boolean"),
    ({"WANDB_MODE": "sometimes"}, "wandb_mode must be one of"),
    ({"TOP_P": "1.5"}, "top_p must be in"),
    ({"SFT_MAX_PATTERN_SHARE": "0"}, "sft_max_pattern_share must be in"),
    ({"ROLLOUT_BATCH_SIZE": "-1"}, "rollout_batch_size must be >= 0"),
])
def test_invalid_values_name_the_setting(env, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config({}, env=env)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_config({}, env={}, yaml_path=str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("not_a_setting: 1\n")
    with pytest.raises(ConfigError, match="unknown settings: not_a_setting"):
        build_config({}, env={}, yaml_path=str(bad))


def test_cli_flags_parse():
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    args = p.parse_args(["--mode", "rollout", "--verbose", "--max-steps", "3", "--use-lora", "false"])
    cfg = config_from_args(args, env={})
    assert cfg.mode == "rollout" and cfg.verbose is True and cfg.max_steps == 3 and cfg.use_lora is False
    assert all(f in TrainConfig.__dataclass_fields__ for f in ("process_weight", "epsilon_high"))


def _scen(i):
    return Scenario(id=str(i), question="q", answer="a", message_ids=["m"], inbox_address="x", query_date="2001-01-01")


def test_sampler_is_epoch_based_and_resumable():
    scen = [_scen(i) for i in range(5)]
    a = ScenarioSampler(scen, seed=3)
    stream = [s.id for _ in range(6) for s in a.next_batch(2)]
    assert sorted(stream[:5]) == [str(i) for i in range(5)]  # first epoch is a permutation
    assert sorted(stream[5:10]) == [str(i) for i in range(5)]  # so is the second
    b = ScenarioSampler(scen, seed=3, cursor=4)
    assert [s.id for s in b.next_batch(4)] == stream[4:8]  # resume from a cursor
    assert [s.id for s in ScenarioSampler(scen, seed=4).next_batch(5)] != stream[:5]


def test_rollout_batch_size_reaches_training_and_eval_rollouts():
    from types import SimpleNamespace

    from inboxrl.grpo.evaluation import eval_settings
    from inboxrl.grpo.trainer import GRPOTrainer

    cfg = build_config({}, env={"ROLLOUT_BATCH_SIZE": "3"})
    assert eval_settings(cfg).batch_size == 3
    assert GRPOTrainer.rollout_settings(SimpleNamespace(cfg=cfg), 1, 0).batch_size == 3
    everything = build_config({}, env={"ROLLOUT_BATCH_SIZE": "0"})  # 0 = all rollouts together
    assert eval_settings(everything).batch_size is None
    assert GRPOTrainer.rollout_settings(SimpleNamespace(cfg=everything), 1, 0).batch_size is None
