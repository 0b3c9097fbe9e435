"""Showing the configuration to people: ``--print-config``, ``--help`` lines, the docs table.

All three are generated from the field declarations in :mod:`millpond.app.config`, so
the docs cannot drift from what the loader accepts.
"""

from __future__ import annotations

from millpond.app.config import Setting, sections, settings
from millpond.app.loading import Resolved, toml_value
from millpond.validation import mask_secret, value_at


def print_config(resolved: Resolved) -> str:
    """The effective configuration as TOML, each value annotated with where it came from.

    Secrets are masked ("••••" + last 4 characters) and commented out, so the output
    can be kept as a ``millpond.toml`` without carrying a masked token as a value."""
    source = f" (config file: {resolved.config_file})" if resolved.config_file else ""
    lines = [f"# millpond serve: the effective configuration{source}",
             "# after each value, where it came from: default, the file and line, env or flag",
             ""]
    section: tuple[str, ...] = ()
    for setting in settings():
        if setting.path[:-1] != section:
            section = setting.path[:-1]
            lines += ["", f"[{'.'.join(section)}]"]
        origin = resolved.origins[setting.key]
        value = value_at(resolved.config, setting.path)
        name = setting.path[-1]
        if value is None:
            lines.append(f"# {name} is not set ({origin})")
        elif setting.secret:
            lines.append(f"# {name} = {toml_value(mask_secret(value))}  "
                         f"# {origin} (secret, masked)")
        else:
            lines.append(f"{name} = {toml_value(value)}  # {origin}")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def help_text(setting: Setting) -> str:
    """A flag's ``--help`` line: the description, what fits, the variable and the default."""
    default = "not set" if setting.default is None else toml_value(setting.default)
    return (f"{setting.description} Accepts {setting.expected}. "
            f"[env {setting.env}; default: {default}]")


def docs_table() -> str:
    """The README's table of settings (Markdown), one row per setting, by section."""
    rows = ["| Setting | Accepts | Default | Environment / flag | Description |",
            "|---|---|---|---|---|"]
    described = sections()
    section: tuple[str, ...] = ()
    for setting in settings():
        if setting.path[:-1] != section and setting.path[:-1]:
            section = setting.path[:-1]
            rows.append(f"| **`[{'.'.join(section)}]`** | | | | "
                        f"{described.get(section[0], '')} |")
        default = "(not set)" if setting.default is None else f"`{toml_value(setting.default)}`"
        where = f"`{setting.env}`" + (f"<br>`{setting.flag}`" if setting.flag else "")
        secret = " Secret: never shown." if setting.secret else ""
        rows.append(f"| `{setting.key}` | {_cell(setting.expected)} | {default} | {where} | "
                    f"{_cell(setting.description)}{secret} |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
