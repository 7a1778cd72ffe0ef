"""HTTP doors of the feed system. Each section is owned by the module named in its heading.

The answers' models (`Following`, `TimelinePage`, ...) document the shapes in OpenAPI through
`responses=`, not `response_model=`: the routes return the domain's dicts as they are, the same
bytes the timeline fast path sends, and `tests/test_api_fuzz.py` holds every answer to its model.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from sixfold.platform.app_state import app_bus, app_sequencer, app_store, shared
from sixfold.platform.auth import acting_user, app_users, require_self, token_owner, unauthorized, writing_user
from sixfold.platform.errors import RequestError, error_answer, error_responses
from sixfold.platform.ids import Id

router = APIRouter(tags=["feed"])

# ---- users and follows (users.py, graph.py) -----------------------------------------------------


class FollowEdge(BaseModel):
    follower_id: Id
    followee_id: Id


class Following(FollowEdge):
    following: bool = Field(..., description="whether follower_id follows followee_id now")


_FOLLOW_ERRORS = error_responses(400, 401, 403, 404, 422, 429, 503, why={
    403: "follower_id is not the token's owner", 404: "the follower or the followee does not exist",
    422: "the body is not valid, or names one user twice (nobody follows themselves)"})


def _feed_sequencer(app):  # the app's one sequencer (users, posts, media, stories)
    return app_sequencer(app)


def _user_directory(app):
    return app_users(app)


def _follow_graph(app):
    from sixfold.feed.graph import FollowGraph

    return shared(app.state, "follow_graph",
                  lambda: FollowGraph(app_store(app), app_bus(app), app.state.settings.feed_celebrity_threshold,
                                      _user_directory(app), changed=_author_cache(app).celebrity_changed))


def _author_cache(app):
    from sixfold.feed.timelines import AuthorCache

    return shared(app.state, "author_cache",
                  lambda: AuthorCache(app_store(app), app.state.settings.feed_read_cache_s))


def _feed_call(fn, *args, **kwargs) -> Any:
    """Run a domain call, turning its FeedError into the HTTP error it names."""
    from fastapi import HTTPException

    try:
        return fn(*args, **kwargs)
    except RequestError as exc:
        raise HTTPException(exc.status, str(exc), headers=exc.headers) from None


@router.post("/v1/follows", status_code=201, summary="follower_id (the token's owner) follows followee_id (idempotent)",
             responses={201: {"model": Following}, **_FOLLOW_ERRORS})
def post_follow(request: Request, edge: FollowEdge, acting: int = Depends(writing_user)) -> Any:
    require_self(acting, edge.follower_id, "follower_id")
    return _feed_call(_follow_graph(request.app).follow, edge.follower_id, edge.followee_id)


@router.delete("/v1/follows", status_code=200, summary="follower_id (the token's owner) stops following followee_id",
               responses={200: {"model": Following}, **_FOLLOW_ERRORS})
def delete_follow(request: Request, edge: FollowEdge, acting: int = Depends(writing_user)) -> Any:
    require_self(acting, edge.follower_id, "follower_id")
    return _feed_call(_follow_graph(request.app).unfollow, edge.follower_id, edge.followee_id)


# ---- posts and timelines (posts.py, timelines.py) -----------------------------------------------


class GeoTag(BaseModel):
    lat: float = Field(..., description="latitude, -90..90")
    lon: float = Field(..., description="longitude, -180..180")


class NewPost(BaseModel):
    user_id: Id
    caption: str | None = None
    media_ids: list[Id | str] = []
    hashtags: list[str] = []
    geo: GeoTag | None = None


class CreatedPost(BaseModel):
    post_id: int
    created_at: datetime


class Post(BaseModel):
    post_id: int
    author_id: int
    created_at: datetime
    caption: str | None
    media: list[str] = Field(..., description="media ids, each served at /v1/media/{media_id}")
    hashtags: list[str]


class TimelinePage(BaseModel):
    user_id: int
    posts: list[Post]
    next_cursor: str | None = Field(..., description="`before` of the next page; null on the last one")
    stale: bool = Field(False, description="present (true) only when the store is failing and this is the last page "
                                           "this server answered for the same request")


class DeletedPost(BaseModel):
    post_id: int
    deleted: bool = Field(..., description="always true: the post is gone from every read")


def _post_service(app):
    from sixfold.feed.posts import PostService

    return shared(app.state, "post_service", lambda: PostService(
        app_store(app), app_bus(app), _user_directory(app), _feed_sequencer(app), changed=_author_cache(app).posted,
        celebrity_threshold=app.state.settings.feed_celebrity_threshold))


def _timeline_reader(app):
    from sixfold.feed.timelines import TimelineReader

    settings = app.state.settings
    return shared(app.state, "timeline_reader", lambda: TimelineReader(
        app_store(app), settings.feed_celebrity_threshold, _user_directory(app), _author_cache(app),
        page_cache_s=settings.feed_page_cache_s))


@router.post("/v1/posts", status_code=201, summary="Publish a post as the token's owner; followers see it after fanout",
             responses={201: {"model": CreatedPost}, **error_responses(400, 401, 403, 404, 422, 429, 503, why={
                 403: "user_id is not the token's owner, or a media id is someone else's upload",
                 404: "the user or a media id does not exist"})})
def post_post(request: Request, post: NewPost, acting: int = Depends(writing_user)) -> Any:
    require_self(acting, post.user_id)
    geo = post.geo.model_dump() if post.geo is not None else None
    return _feed_call(_post_service(request.app).create, post.user_id, post.caption, list(post.media_ids),
                      list(post.hashtags), geo)


@router.get("/v1/timeline/{user_id}", summary="Your home timeline, newest first (followees' posts and your own); "
                                               "owner's token",
            responses={200: {"model": TimelinePage}, **error_responses(401, 403, 404, 422, 503, why={
                403: "user_id is not the token's owner", 404: "the user does not exist"})})
def get_timeline(request: Request, user_id: Id,
                 limit: int = Query(20, description="posts per page, 1..100"),
                 before: str | None = Query(None, description="next_cursor of the previous page"),
                 acting: int = Depends(acting_user)) -> Any:
    require_self(acting, user_id)
    return _feed_call(_timeline_reader(request.app).timeline, user_id, limit, before)


@router.get("/v1/users/{user_id}/posts", summary="A user's own posts, newest first (their profile); public",
            responses={200: {"model": TimelinePage}, **error_responses(404, 422, 503, why={
                404: "the user does not exist"})})
def get_profile_posts(request: Request, user_id: Id,
                      limit: int = Query(20, description="posts per page, 1..100"),
                      before: str | None = Query(None, description="next_cursor of the previous page")) -> Any:
    return _feed_call(_timeline_reader(request.app).profile, user_id, limit, before)


@router.delete("/v1/posts/{post_id}", status_code=200,
               summary="Delete your post: gone from every timeline, profile and search at once; a repeat is 404",
               responses={200: {"model": DeletedPost}, **error_responses(401, 403, 404, 422, 429, 503, why={
                   403: "the post is someone else's", 404: "no such post, or it was deleted already"})})
def delete_post(request: Request, post_id: Id, acting: int = Depends(writing_user)) -> Any:
    return _feed_call(_post_service(request.app).delete, acting, post_id)


class TimelineFastGet:
    """GET /v1/timeline/{user_id} for `sixfold.api.fastpath`: the same reader as the route above;
    a malformed id or parameter goes on to that route, which explains it."""

    PATH = re.compile(r"/v1/timeline/([0-9]{1,18})")
    template = "/v1/timeline/{user_id}"  # its route's, for the request metrics

    def match(self, path: str) -> Any | None:
        return self.PATH.fullmatch(path)

    def answer(self, matched: Any, scope: dict, app: Any) -> Any:
        from sixfold.platform.errors import ServiceUnavailable

        params = {key: values[-1] for key, values in parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                                              keep_blank_values=True).items()}
        if set(params) - {"limit", "before"}:
            return None
        try:
            limit = int(params.get("limit", "20"))
        except ValueError:
            return None
        try:
            acting, token = token_owner(app, scope["headers"])
            if acting is None:
                raise unauthorized(token)
            user_id = int(matched.group(1))
            require_self(acting, user_id)
            return 200, _timeline_reader(app).timeline_json(user_id, limit, params.get("before"))
        except RequestError as exc:
            return error_answer(exc.status, str(exc), exc.headers)
        except ServiceUnavailable as exc:  # an open breaker or a full bulkhead says when (sixfold.platform.resilience)
            return error_answer(503, str(exc), {"Retry-After": str(getattr(exc, "retry_after_s", 5))})


# ---- media (media.py) ---------------------------------------------------------------------------


class Rendition(BaseModel):
    sha256: str
    content_type: str
    width: int
    height: int
    size_bytes: int


class UploadedMedia(BaseModel):
    media_id: int
    owner_id: int
    sha256: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    created_at: datetime
    renditions: dict[str, Rendition] = Field(..., description="feed and thumb: GET /v1/media/{media_id}?size=")


_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file in a multipart upload


def _media_library(app):  # one MediaLibrary per app, on the app's one serving store
    from sixfold.feed.media import MediaLibrary, open_blob_store

    store = app_store(app)
    settings = app.state.settings
    return shared(app.state, "media_library",
                  lambda: MediaLibrary(store, open_blob_store(settings), _feed_sequencer(app),
                                       max_pixels=settings.media_max_pixels,
                                       decode_concurrency=settings.media_decode_concurrency))


async def _read_upload(request: Request) -> tuple[bytes, str | None, dict[str, str]]:
    """(image bytes, declared type, form fields) from a raw `image/*` body or a multipart form; never unbounded."""
    from fastapi import HTTPException

    from sixfold.feed.media import MAX_UPLOAD_BYTES

    content_type = request.headers.get("content-type", "")
    multipart = content_type.lower().startswith("multipart/form-data")
    limit = MAX_UPLOAD_BYTES + (_MULTIPART_SLACK if multipart else 0)
    too_big = f"upload too large; the limit is {MAX_UPLOAD_BYTES:,} bytes (16 MB)"
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPException(413, f"Content-Length {int(declared):,}: {too_big}")
        except ValueError:
            raise HTTPException(400, f"Content-Length {declared!r} is not a number") from None
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise HTTPException(413, too_big)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not multipart:
        return body, content_type.split(";")[0].strip() or None, {}

    from python_multipart.exceptions import MultipartParseError
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def replay():
        yield body

    try:
        form = await MultiPartParser(request.headers, replay(), max_files=1, max_fields=10).parse()
    except (MultiPartException, MultipartParseError) as exc:
        reason = getattr(exc, "message", None) or str(exc)
        raise HTTPException(422, f"malformed multipart body: {reason}; send one image file field") from None
    files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if not files:
        raise HTTPException(422, "the multipart form has no file; send the image in a field named `file`")
    upload = dict(files).get("file", files[0][1])
    data = await upload.read()
    await form.close()
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, too_big)
    return data, upload.content_type, fields


@router.post(
    "/v1/media", status_code=201, summary="Upload a JPEG, PNG, WebP or GIF (at most 16 MB)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}, "user_id": {"type": "integer"}}}},
    }}},
    responses={201: {"model": UploadedMedia}, **error_responses(400, 401, 403, 404, 413, 415, 422, 429, 503, why={
        400: "Content-Length is not a number", 403: "user_id is not the token's owner",
        404: "the uploader does not exist", 413: "over 16 MB, or more pixels than the limit",
        415: "the bytes are not a JPEG, PNG, WebP or GIF",
        422: "an empty upload, a malformed multipart form, or bytes that do not decode",
        503: "every image decoder stayed busy; retry in a few seconds"})},
)
async def post_media(request: Request,
                     user_id: Id | None = Query(None, description="the uploader, if given (or a `user_id` form "
                                                 "field): must be the token's owner, who is the default"),
                     acting: int = Depends(writing_user)):
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool

    from sixfold.feed.media import MediaError

    data, declared, fields = await _read_upload(request)
    if user_id is None:
        raw = fields.get("user_id")
        try:
            user_id = int(raw) if raw is not None else None
        except ValueError:
            raise HTTPException(422, f"user_id: {raw!r} is not an integer") from None
    if user_id is None:
        user_id = acting
    require_self(acting, user_id)
    library = _media_library(request.app)
    try:  # decoding and resizing take CPU: keep them off the event loop
        return await run_in_threadpool(library.upload, user_id, data, declared)
    except MediaError as exc:
        raise HTTPException(exc.status, str(exc)) from None


_CACHED = {name: {"required": True, "schema": {"type": "string"}, "description": what} for name, what in (
    ("ETag", "the bytes' SHA-256, quoted: send it back as If-None-Match"),
    ("Cache-Control", "public, max-age=31536000, immutable: the bytes of an id never change"))}


@router.get("/v1/media/{media_id}", summary="An image's bytes (original or a rendition), cacheable forever",
            response_class=Response,
            responses={200: {"description": "the image", "headers": _CACHED,
                             "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
                       304: {"description": "the client's copy (If-None-Match) is current", "headers": _CACHED},
                       **error_responses(404, 422, 503, why={404: "no such media, or no such size of it"})})
def get_media(request: Request, media_id: Id,
              size: Literal["original", "feed", "thumb"] = Query(
                  "original", description="original, feed (at most 1080 px) or thumb (at most 150 px)")):
    from fastapi import HTTPException, Response

    from sixfold.feed.media import MediaError, etag_matches

    library = _media_library(request.app)
    try:
        sha, content_type = library.variant(media_id, size)
        headers = {"ETag": f'"{sha}"', "Cache-Control": "public, max-age=31536000, immutable"}
        if etag_matches(request.headers.get("if-none-match"), sha):
            return Response(status_code=304, headers=headers)
        data, content_type, sha = library.read(media_id, size)
    except MediaError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return Response(data, media_type=content_type, headers=headers)


# ---- stories (stories.py) -----------------------------------------------------------------------


class NewStory(BaseModel):
    user_id: Id
    media_id: Id


class CreatedStory(BaseModel):
    story_id: int
    expires_at: datetime


class Story(BaseModel):
    story_id: int
    author_id: int
    media_id: int
    created_at: datetime
    expires_at: datetime


class StoryAuthor(BaseModel):
    author_id: int
    username: str | None
    stories: list[Story]


class StoryFeed(BaseModel):
    user_id: int
    authors: list[StoryAuthor]
    next_cursor: str | None = Field(..., description="`cursor` of the next page; null on the last one")


def _story_service(app):  # one StoryService per app (real clock), on the app's one serving store
    from sixfold.feed.stories import StoryService

    store = app_store(app)
    return shared(app.state, "story_service", lambda: StoryService(store, sequencer=_feed_sequencer(app)))


@router.post("/v1/stories", status_code=201, summary="Post a story: visible to followers for exactly 24 hours",
             responses={201: {"model": CreatedStory}, **error_responses(400, 401, 403, 404, 422, 429, 503, why={
                 403: "user_id is not the token's owner, or the media is someone else's upload",
                 404: "the user or the media does not exist"})})
def post_story(request: Request, story: NewStory, acting: int = Depends(writing_user)):
    require_self(acting, story.user_id)
    return _feed_call(_story_service(request.app).post, story.user_id, story.media_id)


@router.get("/v1/stories/feed/{user_id}",
            summary="Live stories of the people you follow and your own, by author; owner's token",
            responses={200: {"model": StoryFeed}, **error_responses(401, 403, 404, 422, 503, why={
                403: "user_id is not the token's owner", 404: "the user does not exist"})})
def get_story_feed(request: Request, user_id: Id, acting: int = Depends(acting_user),
                   limit: int = Query(20, description="authors per page, 1..100"),
                   cursor: str | None = Query(None, description="next_cursor of the previous page")):
    require_self(acting, user_id)
    return _feed_call(_story_service(request.app).feed, user_id, limit, cursor)


# ---- search (search.py) -------------------------------------------------------------------------


class HashtagPage(BaseModel):
    tag: str = Field(..., description="the tag as searched: lowercase, without '#'")
    posts: list[Post]
    next_cursor: str | None


class GeoPost(Post):
    lat: float
    lon: float


class GeoPage(BaseModel):
    lat: float
    lon: float
    radius_km: float
    posts: list[GeoPost]
    next_cursor: str | None


@router.get("/v1/search/hashtags/{tag}", summary="Posts with a hashtag, newest first",
            responses={200: {"model": HashtagPage}, **error_responses(422, 503)})
def get_search_hashtag(request: Request, tag: str,
                       limit: int = Query(20, description="posts per page, 1..100"),
                       before: str | None = Query(None, description="next_cursor of the previous page")):
    from sixfold.feed.search import search_hashtag

    return _feed_call(search_hashtag, app_store(request.app), tag, limit, before)


@router.get("/v1/search/geo", summary="Posts within radius_km of a point, newest first",
            responses={200: {"model": GeoPage}, **error_responses(422, 503)})
def get_search_geo(request: Request,
                   lat: float = Query(..., description="latitude, -90..90"),
                   lon: float = Query(..., description="longitude, -180..180"),
                   radius_km: float = Query(..., description="radius in km, more than 0, at most 1000"),
                   limit: int = Query(20, description="posts per page, 1..100"),
                   before: str | None = Query(None, description="next_cursor of the previous page")):
    from sixfold.feed.search import search_geo

    return _feed_call(search_geo, app_store(request.app), lat, lon, radius_km, limit, before)


# ---- page: GET /feed/{user_id} ------------------------------------------------------------------
@router.get("/feed/{user_id}", include_in_schema=False)
def get_feed_page(user_id: int):
    """The feed page: stories, then the timeline with "load more" (static HTML calling the API)."""
    from importlib.resources import files

    from fastapi.responses import HTMLResponse

    page = files("sixfold.feed").joinpath("static/feed.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})



def fast_gets() -> list:
    """This system's answers to its hottest GETs ahead of FastAPI (`sixfold.api.fastpath`)."""
    return [TimelineFastGet()]
