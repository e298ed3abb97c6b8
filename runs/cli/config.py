"""``esc-eval config schema``: the JSON Schema of a config file, for editor completion of TOML files."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="config file tools")
    actions = config.add_subparsers(required=True, metavar="ACTION")
    schema = actions.add_parser("schema", help="print the JSON Schema of a config file (for TOML editor completion)")
    schema.set_defaults(handler=_schema)


def _schema(args: argparse.Namespace) -> int:
    from esc_eval.runs.config_schema import config_schema

    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0
