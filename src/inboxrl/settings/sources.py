"""Build the sections a command uses from its sources, and the command's ``--flags``.

Precedence: CLI flags (``--learning-rate 1e-5``) > environment variables (``LEARNING_RATE=1e-5``)
> a YAML file (``--config run.yaml``, keys = flat setting names) > defaults. Only the requested
sections are read and validated: a YAML file or an environment that sets GRPO settings does
not stop a command that has no GRPO section. A YAML key that is no setting at all is an error.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from inboxrl.settings.base import ConfigError, Section, coerce
from inboxrl.settings.sections import SECTIONS, Settings, all_fields


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
    unknown = sorted(set(data) - set(all_fields()))
    if unknown:
        raise ConfigError(f"config file {path} has unknown settings: {', '.join(unknown)}")
    return data


def _section_values(cls: type[Section], cli: Mapping[str, Any], env: Mapping[str, str],
                    yaml_values: Mapping[str, Any], yaml_path: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in yaml_values:
            values[f.name] = coerce(f.name, f.type, yaml_values[f.name], f"config file {yaml_path}")
        name = f.metadata.get("env")
        if name and name in env and env[name] != "":
            values[f.name] = coerce(f.name, f.type, env[name], f"environment variable {name}")
        if cli.get(f.name) is not None:
            values[f.name] = coerce(f.name, f.type, cli[f.name], f"--{f.name.replace('_', '-')}")
    return values


def build_settings(sections: Sequence[type[Section]] = SECTIONS, cli: Mapping[str, Any] | None = None,
                   env: Mapping[str, str] | None = None, yaml_path: str | None = None) -> Settings:
    """Merge defaults < YAML < environment < CLI into the validated ``sections``."""
    env = os.environ if env is None else env
    yaml_values = _load_yaml(yaml_path) if yaml_path else {}
    built = {cls.title: cls(**_section_values(cls, cli or {}, env, yaml_values, yaml_path)) for cls in sections}
    return Settings(**built)


def _help(f: dataclasses.Field) -> str:
    env = f.metadata.get("env")
    return f.metadata["help"] + (f" [env {env}]" if env else "") + f" (default: {f.default!r})"


def add_settings_arguments(parser: argparse.ArgumentParser, sections: Sequence[type[Section]]) -> None:
    """One ``--flag`` per setting of ``sections``, one argument group per section (default None =
    not given on the command line), and ``--config``."""
    for cls in sections:
        group = parser.add_argument_group(f"{cls.title} settings", cls.description)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.type in (bool, "bool"):
                group.add_argument(flag, dest=f.name, default=None, nargs="?", const="true", metavar="BOOL",
                                   help=_help(f))
            else:
                group.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=_help(f))
    parser.add_argument("--config", default=None, help="YAML file of settings (setting: value).")


def settings_from_args(args: argparse.Namespace, sections: Sequence[type[Section]],
                       env: Mapping[str, str] | None = None) -> Settings:
    return build_settings(sections, vars(args), env=env, yaml_path=getattr(args, "config", None))
