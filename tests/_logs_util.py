"""Hand-built trajectories for the logs tests, and a reader of wandb 0.31 offline run files."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.email.types import ToolCall
from inboxrl.email.rubric import Rubric


def make_traj(scenario_id: str, reward: float, *, group_id: int = 0, rollout_index: int = 0,
              correct: bool = False, attempted: bool | None = None, idk: bool = False,
              found: bool = False, read: bool = False, unique: int = 0, repeated: int = 0,
              num_turns: int = 1, finish_reason: str = "answered", kept: bool = True,
              judge_error: str | None = None, answer: str | None = None,
              advantages: list[float] | None = None, turns: list[Turn] | None = None,
              model_tokens: int = 0, other_tokens: int = 0) -> Trajectory:
    if attempted is None:
        attempted = correct
    if answer is None:
        answer = "I don't know" if idk else ("ans-" + scenario_id if attempted else None)
    rubric = Rubric(answer_correct=correct, attempted_answer=attempted, returned_idk=idk,
                    final_answer=answer, found_reference=found, read_reference=read,
                    num_turns=num_turns, num_searches=unique + repeated, num_unique_searches=unique,
                    num_repeated_searches=repeated, judge_error=judge_error)
    if turns is None:
        turns = [Turn(index=i, tool_call=ToolCall("read_email", {"message_id": f"m{i}"}))
                 for i in range(len(advantages or []))]
    for turn, adv in zip(turns, advantages or []):
        turn.advantage = adv
    t = Trajectory(scenario_id=scenario_id, group_id=group_id, rollout_index=rollout_index,
                   turns=turns, rubric=rubric, reward=reward, finish_reason=finish_reason, kept=kept)
    t.append([1] * other_tokens, "system")
    t.append([2] * model_tokens, "model", turn=0)
    return t


def wait_for_wandb_exit(run_file: Path, timeout: float = 60.0) -> list:
    """The records of a run file once its ``exit`` record is written: wandb-core (a separate
    process) may still be writing the file when ``run.finish()`` returns."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_wandb_records(run_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_wandb_history_keys(run_file: Path) -> list[set[str]]:
    """The logged keys of each ``history`` record of a finished run file (waits for its exit)."""
    keys = []
    for rec in wait_for_wandb_exit(run_file):
        if rec.WhichOneof("record_type") == "history":
            keys.append({it.key or "/".join(it.nested_key) for it in rec.history.item})
    return keys


def read_wandb_history(run_file: Path) -> list[dict]:
    """Each ``history`` record of a finished run file as ``{key: value}`` (with ``_step``)."""
    return [{it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in rec.history.item}
            for rec in wait_for_wandb_exit(run_file) if rec.WhichOneof("record_type") == "history"]


def read_wandb_records(run_file: Path) -> list:
    """The protobuf ``Record``s of a wandb 0.31 ``run-*.wandb`` file.

    Layout: a 7-byte ``:W&B`` header, then LevelDB-log framing in 32 KiB blocks (file offsets,
    header included): each chunk is CRC32 (4 bytes), length (2, little-endian), type (1: full,
    2: first, 3: middle, 4: last), then data; a block tail under 7 bytes is padding.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    if len(data) < 7:
        return []
    assert data[:4] == b":W&B", "not a wandb run file"
    block, pos, parts, records = 32768, 7, [], []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        parts.append(chunk)
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            records.append(rec)
            parts = []
        elif kind == 2:
            parts = [chunk]
    return records


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
