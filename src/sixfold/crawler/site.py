"""The crawler's local test site: a generated multi-host web site with realistic traps, and its ground truth.

`build(SiteSpec())` gives a pure `Site`: what every (host, path?query) returns, decided by the seed
alone, and `Site.truth(port)` says what a correct crawler must do with it (`SiteTruth`). Serving it
over HTTP is `sixfold.crawler.site_server`. This module is the oracle the crawler is checked
against, so it imports nothing of the crawler and computes its truth from its own plan, never by
parsing its own pages.

Hosts are 127.0.0.2, 127.0.0.3, ... on one port; each has a role:

- `main` (first host): robots.txt disallows /private/ (but allows /private/press/) and /cgi-bin/,
  and a `BadBot` group disallows everything (group selection); it holds the link-form showcase,
  a paginated archive addressed by query strings, redirect chains (up to 3 hops, one crossing
  hosts), redirect loops, errors (404, 500, 503 with Retry-After), non-HTML files (PDF, PNG, an
  octet stream and an over-sized HTML page), exact duplicates (a print version, a mirror on the
  slow host), near duplicates (an updated article, one word changed), `<base href>` pages, and
  the trap families;
- `polite`: robots.txt sets Crawl-delay (`SiteSpec.crawl_delay_s`), disallows /drafts/, few pages;
- `slow`: every response waits `slow_host_latency_s` first (self-throttling is observable);
- `no_robots`: robots.txt answers 404 (RFC 9309: unavailable, so everything is allowed);
- `robots_error`: robots.txt answers 500 (RFC 9309: unreachable, so everything is disallowed);
- further hosts are `plain` (robots.txt disallows /private/).

Links come in every form an extractor must canonicalise: relative with `./` and `../`, root
relative, absolute, upper-case scheme, explicit port, no path at all, fragments, fragment-only,
query parameters in shuffled order, query-only relative links, utm_* and fbclid tracking
parameters, cross-host links, `<base href>` (root-relative and absolute), rel=nofollow (always to
a page that is also linked normally, so following or not changes nothing), and mailto:, tel:,
javascript: and an external `.invalid` link that must be ignored.
"""

from __future__ import annotations

import hashlib
import html
import json
import posixpath
import random
import re
import struct
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ROLES: tuple[str, ...] = ("main", "polite", "slow", "no_robots", "robots_error")
TRAP_FAMILIES: tuple[str, ...] = ("calendar", "cyclic", "session_ids", "query_explosion", "deep", "long_url")
# how an href is written (see `Site._href`); a link without a form gets one by a hash of its place
SAME_HOST_FORMS: tuple[str, ...] = ("relative", "dot", "root", "absolute", "upper_scheme", "fragment", "tracking",
                                    "explicit_port")
CROSS_HOST_FORMS: tuple[str, ...] = ("absolute", "upper_scheme", "fragment", "tracking", "bare")


class SiteSpecError(ValueError):
    """A SiteSpec value the site cannot be built from; the message says what to use instead."""


@dataclass(frozen=True)
class SiteSpec:
    """Everything that shapes the site; the same spec always gives the same bytes."""

    hosts: int = 5  # distinct hosts, served on 127.0.0.<first_ip>, <first_ip>+1, ... on one port
    pages_per_host: int = 30  # normal content pages per host (root, sections, articles)
    seed: int = 7
    crawl_delay_s: float = 0.2  # Crawl-delay of the polite host; 0 leaves the line out (benchmarks)
    traps: bool = True  # include the trap families (all on the main host)
    polite_host_pages: int = 6  # the Crawl-delay host's pages: few, so a polite crawl stays quick
    slow_host_latency_s: float = 0.05  # extra wait before every answer of the slow host
    words_per_page: tuple[int, int] = (120, 320)
    near_duplicate_words: int = 10_000  # long articles, so one changed word moves few simhash bits
    near_duplicate_max_bits: int = 1  # the variant's word is picked so the site's own simhash moves <= this
    huge_bytes: int = 6 * 2**20  # the over-sized HTML page and the octet stream; above any sane page limit
    retry_after_s: int = 1  # Retry-After of the 503
    archive_pages: int = 3  # /archive?page=N&year=... pages, N = 1..archive_pages
    calendar_start: tuple[int, int] = (2026, 11)  # the calendar trap's entry month
    first_ip: int = 2  # 127.0.0.1 is left to everything else on the machine
    tracking_params: tuple[str, ...] = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "fbclid")
    vocabulary: int = 4000  # wordfreq's most frequent English words the text is drawn from
    blocked_agent: str = "BadBot"  # robots.txt group on the main host that disallows everything

    def validate(self) -> None:
        if not 1 <= self.hosts <= 250:
            raise SiteSpecError(f"hosts={self.hosts}: use 1..250 (one 127.0.0.N address each)")
        if self.first_ip < 2 or self.first_ip + self.hosts > 255:
            raise SiteSpecError(f"first_ip={self.first_ip} with hosts={self.hosts} leaves 127.0.0.2..254; "
                                f"lower hosts or first_ip")
        if self.pages_per_host < 12:
            raise SiteSpecError(f"pages_per_host={self.pages_per_host} is too few for the duplicate, base-href and "
                                f"redirect fixtures of the main host; use at least 12")
        if self.polite_host_pages < 2:
            raise SiteSpecError(f"polite_host_pages={self.polite_host_pages}: use at least 2")
        if self.crawl_delay_s < 0 or self.slow_host_latency_s < 0:
            raise SiteSpecError("crawl_delay_s and slow_host_latency_s must be >= 0 (0 disables them)")
        lo, hi = self.words_per_page
        if not 10 <= lo <= hi:
            raise SiteSpecError(f"words_per_page={self.words_per_page}: need 10 <= low <= high")
        if self.archive_pages < 2:
            raise SiteSpecError(f"archive_pages={self.archive_pages}: use at least 2 (the pages link each other)")


