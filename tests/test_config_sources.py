"""Settings: precedence (CLI > env > YAML > defaults), coercion, readable errors, sections per command."""
import argparse
import dataclasses
import os
import subprocess
import sys

import pytest

from inboxrl.cli import EVAL_REFERENCE_SECTIONS, EVAL_SECTIONS, SFT_SECTIONS, build_parser
from inboxrl.email.types import Scenario
from inboxrl.grpo.sampler import ScenarioSampler
from inboxrl.settings.base import ConfigError
from inboxrl.settings.sections import SECTIONS, ModelConfig, RunConfig, Settings, all_fields
from inboxrl.settings.sources import add_settings_arguments, build_settings, settings_from_args


def test_defaults_and_output_dir_follows_mode():
    s = build_settings(env={})
    assert s.run.mode == "masked" and s.run.output_dir == "outputs/grpo_masked"
    assert build_settings(cli={"mode": "rollout"}, env={}).run.output_dir == "outputs/grpo_rollout"


def test_precedence_cli_over_env_over_yaml(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("learning_rate: 0.001\nmax_steps: 7\nnum_generations: 3\n")
    env = {"LEARNING_RATE": "0.002", "MAX_STEPS": "9"}
    s = build_settings(cli={"learning_rate": "0.003"}, env=env, yaml_path=str(y))
    assert s.optim.learning_rate == 0.003  # CLI wins
    assert s.optim.max_steps == 9  # env over YAML
    assert s.grpo.num_generations == 3  # YAML over default


def test_env_names_of_existing_dotenv_files():
    env = {"MODEL_NAME": "/m", "PER_DEVICE_TRAIN_BATCH_SIZE": "3", "NUM_GENERATIONS": "5", "VERBOSE": "true",
           "RUN_BASELINE_EVAL": "false", "OUTPUT_DIR": "/tmp/x", "WANDB_MODE": "offline", "BETA": "0.04",
           "MIN_GROUP_STD": "0.1", "PATIENCE": "2", "TARGET_ACCURACY": "0.9", "MAX_TOKENS": "64"}
    s = build_settings(env=env)
    assert (s.model.model_name, s.grpo.per_device_train_batch_size, s.grpo.num_generations) == ("/m", 3, 5)
    assert s.run.verbose is True and s.loop.run_baseline_eval is False and s.run.output_dir == "/tmp/x"
    assert (s.logging.wandb_mode, s.grpo.beta, s.grpo.min_group_std, s.loop.patience,
            s.rollout.max_tokens) == ("offline", 0.04, 0.1, 2, 64)


@pytest.mark.parametrize("env,needle", [
    ({"MAX_STEPS": "ten"}, "max_steps must be an integer"),
    ({"LEARNING_RATE": "-1"}, "learning_rate must be > 0"),
    ({"NUM_GENERATIONS": "1"}, "num_generations must be >= 2"),
    ({"VERBOSE": "maybe"}, "verbose must be a boolean"),
    ({"WANDB_MODE": "sometimes"}, "wandb_mode must be one of"),
    ({"TOP_P": "1.5"}, "top_p must be in"),
    ({"SFT_MAX_PATTERN_SHARE": "0"}, "sft_max_pattern_share must be in"),
    ({"ROLLOUT_BATCH_SIZE": "-1"}, "rollout_batch_size must be >= 0"),
    ({"SFT_SLIP_PROB": "1"}, r"sft_slip_prob must be in \[0, 1\)"),
    ({"JUDGE": "llm"}, "judge=llm needs judge_base_url and judge_model"),
])
def test_invalid_values_name_the_setting(env, needle):
    with pytest.raises(ConfigError, match=needle):
        build_settings(env=env)


def test_a_command_reads_and_validates_only_its_sections(tmp_path):
    env = {"NUM_GENERATIONS": "1", "LEARNING_RATE": "abc", "SFT_SLIP_PROB": "2", "MAX_TURNS": "7"}
    s = build_settings(EVAL_REFERENCE_SECTIONS, env=env)
    assert s.rollout.max_turns == 7 and s.grpo is None and s.optim is None and s.sft is None
    y = tmp_path / "train.yaml"
    y.write_text("num_generations: 1\nmax_turns: 5\n")  # a training YAML for a scripted-agent command
    assert build_settings(EVAL_REFERENCE_SECTIONS, env={}, yaml_path=str(y)).rollout.max_turns == 5
    assert "num_generations" not in build_settings(EVAL_SECTIONS, env={}).flat()
    assert build_settings(SFT_SECTIONS, env={}).update.token_budget == 4096


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_settings(env={}, yaml_path=str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("not_a_setting: 1\n")
    with pytest.raises(ConfigError, match="unknown settings: not_a_setting"):
        build_settings(env={}, yaml_path=str(bad))


def test_cli_flags_parse():
    p = argparse.ArgumentParser()
    add_settings_arguments(p, SECTIONS)
    args = p.parse_args(["--mode", "rollout", "--verbose", "--max-steps", "3", "--use-lora", "false"])
    s = settings_from_args(args, SECTIONS, env={})
    assert s.run.mode == "rollout" and s.run.verbose is True and s.optim.max_steps == 3
    assert s.model.use_lora is False
    assert all(f in all_fields() for f in ("process_weight", "epsilon_high"))


def test_sections_are_frozen_and_replace_makes_a_new_one():
    s = build_settings(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.model.use_lora = False
    t = s.replace(init_from="/ckpt", sft_eval="none")
    assert t.model.init_from == "/ckpt" and t.sft.sft_eval == "none" and s.model.init_from == ""
    assert t.flat() == dict(s.flat(), init_from="/ckpt", sft_eval="none")
    with pytest.raises(ConfigError, match="learning_rate"):
        Settings(run=RunConfig()).replace(learning_rate=1.0)  # its section was not built
    with pytest.raises(ConfigError, match="lora_r must be >= 1"):
        ModelConfig(lora_r=0)


def test_flag_names_are_unique_across_sections():
    names = [f.name for cls in SECTIONS for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)) == len(all_fields())
    envs = [f.metadata["env"] for cls in SECTIONS for f in dataclasses.fields(cls)]
    assert len(envs) == len(set(envs)) and all(envs)


def _help(verb: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[verb].format_help()


def test_help_lists_only_the_commands_sections_grouped():
    ref = _help("eval-reference")
    assert "rollout settings:" in ref and "judge settings:" in ref and "--max-turns" in ref
    for absent in ("--lora-r", "--sft-slip-prob", "--epsilon-high", "--wandb-mode", "--learning-rate"):
        assert absent not in ref, absent
    train = _help("train")
    for flag in ("--lora-r", "--sft-slip-prob", "--epsilon-high", "--wandb-mode", "--mode", "--resume"):
        assert flag in train, flag
    assert "grpo settings:" in train and "sft settings:" in train
    assert "--epsilon-high" not in _help("sft") and "--sft-epochs" not in _help("eval")


def test_eval_reference_ignores_grpo_settings_in_the_shell(tmp_path):
    """``NUM_GENERATIONS=1 LEARNING_RATE=abc inboxrl eval-reference`` runs: it reads neither."""
    from inboxrl.email.synth import make_data

    data = make_data(tmp_path / "data", seed=2, num_emails=120)
    env = {"PATH": "", "NUM_GENERATIONS": "1", "LEARNING_RATE": "abc", "EVAL_DATASET_SIZE": "3",
           "DB_PATH": str(data.db_path), "SCENARIOS_PATH": str(data.scenarios_path),
           "OUTPUT_DIR": str(tmp_path / "out")}
    env.update({k: os.environ[k] for k in ("PYTHONPATH", "HOME") if k in os.environ})
    proc = subprocess.run([sys.executable, "-m", "inboxrl.cli", "eval-reference"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "reference agent [read] on 3 scenarios" in proc.stdout


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
    from inboxrl.run.train import trainer_settings

    for env, want in (({"ROLLOUT_BATCH_SIZE": "3"}, 3), ({"ROLLOUT_BATCH_SIZE": "0"}, None)):  # 0 = all together
        s = build_settings(env=env)
        assert eval_settings(s.rollout, s.eval, s.run.seed).batch_size == want
        train = GRPOTrainer.rollout_settings(SimpleNamespace(settings=trainer_settings(s)), 1, 0)
        assert train.batch_size == want and not train.greedy and eval_settings(s.rollout, s.eval, 0).greedy

