"""The start-up gate on configuration, and the effective configuration `sixfold config check` prints.

`startup_settings` is what every long-running door calls before it starts anything (`sixfold
serve`, `sixfold services up`, the stream consumers): the settings, or one SettingsError naming
every bad value, the paths under SIXFOLD_HOME included (a home that cannot hold `var/` would
otherwise fail at the first write, after half the server started). `effective` lists each
setting with its value and where it came from, secrets masked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

from sixfold.platform.settings import Settings, SettingsError, _masked_url, _summary

# Fields whose variable is not SIXFOLD_<FIELD>, and fields no variable sets (None).
_VARIABLE: dict[str, str | None] = {"cassandra_contact": "SIXFOLD_CASSANDRA_HOST"}
# Read by one tool of their own, not by the settings object: known, so not reported as typos.
_OTHER_VARIABLES = ("SIXFOLD_BLOB_URL", "SIXFOLD_DOCS_NODE_DIR")
_OTHER_PREFIXES = ("SIXFOLD_BENCH_", "SIXFOLD_EXPERIMENT_", "SIXFOLD_TEST_")
_SECRET_WORDS = ("password", "secret", "token", "api_key")


@dataclass(frozen=True)
class EffectiveSetting:
    name: str
    variable: str | None
    value: str
    source: str  # "default", "profile default", "derived", or the variable that set it


def variable_of(field_name: str) -> str | None:
    """The environment variable that sets a Settings field, or None for a derived one."""
    return _VARIABLE.get(field_name, f"SIXFOLD_{field_name.upper()}")


def path_problems(settings: Settings) -> list[tuple[str, str]]:
    """Why SIXFOLD_HOME cannot hold var/ (its spool, lake, store and blobs), if it cannot."""
    problems = []
    for path in (settings.home, settings.var, settings.spool_dir, settings.lake_dir, settings.blob_dir):
        if path.exists() and not path.is_dir():
            problems.append(("SIXFOLD_HOME", f"SIXFOLD_HOME={str(settings.home)!r}: {path} is a file, not a "
                                             "directory; point SIXFOLD_HOME at a directory this user can write"))
            return problems
    existing = settings.var
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problems.append(("SIXFOLD_HOME", f"SIXFOLD_HOME={str(settings.home)!r}: {existing} is not a writable "
                                         "directory, so var/ cannot be made there; choose a writable directory"))
    elif settings.sqlite_path.is_dir():
        problems.append(("SIXFOLD_HOME", f"SIXFOLD_HOME={str(settings.home)!r}: the SQLite store "
                                         f"{settings.sqlite_path} is a directory; move it away"))
    return problems


def startup_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings, checked whole (every variable and the paths): a SettingsError lists each bad value."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)  # raises with every bad variable
    problems = path_problems(settings)
    if problems:
        raise SettingsError(_summary(problems), problems)
    return settings


def check(env: Mapping[str, str] | None = None) -> tuple[Settings | None, list[tuple[str, str]]]:
    """(settings, []) when all is good, else (settings or None, every (variable, reason)). With bad variables,
    the settings are what the others give (each bad one at its default), for showing, never for running."""
    env = os.environ if env is None else env
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        bad = {var for var, _reason in exc.problems}
        try:
            rest = Settings.from_env({k: v for k, v in env.items() if k not in bad})
        except SettingsError:
            rest = None
        return rest, exc.problems
    return settings, path_problems(settings)


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """SIXFOLD_* variables nothing reads (a typo leaves its setting at the default)."""
    env = os.environ if env is None else env
    known = {v for f in fields(Settings) if (v := variable_of(f.name))} | {"SIXFOLD_HOME", "SIXFOLD_PROFILE"}
    return sorted(name for name in env if name.startswith("SIXFOLD_") and name not in known
                  and name not in _OTHER_VARIABLES and not name.startswith(_OTHER_PREFIXES))


def _shown(name: str, value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int) and isinstance(value[0], str):
        text = f"{value[0]}:{value[1]}"
    elif isinstance(value, (tuple, frozenset)):
        text = ",".join(str(v) for v in sorted(value)) or "(none)"
    elif value is None:
        text = "all" if name == "typeahead_owned_shards" else "(none)"
    elif isinstance(value, bool):
        text = "1" if value else "0"
    else:
        text = str(value)
    if any(word in name for word in _SECRET_WORDS) and text:
        return "***"
    return _masked_url(text) if "://" in text else text


def effective(settings: Settings, env: Mapping[str, str] | None = None,
              bad: Mapping[str, str] | None = None) -> list[EffectiveSetting]:
    """Every setting, its value as this process uses it, and where that value came from; a variable in `bad`
    shows its raw value, marked."""
    env = os.environ if env is None else env
    bad = bad or {}
    profile_defaults = {"spark_master", "shortener_memcached"} if settings.profile == "cluster" else set()
    rows = []
    for f in fields(Settings):
        var = variable_of(f.name)
        if var is None:
            source = "derived"
        elif var in env:
            source = var
        else:
            source = "profile default" if f.name in profile_defaults else "default"
        if var in bad:
            shown = "***" if any(word in f.name for word in _SECRET_WORDS) else _masked_url(env.get(var, ""))
            rows.append(EffectiveSetting(f.name, var, shown, f"{var} (BAD)"))
            continue
        rows.append(EffectiveSetting(f.name, var, _shown(f.name, getattr(settings, f.name)), source))
    return rows