@dataclass
class SiteTruth:
    """What a correct crawler does on the site. URLs are absolute and canonical: lower-case scheme and
    host, no default port, no fragment, tracking parameters dropped, query sorted."""

    seeds: list[str]  # each host's root "http://127.0.0.N:PORT/"
    pages: set[str]  # every normal page a correct crawler fetches exactly once
    disallowed: set[str]  # linked (or seed) URLs robots.txt disallows: never fetched
    crawl_delay: dict[str, float]  # "127.0.0.N:PORT" -> Crawl-delay seconds (0.0: none), every host
    exact_duplicates: list[set[str]]  # groups of URLs serving byte-identical bodies
    near_duplicates: list[set[str]]  # groups whose text differs by a word (simhash distance <= 3)
    redirects: dict[str, str]  # url -> final url (chains of at most 3 hops; every final is in pages)
    redirect_loops: set[str]  # urls that redirect in a cycle
    traps: dict[str, str]  # trap family -> regex (re.search on the canonical URL) matching its URLs
    errors: dict[str, int]  # url -> HTTP status
    non_html: set[str]  # files a crawler skips by content type or size (huge_bytes)
    hosts: list[str] = field(default_factory=list)  # "127.0.0.N:PORT" of every host, in order
    roles: dict[str, str] = field(default_factory=dict)  # host -> role (see the module docstring)
    robots_status: dict[str, int] = field(default_factory=dict)  # host -> status of its /robots.txt
    latency_s: dict[str, float] = field(default_factory=dict)  # host -> extra wait before each answer
    external: set[str] = field(default_factory=set)  # linked URLs outside the site: never fetched
    nofollow: set[str] = field(default_factory=set)  # targets of rel=nofollow links (all also in pages)
    huge_bytes: int = 0  # size of the over-sized files in non_html
    notes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({k: sorted(v) if isinstance(v, set) else
                           [sorted(g) for g in v] if k.endswith("duplicates") else v
                           for k, v in asdict(self).items()}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SiteTruth:
        raw = json.loads(text)
        for name in ("pages", "disallowed", "redirect_loops", "non_html", "external", "nofollow"):
            raw[name] = set(raw[name])
        for name in ("exact_duplicates", "near_duplicates"):
            raw[name] = [set(g) for g in raw[name]]
        return cls(**raw)


# ---- the plan: what each host serves, independent of the port -------------------------------------
Target = tuple[int, str]  # (host index, canonical key "path?sorted-query")


@dataclass(frozen=True)
class Link:
    target: Target | None  # None: a raw href (mailto:, javascript:, external) that is not the site's
    text: str
    form: str = ""  # how the href is written (SAME_HOST_FORMS, "bare", "shuffled", "query_only"); "" picks one
    raw: str = ""
    nofollow: bool = False


@dataclass(frozen=True)
class HtmlPage:
    title: str
    paragraphs: tuple[str, ...]
    links: tuple[Link, ...]
    base: str | None = None  # "root" or "absolute": a <base href> to `base_dir`
    base_dir: str = ""
    absolute_only: bool = False  # every href absolute, so the bytes do not depend on the URL served
    content_type: str = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Redirect:
    status: int
    location: Target
    relative: bool = False  # Location written as a root-relative path


@dataclass(frozen=True)
class Alias:
    """Serves the same bytes as another (absolute-only) page: an exact duplicate."""

    of: Target


@dataclass(frozen=True)
class ErrorPage:
    status: int


@dataclass(frozen=True)
class File:
    content_type: str
    kind: str  # "pdf", "png", "huge"


Resource = HtmlPage | Redirect | Alias | ErrorPage | File


def page_key(path: str, query: Iterable[tuple[str, str]] = ()) -> str:
    query = list(query)
    return path + ("?" + urlencode(sorted(query)) if query else "")


# frequent words a generated page should not say (wordfreq counts the web as it is)
_CRUDE = frozenset({"shit", "fuck", "fucking", "fucked", "fuckin", "sex", "sexy", "sexual", "ass", "asshole", "bitch",
                    "dick", "porn", "rape", "bullshit", "naked", "nude", "suck", "sucks", "crap", "damn", "hell",
                    "gay", "kill", "killed", "dead", "pussy", "cock", "whore", "slut", "nigga", "penis", "tits"})


@lru_cache(maxsize=4)
def _vocabulary(size: int) -> tuple[str, ...]:
    import wordfreq

    return tuple(w for w in wordfreq.top_n_list("en", size)
                 if w.isascii() and w.isalpha() and len(w) >= 3 and w not in _CRUDE)


class _Writer:
    """Seeded English-looking text from wordfreq's list, Zipf-weighted the way prose is."""

    def __init__(self, spec: SiteSpec) -> None:
        self.words = _vocabulary(spec.vocabulary)
        total = 0.0
        self.cum: list[float] = []
        for rank in range(len(self.words)):
            total += 1.0 / (rank + 1) ** 0.9
            self.cum.append(total)

    def words_of(self, rng: random.Random, n: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum, k=n)

    def paragraphs(self, rng: random.Random, n_words: int) -> tuple[str, ...]:
        out: list[str] = []
        left = n_words
        while left > 0:
            sentences = []
            for _ in range(rng.randint(3, 6)):
                n = min(left, rng.randint(6, 16))
                if n <= 0:
                    break
                words = self.words_of(rng, n)
                sentences.append(" ".join(words).capitalize() + ".")
                left -= n
            out.append(" ".join(sentences))
        return tuple(out)

    def title(self, rng: random.Random) -> str:
        return " ".join(w.capitalize() for w in rng.sample(self.words[:1500], 3))


def _rng(spec: SiteSpec, *parts: object) -> random.Random:
    return random.Random("/".join(str(p) for p in (spec.seed, *parts)))


def _words_of_text(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _simhash(words: list[str], k: int = 3) -> int:
    """The site's own simhash (64-bit, k-word shingles, blake2b), used only to pick near-duplicate edits."""
    import numpy as np

    shingles = [" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))]
    digests = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest() for s in shingles)
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(-1, 8), axis=1)
    tally = (bits.astype(np.int64) * 2 - 1).sum(axis=0)
    return int("".join("1" if t > 0 else "0" for t in tally), 2)


class _Planner:
    """Lays out every host's resources and links; the result is pure data (`Site._plan`)."""

    def __init__(self, spec: SiteSpec) -> None:
        self.spec = spec
        self.writer = _Writer(spec)
        self.roles = [ROLES[i] if i < len(ROLES) else "plain" for i in range(spec.hosts)]
        self.plan: list[dict[str, Resource]] = [{} for _ in range(spec.hosts)]
        self.articles: list[list[str]] = [[] for _ in range(spec.hosts)]
        self.sections: list[list[str]] = [[] for _ in range(spec.hosts)]
        self.extra_links: list[dict[str, list[Link]]] = [{} for _ in range(spec.hosts)]
        self.absolute_only: set[str] = set()  # main-host articles whose hrefs are all absolute (duplicated)
        self.near: dict[str, str] = {}  # main-host article -> its one-word-changed copy
        self.bases: dict[str, tuple[str, str]] = {}  # main-host article -> (<base> kind, base directory)

    def role_index(self, role: str) -> int | None:
        return self.roles.index(role) if role in self.roles else None

    # -- layout of the ordinary pages ---------------------------------------------------------------
    def layout(self, h: int) -> None:
        spec, rng = self.spec, _rng(self.spec, "layout", h)
        n = spec.polite_host_pages if self.roles[h] == "polite" else spec.pages_per_host
        n_sections = max(1, min(n - 1, round((n - 1) / 7)))
        names = rng.sample(self.writer.words[:2000], n_sections + n)
        self.sections[h] = [f"/s/{w}/" for w in names[:n_sections]]
        for i in range(n - 1 - n_sections):
            section = self.sections[h][i % n_sections]
            slug = f"{names[n_sections + i]}-{i}"
            year = 2020 + i % 6
            self.articles[h].append(f"{section}{year}/{slug}.html" if i % 3 == 2 else f"{section}{slug}.html")

    def ordinary_pages(self, h: int) -> None:
        spec, writer = self.spec, self.writer
        all_pages = ["/", *self.sections[h], *self.articles[h]]
        others = [i for i in range(spec.hosts) if i != h]
        for path in all_pages:
            rng = _rng(spec, "page", h, path)
            links: list[Link] = []
            if path == "/":
                links += [Link((h, s), writer.title(rng)) for s in self.sections[h]]
                links += [Link((o, "/"), f"partner site {o}") for o in others]
            elif path in self.sections[h]:
                links.append(Link((h, "/"), "Home"))
                links += [Link((h, a), writer.title(rng)) for a in self.articles[h] if a.startswith(path)]
            else:
                links.append(Link((h, "/"), "Home"))
                links.append(Link((h, path[: path.index("/", 3) + 1]), "Section"))
            for target in rng.sample(all_pages, min(len(all_pages), rng.randint(2, 5))):
                links.append(Link((h, target), writer.title(rng)))
            if others and rng.random() < 0.5:
                o = rng.choice(others)
                o_pages = ["/", *self.sections[o], *self.articles[o]] if self.articles[o] else ["/"]
                links.append(Link((o, rng.choice(o_pages)), writer.title(rng)))
            links += self.extra_links[h].get(path, [])
            n_words = rng.randint(*spec.words_per_page)
            self.plan[h][path] = HtmlPage(writer.title(rng), writer.paragraphs(rng, n_words), tuple(links))

    def add(self, h: int, path: str, link: Link) -> None:
        self.extra_links[h].setdefault(path, []).append(link)

    # -- the main host's fixtures -------------------------------------------------------------------
    def main_fixtures(self) -> None:
        spec, writer, h = self.spec, self.writer, 0
        plan, arts = self.plan[h], self.articles[h]
        slow = self.role_index("slow")

        def page(path: str, title: str, links: list[Link], **kw: object) -> None:
            prng = _rng(spec, "fixture", path)
            plan[path] = HtmlPage(title, writer.paragraphs(prng, prng.randint(*spec.words_per_page)),
                                  tuple(links), **kw)  # type: ignore[arg-type]

        # every link form, on the root page
        for i, form in enumerate(("relative", "dot", "root", "absolute", "upper_scheme", "fragment", "tracking",
                                  "explicit_port")):
            self.add(h, "/", Link((h, arts[i % len(arts)]), f"showcase {form}", form=form))
        self.add(h, "/", Link((h, "/"), "this page, no path", form="bare"))
        self.add(h, "/", Link((h, self.sections[h][0]), "nofollow section", nofollow=True))

        # archive addressed by query strings (shuffled order, query-only relative links)
        year = str(spec.calendar_start[0])
        for n in range(1, spec.archive_pages + 1):
            links = [Link((h, page_key("/archive", [("page", str(n + d)), ("year", year)])), label, form="query_only")
                     for d, label in ((-1, "newer"), (1, "older")) if 1 <= n + d <= spec.archive_pages]
            links += [Link((h, a), f"archived {a}", form="absolute") for a in arts[n::spec.archive_pages]]
            page(page_key("/archive", [("page", str(n)), ("year", year)]), f"Archive {year}, page {n}", links)
        self.add(h, "/", Link((h, page_key("/archive", [("page", "1"), ("year", year)])), "archive", form="shuffled"))

        # robots.txt: disallowed and allowed-inside-disallowed
        for path in ("/private/salaries.html", "/private/reports/q3.html", "/private/press/kit.html"):
            page(path, f"Private {path}", [Link((h, "/private/secret-index.html"), "more")])
        self.add(h, "/", Link((h, "/private/salaries.html"), "salaries"))
        self.add(h, self.sections[h][0], Link((h, "/private/reports/q3.html"), "q3 report"))
        self.add(h, "/", Link((h, "/private/press/kit.html"), "press kit"))
        self.add(h, "/", Link((h, page_key("/cgi-bin/search", [("q", "crawler")])), "search"))
        plan[page_key("/cgi-bin/search", [("q", "crawler")])] = ErrorPage(500)

        # redirects: one hop, a 3-hop chain to a page reachable only through it, cross-host, loops
        plan[f"/old/{posixpath.basename(arts[0])}"] = Redirect(301, (h, arts[0]))
        self.add(h, arts[1], Link((h, f"/old/{posixpath.basename(arts[0])}"), "old link"))
        plan["/go/a"] = Redirect(302, (h, "/go/b"), relative=True)
        plan["/go/b"] = Redirect(307, (h, "/go/c"))
        plan["/go/c"] = Redirect(301, (h, "/news/launch.html"), relative=True)
        page("/news/launch.html", "Launch news", [Link((h, "/"), "Home", form="root")])
        self.add(h, "/", Link((h, "/go/a"), "go"))
        if spec.hosts > 1:
            other = slow if slow is not None else 1
            plan["/elsewhere"] = Redirect(301, (other, self.articles[other][0] if self.articles[other] else "/"))
            self.add(h, "/", Link((h, "/elsewhere"), "elsewhere"))
        plan["/loop/a"] = Redirect(302, (h, "/loop/b"))
        plan["/loop/b"] = Redirect(302, (h, "/loop/a"), relative=True)
        plan["/loop/self"] = Redirect(301, (h, "/loop/self"))
        self.add(h, arts[2], Link((h, "/loop/a"), "loop"))
        self.add(h, "/", Link((h, "/loop/self"), "self loop"))

        # errors
        plan["/gone.html"] = ErrorPage(404)
        plan["/broken"] = ErrorPage(500)
        plan["/busy"] = ErrorPage(503)
        for i, path in enumerate(("/gone.html", "/broken", "/busy")):
            self.add(h, arts[i], Link((h, path), f"error {path}"))
        self.add(h, "/", Link((h, "/gone.html"), "gone"))

        # non-HTML and over-sized
        plan["/files/report.pdf"] = File("application/pdf", "pdf")
        plan["/img/logo.png"] = File("image/png", "png")
        plan["/files/dump.bin"] = File("application/octet-stream", "huge")
        plan["/files/everything.html"] = File("text/html; charset=utf-8", "huge")
        for path in ("/files/report.pdf", "/img/logo.png", "/files/dump.bin", "/files/everything.html"):
            self.add(h, "/", Link((h, path), f"download {path}"))

        # exact duplicates: two articles made absolute-only; a print copy each; a mirror of the second
        dup_a, dup_b, near_c, near_d, base_e, base_f = arts[3:9]
        for a in (dup_a, dup_b):
            self.add(h, a, Link((h, f"/print/{posixpath.basename(a)}"), "print"))
        for a in (dup_a, dup_b):
            plan[f"/print/{posixpath.basename(a)}"] = Alias((h, a))
        if slow is not None:
            self.plan[slow][f"/mirror/{posixpath.basename(dup_b)}"] = Alias((h, dup_b))
            self.add(slow, "/", Link((slow, f"/mirror/{posixpath.basename(dup_b)}"), "mirror", form="root"))
        self.absolute_only = {dup_a, dup_b, near_c, near_d}

        # near duplicates: an updated copy with one word changed
        self.near = {}
        for a in (near_c, near_d):
            updated = a.replace(".html", "-updated.html")
            self.add(h, a, Link((h, updated), "updated version"))
            self.near[a] = updated

        # <base href>: root-relative and absolute, pointing at another section
        self.bases = {base_e: ("root", self.sections[h][-1]), base_f: ("absolute", self.sections[h][0])}

        # external and non-HTTP links to ignore
        for link in (Link(None, "mail us", raw="mailto:editor@example.invalid"),
                     Link(None, "call us", raw="tel:+15555550100"),
                     Link(None, "print", raw="javascript:window.print()"),
                     Link(None, "elsewhere on the web", raw="http://www.example.invalid/about")):
            self.add(h, "/", link)
        if spec.traps:
            for family, key in self.trap_entries().items():
                self.add(h, "/", Link((h, key), f"trap {family}", form="root"))

    def host_fixtures(self, h: int) -> None:
        """Per-role links of the other hosts: a disallowed draft, a private page, a 404."""
        role = self.roles[h]
        blocked = {"polite": "/drafts/next.html", "plain": "/private/notes.html"}.get(role)
        if blocked:
            prng = _rng(self.spec, "fixture", h, blocked)
            self.plan[h][blocked] = HtmlPage("Not for crawlers", self.writer.paragraphs(prng, 60),
                                             (Link((h, "/"), "Home"),))
            self.add(h, "/", Link((h, blocked), "draft"))
        if role == "no_robots":
            self.plan[h]["/missing.html"] = ErrorPage(404)
            self.add(h, "/", Link((h, "/missing.html"), "missing"))

    def trap_entries(self) -> dict[str, str]:
        y, m = self.spec.calendar_start
        return {"calendar": f"/calendar/{y}/{m:02d}/", "cyclic": "/cycle/a/b/",
                "session_ids": page_key("/shop/", [("sid", _sid(self.spec, "/"))]),
                "query_explosion": page_key("/catalog", [("sort", "price")]), "deep": "/deep/1/",
                "long_url": "/long/start/"}

    def finish_main(self) -> None:
        """Apply the main host's page rewrites that need the ordinary pages to exist."""
        spec, plan = self.spec, self.plan[0]
        for path in self.absolute_only:
            p = plan[path]
            assert isinstance(p, HtmlPage)
            n_words = spec.near_duplicate_words if path in self.near else len(" ".join(p.paragraphs).split())
            paragraphs = self.writer.paragraphs(_rng(spec, "long", path), n_words) if path in self.near else p.paragraphs
            links = tuple(replace(lk, form="absolute") for lk in p.links)
            plan[path] = HtmlPage(p.title, paragraphs, links, absolute_only=True)
        for path, updated in self.near.items():
            p = plan[path]
            assert isinstance(p, HtmlPage)
            plan[updated] = HtmlPage(p.title, _one_word_changed(spec, self.writer, p.paragraphs, path), p.links,
                                     absolute_only=True)
        for path, (kind, base_dir) in self.bases.items():
            p = plan[path]
            assert isinstance(p, HtmlPage)
            plan[path] = HtmlPage(p.title, p.paragraphs, p.links, base=kind, base_dir=base_dir,
                                  content_type="text/html;charset=UTF-8")


def _one_word_changed(spec: SiteSpec, writer: _Writer, paragraphs: tuple[str, ...], path: str) -> tuple[str, ...]:
    """The paragraphs with one word replaced, chosen so the site's simhash moves at most a bit or so."""
    rng = _rng(spec, "near", path)
    words = " ".join(paragraphs).split(" ")
    before = _simhash(_words_of_text(" ".join(paragraphs)))
    changed = words
    for _ in range(200):
        at = rng.randrange(len(words))
        old = words[at]
        core = old.rstrip(".")
        replacement = rng.choice(writer.words[:500])
        if replacement == core.lower():
            continue
        new = (replacement.capitalize() if core[:1].isupper() else replacement) + old[len(core):]
        changed = [*words[:at], new, *words[at + 1:]]
        if (before ^ _simhash(_words_of_text(" ".join(changed)))).bit_count() <= spec.near_duplicate_max_bits:
            break
    # put the words back into the same paragraph lengths
    out, i = [], 0
    for p in paragraphs:
        n = len(p.split(" "))
        out.append(" ".join(changed[i:i + n]))
        i += n
    return tuple(out)


def _sid(spec: SiteSpec, target: str) -> str:
    """A session id that looks random but is a hash of the page it appears on: new on every page."""
    return hashlib.sha1(f"{spec.seed}:{target}".encode()).hexdigest()[:16]


# ---- the site ------------------------------------------------------------------------------------
class Site:
    """What every (host, target) returns. `respond` is pure: same spec, same host, same bytes."""

    def __init__(self, spec: SiteSpec) -> None:
        spec.validate()
        self.spec = spec
        planner = _Planner(spec)
        for h in range(spec.hosts):
            planner.layout(h)
        planner.main_fixtures()
        for h in range(1, spec.hosts):
            planner.host_fixtures(h)
        for h in range(spec.hosts):
            planner.ordinary_pages(h)
        planner.finish_main()
        self.roles = planner.roles
        self._plan = planner.plan
        self._writer = planner.writer
        self._trap_entries = planner.trap_entries() if spec.traps else {}
        self._files: dict[str, bytes] = {}
        self._respond = lru_cache(maxsize=8192)(self._respond_uncached)

    # -- addressing ---------------------------------------------------------------------------------
    def ip(self, h: int) -> str:
        return f"127.0.0.{self.spec.first_ip + h}"

    def host_names(self, port: int) -> list[str]:
        return [f"{self.ip(h)}:{port}" for h in range(self.spec.hosts)]

    def host_index(self, host: str) -> tuple[int, int] | None:
        """(host index, port) of "127.0.0.N:PORT", or None when it is not one of the site's hosts."""
        m = re.fullmatch(r"127\.0\.0\.(\d{1,3}):(\d{1,5})", host.strip().lower())
        if not m:
            return None
        h = int(m.group(1)) - self.spec.first_ip
        return (h, int(m.group(2))) if 0 <= h < self.spec.hosts else None

    def url(self, port: int, target: Target) -> str:
        return f"http://{self.ip(target[0])}:{port}{target[1]}"

    def canonical(self, url: str) -> str:
        """The site's canonical form of an absolute URL (see SiteTruth)."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port
        netloc = host if port is None or port == {"http": 80, "https": 443}.get(scheme) else f"{host}:{port}"
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k.lower() not in self.spec.tracking_params]
        return urlunsplit((scheme, netloc, parts.path or "/", urlencode(sorted(query)), ""))

    def key_of(self, target: str) -> str:
        """The plan key of a request target: query without tracking parameters, sorted."""
        path, _, query = target.partition("?")
        pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                 if k.lower() not in self.spec.tracking_params]
        return page_key(path or "/", pairs)

    def latency_s(self, host: str) -> float:
        found = self.host_index(host)
        return self.spec.slow_host_latency_s if found and self.roles[found[0]] == "slow" else 0.0

    # -- serving ------------------------------------------------------------------------------------
    def respond(self, host: str, target: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for a GET of `target` ("/path?query") on `host` ("127.0.0.N:PORT")."""
        found = self.host_index(host)
        if found is None:
            return _plain(421, f"{host} is not a host of this site")
        return self._respond(found[0], found[1], self.key_of(target))

    def _respond_uncached(self, h: int, port: int, key: str) -> tuple[int, dict[str, str], bytes]:
        if key == "/robots.txt":
            return self._robots(h, port)
        resource = self._plan[h].get(key) or self._trap(h, key)
        if resource is None:
            return _plain(404, f"no page at {key}")
        if isinstance(resource, Alias):
            return self._respond(resource.of[0], port, resource.of[1])
        if isinstance(resource, HtmlPage):
            body = self._render(h, port, key, resource)
            return 200, {"content-type": resource.content_type}, body
        if isinstance(resource, Redirect):
            t = resource.location
            location = t[1] if resource.relative and t[0] == h else self.url(port, t)
            return resource.status, {"location": location, "content-type": "text/plain; charset=utf-8"}, b""
        if isinstance(resource, ErrorPage):
            status, headers, body = _plain(resource.status, f"error {resource.status}")
            if resource.status == 503:
                headers["retry-after"] = str(self.spec.retry_after_s)
            return status, headers, body
        return 200, {"content-type": resource.content_type}, self._file(resource.kind)

    def _robots(self, h: int, port: int) -> tuple[int, dict[str, str], bytes]:
        role = self.roles[h]
        if role == "no_robots":
            return _plain(404, "no robots.txt here")
        if role == "robots_error":
            return _plain(500, "robots.txt is temporarily broken")
        lines = [f"# robots.txt of {self.ip(h)}:{port}"]
        if role == "main":
            lines += [f"User-agent: {self.spec.blocked_agent}", "Disallow: /", "",
                      "User-agent: *", "Allow: /private/press/", "Disallow: /private/", "Disallow: /cgi-bin/"]
        elif role == "polite":
            lines += ["User-agent: *", "Disallow: /drafts/"]
            if self.spec.crawl_delay_s > 0:
                lines.append(f"Crawl-delay: {self.spec.crawl_delay_s:g}")
        elif role == "slow":
            lines += ["User-agent: *", "Disallow:"]
        else:
            lines += ["User-agent: *", "Disallow: /private/"]
        return 200, {"content-type": "text/plain; charset=utf-8"}, ("\n".join(lines) + "\n").encode()

    def robots_rules(self, h: int) -> tuple[int, list[tuple[bool, str]]]:
        """(status, [(allow, prefix)]) of the `*` group, first match wins (equal to longest match here)."""
        role = self.roles[h]
        if role == "no_robots":
            return 404, []
        if role == "robots_error":
            return 500, [(False, "/")]
        if role == "main":
            return 200, [(True, "/private/press/"), (False, "/private/"), (False, "/cgi-bin/")]
        if role == "polite":
            return 200, [(False, "/drafts/")]
        if role == "slow":
            return 200, []
        return 200, [(False, "/private/")]

    def robots_allows(self, url: str) -> bool:
        """Whether the site's robots.txt lets a crawler fetch `url` (True for URLs of other hosts)."""
        parts = urlsplit(url)
        found = self.host_index(parts.netloc)
        return True if found is None else self.allowed(found[0], self.key_of(parts.path + "?" + parts.query))

    def allowed(self, h: int, key: str) -> bool:
        for allow, prefix in self.robots_rules(h)[1]:
            if key.startswith(prefix):
                return allow
        return True

    def _file(self, kind: str) -> bytes:
        if kind not in self._files:
            self._files[kind] = self._make_file(kind)
        return self._files[kind]

    def _make_file(self, kind: str) -> bytes:
        if kind == "pdf":
            return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
                    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
        if kind == "png":
            def chunk(tag: bytes, data: bytes) -> bytes:
                return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
            raw = b"".join(b"\x00" + b"\x2b\x7b\xba" * 8 for _ in range(8))
            return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
        para = " ".join(self._writer.words_of(_rng(self.spec, "huge"), 400)).encode()
        head = b"<!DOCTYPE html><html><head><title>Everything</title></head><body>"
        body = head + b"<p>" + para + b"</p>"
        return (body * (self.spec.huge_bytes // len(body) + 1))[: self.spec.huge_bytes]

    # -- traps (generated on demand: they are infinite) ---------------------------------------------------
    def _trap(self, h: int, key: str) -> HtmlPage | None:
        if h != 0 or not self.spec.traps:
            return None
        path, _, query = key.partition("?")
        params = dict(parse_qsl(query))
        links: list[Link]
        if m := re.fullmatch(r"/calendar/(\d{1,7})/(\d{2})/", path):
            y, mo = int(m.group(1)), int(m.group(2))
            if not 1 <= mo <= 12 or query:
                return None
            prev = (y - 1, 12) if mo == 1 else (y, mo - 1)
            nxt = (y + 1, 1) if mo == 12 else (y, mo + 1)
            links = [Link((h, f"/calendar/{a}/{b:02d}/"), f"{a}-{b:02d}", form="relative") for a, b in (prev, nxt)]
            title = f"Events calendar {y}-{mo:02d}"
        elif re.fullmatch(r"/cycle/(?:[ab]/)+", path) and not query:
            links = [Link((h, path + "a/b/"), "a/b", form="relative"), Link((h, path + "b/a/"), "b/a", form="relative")]
            title = f"Directory {path}"
        elif path in ("/shop/", *(f"/shop/item-{i}.html" for i in range(1, 6))) and set(params) <= {"sid"}:
            sid = _sid(self.spec, key)
            links = [Link((h, page_key(p, [("sid", sid)])), p, form="root")
                     for p in ("/shop/", *(f"/shop/item-{i}.html" for i in range(1, 6)))]
            title = f"Shop {path}"
        elif path == "/catalog" and set(params) <= {"sort", "color", "size", "page"}:
            links = []
            for name, values in (("sort", ("price", "name", "new", "rating")),
                                 ("color", ("red", "green", "blue", "black", "white", "grey")),
                                 ("size", ("xs", "s", "m", "l", "xl"))):
                links += [Link((h, page_key(path, {**params, name: v}.items())), f"{name} {v}", form="shuffled")
                          for v in values if params.get(name) != v]
            page_no = int(params.get("page", "1")) if params.get("page", "1").isdigit() else 1
            links.append(Link((h, page_key(path, {**params, "page": str(page_no + 1)}.items())), "next",
                              form="query_only"))
            title = "Catalog " + ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        elif re.fullmatch(r"/deep/(?:\d+/)+", path) and not query:
            depth = path.count("/") - 2
            links = [Link((h, f"{path}{depth + 1}/"), "deeper", form="relative")]
            title = f"Level {depth}"
        elif re.fullmatch(r"/long/[a-z0-9/-]+/", path) and not query:
            seg = "-".join(self._writer.words_of(_rng(self.spec, "long", len(path)), 8))[:60]
            links = [Link((h, f"{path}{seg}/"), "more", form="relative")]
            title = f"Long path of {len(path)} characters"
        else:
            return None
        rng = _rng(self.spec, "trap", key)
        return HtmlPage(title, self._writer.paragraphs(rng, 40), tuple(links))

    def trap_regexes(self, port: int) -> dict[str, str]:
        if not self.spec.traps:
            return {}
        origin = re.escape(f"http://{self.ip(0)}:{port}")
        return {"calendar": f"^{origin}/calendar/", "cyclic": f"^{origin}/cycle/",
                "session_ids": f"^{origin}/shop/", "query_explosion": f"^{origin}/catalog(?:\\?|$)",
                "deep": f"^{origin}/deep/", "long_url": f"^{origin}/long/"}

    # -- rendering ------------------------------------------------------------------------------------
    def _href(self, h: int, port: int, key: str, page: HtmlPage, link: Link, n: int) -> str:
        if link.target is None:
            return link.raw
        th, tkey = link.target
        path, _, query = tkey.partition("?")
        form = link.form or SAME_HOST_FORMS[zlib.crc32(f"{key}|{n}".encode()) % len(SAME_HOST_FORMS)]
        if (th != h or page.absolute_only) and form not in CROSS_HOST_FORMS:
            form = "absolute"  # only absolute hrefs reach another host or stay the same wherever served
        if query and form in ("shuffled", "query_only"):
            query = "&".join(reversed(query.split("&")))
        if form == "tracking":
            extra = f"utm_source=newsletter&utm_medium=email&utm_campaign=w{n}" if n % 2 else f"fbclid=IwAR{n:04d}x"
            query = f"{extra}&{query}" if query else extra
        tail = path + (f"?{query}" if query else "")
        origin = f"http://{self.ip(th)}:{port}"
        if form == "upper_scheme":
            return f"HTTP://{self.ip(th)}:{port}{tail}"
        if form == "bare" and tail == "/":
            return origin
        if th != h or page.absolute_only or form in ("absolute", "explicit_port", "bare"):
            return origin + tail + ("#section-2" if form == "fragment" else "")
        if form in ("root", "tracking", "shuffled"):
            return tail
        here = key.partition("?")[0]
        if form == "query_only" and path == here and query and not page.base:
            return f"?{query}"
        base_dir = page.base_dir if page.base else posixpath.dirname(here).rstrip("/") + "/"
        rel = _relative(base_dir, path) + (f"?{query}" if query else "")
        if form == "dot" and not rel.startswith("."):
            rel = "./" + rel
        if form == "fragment":
            rel += f"#section-{n % 4 + 1}"
        return rel

    def _render(self, h: int, port: int, key: str, page: HtmlPage) -> bytes:
        esc = html.escape
        description = page.paragraphs[0].split(".")[0] + "." if page.paragraphs else page.title
        head = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
                f"<title>{esc(page.title)}</title>", f'<meta name="description" content="{esc(description)}">']
        if page.base == "root":
            head.append(f'<base href="{esc(page.base_dir)}">')
        elif page.base == "absolute":
            head.append(f'<base href="http://{self.ip(h)}:{port}{esc(page.base_dir)}">')
        head.append("</head>")
        nav, rest = page.links[:2], page.links[2:]
        body = ["<body>", '<header id="top"><nav>']
        body += [self._anchor(h, port, key, page, link, i) for i, link in enumerate(nav)]
        body.append("</nav></header>")
        body.append(f"<main><article><h1>{esc(page.title)}</h1>")
        per_paragraph = max(1, -(-len(rest) // max(1, len(page.paragraphs))))
        for i, paragraph in enumerate(page.paragraphs):
            anchors = " ".join(self._anchor(h, port, key, page, link, 2 + i * per_paragraph + j)
                               for j, link in enumerate(rest[i * per_paragraph:(i + 1) * per_paragraph]))
            body.append(f"<p>{esc(paragraph)} {anchors}</p>" if anchors else f"<p>{esc(paragraph)}</p>")
        leftover = rest[len(page.paragraphs) * per_paragraph:]
        if leftover:
            body.append("<ul>" + "".join(f"<li>{self._anchor(h, port, key, page, link, 900 + j)}</li>"
                                         for j, link in enumerate(leftover)) + "</ul>")
        body.append("</article></main>")
        footer = "<footer><p>Generated for the Sixfold crawler."
        if not page.absolute_only and not page.base:
            footer += ' <a href="#top">Back to top</a>'
        body += [footer + "</p></footer>", "</body>", "</html>"]
        return ("\n".join(head + body) + "\n").encode()

    def _anchor(self, h: int, port: int, key: str, page: HtmlPage, link: Link, n: int) -> str:
        href = html.escape(self._href(h, port, key, page, link, n), quote=True)
        rel = ' rel="nofollow"' if link.nofollow else ""
        return f'<a href="{href}"{rel}>{html.escape(link.text)}</a>'

    # -- ground truth -------------------------------------------------------------------------------------
    def links_of(self, h: int, key: str) -> tuple[Link, ...]:
        resource = self._plan[h].get(key) or self._trap(h, key)
        if isinstance(resource, Alias):
            return self.links_of(*resource.of)
        return resource.links if isinstance(resource, HtmlPage) else ()

    def truth(self, port: int) -> SiteTruth:
        """Breadth-first over the plan (not the HTML) from every host's root, honouring robots.txt."""
        hosts = self.host_names(port)
        seeds = [f"http://{name}/" for name in hosts]
        traps = self.trap_regexes(port)
        trap_res = [re.compile(r) for r in traps.values()]
        pages: set[str] = set()
        disallowed: set[str] = set()
        errors: dict[str, int] = {}
        non_html: set[str] = set()
        external: set[str] = set()
        nofollow: set[str] = set()
        hops: dict[str, str] = {}
        queue: deque[Target] = deque((h, "/") for h in range(self.spec.hosts))
        seen: set[Target] = set(queue)
        while queue:
            h, key = queue.popleft()
            url = self.url(port, (h, key))
            if not self.allowed(h, key):
                disallowed.add(url)
                continue
            if any(r.search(url) for r in trap_res):
                continue
            resource = self._plan[h].get(key)
            nxt: list[Target] = []
            if isinstance(resource, Redirect):
                hops[url] = self.url(port, resource.location)
                nxt.append(resource.location)
            elif isinstance(resource, ErrorPage):
                errors[url] = resource.status
            elif isinstance(resource, File):
                non_html.add(url)
            elif resource is not None:
                pages.add(url)
                for link in self.links_of(h, key):
                    if link.target is None:
                        if link.raw.startswith("http"):
                            external.add(link.raw)
                        continue
                    if link.nofollow:
                        nofollow.add(self.url(port, link.target))
                    nxt.append(link.target)
            else:  # a linked URL that was never planned
                errors[url] = 404
            for t in nxt:
                if t not in seen:
                    seen.add(t)
                    queue.append(t)
        redirects: dict[str, str] = {}
        loops: set[str] = set()
        for start, first in hops.items():
            chain, at = [start], first
            while at in hops and at not in chain:
                chain.append(at)
                at = hops[at]
            if at in chain or at in hops:
                loops.add(start)
            else:
                redirects[start] = at
        exact: list[set[str]] = []
        near: list[set[str]] = []
        for h, plan in enumerate(self._plan):
            for key, resource in plan.items():
                if isinstance(resource, Alias):
                    source = self.url(port, resource.of)
                    group = next((g for g in exact if source in g), None)
                    if group is None:
                        group = {source}
                        exact.append(group)
                    group.add(self.url(port, (h, key)))
                if key.endswith("-updated.html") and isinstance(resource, HtmlPage):
                    near.append({self.url(port, (h, key)), self.url(port, (h, key.replace("-updated.html", ".html")))})
        exact = [g for g in exact if g <= pages]
        near = [g for g in near if g <= pages]
        return SiteTruth(
            seeds=seeds, pages=pages, disallowed=disallowed,
            crawl_delay={name: (self.spec.crawl_delay_s if self.roles[i] == "polite" else 0.0)
                         for i, name in enumerate(hosts)},
            exact_duplicates=exact, near_duplicates=near, redirects=redirects, redirect_loops=loops,
            traps=traps, errors=errors, non_html=non_html, hosts=hosts,
            roles=dict(zip(hosts, self.roles)),
            robots_status={name: self.robots_rules(i)[0] for i, name in enumerate(hosts)},
            latency_s={name: self.latency_s(name) for name in hosts},
            external=external, nofollow=nofollow, huge_bytes=self.spec.huge_bytes,
            notes={
                "robots": "RFC 9309: robots.txt answering 4xx allows everything (the no_robots host); 5xx "
                          "disallows everything (the robots_error host, whose root is therefore in disallowed). "
                          "Rules are in the '*' group; a 'BadBot' group on the main host disallows everything. "
                          "Allow lines come before Disallow lines, so first-match and longest-match agree.",
                "traps": "every trap family lives on the main host and is linked from its root; trap URLs are "
                         "neither pages nor required; a correct crawler fetches a bounded number of them",
                "nofollow": "rel=nofollow links point only at pages that are also linked without it",
                "size": f"the over-sized files in non_html are {self.spec.huge_bytes:,} bytes: a crawler with a "
                        f"smaller page-size limit skips them (one of them is text/html)",
                "redirects": "chains of at most 3 hops; Location is absolute or root-relative; one crosses hosts; "
                             "every final URL is in pages",
                "errors": "the 503 sends Retry-After; the 500s and 503 stay that way on retry",
                "canonical": "lower-case scheme and host, no default port, no fragment, "
                             f"{', '.join(self.spec.tracking_params)} dropped, query sorted",
            },
        )


def _relative(from_dir: str, path: str) -> str:
    rel = posixpath.relpath(path, from_dir)
    if path.endswith("/"):
        rel = "./" if rel == "." else rel + "/"
    return rel


def _plain(status: int, text: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "text/plain; charset=utf-8"}, (text + "\n").encode()


def build(spec: SiteSpec) -> Site:
    """The site for `spec` (pure; raises SiteSpecError with the fix for a spec it cannot build)."""
    return Site(spec)
