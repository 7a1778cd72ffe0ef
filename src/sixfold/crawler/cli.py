"""`sixfold crawl ...`: run a crawl, serve the local test site."""

from __future__ import annotations

import typer

crawl_app = typer.Typer(help="Web crawler: a polite, trap-proof crawl of seed URLs; a local test site to crawl.",
                        no_args_is_help=True)

# `run` (sixfold.crawler.run) and `site` (sixfold.crawler.site) register their commands below.
