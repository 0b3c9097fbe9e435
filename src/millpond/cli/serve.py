"""``millpond serve``: collector, admin API, pumps and console in one process.

The flags are generated from the settings that declare one (:mod:`millpond.app.config`),
with their help text, so a flag, its variable and its ``millpond.toml`` key cannot
disagree. Click only collects text here: converting and validating is the loader's job,
so a bad ``--port`` reads like a bad ``MILLPOND_PORT`` (field, value, origin, example).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from millpond.app.config import Setting, settings
from millpond.app.render import help_text


def _param(setting: Setting) -> str:
    return setting.key.replace(".", "_")


def _option(setting: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    assert setting.flag is not None
    if setting.is_bool:
        return click.option(f"{setting.flag}/--no-{setting.flag[2:]}", _param(setting),
                            default=None, help=help_text(setting))
    metavar = setting.metavar or "|".join(setting.choices) or {
        int: "INTEGER", float: "NUMBER"}.get(setting.base, "TEXT")
    return click.option(setting.flag, _param(setting), default=None, metavar=metavar,
                        help=help_text(setting))


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per setting with a flag, in declaration order."""
    for setting in reversed([s for s in settings() if s.flag]):
        func = _option(setting)(func)
    return func


@click.command()
@config_options
@click.option("--config", "config_file", default=None, metavar="FILE",
              help="Read settings from this millpond.toml (env MILLPOND_CONFIG). Precedence: "
                   "defaults < file < MILLPOND_* variables < flags.")
@click.option("--print-config", is_flag=True,
              help="Print the effective configuration as TOML, each value with where it came "
                   "from (secrets masked), and exit.")
@click.pass_context
def serve(ctx: click.Context, config_file: str | None, print_config: bool,
          **values: Any) -> None:
    """Run the millpond server on the embedded store.

    Every setting can also come from a millpond.toml or a MILLPOND_* variable; see
    --print-config for what is in effect and where each value came from.

    Logs go to stderr; stdout has only the generated admin token (first start) and the
    "millpond serving on URL" line, printed once the server answers requests.
    """
    from millpond.app import ConfigError, resolve
    from millpond.app.render import print_config as render
    from millpond.cli.output import fail

    flags = {s.key: values[_param(s)] for s in settings() if s.flag
             and ctx.get_parameter_source(_param(s)) is ParameterSource.COMMANDLINE}
    try:
        resolved = resolve(flags, os.environ, config_file)
    except ConfigError as exc:
        fail(str(exc), code=2)
    if print_config:
        click.echo(render(resolved), nl=False)
        return
    from millpond import logs
    from millpond.server import StartupError
    from millpond.server import serve as run

    config = resolved.config
    logs.setup(config.logging.level, config.logging.format,
               access_log=config.logging.access_log)
    try:
        run(config)
    except StartupError as exc:
        fail(str(exc))
