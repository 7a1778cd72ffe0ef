"""The peer of `sixfold bench crawler`: Scrapy crawling the same seeds under the same rules, in its own process.

`python -m sixfold.crawler.bench_scrapy --seeds FILE --out STATS.json ...` runs one Spider that
follows every link Scrapy's LinkExtractor finds on an HTML page (it reads <base href> and skips
mailto:, javascript: and non-HTML extensions itself), restricted to the seeds' hosts (allowed_domains), with tracking
parameters dropped the way our canonicaliser drops them. robots.txt is obeyed, there is no
download delay and no AutoThrottle, and concurrency, per-host concurrency, depth, page budget,
size limit and user agent come from the command line so they match our crawler's. Scrapy's own
stats (elapsed_time_seconds, response counts) are written to STATS.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def scrapy_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": args.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.per_host,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "DEPTH_LIMIT": args.depth,
        "CLOSESPIDER_PAGECOUNT": args.max_pages,
        "DOWNLOAD_MAXSIZE": args.max_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "DOWNLOAD_TIMEOUT": args.timeout,
        "REDIRECT_MAX_TIMES": args.max_redirects,
        "USER_AGENT": args.user_agent,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, help="file with one seed URL a line")
    parser.add_argument("--out", required=True, help="where Scrapy's stats go (JSON)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=1)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--max-pages", type=int, default=0)
    parser.add_argument("--max-bytes", type=int, default=5_000_000)
    parser.add_argument("--max-redirects", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--user-agent", default="Scrapy (sixfold bench peer)")
    parser.add_argument("--tracking", default="utm_source,utm_medium,utm_campaign,utm_content,utm_term,fbclid,gclid")
    args = parser.parse_args(argv)

    import scrapy
    from scrapy.crawler import CrawlerProcess
    from scrapy.http import HtmlResponse, Response
    from scrapy.linkextractors import LinkExtractor
    from w3lib.url import url_query_cleaner

    seeds = [line.strip() for line in Path(args.seeds).read_text().splitlines() if line.strip()]
    hosts = sorted({urlsplit(url).hostname or "" for url in seeds})
    tracking = tuple(args.tracking.split(","))

    class SitePeer(scrapy.Spider):
        name = "sixfold-bench-peer"
        allowed_domains = hosts
        extractor = LinkExtractor()  # allow_domains would compare "host:port"; the offsite check uses hosts

        async def start(self) -> AsyncIterator[scrapy.Request]:
            for url in seeds:
                yield scrapy.Request(url, callback=self.parse)

        def parse(self, response: Response) -> Iterator[scrapy.Request]:
            if not isinstance(response, HtmlResponse):
                return
            assert self.crawler.stats is not None
            self.crawler.stats.inc_value("bench/html_pages")
            for link in self.extractor.extract_links(response):
                yield response.follow(url_query_cleaner(link.url, tracking, remove=True, keep_fragments=False),
                                      callback=self.parse)

    process = CrawlerProcess(settings=scrapy_settings(args))
    crawler = process.create_crawler(SitePeer)
    process.crawl(crawler)
    process.start()
    assert crawler.stats is not None
    stats = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in crawler.stats.get_stats().items()}
    import scrapy as scrapy_module

    Path(args.out).write_text(json.dumps({"scrapy_version": scrapy_module.__version__, "settings": scrapy_settings(args),
                                          "stats": stats}, indent=1, default=str))


if __name__ == "__main__":
    main()
