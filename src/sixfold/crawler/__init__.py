"""Web crawler: a polite, trap-proof crawl (frontier, fetchers, robots, extractor, dedup) and its local test site.

Entry points: `sixfold crawl run` / `sixfold.crawler.run.crawl` (one crawl, resumable),
`sixfold.crawler.cycle` (the same work as Nutch-style batch stages for the `crawl_cycle` DAG),
`sixfold.crawler.spark_dedup` (near-duplicate grouping over the whole crawl, jobs/crawl_dedup.py).
Rooms: frontier (Mercator queues, persisted), fetcher (+ dns, ssrf), politeness (robots.txt,
AutoThrottle), extract (canonical URLs, links, text), dedup (sha256, SimHash), traps.
"""
