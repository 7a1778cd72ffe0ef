"""The extractor: canonical URLs, and the links, title, description and visible text of an HTML page.

Canonical form (one spelling per resource, so the seen-set and the checksum table agree):
w3lib's `canonicalize_url` (percent-encoding normalised, query arguments sorted, fragment
dropped) plus our rules: scheme and host lower case, a trailing dot and the default port
dropped, an empty path written `/`, tracking parameters (utm_*, fbclid, gclid, ...) and session
ids (jsessionid, PHPSESSID, sid, ...) removed. Links resolve against `<base href>` when the page
has one; `mailto:`, `javascript:`, `tel:` and `data:` links are ignored, and so are links with
`rel=nofollow` and every link of a page whose `<meta name=robots>` says nofollow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser
from w3lib.url import canonicalize_url

CRAWLABLE_SCHEMES = ("http", "https", "ftp")
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid", "mc_cid", "mc_eid",
    "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "ref_src", "spm",
})
SESSION_PARAMS = frozenset({"jsessionid", "phpsessid", "aspsessionid", "sid", "sessionid", "session_id", "cfid",
                            "cftoken"})
_PATH_SESSION = re.compile(r";(jsessionid|phpsessid)=[^/?#]*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
INVISIBLE_TAGS = ["script", "style", "noscript", "template", "svg", "head"]


def is_tracking_param(name: str) -> bool:
    low = name.lower()
    return low.startswith("utm_") or low in TRACKING_PARAMS or low in SESSION_PARAMS


@lru_cache(maxsize=65_536)  # navigation links repeat on every page of a site
def canonical_url(href: str, base: str | None = None) -> str | None:
    """The canonical form of `href` (resolved against `base`), or None when it is not crawlable."""
    href = href.strip()
    if not href:
        return None
    absolute = urljoin(base, href) if base else href
    try:
        parts = urlsplit(absolute)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    scheme = parts.scheme.lower()
    if scheme not in CRAWLABLE_SCHEMES or not parts.hostname:
        return None
    host = parts.hostname.rstrip(".").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # port out of range or not a number
        return None
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if parts.username:  # credentials never belong in a crawled URL
        return None
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not is_tracking_param(k)])
    path = _PATH_SESSION.sub("", parts.path) or "/"
    cleaned = urlunsplit((scheme, netloc, path, query, ""))
    return canonicalize_url(cleaned, keep_fragments=False)


def host_of(url: str) -> str:
    """The host part of a canonical URL, with its port when it is not the default."""
    return urlsplit(url).netloc


@dataclass
class Extracted:
    title: str | None = None
    description: str | None = None
    text: str = ""
    links: list[str] = field(default_factory=list)  # canonical, in page order, unique
    nofollow_page: bool = False


def extract(html: str, page_url: str) -> Extracted:
    """Title, description, visible text and followable canonical links of one HTML page."""
    tree = LexborHTMLParser(html)
    out = Extracted()
    title = tree.css_first("title")
    if title is not None:
        out.title = _SPACE.sub(" ", title.text()).strip() or None
    for meta in tree.css("meta[name]"):
        name = (meta.attributes.get("name") or "").lower()
        content = meta.attributes.get("content") or ""
        if name == "description" and out.description is None:
            out.description = _SPACE.sub(" ", content).strip() or None
        elif name == "robots" and "nofollow" in content.lower():
            out.nofollow_page = True
    base_tag = tree.css_first("base[href]")
    base = page_url
    if base_tag is not None and (base_tag.attributes.get("href") or "").strip():
        base = urljoin(page_url, (base_tag.attributes.get("href") or "").strip())
    if not out.nofollow_page:
        seen: set[str] = set()
        for anchor in tree.css("a[href], area[href]"):
            rel = (anchor.attributes.get("rel") or "").lower().split()
            if "nofollow" in rel:
                continue
            link = canonical_url(anchor.attributes.get("href") or "", base)
            if link is not None and link not in seen:
                seen.add(link)
                out.links.append(link)
    tree.strip_tags(INVISIBLE_TAGS)
    body = tree.body
    out.text = _SPACE.sub(" ", body.text(separator=" ")).strip() if body is not None else ""
    return out
